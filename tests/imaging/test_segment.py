"""drasclr.imaging.segment: threshold backend accuracy and orientation, real CT, lungmask plumbing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from drasclr.config import ConfigError
from drasclr.imaging.geometry import Geometry, Volume
from drasclr.imaging.io import read_ct
from drasclr.imaging.resample import resample_isotropic
from drasclr.imaging.segment import (
    LUNGMASK_WEIGHTS_ENV,
    SegmentationError,
    SegmentConfig,
    lung_volumes_ml,
    resolve_backend,
    segment_lungs,
)
from drasclr.imaging.segment_lungmask import _lungmask_inferer, _map_lungmask_labels


# ----------------------------------------------------------------------------------- phantom
def torso_phantom(
    scale: float = 0.4, gap_mm: float = 16.0, noise_hu: float = 20.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A 1 mm chest phantom in canonical LPS order (identity direction), arrays [z, y, x].

    Body ellipse (fat rim, muscle, spine, table underneath), two dome-based lungs at -860 HU with
    vessels (+40 HU, part of the lung truth) and emphysema holes (-975 HU), a trachea tube from the
    top that splits at the carina into two main bronchi entering the lungs, stomach gas under the
    left lung, blur and noise. ``scale`` shrinks an adult-sized (350 x 300 x 300 mm) thorax.

    Returns:
        (int16 HU, uint8 truth: 1 right lung = low x, 2 left lung).
    """
    rng = np.random.default_rng(seed)
    s = scale
    nx, ny, nz = (int(round(n * s)) for n in (350, 300, 300))
    z, y, x = np.ogrid[:nz, :ny, :nx]
    X = (x - (nx - 1) / 2).astype(np.float32)
    Y = (y - (ny - 1) / 2).astype(np.float32)
    Z = (z - (nz - 1) / 2).astype(np.float32)
    ct = np.full((nz, ny, nx), -1000.0, np.float32)
    shape = ct.shape
    ct[np.broadcast_to((X / (160 * s)) ** 2 + (Y / (115 * s)) ** 2 <= 1, shape)] = -90.0
    ct[np.broadcast_to((X / (150 * s)) ** 2 + (Y / (105 * s)) ** 2 <= 1, shape)] = 40.0
    ct[np.broadcast_to((X / (18 * s)) ** 2 + ((Y - 75 * s) / (18 * s)) ** 2 <= 1, shape)] = 500.0
    ct[np.broadcast_to((np.abs(Y - 128 * s) < 4 * s) & (np.abs(X) < 170 * s), shape)] = 150.0

    truth = np.zeros(shape, np.uint8)
    z_base = -120 * s
    for label, side, ax in ((1, -1, 62), (2, 1, 55)):
        cx = side * (gap_mm / 2 + ax) * s
        r2 = ((X - cx) / (ax * s)) ** 2 + ((Y - 5 * s) / (88 * s)) ** 2
        inside = r2 + ((Z - z_base) / (230 * s)) ** 2 <= 1.0
        dome = Z > z_base + 30 * s * (1 - r2)
        truth[inside & dome & (Z > z_base)] = label
    lung = truth > 0
    ct[lung] = -860.0
    vessels = np.zeros(shape, bool)
    for _ in range(12):
        p0 = np.array([rng.uniform(-40, 40), rng.uniform(-20, 40), rng.uniform(-60, 40)]) * s
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        r = rng.uniform(1.5, 4.0) * max(s, 0.5)
        px, py, pz = X - p0[0], Y - p0[1], Z - p0[2]
        t = np.clip(px * d[0] + py * d[1] + pz * d[2], 0, 150 * s)
        vessels |= (px - t * d[0]) ** 2 + (py - t * d[1]) ** 2 + (pz - t * d[2]) ** 2 <= r * r
    ct[vessels & lung] = 40.0
    for _ in range(10):
        c = np.array([rng.uniform(-140, 140), rng.uniform(-70, 80), rng.uniform(-80, 100)]) * s
        r = rng.uniform(6, 15) * s
        ct[((X - c[0]) ** 2 + (Y - c[1]) ** 2 + (Z - c[2]) ** 2 <= r * r) & lung] = -975.0

    carina = 40 * s
    trachea = (X**2 + (Y + 10 * s) ** 2 <= (9 * s) ** 2) & (Z >= carina)
    airway = np.broadcast_to(trachea, shape).copy()
    for side in (-1, 1):
        d = np.array([side * 0.7, 0.15, -0.7])
        d /= np.linalg.norm(d)
        px, py, pz = X, Y + 10 * s, Z - carina
        t = np.clip(px * d[0] + py * d[1] + pz * d[2], 0, 60 * s)
        airway |= (px - t * d[0]) ** 2 + (py - t * d[1]) ** 2 + (pz - t * d[2]) ** 2 <= (6 * s) ** 2
    wall = ndimage.binary_dilation(airway, iterations=max(1, round(2 * s))) & ~airway
    ct[wall & ~lung] = 40.0
    ct[airway] = -1000.0
    gas = ((X - 60 * s) / (35 * s)) ** 2 + ((Y + 20 * s) / (25 * s)) ** 2 + (
        (Z - (z_base - 10 * s)) / (20 * s)
    ) ** 2 <= 1
    ct[gas & ~lung] = -1000.0
    ct = ndimage.gaussian_filter(ct, 0.6)
    ct += rng.normal(0.0, noise_hu, shape).astype(np.float32)
    return np.clip(np.rint(ct), -1024, 3000).astype(np.int16), truth


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean masks."""
    return float(2 * (a & b).sum() / max(1, a.sum() + b.sum()))


def identity_geometry(array: np.ndarray, spacing: float = 1.0) -> Geometry:
    return Geometry.identity(array.shape[::-1], (spacing,) * 3)


@pytest.fixture(scope="module")
def phantom() -> tuple[np.ndarray, np.ndarray]:
    return torso_phantom()


def assert_lungs_match(labels: np.ndarray, truth: np.ndarray, minimum: float = 0.95) -> None:
    assert labels.dtype == np.uint8 and labels.shape == truth.shape
    assert set(np.unique(labels)) <= {0, 1, 2}
    for lab in (1, 2):
        d = dice(labels == lab, truth == lab)
        assert d >= minimum, f"lung {lab}: Dice {d:.4f} < {minimum}"


# ----------------------------------------------------------------------------------- config
def test_config_validation_and_yaml(tmp_path: Path) -> None:
    cfg = SegmentConfig()
    assert cfg.backend == "threshold" and cfg.threshold_hu == -400
    saved = cfg.replace(backend="auto").save(tmp_path / "s.yaml")
    assert SegmentConfig.load(saved) == cfg.replace(backend="auto")
    for bad in (
        dict(backend="unet"),
        dict(threshold_hu=100.0),
        dict(airway_hu=-300.0),
        dict(work_spacing_mm=0.0),
        dict(lungmask_weights=" "),
        dict(lungmask_batch_size=0),
    ):
        with pytest.raises(ConfigError):
            SegmentConfig(**bad)


# ----------------------------------------------------------------------------------- threshold
def test_threshold_phantom_dice(phantom: tuple[np.ndarray, np.ndarray]) -> None:
    ct, truth = phantom
    before = ct.copy()
    labels = segment_lungs(Volume(ct, identity_geometry(ct)), SegmentConfig())
    np.testing.assert_array_equal(ct, before)  # input untouched
    assert_lungs_match(labels, truth)
    # right lung (label 1) is the patient's right = lower x in LPS
    xs = [np.nonzero(labels == lab)[2].mean() for lab in (1, 2)]
    assert xs[0] < xs[1]
    # trachea above the carina is not lung
    top = labels[-5:]
    assert not top[truth[-5:] == 0].any()


@pytest.mark.parametrize("storage", ["flip_xy", "permuted", "flip_z"])
def test_threshold_orientation(phantom: tuple[np.ndarray, np.ndarray], storage: str) -> None:
    """The same physical image stored differently gives the same physical labels."""
    ct, truth = phantom
    nz, ny, nx = ct.shape
    if storage == "flip_xy":  # RAS-like storage: x and y index axes point right and anterior
        arr, undo = ct[:, ::-1, ::-1], (lambda a: a[:, ::-1, ::-1])
        geo = Geometry((1, 1, 1), (nx - 1, ny - 1, 0), (-1, 0, 0, 0, -1, 0, 0, 0, 1), (nx, ny, nz))
    elif storage == "flip_z":  # slices stored from head to feet
        arr, undo = ct[::-1], (lambda a: a[::-1])
        geo = Geometry((1, 1, 1), (0, 0, nz - 1), (1, 0, 0, 0, 1, 0, 0, 0, -1), (nx, ny, nz))
    else:  # array [P, S, L]: index x -> L, index y -> S, index z -> P
        arr, undo = np.transpose(ct, (1, 0, 2)), (lambda a: np.transpose(a, (1, 0, 2)))
        d = np.zeros((3, 3))
        d[0, 0] = d[2, 1] = d[1, 2] = 1.0
        geo = Geometry((1, 1, 1), (0, 0, 0), tuple(d.ravel()), (nx, nz, ny))
    labels = segment_lungs(Volume(np.ascontiguousarray(arr), geo))
    assert labels.shape == arr.shape
    assert_lungs_match(undo(labels), truth)


def test_threshold_merged_lungs_are_split() -> None:
    ct, truth = torso_phantom(gap_mm=-6.0, seed=3)  # lungs overlap across the midline
    labels = segment_lungs(Volume(ct, identity_geometry(ct)))
    assert_lungs_match(labels, truth)


def test_threshold_coarse_anisotropic_input(phantom: tuple[np.ndarray, np.ndarray]) -> None:
    ct, truth = phantom
    geo = identity_geometry(ct)
    coarse = resample_isotropic(Volume(ct, geo), 2.5)
    coarse_truth = resample_isotropic(Volume(truth, geo), 2.5, order=0, fill=0)
    labels = segment_lungs(coarse)
    assert_lungs_match(labels, coarse_truth.array, minimum=0.9)
    r_ml, l_ml = lung_volumes_ml(labels, coarse.geometry)
    t_r, t_l = lung_volumes_ml(truth, geo)
    assert abs(r_ml - t_r) < 0.08 * t_r and abs(l_ml - t_l) < 0.08 * t_l


def test_no_lungs_raises() -> None:
    geo = Geometry.identity((40, 40, 20), (2, 2, 2))
    z, y, x = np.ogrid[:20, :40, :40]
    ct = np.where((x - 20) ** 2 + (y - 20) ** 2 < 15**2, 40, -1000).astype(np.int16)
    ct = np.broadcast_to(ct, geo.array_shape).copy()
    with pytest.raises(SegmentationError):
        segment_lungs(Volume(ct, geo))


def test_lung_volumes_ml() -> None:
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[:5] = 1
    labels[5:8] = 2
    geo = Geometry.identity((10, 10, 10), (2, 2, 2))
    assert lung_volumes_ml(labels, geo) == (4.0, 2.4)


def test_synthetic_cohort_phantom() -> None:
    """The cohort generator's own COPD phantom (demo-sized, emphysema, rotated), at 1 mm."""
    from drasclr.synth import phantom as synth  # own module: an import error fails the test
    spec = synth.PhantomSpec(
        shape=(150, 150, 120), spacing=(1.2, 1.2, 1.4), anatomy_scale=0.5,
        body_scale=(1.0, 1.0, 1.0), inspiration=0.5, rotation_deg=(2.0, -2.0, 3.0),
        translation_mm=(2.0, -3.0, 1.0), noise_hu=30.0, blur_mm=0.5, texture_hu=20.0, cle=0.2,
        cle_zone=0.3, cle_core=0.5, pse=0.03, ple=0.05, airway_wall=0.5, ggo=0.0,
        consolidation=0.0, seed=7,
    )
    ph = synth.render_phantom(spec)
    geo = Geometry(ph.spacing, ph.origin, ph.direction, ph.ct.shape[::-1])
    ct = resample_isotropic(Volume(ph.ct, geo), 1.0)
    truth = resample_isotropic(Volume(ph.lungs.astype(np.uint8), geo), 1.0, order=0, fill=0)
    labels = segment_lungs(ct)
    assert_lungs_match(labels, truth.array)


