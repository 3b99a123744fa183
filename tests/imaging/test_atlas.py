"""Tests of drasclr.imaging.atlas: landmark grid, published grid, neighbour table, atlas folders."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from drasclr.imaging.atlas import (
    Atlas,
    atlas_from_files,
    build_atlas,
    build_landmark_grid,
    load_atlas,
    load_published_grid,
    neighbour_table,
    normalise_landmarks,
    save_atlas,
)
from drasclr.imaging.geometry import voxel_to_mm

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference"
ATLAS_MASK = REFERENCE / "atlas_lung_mask.nii.gz"
PUBLISHED_GRID = REFERENCE / "atlas_patch_loc.npy"


@pytest.fixture(scope="module")
def reference_atlas() -> tuple[np.ndarray, sitk.Image]:
    if not ATLAS_MASK.is_file():
        pytest.skip(f"reference atlas not found at {ATLAS_MASK}")
    img = sitk.ReadImage(str(ATLAS_MASK))
    return sitk.GetArrayFromImage(img), img


def _naive_grid(
    mask: np.ndarray, patch: int, step: int, threshold: float
) -> set[tuple[int, int, int]]:
    """Reference grid by a triple loop over candidate corners (tests only)."""
    keep = set()
    z, y, x = mask.shape
    starts = [range(0, n - patch + 1, step) for n in (x, y, z)]
    for cx, cy, cz in itertools.product(*starts):
        if (mask[cz : cz + patch, cy : cy + patch, cx : cx + patch] != 0).mean() > threshold:
            keep.add((cx, cy, cz))
    return keep


def _ellipsoid_mask(shape: tuple[int, int, int]) -> np.ndarray:
    z, y, x = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    inside = ((z - 40) / 30) ** 2 + ((y - 35) / 28) ** 2 + ((x - 45) / 38) ** 2 < 1
    mask = np.zeros(shape, np.uint8)
    mask[inside & (x < 45)] = 1
    mask[inside & (x >= 45)] = 2
    return mask


# ----------------------------------------------------------------------------- grid rule
def test_grid_matches_naive_loop_on_synthetic_mask() -> None:
    mask = _ellipsoid_mask((80, 72, 90))
    corners = build_landmark_grid(mask, patch=16, step=13, min_lung=0.1)
    assert set(map(tuple, corners.tolist())) == _naive_grid(mask, 16, 13, 0.1)
    # sorted by x, then y, then z (the published order)
    assert np.array_equal(corners, corners[np.lexsort(corners.T[::-1])])


def test_grid_raises_threshold_until_below_max_patches() -> None:
    mask = _ellipsoid_mask((80, 72, 90))
    full = build_landmark_grid(mask, patch=16, step=13, min_lung=0.1)
    capped = build_landmark_grid(mask, patch=16, step=13, min_lung=0.1, max_patches=len(full))
    expected = None
    for threshold in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        candidate = _naive_grid(mask, 16, 13, threshold)
        if len(candidate) < len(full):
            expected = candidate
            break
    assert expected is not None and set(map(tuple, capped.tolist())) == expected
    assert len(capped) < len(full)


def test_grid_label_conventions_agree() -> None:
    mask = _ellipsoid_mask((80, 72, 90))
    a = build_landmark_grid(mask, patch=16, step=13)
    b = build_landmark_grid(mask * 50, patch=16, step=13)
    c = build_landmark_grid(mask > 0, patch=16, step=13)
    assert np.array_equal(a, b) and np.array_equal(a, c)


def test_grid_rejects_bad_masks() -> None:
    with pytest.raises(ValueError):
        build_landmark_grid(np.zeros((64, 64, 64), np.uint8))  # no lung
    with pytest.raises(ValueError):
        build_landmark_grid(np.ones((20, 64, 64), np.uint8))  # smaller than a patch


def test_reference_grid_has_575_published_patches(reference_atlas) -> None:
    mask, _ = reference_atlas  # its speed: `drasclr bench kernels --atlas-mask ...`
    corners = build_landmark_grid(mask, patch=32, step=26, min_lung=0.10)
    published = np.load(PUBLISHED_GRID)
    assert corners.shape == (575, 3)
    assert set(map(tuple, corners.tolist())) <= set(map(tuple, published.tolist()))
    assert np.all(corners % 26 == 0)  # lattice anchored at voxel 0


# ----------------------------------------------------------------------------- published grid
def test_published_grid_centres_are_corners_plus_16_in_mm(reference_atlas) -> None:
    _, img = reference_atlas
    landmarks = load_published_grid(PUBLISHED_GRID, img)
    corners = np.load(PUBLISHED_GRID)
    assert landmarks.shape == (581, 3)
    expected = np.array(
        [img.TransformIndexToPhysicalPoint([int(v) + 16 for v in c]) for c in corners]
    )
    np.testing.assert_allclose(landmarks, expected, atol=1e-9)


def test_build_atlas_from_published_grid(reference_atlas) -> None:
    mask, img = reference_atlas
    corners = np.load(PUBLISHED_GRID)
    atlas = build_atlas(mask, img, atlas_id="copdgene", grid_corners=corners)
    assert atlas.n_landmarks == 581
    np.testing.assert_array_equal(atlas.patch_corners(), corners)


# ----------------------------------------------------------------------------- neighbours
def test_neighbour_table_properties() -> None:
    rng = np.random.default_rng(0)
    points = rng.normal(size=(60, 3)) * 40
    table = neighbour_table(points, k_max=3)
    assert table.shape == (60, 3) and table.dtype == np.int64
    d = np.linalg.norm(points[:, None] - points[None], axis=-1)
    for j in range(60):
        assert j not in table[j]
        others = np.delete(np.arange(60), j)
        expected = others[np.argsort(d[j, others], kind="stable")[:3]]
        np.testing.assert_array_equal(table[j], expected)
        assert np.all(np.diff(d[j, table[j]]) >= 0)
    assert neighbour_table(points, k_max=0).shape == (60, 0)
    with pytest.raises(ValueError):
        neighbour_table(points[:3], k_max=3)


def test_neighbour_ties_break_by_index_despite_float_noise() -> None:
    """On a lattice, equidistant neighbours come in index order even with an awkward origin."""
    lattice = np.array(list(itertools.product(range(3), range(3), range(3))), float) * 26.0
    points = lattice + np.array([-189.1220703125, -9.957916259765625, -1132.5])
    table = neighbour_table(points, k_max=3)
    centre = 13  # (1, 1, 1): six neighbours at 26 mm, indices 4, 10, 12, 14, 16, 22
    assert table[centre].tolist() == [4, 10, 12]


def test_neighbours_at_a_minimum_distance_skip_the_overlapping_ones() -> None:
    """``min_distance_mm``: on the 26 mm lattice with 32 mm patches, the nearest landmarks at
    least a patch width away are the face diagonals (36.8 mm), in index order; too few such
    landmarks is an error naming the landmark."""
    lattice = np.array(list(itertools.product(range(3), range(3), range(3))), float) * 26.0
    table = neighbour_table(lattice, k_max=2, min_distance_mm=32.0)
    d = np.linalg.norm(lattice[:, None] - lattice[None], axis=-1)
    assert np.all(d[np.arange(27)[:, None], table] >= 32.0)
    centre = 13
    assert table[centre].tolist() == [1, 3]  # (0,0,1) and (0,1,0): 26 * sqrt(2) mm
    assert d[centre, 1] == pytest.approx(26.0 * np.sqrt(2))
    np.testing.assert_array_equal(neighbour_table(lattice, 3, 0.0), neighbour_table(lattice, 3))
    with pytest.raises(ValueError, match="landmark 13 has fewer than 2"):
        neighbour_table(lattice, k_max=2, min_distance_mm=60.0)


def test_reference_neighbours_are_lattice_neighbours(reference_atlas) -> None:
    mask, img = reference_atlas
    atlas = build_atlas(mask, img, atlas_id="copdgene")
    nearest = atlas.landmarks_mm[atlas.neighbour_table[:, 0]]
    first = np.linalg.norm(atlas.landmarks_mm - nearest, axis=1)
    assert np.all(first >= 26.0 - 1e-6)
    assert np.median(first) == pytest.approx(26.0)


def test_normalised_landmarks_span_minus_one_to_one() -> None:
    pts = np.array([[0.0, 5.0, -3.0], [10.0, 5.0, 7.0], [5.0, 5.0, 2.0]])
    norm = normalise_landmarks(pts)
    assert norm.dtype == np.float32
    np.testing.assert_allclose(norm[:, 0], [-1, 1, 0])
    np.testing.assert_allclose(norm[:, 1], [0, 0, 0])  # degenerate axis
    np.testing.assert_allclose(norm[:, 2], [-1, 1, 0])


# ----------------------------------------------------------------------------- atlas folders
def _small_atlas() -> Atlas:
    mask = _ellipsoid_mask((80, 72, 90)) * 50
    geom = ((1.0, 1.0, 1.0), (-45.123456789, 12.5, -300.0), np.diag([1.0, -1.0, 1.0]))
    ct = np.where(mask > 0, -850, 40).astype(np.int16)
    return build_atlas(mask, geom, ct=ct, atlas_id="toy", patch=16, step=13)


def test_build_atlas_fields() -> None:
    atlas = _small_atlas()
    corners = build_landmark_grid(atlas.mask, patch=16, step=13)
    np.testing.assert_allclose(atlas.landmarks_mm, voxel_to_mm(corners + 8, atlas))
    assert atlas.mask.dtype == np.uint8 and set(np.unique(atlas.mask)) == {0, 50, 100}
    assert atlas.landmarks_norm.shape == atlas.landmarks_mm.shape
    assert atlas.neighbour_table.shape == (atlas.n_landmarks, 3)
    np.testing.assert_array_equal(atlas.patch_corners(), corners)


def test_save_load_round_trip(tmp_path: Path) -> None:
    atlas = _small_atlas()
    folder = save_atlas(atlas, tmp_path / "atlas")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atlas"]  # no temporaries left
    loaded = load_atlas(folder)
    assert loaded.atlas_id == "toy" and loaded.patch_size == 16
    np.testing.assert_array_equal(loaded.mask, atlas.mask)
    np.testing.assert_array_equal(loaded.ct, atlas.ct)
    np.testing.assert_array_equal(loaded.landmarks_mm, atlas.landmarks_mm)
    np.testing.assert_array_equal(loaded.landmarks_norm, atlas.landmarks_norm)
    np.testing.assert_array_equal(loaded.neighbour_table, atlas.neighbour_table)
    for name in ("spacing", "origin", "direction"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(atlas, name))
    save_atlas(atlas, folder)  # overwriting an existing atlas works
    with pytest.raises(FileNotFoundError):
        load_atlas(tmp_path / "missing")


def test_atlas_from_files_resamples_to_1mm(tmp_path: Path) -> None:
    mask = _ellipsoid_mask((80, 72, 90))
    img = sitk.GetImageFromArray(mask[::2, ::2, ::2].copy())
    img.SetSpacing((2.0, 2.0, 2.0))
    img.SetOrigin((-10.0, 20.0, -500.0))
    path = tmp_path / "mask.nrrd"
    sitk.WriteImage(img, str(path))
    atlas = atlas_from_files(path, patch=16, step=13)
    np.testing.assert_allclose(atlas.spacing, 1.0)
    assert atlas.mask.shape == (80, 72, 90) and atlas.atlas_id == "mask"
    assert atlas.n_landmarks > 0


def test_atlas_from_files_with_published_grid(reference_atlas) -> None:
    atlas = atlas_from_files(ATLAS_MASK, grid_path=PUBLISHED_GRID, atlas_id="copdgene")
    assert atlas.n_landmarks == 581
    np.testing.assert_array_equal(atlas.patch_corners(), np.load(PUBLISHED_GRID))
