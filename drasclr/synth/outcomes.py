"""The outcome model: clinical labels from the rendered disease and the subject's latents.

Labels are computed from what was actually rendered (voxel counts of each lesion subtype per lung
zone), not from the targets, so every label is consistent with the truth masks. The formulas and
their constants live here, in one place, and are documented in ``docs/synthetic_cohort.md``. They
are the cohort's contract: later stages must not retune them to make a method win.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ZONES = ("upper", "middle", "lower")
DEPTHS = ("core", "rind")
EMPHYSEMA = ("cle", "pse", "ple")

# Functional weight of one unit of emphysema by where it sits (cranio-caudal third x core/rind)
# and by subtype: equal burden in lower / central lung costs more airflow than in the apices.
ZONE_WEIGHT_FUNCTION = {"upper": 0.35, "middle": 1.0, "lower": 2.0}
DEPTH_WEIGHT_FUNCTION = {"core": 1.3, "rind": 0.75}
SUBTYPE_WEIGHT_FUNCTION = {"cle": 1.0, "pse": 0.5, "ple": 1.3}
# Mortality weights differ from the spirometric ones (lower and central disease, and panlobular).
ZONE_WEIGHT_SURVIVAL = {"upper": 0.7, "middle": 1.0, "lower": 1.5}
DEPTH_WEIGHT_SURVIVAL = {"core": 1.35, "rind": 0.7}
SUBTYPE_WEIGHT_SURVIVAL = {"cle": 1.0, "pse": 0.8, "ple": 1.5}

# Spirometry: log FEV1pp and log FEV1/FVC are linear in burden B and airway disease a.
FEV1_BASE, FEV1_B, FEV1_AIRWAY, FEV1_BMI, FEV1_SD = np.log(100.0), 3.2, 0.9, 0.012, 0.12
RATIO_BASE, RATIO_B, RATIO_AIRWAY, RATIO_SD = np.log(0.80), 2.6, 0.40, 0.045
# Visual scores from true extents (fraction of lung volume), Fleischner-like categories.
CLE_SCORE_EDGES = (0.0005, 0.005, 0.05, 0.12, 0.20)  # none|trace|mild|moderate|confluent|advanced
PSE_SCORE_EDGES = (0.0005, 0.01)  # none|mild|substantial
# COVID-like grade from involvement (MosMed CT-0..CT-4: 0, <25 %, 25-50 %, 50-75 %, >75 %).
COVID_GRADE_EDGES = (0.005, 0.25, 0.50, 0.75)
# Survival: Weibull proportional hazards.
WEIBULL_SHAPE, WEIBULL_SCALE = 1.4, 0.011


def zone_matrix(stats: pd.DataFrame, kind: str) -> np.ndarray:
    """(n_subjects, 6) voxel counts of ``kind`` per zone, in ZONES x DEPTHS order."""
    return np.stack([stats[f"{z}_{d}_{kind}"].to_numpy(float) for z in ZONES for d in DEPTHS], axis=1)


def weighted_burden(stats: pd.DataFrame, zone_w: dict, depth_w: dict, subtype_w: dict) -> np.ndarray:
    """B = sum over zones and subtypes of w_zone * w_depth * w_subtype * voxels / lung voxels."""
    lung = zone_matrix(stats, "lung").sum(axis=1)
    w = np.array([zone_w[z] * depth_w[d] for z in ZONES for d in DEPTHS])
    total = np.zeros(len(stats))
    for s in EMPHYSEMA:
        total += subtype_w[s] * (zone_matrix(stats, s) @ w)
    return total / np.maximum(lung, 1.0)


def gold_stage(fev1pp: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    """GOLD 1-4 when FEV1/FVC < 0.70 (by FEV1pp >= 80, 50, 30); else 0, or -1 (PRISm) if FEV1pp < 80."""
    obstructed = ratio < 0.70
    stage = np.select([fev1pp >= 80, fev1pp >= 50, fev1pp >= 30], [1, 2, 3], default=4)
    return np.where(obstructed, stage, np.where(fev1pp < 80, -1, 0)).astype(np.int8)


def visual_score(fraction: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """Category index: number of edges that ``fraction`` reaches."""
    return np.searchsorted(np.asarray(edges), fraction, side="right").astype(np.int8)


def bode_index(fev1pp: np.ndarray, bmi: np.ndarray, dyspnea: np.ndarray, walk_m: np.ndarray) -> np.ndarray:
    """BODE-like index 0-10: BMI (<=21: 1), obstruction (FEV1pp), dyspnoea (mMRC), 6-minute walk."""
    b = (bmi <= 21).astype(int)
    o = np.select([fev1pp >= 65, fev1pp >= 50, fev1pp >= 36], [0, 1, 2], default=3)
    d = np.select([dyspnea <= 1, dyspnea == 2, dyspnea == 3], [0, 1, 2], default=3)
    e = np.select([walk_m >= 350, walk_m >= 250, walk_m >= 150], [0, 1, 2], default=3)
    return (b + o + d + e).astype(np.int8)


def compute_labels(latents: pd.DataFrame, stats: pd.DataFrame) -> pd.DataFrame:
    """Labels table (schema ``labels``) from latents and rendered zone statistics.

    Args:
        latents: output of :func:`drasclr.synth.latents.sample_latents`.
        stats: one row per subject (same order) with ``<zone>_<depth>_<kind>`` voxel counts,
            kind in lung/cle/pse/ple/ggo/consolidation.

    Returns:
        The labels DataFrame.
    """
    lat = latents.reset_index(drop=True)
    st = stats.reset_index(drop=True)
    if len(lat) != len(st) or not (lat["subject_id"].to_numpy() == st["subject_id"].to_numpy()).all():
        raise ValueError("latents and stats must list the same subjects in the same order")
    copd = (lat["mode"] == "copd").to_numpy()
    lung = np.maximum(zone_matrix(st, "lung").sum(axis=1), 1.0)
    frac = {k: zone_matrix(st, k).sum(axis=1) / lung for k in (*EMPHYSEMA, "ggo", "consolidation")}
    emph = frac["cle"] + frac["pse"] + frac["ple"]
    emph_vox = sum(zone_matrix(st, k) for k in EMPHYSEMA)
    upper_share = (emph_vox[:, 0] + emph_vox[:, 1]) / np.maximum(emph_vox.sum(axis=1), 1.0)

    b_fun = weighted_burden(st, ZONE_WEIGHT_FUNCTION, DEPTH_WEIGHT_FUNCTION, SUBTYPE_WEIGHT_FUNCTION)
    b_srv = weighted_burden(st, ZONE_WEIGHT_SURVIVAL, DEPTH_WEIGHT_SURVIVAL, SUBTYPE_WEIGHT_SURVIVAL)
    a = lat["latent_airway"].to_numpy()
    age, bmi = lat["age"].to_numpy(), lat["bmi"].to_numpy()

    log_fev1 = (
        FEV1_BASE - FEV1_B * b_fun - FEV1_AIRWAY * a - FEV1_BMI * np.maximum(bmi - 30.0, 0.0)
        + FEV1_SD * lat["eps_fev1"].to_numpy()
    )
    log_ratio = RATIO_BASE - RATIO_B * b_fun - RATIO_AIRWAY * a + RATIO_SD * lat["eps_ratio"].to_numpy()
    fev1pp = np.clip(np.exp(log_fev1), 8.0, 160.0)
    ratio = np.clip(np.exp(log_ratio), 0.20, 0.95)
    gold = gold_stage(fev1pp, ratio)

    exac_logit = -2.2 + 3.0 * (1.0 - fev1pp / 100.0) + 1.8 * a + 0.4 * lat["smoking_status"] + 0.5 * lat["eps_exac"]
    exac = (lat["u_exac"].to_numpy() < 1.0 / (1.0 + np.exp(-exac_logit))).astype(np.int8)

    dyspnea = np.clip(np.round(0.4 + 6.0 * b_fun + 1.5 * a + 0.03 * (age - 62) + 0.8 * lat["eps_dyspnea"]), 0, 4)
    walk = 480 - 600 * b_fun - 80 * a - 3.0 * (age - 62) - 4.0 * np.maximum(bmi - 30, 0) + 60 * lat["eps_walk"]
    bode = bode_index(fev1pp, bmi, dyspnea.astype(int), walk.to_numpy() if hasattr(walk, "to_numpy") else walk)

    eta = (
        0.055 * (age - 62) + 0.30 * lat["sex"] + 0.15 * lat["race"] + 0.35 * lat["smoking_status"]
        + 0.30 * np.log(lat["pack_years"] / 35.0) + 4.0 * b_srv + 0.9 * a + 0.35 * lat["eps_frailty"]
    ).to_numpy()
    t_event = (-np.log(lat["u_survival"].to_numpy()) / (WEIBULL_SCALE * np.exp(eta))) ** (1.0 / WEIBULL_SHAPE)
    censor = lat["censor_time"].to_numpy()
    time = np.maximum(np.minimum(t_event, censor), 0.01)
    event = (t_event <= censor).astype(np.int8)

    covid_frac = frac["ggo"] + frac["consolidation"]
    covid_grade = visual_score(covid_frac, COVID_GRADE_EDGES)

    def copd_only(values: np.ndarray) -> pd.Series:
        return pd.Series(values).where(copd, None)

    out = pd.DataFrame(
        {
            "subject_id": lat["subject_id"],
            "mode": lat["mode"],
            "age": lat["age"],
            "sex": lat["sex"].astype(np.int8),
            "race": lat["race"].astype(np.int8),
            "smoking_status": lat["smoking_status"].astype(np.int8),
            "pack_years": lat["pack_years"],
            "bmi": lat["bmi"],
            "latent_susceptibility": lat["latent_susceptibility"],
            "latent_cle": lat["latent_cle"],
            "latent_cle_zone": lat["latent_cle_zone"],
            "latent_cle_core": lat["latent_cle_core"],
            "latent_pse": lat["latent_pse"],
            "latent_ple": lat["latent_ple"],
            "latent_airway": lat["latent_airway"],
            "latent_covid_involvement": lat["latent_covid_involvement"],
            "true_cle_fraction": frac["cle"],
            "true_pse_fraction": frac["pse"],
            "true_ple_fraction": frac["ple"],
            "true_emphysema_fraction": emph,
            "true_upper_fraction": upper_share,
            "true_covid_fraction": covid_frac,
            "functional_burden": b_fun,
            "fev1pp": copd_only(fev1pp),
            "fev1_fvc": copd_only(ratio),
            "gold": copd_only(gold),
            "prism": copd_only(gold == -1),
            "cle_score": copd_only(visual_score(frac["cle"], CLE_SCORE_EDGES)),
            "paraseptal_score": copd_only(visual_score(frac["pse"], PSE_SCORE_EDGES)),
            "exacerbation_history": copd_only(exac),
            "bode": copd_only(bode),
            "survival_time": copd_only(time),
            "survival_event": copd_only(event),
            "covid_grade": pd.Series(covid_grade).where(~copd, None),
        }
    )
    return out