# ----------------------------------------------------------------------------------- real CT
@pytest.mark.parametrize(
    ("name", "low_l", "high_l"),
    [("copdgene_10002K_ct64.nrrd", 3.0, 8.0), ("cip_testinput.nrrd", 3.0, 9.0)],
)
def test_real_ct_gives_two_plausible_lungs(
    reference_dir: Path, name: str, low_l: float, high_l: float
) -> None:
    vol = read_ct(reference_dir / "real_ct" / name)
    labels = segment_lungs(vol)
    right_ml, left_ml = lung_volumes_ml(labels, vol.geometry)
    assert low_l <= (right_ml + left_ml) / 1000 <= high_l, (right_ml, left_ml)
    assert min(right_ml, left_ml) > 0.3 * max(right_ml, left_ml)
    # right lung at smaller LPS x (patient right)
    centres = [
        vol.geometry.index_to_world(np.argwhere(labels == k)[:, ::-1].mean(0)) for k in (1, 2)
    ]
    assert centres[0][0] < centres[1][0]
    # each lung is one connected piece
    for k in (1, 2):
        assert ndimage.label(labels == k)[1] == 1


def test_real_ct_at_1mm_agrees_with_native(reference_dir: Path) -> None:
    vol = read_ct(reference_dir / "real_ct" / "copdgene_10002K_ct64.nrrd")
    native = np.asarray(lung_volumes_ml(segment_lungs(vol), vol.geometry))
    iso = resample_isotropic(vol, 1.0)
    fine = np.asarray(lung_volumes_ml(segment_lungs(iso), iso.geometry))
    np.testing.assert_allclose(fine, native, rtol=0.05)


