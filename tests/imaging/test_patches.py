"""Tests of drasclr.imaging.patches: voxel <-> LPS mm conversion and vectorised patch cutting."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk

from drasclr.imaging.geometry import geometry_arrays, mm_to_voxel, voxel_to_mm
from drasclr.imaging.patches import cut_patches, lung_fraction, patch_corners, patch_in_view

P = 32


def _rotation(deg_x: float, deg_z: float) -> np.ndarray:
    ax, az = np.deg2rad(deg_x), np.deg2rad(deg_z)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ rx


def _naive_patch(volume: np.ndarray, corner_xyz: np.ndarray, fill: int) -> np.ndarray:
    """Reference: one patch by slicing the overlap with the volume (per-patch loop, tests only)."""
    out = np.full((P, P, P), fill, dtype=volume.dtype)
    lo = np.asarray(corner_xyz[::-1], dtype=int)  # z, y, x
    src_lo = np.maximum(lo, 0)
    src_hi = np.minimum(lo + P, volume.shape)
    if np.any(src_hi <= src_lo):
        return out
    dst_lo = src_lo - lo
    dst_hi = dst_lo + (src_hi - src_lo)
    out[dst_lo[0] : dst_hi[0], dst_lo[1] : dst_hi[1], dst_lo[2] : dst_hi[2]] = volume[
        src_lo[0] : src_hi[0], src_lo[1] : src_hi[1], src_lo[2] : src_hi[2]
    ]
    return out


# ----------------------------------------------------------------------------- geometry
def test_voxel_mm_round_trip_matches_simpleitk() -> None:
    spacing = (0.7, 0.8, 1.25)
    origin = (-120.5, 33.0, -900.25)
    direction = _rotation(10, -25) @ np.diag([1.0, -1.0, 1.0])
    img = sitk.Image(10, 12, 14, sitk.sitkUInt8)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction.ravel().tolist())
    geom = {"spacing": spacing, "origin": origin, "direction": direction}
    rng = np.random.default_rng(0)
    ijk = rng.uniform(-5, 20, size=(50, 3))
    mm = voxel_to_mm(ijk, geom)
    expected = np.array([img.TransformContinuousIndexToPhysicalPoint(p.tolist()) for p in ijk])
    np.testing.assert_allclose(mm, expected, atol=1e-9)
    np.testing.assert_allclose(mm_to_voxel(mm, geom), ijk, atol=1e-9)
    # a single point keeps its shape; the SimpleITK image is itself a geometry
    np.testing.assert_allclose(voxel_to_mm(ijk[0], img), expected[0], atol=1e-9)
    assert voxel_to_mm(ijk[0], img).shape == (3,)


def test_geometry_arrays_accepts_common_forms() -> None:
    direction = np.diag([1.0, -1.0, 1.0])
    forms = [
        {"spacing": (1, 1, 2), "origin": (1, 2, 3), "direction": direction.ravel().tolist()},
        ((1, 1, 2), (1, 2, 3), direction),
        SimpleNamespace(spacing=(1, 1, 2), origin=(1, 2, 3), direction=direction),
    ]
    for geom in forms:
        spacing, origin, d = geometry_arrays(geom)
        np.testing.assert_array_equal(spacing, [1, 1, 2])
        np.testing.assert_array_equal(origin, [1, 2, 3])
        np.testing.assert_array_equal(d, direction)
    with pytest.raises(TypeError):
        geometry_arrays(42)
    with pytest.raises(ValueError):
        geometry_arrays(((0, 1, 1), (0, 0, 0), np.eye(3)))


# ----------------------------------------------------------------------------- cutting
def test_patch_convention_centre_is_corner_plus_half() -> None:
    """A patch centred on voxel c spans c-16 .. c+15 on each axis."""
    shape = (60, 50, 40)  # z, y, x
    z, y, x = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    volume = (x + 100 * y + 10000 * z).astype(np.int32)
    geom = ((1.0, 1.0, 1.0), (5.0, -3.0, 2.0), np.eye(3))
    centre_index = np.array([20, 25, 30])  # x, y, z
    centre_mm = voxel_to_mm(centre_index, geom)[None]
    patches, in_view = cut_patches(volume, geom, centre_mm)
    assert in_view.tolist() == [True]
    p = patches[0]
    assert p[0, 0, 0] == (20 - 16) + 100 * (25 - 16) + 10000 * (30 - 16)
    assert p[-1, -1, -1] == (20 + 15) + 100 * (25 + 15) + 10000 * (30 + 15)
    np.testing.assert_array_equal(patch_corners(centre_mm, geom), [centre_index - 16])
    # sub-voxel offsets round half up to the same voxel
    jitter = centre_mm + np.array([[0.49, -0.5, 0.2]])
    np.testing.assert_array_equal(patch_corners(jitter, geom), [centre_index - 16])


def test_cut_patches_equals_naive_loop_including_borders() -> None:
    rng = np.random.default_rng(1)
    shape = (64, 56, 48)  # z, y, x
    volume = rng.integers(-1024, 240, size=shape).astype(np.int16)
    geom = ((1.0, 1.0, 1.0), (-30.0, 12.5, -600.0), np.eye(3))
    size_xyz = np.array(shape[::-1])
    inside = rng.uniform(16, size_xyz - 16, size=(40, 3))
    border = rng.uniform(-20, size_xyz + 20, size=(40, 3))
    far = np.array([[-100.0, -100.0, -100.0], [500.0, 10.0, 10.0]])
    centres_idx = np.concatenate([inside, border, far])
    centres_mm = voxel_to_mm(centres_idx, geom)
    patches, in_view = cut_patches(volume, geom, centres_mm, fill=-1024)
    assert patches.shape == (len(centres_mm), P, P, P) and patches.dtype == np.int16
    corners = np.floor(centres_idx + 0.5).astype(int) - 16
    for j, corner in enumerate(corners):
        np.testing.assert_array_equal(patches[j], _naive_patch(volume, corner, -1024))
        fully = bool(np.all(corner >= 0) and np.all(corner + P <= size_xyz))
        assert in_view[j] == fully
    assert in_view[:40].all() and not in_view[-2:].any()
    assert (patches[-2:] == -1024).all()
    assert not in_view[40:80].all()  # the border set really crosses the border


def test_cut_patches_follows_voxel_axes_for_flipped_direction() -> None:
    """With an LPS-flipped direction the centre is converted through the geometry."""
    rng = np.random.default_rng(2)
    volume = rng.integers(0, 1000, size=(40, 44, 48)).astype(np.int16)
    direction = np.diag([1.0, -1.0, 1.0])  # like the reference atlas
    geom = ((1.0, 1.0, 1.0), (-189.1, -9.9, -1132.5), direction)
    centre_index = np.array([[24, 22, 20], [3, 40, 35]])
    patches, in_view = cut_patches(volume, geom, voxel_to_mm(centre_index, geom), fill=-1)
    for j, c in enumerate(centre_index):
        np.testing.assert_array_equal(patches[j], _naive_patch(volume, c - 16, -1))
    assert in_view.tolist() == [True, False]


def test_cut_patches_rejects_bad_input() -> None:
    geom = ((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3))
    with pytest.raises(ValueError):
        cut_patches(np.zeros((4, 4)), geom, np.zeros((1, 3)))
    with pytest.raises(ValueError):
        cut_patches(np.zeros((4, 4, 4), np.uint8), geom, np.zeros((1, 3)), fill=-1024)
    patches, in_view = cut_patches(np.zeros((4, 4, 4), np.int16), geom, np.zeros((0, 3)))
    assert patches.shape == (0, P, P, P) and in_view.shape == (0,)


def test_patch_in_view_edges() -> None:
    corners = np.array([[0, 0, 0], [-1, 0, 0], [16, 8, 32], [17, 8, 32]])
    assert patch_in_view(corners, (64, 40, 48)).tolist() == [True, False, True, False]


def test_lung_fraction_matches_naive() -> None:
    rng = np.random.default_rng(3)
    mask = (rng.random((50, 60, 70)) > 0.6).astype(np.uint8) * 50
    geom = ((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3))
    centres = rng.uniform(-10, 70, size=(30, 3))
    frac = lung_fraction(mask, geom, centres)
    assert frac.dtype == np.float32
    corners = np.floor(centres + 0.5).astype(int) - 16
    for j, corner in enumerate(corners):
        expected = (_naive_patch(mask, corner, 0) != 0).mean()
        assert frac[j] == pytest.approx(expected, abs=1e-6)


def test_cut_575_patches_from_300_cubed() -> None:
    """The benchmark's problem size (its speed is printed by ``drasclr bench kernels``)."""
    rng = np.random.default_rng(4)
    volume = rng.integers(-1024, 240, size=(300, 300, 300)).astype(np.int16)
    geom = ((1.0, 1.0, 1.0), (-150.0, -150.0, -150.0), np.eye(3))
    centres = np.rint(rng.uniform(-140, 140, size=(575, 3)))
    patches, in_view = cut_patches(volume, geom, centres)
    assert patches.shape == (575, P, P, P) and patches.dtype == np.int16
    i = int(np.flatnonzero(in_view)[0])
    x, y, z = (centres[i] + 150).astype(int) - P // 2  # integer centres: an exact array slice
    np.testing.assert_array_equal(patches[i], volume[z : z + P, y : y + P, x : x + P])


def test_accepts_io_geometry_and_agrees_with_it() -> None:
    """``drasclr.imaging.geometry.Geometry`` is geometry-like and maps indices to mm the same way."""
    from drasclr.imaging import geometry  # own module: an import error must fail, not skip

    direction = _rotation(5, 30) @ np.diag([1.0, -1.0, 1.0])
    geom = geometry.Geometry(spacing=(0.7, 0.8, 1.25), origin=(-120.5, 33.0, -900.25),
                       direction=tuple(direction.ravel()), shape=(10, 12, 14))
    ijk = np.random.default_rng(5).uniform(0, 10, size=(20, 3))
    np.testing.assert_allclose(voxel_to_mm(ijk, geom), geom.index_to_world(ijk), atol=1e-9)
    np.testing.assert_allclose(mm_to_voxel(geom.index_to_world(ijk), geom), ijk, atol=1e-9)
