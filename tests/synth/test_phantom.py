"""Tests of the synthetic chest-CT phantom renderer (tiny geometry, fast)."""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np
import pytest
import scipy.ndimage as ndi

from drasclr.synth.phantom import (
    CANONICAL_LANDMARKS,
    LESION_KEYS,
    Phantom,
    PhantomSpec,
    apply_affine,
    image_origin,
    index_to_world,
    render_phantom,
    world_to_index,
)

BASE = dict(
    shape=(64, 56, 60), spacing=(1.8, 1.8, 2.0), anatomy_scale=0.35, body_scale=(1.0, 1.0, 1.0),
    inspiration=0.7, rotation_deg=(2.0, -2.0, 3.0), translation_mm=(2.0, -3.0, 1.0), noise_hu=15.0,
    blur_mm=0.5, texture_hu=10.0, cle=0.0, cle_zone=0.3, cle_core=0.5, pse=0.0, ple=0.0,
    airway_wall=0.0, ggo=0.0, consolidation=0.0, seed=1,
)
COPD = dict(cle=0.12, pse=0.03, ple=0.08, seed=7)
COVID = dict(ggo=0.3, consolidation=0.1, seed=11)


def tiny(**overrides: object) -> PhantomSpec:
    """A tiny-geometry spec with overrides."""
    return PhantomSpec(**{**BASE, **overrides})


@lru_cache(maxsize=None)
def rendered(kind: str) -> Phantom:
    """Cached renders shared by several tests."""
    return render_phantom(tiny(**{"healthy": {}, "copd": COPD, "covid": COVID}[kind]))


def voxel_of(ph: Phantom, canonical: tuple[float, float, float]) -> tuple[int, int, int]:
    """[z, y, x] index of the voxel nearest to a canonical point."""
    world = apply_affine(ph.canonical_to_world, np.asarray(canonical))
    i, j, k = np.round(world_to_index(world, ph.origin, ph.spacing)).astype(int)
    return int(k), int(j), int(i)


# ----------------------------------------------------------------------------- contract
def test_output_contract() -> None:
    ph = rendered("copd")
    shape = (60, 56, 64)
    assert ph.ct.dtype == np.int16 and ph.ct.shape == shape
    assert ph.ct.min() >= -1024 and ph.ct.max() <= 3071
    assert ph.lungs.dtype == np.uint8 and set(np.unique(ph.lungs)) == {0, 1, 2}
    assert set(ph.lesions) == set(LESION_KEYS)
    assert all(m.dtype == bool and m.shape == shape for m in ph.lesions.values())
    assert ph.airway.dtype == bool and ph.vessels.dtype == bool
    assert ph.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    assert ph.canonical_to_world.shape == (4, 4)
    # the volume is centred on world (0, 0, 0)
    centre = index_to_world(np.array([63, 55, 59]) / 2.0, ph.origin, ph.spacing)
    np.testing.assert_allclose(centre, 0.0, atol=1e-9)
    assert ph.origin == image_origin(tiny())


def test_determinism() -> None:
    a = render_phantom(tiny(**COPD))
    b = render_phantom(tiny(**COPD))
    np.testing.assert_array_equal(a.ct, b.ct)
    np.testing.assert_array_equal(a.lungs, b.lungs)
    for k in LESION_KEYS:
        np.testing.assert_array_equal(a.lesions[k], b.lesions[k])
    assert a.lesion_centres == b.lesion_centres and a.zone_stats == b.zone_stats
    c = render_phantom(tiny(**{**COPD, "seed": 8}))
    assert not np.array_equal(a.ct, c.ct)
    assert not np.array_equal(a.lungs, c.lungs)


# ---------------------------------------------------------------------------- intensities
def test_tissue_intensities() -> None:
    ph = render_phantom(tiny(noise_hu=5.0))
    ct, lung = ph.ct, ph.lungs > 0
    assert -900 <= np.median(ct[lung]) <= -780
    assert np.median(ct[:, :3, :3]) < -980  # outside air
    body = (ct > -500) & ~lung
    v = ct[body]
    assert ((v > -140) & (v < -60)).mean() > 0.08  # subcutaneous / mediastinal fat
    assert ((v > 0) & (v < 90)).mean() > 0.4  # muscle, heart, liver
    assert (ct > 300).sum() > 1000  # ribs, spine, sternum
    for point, lo, hi in (((-70, 10, -100), 30, 90), ((24, -26, -42), 10, 70)):  # liver, heart
        k, j, i = voxel_of(ph, point)
        assert lo <= np.median(ct[k - 1:k + 2, j - 1:j + 2, i - 1:i + 2]) <= hi
    k, j, i = voxel_of(ph, (0.0, 55.0, 118.0 - 24.5 * 6))  # T7 vertebral body
    assert ct[k - 1:k + 2, j - 1:j + 2, i - 1:i + 2].max() > 200