# ----------------------------------------------------------------------------------- lungmask
def test_lungmask_backend_needs_local_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(LUNGMASK_WEIGHTS_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match=LUNGMASK_WEIGHTS_ENV):
        resolve_backend(SegmentConfig(backend="lungmask"))
    with pytest.raises(FileNotFoundError, match="not found"):
        resolve_backend(SegmentConfig(backend="lungmask", lungmask_weights=str(tmp_path / "x.pth")))
    assert resolve_backend(SegmentConfig(backend="auto")) == "threshold"
    missing = SegmentConfig(backend="auto", lungmask_weights=str(tmp_path / "x.pth"))
    assert resolve_backend(missing) == "threshold"
    (tmp_path / "w.pth").write_bytes(b"")
    monkeypatch.setenv(LUNGMASK_WEIGHTS_ENV, str(tmp_path / "w.pth"))
    assert resolve_backend(SegmentConfig(backend="auto")) == "lungmask"
    assert resolve_backend(SegmentConfig(backend="threshold")) == "threshold"


def test_lungmask_label_mapping() -> None:
    raw = np.array([0, 1, 2, 3, 4, 5, 7], np.uint8)
    np.testing.assert_array_equal(_map_lungmask_labels(raw, 3), [0, 1, 2, 0, 0, 0, 0])
    np.testing.assert_array_equal(_map_lungmask_labels(raw, 6), [0, 2, 2, 1, 1, 1, 0])


