"""Per-subject latent variables of a synthetic cohort, sampled vectorised from the cohort seed.

Everything random about a subject is drawn here, on the driver, in one pass: demographics, disease
latents, scanner and pose, and the noise terms of the outcome model. Rendering and labelling are
then deterministic functions of this table, so a cohort is the same whatever the parallelism.
The generative model is written out in ``docs/synthetic_cohort.md``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from drasclr.synth.config import SynthConfig

# Probabilities of the latent COVID-like grade (Zero, Mild, Moderate, Severe, Critical) and the
# involvement fraction range that each grade draws from.
COVID_GRADE_PROBS = (0.20, 0.34, 0.22, 0.15, 0.09)
COVID_INVOLVEMENT = ((0.0, 0.0), (0.04, 0.21), (0.29, 0.46), (0.54, 0.71), (0.79, 0.88))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def subject_ids(cfg: SynthConfig) -> list[str]:
    """Identifiers ``<prefix><index:05d>``."""
    return [f"{cfg.id_prefix}{i:05d}" for i in range(cfg.n_subjects)]


def sample_latents(cfg: SynthConfig) -> pd.DataFrame:
    """Draw every subject's latents; one row per subject, deterministic for ``cfg.seed``.

    Args:
        cfg: the cohort configuration.

    Returns:
        A DataFrame with demographics, disease latents, geometry, scanner and outcome-noise columns.
    """
    n = cfg.n_subjects
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0x5EED]))
    df = pd.DataFrame({"subject_id": subject_ids(cfg)})
    df["mode"] = cfg.mode
    df["seed"] = rng.integers(0, 2**31 - 1, size=n)

    # --- demographics and exposure (COPDGene-like: smokers with >= 10 pack-years)
    df["age"] = np.clip(rng.normal(62.0, 8.5, n), 45.0, 85.0)
    df["sex"] = rng.integers(0, 2, n).astype(np.int8)
    df["race"] = (rng.random(n) < 0.30).astype(np.int8)
    df["smoking_status"] = (rng.random(n) < 0.45).astype(np.int8)
    df["pack_years"] = np.clip(10.0 + np.exp(rng.normal(np.log(25.0), 0.6, n)), 10.0, 250.0)
    df["bmi"] = np.clip(rng.normal(28.5, 5.5, n), 16.0, 50.0)

    # --- disease latents
    z = rng.normal(0.0, 1.0, n)
    lp = np.log(df["pack_years"].to_numpy() / 35.0)
    df["latent_susceptibility"] = z
    copd = cfg.mode == "copd"
    has_cle = rng.random(n) < _sigmoid(-0.2 + 1.3 * z + 0.5 * lp)
    has_pse = rng.random(n) < _sigmoid(-1.0 + 0.8 * z + 0.3 * lp)
    has_ple = rng.random(n) < _sigmoid(-2.4 + 0.9 * z)
    cle = np.clip(np.exp(np.log(0.035) + 0.7 * z + rng.normal(0, 0.9, n)), 0.001, 0.30)
    pse = np.clip(np.exp(np.log(0.012) + 0.3 * z + rng.normal(0, 0.5, n)), 0.001, 0.06)
    ple = np.clip(np.exp(np.log(0.04) + 0.4 * z + rng.normal(0, 0.6, n)), 0.005, 0.20)
    df["latent_cle"] = np.where(has_cle & copd, cle, 0.0)
    df["latent_pse"] = np.where(has_pse & copd, pse, 0.0)
    df["latent_ple"] = np.where(has_ple & copd, ple, 0.0)
    df["latent_cle_zone"] = np.clip(rng.normal(0.32, 0.22, n), 0.05, 0.95)
    df["latent_cle_core"] = rng.uniform(0.15, 0.9, n)
    airway = 0.15 + 0.2 * (0.5 * z + 0.87 * rng.normal(0, 1, n)) + 0.15 * df["smoking_status"]
    df["latent_airway"] = np.clip(airway, 0.0, 1.0) if copd else np.clip(airway * 0.3, 0.0, 1.0)

    grade = rng.choice(5, size=n, p=COVID_GRADE_PROBS)
    lo = np.array([COVID_INVOLVEMENT[g][0] for g in grade])
    hi = np.array([COVID_INVOLVEMENT[g][1] for g in grade])
    involvement = lo + (hi - lo) * rng.random(n)
    cons_share = rng.uniform(0.05, 0.15, n) + 0.05 * grade
    df["latent_covid_involvement"] = np.where(copd, 0.0, involvement)
    df["latent_ggo"] = np.where(copd, 0.0, involvement * (1.0 - cons_share))
    df["latent_consolidation"] = np.where(copd, 0.0, involvement * cons_share)

    # --- anatomy, pose and scanner
    size = rng.normal(1.0, 0.045, (n, 3))
    size[:, :2] += 0.012 * (df["bmi"].to_numpy()[:, None] - 28.5)
    size = np.clip(size, 0.88, 1.12)
    for k, axis in enumerate("xyz"):
        df[f"body_scale_{axis}"] = size[:, k]
    df["inspiration"] = rng.uniform(0.35, 1.0, n)
    rot = rng.uniform(-cfg.rotation_deg_max, cfg.rotation_deg_max, (n, 3))
    trans = rng.uniform(-cfg.translation_mm_max, cfg.translation_mm_max, (n, 3))
    for k, axis in enumerate("xyz"):
        df[f"rotation_{axis}"] = rot[:, k]
        df[f"translation_{axis}"] = trans[:, k]
    df["spacing_xy"] = rng.uniform(*cfg.inplane_spacing_mm, n)
    df["spacing_z"] = rng.uniform(*cfg.slice_spacing_mm, n)
    if cfg.matrix_xy:
        df["nxy"] = cfg.matrix_xy
    else:
        df["nxy"] = np.round(max(cfg.fov_mm[:2]) / df["spacing_xy"]).astype(int)
    df["nz"] = np.round(cfg.fov_mm[2] / df["spacing_z"]).astype(int)
    df["noise_hu"] = rng.uniform(*cfg.noise_hu, n)
    df["blur_mm"] = rng.uniform(*cfg.blur_mm, n)
    df["texture_hu"] = rng.uniform(6.0, 18.0, n)

    # --- outcome noise (drawn now so labelling is a pure function)
    df["eps_fev1"] = rng.normal(0, 1, n)
    df["eps_ratio"] = rng.normal(0, 1, n)
    df["eps_exac"] = rng.normal(0, 1, n)
    df["u_exac"] = rng.random(n)
    df["eps_dyspnea"] = rng.normal(0, 1, n)
    df["eps_walk"] = rng.normal(0, 1, n)
    df["eps_frailty"] = rng.normal(0, 1, n)
    df["u_survival"] = rng.random(n)
    df["censor_time"] = rng.uniform(4.0, 12.0, n)
    df["box_seed"] = rng.integers(0, 2**31 - 1, size=n)
    return df