def test_inspiration_enlarges_and_darkens_lungs() -> None:
    lo = render_phantom(tiny(inspiration=0.0))
    hi = render_phantom(tiny(inspiration=1.0))
    assert (hi.lungs > 0).sum() > 1.1 * (lo.lungs > 0).sum()
    assert np.median(hi.ct[hi.lungs > 0]) < np.median(lo.ct[lo.lungs > 0]) - 30


# ------------------------------------------------------------------------------- anatomy
def test_two_lungs_left_smaller() -> None:
    ph = rendered("healthy")
    sizes = []
    for side in (1, 2):
        lab, n = ndi.label(ph.lungs == side)
        assert n == 1  # one face-connected component per lung
        sizes.append((lab > 0).sum())
    right, left = sizes
    assert left < right
    # right lung on the patient's right (world -x), left on the left
    xs = np.arange(ph.lungs.shape[2])
    assert xs[(ph.lungs == 1).any((0, 1))].mean() < xs[(ph.lungs == 2).any((0, 1))].mean()


def test_canonical_to_world_hits_the_airway() -> None:
    """The same canonical point is the same anatomical point, whatever the pose and size."""
    for pose in (dict(), dict(rotation_deg=(-4.0, 3.0, -5.0), translation_mm=(-6.0, 5.0, -4.0),
                              body_scale=(1.1, 0.9, 1.08), inspiration=0.2, seed=3)):
        ph = render_phantom(tiny(**pose))
        carina = apply_affine(ph.canonical_to_world, np.array(CANONICAL_LANDMARKS["carina"]))
        np.testing.assert_allclose(carina, ph.canonical_to_world[:3, :3] @ (0.0, 6.0, 30.0)
                                   + ph.canonical_to_world[:3, 3])
        assert ph.airway[voxel_of(ph, (0.0, 4.9, 45.0))]  # trachea 15 mm above the carina
        for side in ("right", "left"):  # middle of each main bronchus
            end = np.array(CANONICAL_LANDMARKS[f"{side}_main_bronchus_end"])
            mid = 0.5 * (end + np.array(CANONICAL_LANDMARKS["carina"]))
            k, j, i = voxel_of(ph, tuple(mid))
            assert ph.airway[k - 1:k + 2, j - 1:j + 2, i - 1:i + 2].any()


def test_pose_moves_but_does_not_change_the_anatomy() -> None:
    still = render_phantom(tiny(rotation_deg=(0.0, 0.0, 0.0), translation_mm=(0.0, 0.0, 0.0)))
    moved = render_phantom(tiny(rotation_deg=(4.0, -3.0, 5.0), translation_mm=(5.0, -4.0, 3.0)))
    v0, v1 = (still.lungs > 0).sum(), (moved.lungs > 0).sum()
    assert abs(v1 / v0 - 1) < 0.03
    com = [np.array(ndi.center_of_mass(p.lungs > 0))[::-1] for p in (still, moved)]
    shift = (com[1] - com[0]) * np.array(still.spacing)
    assert np.linalg.norm(shift - np.array([5.0, -4.0, 3.0])) < 3.0


def test_world_index_roundtrip() -> None:
    pts = np.array([[1.0, 2.0, 3.0], [-40.0, 12.5, 7.25]])
    origin, spacing = (-10.0, 5.0, 2.0), (0.7, 0.8, 1.25)
    idx = world_to_index(pts, origin, spacing)
    np.testing.assert_allclose(index_to_world(idx, origin, spacing), pts)


# ------------------------------------------------------------------------------- disease
def test_lesion_masks_inside_lungs_and_disjoint() -> None:
    for kind in ("copd", "covid"):
        ph = rendered(kind)
        lung = ph.lungs > 0
        total = np.zeros(lung.shape, int)
        for m in ph.lesions.values():
            assert not (m & ~lung).any()
            total += m
        assert total.max() <= 1
        assert not (total.astype(bool) & (ph.vessels | ph.airway)).any()