@pytest.fixture(scope="module")
def r231_random_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An R231-shaped U-Net with random weights; last-layer bias balanced so all classes occur."""
    import torch
    from lungmask.resunet import UNet

    torch.manual_seed(0)
    model = UNet(
        n_classes=3, padding=True, depth=5, up_mode="upsample", batch_norm=True, residual=False
    )  # exactly how lungmask.mask.get_model builds R231
    model.eval()
    probe = torch.linspace(0, 1, 64 * 64).reshape(1, 1, 64, 64)
    with torch.no_grad():
        model.last.bias -= model(probe).mean(dim=(0, 2, 3))
    path = tmp_path_factory.mktemp("lungmask") / "unet_r231_random.pth"
    torch.save(model.state_dict(), path)
    return path


def test_lungmask_plumbing(r231_random_weights: Path) -> None:
    """Shape, dtype, labels, orientation handling and the once-per-process model cache."""
    ct, _ = torso_phantom(scale=0.2, seed=1)
    ct = np.ascontiguousarray(ct[28:29])  # one slice keeps the CPU U-Net quick
    nz, ny, nx = ct.shape
    cfg = SegmentConfig(backend="lungmask", lungmask_weights=str(r231_random_weights))
    labels = segment_lungs(Volume(ct, identity_geometry(ct)), cfg)
    assert labels.shape == ct.shape and labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {0, 1, 2}
    assert labels.any()

    inferer = _lungmask_inferer(r231_random_weights, False)
    assert _lungmask_inferer(r231_random_weights, False) is inferer  # loaded once
    direct = inferer.apply(ct)  # lungmask's own numpy path: array already in LPS order
    np.testing.assert_array_equal(labels, _map_lungmask_labels(direct.astype(np.uint8), 3))

    # Same physical image stored with x running to the patient's right: labels map back exactly.
    flipped = Geometry((1, 1, 1), (nx - 1, 0, 0), (-1, 0, 0, 0, 1, 0, 0, 0, 1), (nx, ny, nz))
    labels_f = segment_lungs(Volume(np.ascontiguousarray(ct[:, :, ::-1]), flipped), cfg)
    np.testing.assert_array_equal(labels_f[:, :, ::-1], labels)
