"""The synthetic cohort's configuration, latents and outcome rules (no rendering)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from drasclr.config import ConfigError
from drasclr.synth import outcomes as oc
from drasclr.synth.config import PRESETS, preset_config
from drasclr.synth.latents import sample_latents


def _stats(latents: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Zone statistics as a renderer would report them, from the latent targets plus jitter."""
    rows = []
    for r in latents.itertuples():
        d = {"subject_id": r.subject_id}
        for z, share in zip(oc.ZONES, (0.28, 0.36, 0.36)):
            for depth, dshare in zip(oc.DEPTHS, (0.4, 0.6)):
                lung = 1e5 * share * dshare
                d[f"{z}_{depth}_lung"] = lung
                for kind, col in (("cle", "latent_cle"), ("pse", "latent_pse"), ("ple", "latent_ple"),
                                  ("ggo", "latent_ggo"), ("consolidation", "latent_consolidation")):
                    d[f"{z}_{depth}_{kind}"] = getattr(r, col) * lung * rng.uniform(0.7, 1.3)
        rows.append(d)
    return pd.DataFrame(rows)


def test_presets_valid() -> None:
    for name in PRESETS:
        cfg = preset_config(name)
        assert cfg.preset == name and cfg.n_subjects >= 1
    paper = preset_config("paper")
    nx, ny, nz = paper.max_shape()
    assert nx == 512 and 350 <= nz <= 520
    assert paper.inplane_spacing_mm == (0.6, 0.9) and paper.slice_spacing_mm == (0.6, 1.25)
    assert preset_config("demo").n_subjects == 48 and preset_config("bench").n_subjects == 200


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_subjects": 0}, "n_subjects"),
        ({"inplane_spacing_mm": (0.9, 0.6)}, "inplane_spacing_mm: min 0.9 > max 0.6"),
        ({"slice_spacing_mm": (-1.0, 1.0)}, "slice_spacing_mm"),
        ({"anatomy_scale": 3.0}, "anatomy_scale"),
        ({"noise_hu": (10.0, 500.0)}, "noise_hu"),
        ({"id_prefix": "a/b"}, "id_prefix"),
    ],
)
def test_bad_parameters(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        preset_config("tiny", **kwargs)


def test_unknown_preset() -> None:
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        preset_config("huge")


def test_latents_deterministic_and_seed_dependent() -> None:
    cfg = preset_config("bench", n_subjects=50)
    a, b = sample_latents(cfg), sample_latents(cfg)
    pd.testing.assert_frame_equal(a, b)
    c = sample_latents(cfg.replace(seed=1))
    assert not np.allclose(a["latent_cle"], c["latent_cle"])
    # per-subject geometry stays inside the configured ranges
    assert a["spacing_xy"].between(*cfg.inplane_spacing_mm).all()
    assert a["spacing_z"].between(*cfg.slice_spacing_mm).all()
    assert (a["rotation_x"].abs() <= cfg.rotation_deg_max).all()


def test_gold_rules() -> None:
    fev1 = np.array([90, 85, 70, 40, 20, 70, 90])
    ratio = np.array([0.6, 0.69, 0.5, 0.5, 0.4, 0.75, 0.75])
    assert oc.gold_stage(fev1, ratio).tolist() == [1, 1, 2, 3, 4, -1, 0]


def test_visual_scores() -> None:
    cle = np.array([0.0, 0.001, 0.01, 0.07, 0.15, 0.3])
    assert oc.visual_score(cle, oc.CLE_SCORE_EDGES).tolist() == [0, 1, 2, 3, 4, 5]
    assert oc.visual_score(np.array([0.0, 0.005, 0.02]), oc.PSE_SCORE_EDGES).tolist() == [0, 1, 2]


def test_bode_components() -> None:
    assert oc.bode_index(np.array([90]), np.array([25.0]), np.array([0]), np.array([500.0])).tolist() == [0]
    assert oc.bode_index(np.array([20]), np.array([19.0]), np.array([4]), np.array([100.0])).tolist() == [10]


def test_labels_obey_rules() -> None:
    cfg = preset_config("bench", n_subjects=300)
    lat = sample_latents(cfg)
    lab = oc.compute_labels(lat, _stats(lat, np.random.default_rng(0)))
    fev1, ratio = lab["fev1pp"].astype(float), lab["fev1_fvc"].astype(float)
    assert (fev1 > 0).all() and ((ratio > 0) & (ratio < 1)).all()
    np.testing.assert_array_equal(lab["gold"].astype(int), oc.gold_stage(fev1.to_numpy(), ratio.to_numpy()))
    np.testing.assert_array_equal(lab["cle_score"].astype(int), oc.visual_score(lab["true_cle_fraction"].to_numpy(), oc.CLE_SCORE_EDGES))
    assert (lab["prism"].astype(bool) == (lab["gold"].astype(int) == -1)).all()
    assert set(lab["survival_event"].astype(int)) == {0, 1}
    assert lab["covid_grade"].isna().all()
    # every GOLD stage and PRISm occur in a 300-subject COPD cohort
    assert set(lab["gold"].astype(int)) == {-1, 0, 1, 2, 3, 4}


def test_location_matters() -> None:
    """Equal emphysema burden in the lower zones costs more FEV1 than in the upper zones."""
    base = sample_latents(preset_config("tiny", n_subjects=2))
    base["eps_fev1"] = 0.0
    rows = []
    for sid, zone in zip(base["subject_id"], ("upper", "lower")):
        d = {"subject_id": sid}
        for z in oc.ZONES:
            for depth in oc.DEPTHS:
                d[f"{z}_{depth}_lung"] = 1000.0
                for kind in ("cle", "pse", "ple", "ggo", "consolidation"):
                    d[f"{z}_{depth}_{kind}"] = 300.0 if (kind == "cle" and z == zone) else 0.0
        rows.append(d)
    base[["latent_airway", "bmi", "age"]] = [0.2, 25.0, 60.0]
    lab = oc.compute_labels(base, pd.DataFrame(rows))
    assert lab["true_emphysema_fraction"].iloc[0] == pytest.approx(lab["true_emphysema_fraction"].iloc[1])
    assert lab["fev1pp"].iloc[1] < lab["fev1pp"].iloc[0] * 0.85


def test_covid_mode_labels() -> None:
    cfg = preset_config("tiny", mode="covid", n_subjects=100)
    assert cfg.id_prefix == "COV"
    lat = sample_latents(cfg)
    assert (lat["latent_cle"] == 0).all()
    lab = oc.compute_labels(lat, _stats(lat, np.random.default_rng(1)))
    assert lab["fev1pp"].isna().all()
    grades = lab["covid_grade"].astype(int)
    assert set(grades) == {0, 1, 2, 3, 4}
    np.testing.assert_array_equal(grades, oc.visual_score(lab["true_covid_fraction"].to_numpy(), oc.COVID_GRADE_EDGES))