def test_lesion_fractions_track_spec() -> None:
    for kind, fractions in (("copd", COPD), ("covid", COVID)):
        ph = rendered(kind)
        n = (ph.lungs > 0).sum()
        for key in LESION_KEYS:
            want = fractions.get(key, 0.0)
            got = ph.lesions[key].sum() / n
            if want == 0:
                assert got == 0, key
            else:
                assert abs(got - want) <= 0.3 * want, (key, got, want)


def test_lesion_intensities() -> None:
    copd, covid = rendered("copd"), rendered("covid")
    assert np.median(copd.ct[copd.lesions["cle"]]) < -900
    assert np.median(copd.ct[copd.lesions["pse"]]) < -850
    assert np.median(copd.ct[copd.lesions["ple"]]) < -920
    assert -750 <= np.median(covid.ct[covid.lesions["ggo"]]) <= -450
    assert np.median(covid.ct[covid.lesions["consolidation"]]) > -250
    healthy = np.median(copd.ct[(copd.lungs > 0) & ~np.any(list(copd.lesions.values()), axis=0)])
    assert -900 <= healthy <= -780


def test_lesion_centres() -> None:
    ph = rendered("copd")
    kinds = {k for k, _ in ph.lesion_centres}
    assert kinds == {"cle", "pse"}
    lo = index_to_world(np.zeros(3), ph.origin, ph.spacing)
    hi = index_to_world(np.array(ph.ct.shape[::-1]) - 1, ph.origin, ph.spacing)
    for _, c in ph.lesion_centres:
        assert len(c) == 3 and np.all(np.asarray(c) >= lo - 10) and np.all(np.asarray(c) <= hi + 10)
    assert not rendered("healthy").lesion_centres


def test_cle_zone_follows_spec() -> None:
    upper = render_phantom(tiny(cle=0.15, cle_zone=0.1, seed=4))
    lower = render_phantom(tiny(cle=0.15, cle_zone=0.9, seed=4))

    def upper_share(ph: Phantom) -> float:
        st = ph.zone_stats
        return (st["upper_core"]["cle"] + st["upper_rind"]["cle"]) / ph.lesions["cle"].sum()

    assert upper_share(upper) > upper_share(lower) + 0.2


def test_zone_stats_sum_to_masks() -> None:
    ph = rendered("copd")
    zones = [f"{z}_{r}" for z in ("upper", "middle", "lower") for r in ("core", "rind")]
    assert set(ph.zone_stats) == set(zones)
    assert sum(ph.zone_stats[z]["lung"] for z in zones) == (ph.lungs > 0).sum()
    for key in LESION_KEYS:
        assert sum(ph.zone_stats[z][key] for z in zones) == ph.lesions[key].sum()
    assert all(ph.zone_stats[z]["lung"] > 0 for z in zones)


def test_airway_wall_thickening() -> None:
    thin = render_phantom(tiny(airway_wall=0.0, noise_hu=0.0, shape=(64, 56, 60)))
    thick = render_phantom(tiny(airway_wall=1.0, noise_hu=0.0, shape=(64, 56, 60)))
    ring = ndi.binary_dilation(thin.airway, iterations=2) & ~thin.airway
    assert thick.ct[ring].mean() > thin.ct[ring].mean() + 20


# ------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("field,value", [
    ("spacing", (-1.0, 1.8, 2.0)), ("spacing", (0.0, 1.0, 1.0)), ("shape", (0, 56, 60)),
    ("shape", (64, 56)), ("cle", 0.5), ("pse", -0.01), ("ple", 0.3), ("ggo", 0.9),
    ("consolidation", 0.5), ("inspiration", 1.5), ("cle_zone", -0.1), ("noise_hu", -1.0),
    ("anatomy_scale", 0.0), ("body_scale", (1.0, -1.0, 1.0)), ("seed", -1), ("airway_wall", 2.0),
])
def test_invalid_spec_names_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        tiny(**{field: value})


def test_spec_normalises_sequences() -> None:
    spec = tiny(shape=[64, 56, 60], spacing=np.array([1.8, 1.8, 2.0]), seed=np.int64(3))
    assert spec.shape == (64, 56, 60) and isinstance(spec.spacing, tuple) and spec.seed == 3
    assert dataclasses.replace(spec, cle=0.1).cle == 0.1
