"""Tests of drasclr.imaging.register: config, transform direction, known-ground-truth recovery, QC."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk

from drasclr.config import ConfigError
from drasclr.imaging import register as register_module
from drasclr.imaging.align_init import mask_points, principal_axes_start, rotation_search_start
from drasclr.imaging.geometry import geometry_arrays
from drasclr.imaging.register import (
    RegisterConfig,
    Registration,
    dice,
    map_landmarks,
    register_affine,
    register_with_retries,
    registration_qc,
)

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference"
ATLAS_MASK = REFERENCE / "atlas_lung_mask.nii.gz"
PUBLISHED_GRID = REFERENCE / "atlas_patch_loc.npy"
REAL_CT = REFERENCE / "real_ct" / "copdgene_10002K_ct64.nrrd"


# ----------------------------------------------------------------------------- helpers
def _known_affine(centre: np.ndarray) -> np.ndarray:
    """Fixed -> moving: 3-4 degree rotations, ~5 % scaling, ~10 mm translation about ``centre``."""
    ax, ay, az = np.deg2rad([4.0, -3.0, 3.5])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    a = rz @ ry @ rx @ np.diag([1.05, 0.95, 1.04])
    m = np.eye(4)
    m[:3, :3] = a
    m[:3, 3] = centre + np.array([10.0, -6.0, 7.0]) - a @ centre
    return m


def _warp_into_subject(
    atlas: sitk.Image, fixed_to_moving: np.ndarray, spacing: float
) -> sitk.Image:
    """Subject image S with S(T(x)) = A(x) on an identity-direction grid covering T(atlas)."""
    inv = np.linalg.inv(fixed_to_moving)
    tx = sitk.AffineTransform(3)  # Resample pulls: output (subject) point -> input (atlas) point
    tx.SetMatrix(inv[:3, :3].ravel().tolist())
    tx.SetTranslation(inv[:3, 3].tolist())
    size = np.array(atlas.GetSize())
    index_corners = np.array(np.meshgrid(*[[0, n - 1] for n in size])).reshape(3, -1).T
    corners = np.array([atlas.TransformContinuousIndexToPhysicalPoint([float(v) for v in c])
                        for c in index_corners])
    mapped = corners @ fixed_to_moving[:3, :3].T + fixed_to_moving[:3, 3]
    lo, hi = mapped.min(0) - 10, mapped.max(0) + 10
    ref = sitk.Image([int(v) for v in np.ceil((hi - lo) / spacing)], sitk.sitkUInt8)
    ref.SetSpacing((spacing,) * 3)
    ref.SetOrigin(lo.tolist())
    return sitk.Resample(atlas, ref, tx, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)


def _crude_lung_mask(ct: np.ndarray) -> np.ndarray:
    """Air inside the body (< -400 HU, not connected to the slice border), two largest blobs."""
    from scipy import ndimage as ndi

    low = ct < -400
    outside = np.zeros_like(low)
    for z in range(ct.shape[0]):
        lab, _ = ndi.label(low[z])
        edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
        outside[z] = np.isin(lab, edge[edge > 0])
    lab, n = ndi.label(low & ~outside)
    sizes = ndi.sum(np.ones_like(lab), lab, range(1, n + 1))
    return np.isin(lab, np.argsort(sizes)[::-1][:2] + 1).astype(np.uint8)


@pytest.fixture(scope="module")
def atlas_2mm() -> tuple[np.ndarray, sitk.Image, np.ndarray]:
    """Reference atlas mask at 2 mm (labels 50/100) and the published landmarks in mm."""
    if not ATLAS_MASK.is_file():
        pytest.skip(f"reference atlas not found at {ATLAS_MASK}")
    img = sitk.ReadImage(str(ATLAS_MASK))
    landmarks = np.array([img.TransformIndexToPhysicalPoint([int(v) + 16 for v in c])
                          for c in np.load(PUBLISHED_GRID)])
    origin = img.TransformContinuousIndexToPhysicalPoint((0.5,) * 3)
    small = sitk.Resample(img, [int(n) // 2 for n in img.GetSize()], sitk.Transform(),
                          sitk.sitkNearestNeighbor, origin, (2.0, 2.0, 2.0), img.GetDirection(), 0,
                          sitk.sitkUInt8)
    return sitk.GetArrayFromImage(small), small, landmarks


@pytest.fixture(scope="module")
def ground_truth_case(atlas_2mm):
    fixed, fixed_img, landmarks = atlas_2mm
    centre = landmarks.mean(axis=0)
    truth = _known_affine(centre)
    subject = _warp_into_subject(fixed_img, truth, spacing=2.0)
    moving = sitk.GetArrayFromImage(subject)
    reg = register_affine(moving, subject, fixed, fixed_img, RegisterConfig())
    return fixed, fixed_img, moving, subject, landmarks, truth, reg


# ----------------------------------------------------------------------------- config
def test_config_defaults_and_validation() -> None:
    cfg = RegisterConfig()
    assert cfg.stage == "register" and cfg.threads == 1 and cfg.metric == "Mattes"
    with pytest.raises(ConfigError, match="shrink_factors"):
        RegisterConfig(iterations=(10, 10), shrink_factors=(2,), smoothing_sigmas=(1.0, 0.0))
    with pytest.raises(ConfigError, match="sampling_rate"):
        RegisterConfig(sampling_rate=0.0)
    with pytest.raises(ConfigError, match="metric"):
        RegisterConfig(metric="CC")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="threads"):
        RegisterConfig(threads=0)


def test_published_preset_and_yaml_round_trip(tmp_path: Path) -> None:
    pub = RegisterConfig.published()
    assert (pub.metric, pub.bins, pub.sampling, pub.sampling_rate) == ("MI", 32, "Regular", 0.5)
    assert pub.gradient_step == 0.01 and pub.iterations == (500, 250, 100)
    assert pub.shrink_factors == (4, 2, 1) and pub.smoothing_sigmas == (2.0, 1.0, 0.0)
    assert pub.resolution_mm is None and pub.intensity == "labels"
    path = pub.save(tmp_path / "register.yaml")
    assert RegisterConfig.load(path) == pub
    assert pub.fingerprint() != RegisterConfig().fingerprint()


# ----------------------------------------------------------------------------- Registration
def test_registration_dict_round_trip_and_inverse() -> None:
    rng = np.random.default_rng(0)
    m = np.eye(4)
    m[:3, :3] = np.eye(3) + rng.normal(scale=0.05, size=(3, 3))
    m[:3, 3] = rng.normal(scale=10, size=3)
    reg = Registration.from_matrix(m, random_seed=3)
    np.testing.assert_allclose(reg.matrix, m, atol=1e-12)
    np.testing.assert_allclose(reg.inverse @ reg.matrix, np.eye(4), atol=1e-12)
    data = json.loads(json.dumps(reg.to_dict()))  # plain JSON types only
    back = Registration.from_dict(data)
    np.testing.assert_allclose(back.matrix, reg.matrix, atol=1e-12)
    assert back.random_seed == 3
    data["matrix"][3] += 1.0
    with pytest.raises(ValueError):
        Registration.from_dict(data)
    pts = rng.normal(size=(5, 3)) * 100
    np.testing.assert_allclose(map_landmarks(reg, pts), pts @ m[:3, :3].T + m[:3, 3])


def test_itk_centre_parameters_are_honoured() -> None:
    """ITK AffineTransform: y = A (x - c) + c + t; the ANTs transform object agrees."""
    a = np.array([[1.02, 0.01, 0.0], [-0.02, 0.98, 0.03], [0.0, 0.01, 1.01]])
    params = np.concatenate([a.ravel(), [1.0, -2.0, 3.0]])
    centre = np.array([10.0, 20.0, -30.0])
    reg = Registration.from_ants(params, centre, ants_transform_type="AffineTransform_double_3_3")
    x = np.array([5.0, -7.0, 11.0])
    expected = a @ (x - centre) + centre + params[9:]
    np.testing.assert_allclose(map_landmarks(reg, x[None])[0], expected, atol=1e-12)
    via_ants = reg.to_ants_transform().apply_to_point(x.tolist())
    np.testing.assert_allclose(via_ants, expected, atol=1e-6)


def test_dice() -> None:
    a = np.zeros((4, 4, 4), np.uint8)
    b = a.copy()
    a[:2] = 1
    b[1:3] = 50
    assert dice(a, b) == pytest.approx(0.5)
    assert dice(a * 0, b * 0) == 1.0


# ----------------------------------------------------------------------------- ANTs
def test_translation_direction_is_fixed_to_moving(atlas_2mm) -> None:
    """Subject = atlas shifted by +t; the registration must map atlas points x to x + t."""
    fixed, fixed_img, landmarks = atlas_2mm
    shift = np.array([12.0, -8.0, 6.0])
    truth = np.eye(4)
    truth[:3, 3] = shift
    subject = _warp_into_subject(fixed_img, truth, spacing=2.0)
    reg = register_affine(sitk.GetArrayFromImage(subject), subject, fixed, fixed_img)
    moved = map_landmarks(reg, landmarks) - landmarks
    np.testing.assert_allclose(moved.mean(axis=0), shift, atol=1.0)


def test_recovers_known_affine(ground_truth_case) -> None:
    fixed, fixed_img, moving, subject, landmarks, truth, reg = ground_truth_case
    expected = landmarks @ truth[:3, :3].T + truth[:3, 3]
    error = np.linalg.norm(map_landmarks(reg, landmarks) - expected, axis=1)
    qc = registration_qc(reg, moving, subject, fixed, fixed_img, landmarks)
    print(f"known affine: {reg.elapsed_s:.2f} s, Dice {qc['dice']:.4f}, "
          f"landmark error mean {error.mean():.3f} mm max {error.max():.3f} mm")
    assert qc["dice"] >= 0.95
    assert error.mean() <= 2.0
    assert qc["fov_fraction"] == 1.0 and qc["n_landmarks"] == len(landmarks)
    np.testing.assert_allclose(reg.inverse @ reg.matrix, np.eye(4), atol=1e-9)


def test_registration_is_deterministic(ground_truth_case) -> None:
    fixed, fixed_img, moving, subject, _, _, reg = ground_truth_case
    again = register_affine(moving, subject, fixed, fixed_img, RegisterConfig())
    np.testing.assert_array_equal(again.matrix, reg.matrix)
    assert again.ants_parameters == reg.ants_parameters


def test_fov_fraction_counts_patches_outside_the_subject(ground_truth_case) -> None:
    fixed, fixed_img, moving, subject, landmarks, _, reg = ground_truth_case
    spacing, origin, direction = geometry_arrays(subject)
    cut = moving.shape[0] // 2  # keep only the caudal half of the subject's slices
    geom = (spacing, origin, direction)
    qc = registration_qc(reg, moving[:cut], geom, fixed, fixed_img, landmarks)
    assert 0.0 < qc["fov_fraction"] < 1.0
    assert qc["dice"] < 0.9


def test_published_preset_runs_in_ants(ground_truth_case) -> None:
    """The published command line (MI, 50/100 labels, Affine[0.01]) is accepted; 3 iterations."""
    fixed, fixed_img, moving, subject, landmarks, truth, _ = ground_truth_case
    cfg = RegisterConfig.published().replace(iterations=(3, 0, 0))
    reg = register_affine(moving, subject, fixed, fixed_img, cfg)
    expected = landmarks @ truth[:3, :3].T + truth[:3, 3]
    error = np.linalg.norm(map_landmarks(reg, landmarks) - expected, axis=1)
    assert np.all(np.isfinite(reg.matrix)) and error.mean() < 20.0


def test_thread_count_is_set_and_a_change_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(register_module.THREADS_ENV, "1")
    monkeypatch.setattr(register_module, "_first_threads", 1)
    register_module._set_threads(1)
    with pytest.warns(RuntimeWarning, match="once per process"):
        register_module._set_threads(3)
    assert os.environ[register_module.THREADS_ENV] == "3"


def test_empty_mask_is_rejected(atlas_2mm) -> None:
    fixed, fixed_img, _ = atlas_2mm
    with pytest.raises(ValueError, match="no lung"):
        register_affine(np.zeros((20, 20, 20), np.uint8), fixed_img, fixed, fixed_img)


def test_real_ct_lung_mask_registers(atlas_2mm) -> None:
    if not REAL_CT.is_file():
        pytest.skip(f"real CT not found at {REAL_CT}")
    fixed, fixed_img, landmarks = atlas_2mm
    ct_img = sitk.ReadImage(str(REAL_CT))
    mask = _crude_lung_mask(sitk.GetArrayFromImage(ct_img))
    assert mask.sum() * np.prod(ct_img.GetSpacing()) > 2e6  # > 2 litres of lung
    reg = register_affine(mask, ct_img, fixed, fixed_img)
    qc = registration_qc(reg, mask, ct_img, fixed, fixed_img, landmarks)
    print(f"real CT {REAL_CT.name}: {reg.elapsed_s:.2f} s, Dice {qc['dice']:.3f}, "
          f"FOV fraction {qc['fov_fraction']:.3f}")
    assert 0.7 < qc["dice"] <= 1.0
    assert 0.0 <= qc["fov_fraction"] <= 1.0


# ----------------------------------------------------------------------------- other starts
@pytest.fixture(scope="module")
def rotated_case(atlas_2mm):
    """A subject turned 25 degrees about the cranio-caudal axis (plus scaling and a shift)."""
    fixed, fixed_img, landmarks = atlas_2mm
    centre = landmarks.mean(axis=0)
    a = np.deg2rad(25.0)
    truth = np.eye(4)
    truth[:3, :3] = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    truth[:3, :3] = truth[:3, :3] @ np.diag([1.05, 0.95, 1.0])
    truth[:3, 3] = centre + np.array([10.0, -6.0, 7.0]) - truth[:3, :3] @ centre
    subject = _warp_into_subject(fixed_img, truth, spacing=2.0)
    return fixed, fixed_img, sitk.GetArrayFromImage(subject), subject, landmarks, truth


def _landmark_error(matrix: np.ndarray, truth: np.ndarray, landmarks: np.ndarray) -> float:
    """Median distance (mm) between landmarks mapped by ``matrix`` and by the true transform."""
    got = landmarks @ matrix[:3, :3].T + matrix[:3, 3]
    return float(np.median(np.linalg.norm(got - (landmarks @ truth[:3, :3].T + truth[:3, 3]),
                                          axis=1)))


def test_starts_find_a_large_rotation(rotated_case) -> None:
    fixed, fixed_img, moving, subject, landmarks, truth = rotated_case
    centroids_only = np.eye(4)  # what a centre-of-mass start knows: the shift, no rotation
    centroids_only[:3, 3] = (mask_points(moving, subject)[0].mean(axis=0)
                             - mask_points(fixed, fixed_img)[0].mean(axis=0))
    assert _landmark_error(centroids_only, truth, landmarks) > 25.0
    for start in (principal_axes_start, rotation_search_start):
        m = start(fixed, fixed_img, moving, subject)
        assert _landmark_error(m, truth, landmarks) < 8.0, start.__name__


def test_initial_transform_is_composed_into_the_result(rotated_case) -> None:
    """With no iterations, ANTs returns the start itself (same direction: fixed -> moving)."""
    fixed, fixed_img, moving, subject, _, _ = rotated_case
    cfg = RegisterConfig(initialisation="rotation_search", iterations=(0,), shrink_factors=(1,),
                         smoothing_sigmas=(0.0,))
    reg = register_affine(moving, subject, fixed, fixed_img, cfg)
    start = rotation_search_start(fixed, fixed_img, moving, subject)
    np.testing.assert_allclose(reg.matrix, start, atol=1e-3)
    assert reg.start == "rotation_search" and reg.to_dict()["start"] == "rotation_search"
    assert Registration.from_dict(reg.to_dict()).start == "rotation_search"


def test_retries_run_only_below_the_threshold_and_keep_the_best(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []

    def fake_register(moving: Any, moving_geom: Any, fixed: Any, fixed_geom: Any,
                      config: RegisterConfig) -> Registration:
        calls.append(config.initialisation)
        return Registration.from_matrix(np.eye(4), start=config.initialisation)

    monkeypatch.setattr(register_module, "register_affine", fake_register)
    scores = {"centre_of_mass": 0.70, "principal_axes": 0.86, "rotation_search": 0.84}

    def score(r: Registration) -> float:
        return scores[r.start]

    reg, tried = register_with_retries(None, None, None, None, score, 0.6)
    assert calls == ["centre_of_mass"] and reg.start == "centre_of_mass"
    assert tried == [("centre_of_mass", 0.70)]
    calls.clear()
    reg, tried = register_with_retries(None, None, None, None, score, 0.8)
    assert calls == ["centre_of_mass", "principal_axes", "rotation_search"]
    assert reg.start == "principal_axes"
    assert [name for name, _ in tried] == calls
    calls.clear()  # the first start is not repeated among the retries; a lower score never wins
    cfg = RegisterConfig(initialisation="principal_axes")
    scores["rotation_search"] = 0.5
    reg, _ = register_with_retries(None, None, None, None, score, 0.9, cfg)
    assert calls == ["principal_axes", "rotation_search"] and reg.start == "principal_axes"
    with pytest.raises(ConfigError, match="retry_starts"):
        RegisterConfig(retry_starts=("upside_down",))  # type: ignore[arg-type]
