"""The science benchmark's metrics of one feature set (patch probe, image readouts, survival,
detection), computed with the powered readouts of :mod:`drasclr.evaluate.patch_probe` and
:mod:`drasclr.evaluate.image_probe`.

Every function takes arrays aligned by subject (and landmark) and returns plain numbers, so the
same code scores an encoder's features, LAA-950 or a random control. Detection is read from the
patch probe's *out-of-subject* predictions of each patch's emphysema fraction: a patch is flagged
when its predicted fraction is at least :data:`DETECT_FRACTION` (fixed before any result was seen),
and a subject's detected share is the lung-weighted share of its flagged patches.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.stats import spearmanr

from drasclr.evaluate.image_probe import repeated_cv
from drasclr.probing import ridge_probe

#: A patch (or voxel neighbourhood) is flagged as emphysema when its predicted emphysema
#: fraction is at least this (5 % of the 32 mm cube).
DETECT_FRACTION: float = 0.05
#: A subject counts as healthy for ``healthy_detected_fraction`` when its true emphysema share
#: of the lung is below this.
HEALTHY_TRUE_FRACTION: float = 0.001

#: Image-level tasks: metric name -> (label column, kind, log-transform).
IMAGE_METRICS: dict[str, tuple[str, str, bool]] = {
    "log_fev1pp_r2": ("fev1pp", "regression", True),
    "log_fev1_fvc_r2": ("fev1_fvc", "regression", True),
    "gold_acc": ("gold", "classification", False),
    "cle_acc": ("cle_score", "classification", False),
    "exacerbation_acc": ("exacerbation_history", "classification", False),
}


#: Patch truth column -> the metric prefix of its probe.
PATCH_TARGETS: dict[str, str] = {"emphysema": "patch_lesion", "cle": "patch_cle",
                                 "pse": "patch_pse"}


def patch_metrics(
    features: npt.NDArray[Any], truth: pd.DataFrame, repeats: int = 2, seed: int = 0,
    targets: tuple[str, ...] = tuple(PATCH_TARGETS),
) -> tuple[dict[str, list[float]], npt.NDArray[np.float64]]:
    """Patch probe scores and the first repeat's out-of-fold emphysema predictions.

    Args:
        features: (n, d) features aligned with ``truth`` rows (NaN rows and the patches
            :func:`drasclr.evaluate.patch_probe.probed` leaves out are not scored).
        truth: patch truth rows (:func:`drasclr.evaluate.patch_probe.read_patch_truth`).
        repeats: CV repeats (5 folds, subject-grouped).
        seed: fold seed.
        targets: the :data:`PATCH_TARGETS` to probe.

    Returns:
        ``({metric: [value per repeat]}, oof (n,) with NaN where not predicted or where the
        emphysema target was not probed)``.
    """
    x = np.asarray(features, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    from drasclr.evaluate.patch_probe import probed

    ok = probed(truth) & np.isfinite(x).all(axis=1)
    groups = truth["store_index"].to_numpy()[ok]
    out: dict[str, list[float]] = {}
    oof = np.full(len(truth), np.nan)
    for target in targets:
        name = PATCH_TARGETS[target]
        res = ridge_probe(x[ok], truth[target].to_numpy(np.float64)[ok], groups, 5, repeats, seed)
        out[f"{name}_r2"] = res.r2_pooled.tolist()
        out[f"{name}_auc"] = res.auc.tolist()
        if target == "emphysema":
            oof[ok] = res.oof[0]
    return out, oof


#: The metric of :func:`with_density_r2`.
WITH_LAA950_METRIC: str = "patch_lesion_r2_with_laa950"


def with_density_r2(
    features: npt.NDArray[Any], density: npt.NDArray[Any], truth: pd.DataFrame,
    repeats: int = 2, seed: int = 0,
) -> dict[str, list[float]]:
    """The emphysema patch probe of ``features`` with the patch's density score as one more
    column: what the features add to LAA-950, read against LAA-950's own R².

    Args:
        features: (n, d) features aligned with ``truth`` rows.
        density: (n,) the patch's LAA-950 (:func:`drasclr.evaluate.patch_probe.density_scores`).
        truth, repeats, seed: as :func:`patch_metrics`.

    Returns:
        ``{WITH_LAA950_METRIC: [pooled R² per repeat]}``.
    """
    scores, _ = patch_metrics(beside(features, density), truth, repeats, seed,
                              targets=("emphysema",))
    return {WITH_LAA950_METRIC: scores["patch_lesion_r2"]}


def beside(features: npt.NDArray[Any], density: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """(n, d + 1): ``features`` (n, d) or (n,) with the (n,) ``density`` score as a last column."""
    x = np.asarray(features, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    return np.hstack([x, np.asarray(density, dtype=np.float64).reshape(len(x), 1)])


def detected_shares(
    oof: npt.NDArray[np.float64], truth: pd.DataFrame, lung_fraction: npt.NDArray[Any]
) -> pd.Series:
    """Each subject's detected share of the lung: the lung-weighted share of its patches whose
    predicted emphysema fraction is at least :data:`DETECT_FRACTION`.

    Args:
        oof: (n,) out-of-subject predicted emphysema fraction per truth row (NaN: not predicted).
        truth: patch truth rows (``subject_id``, ``store_index``, ``landmark``).
        lung_fraction: (L, capacity) the store's lung fraction per patch (weights).

    Returns:
        subject -> share, for the subjects with some predicted lung.
    """
    lf = np.asarray(lung_fraction)[truth["landmark"].to_numpy(), truth["store_index"].to_numpy()]
    ok = np.isfinite(oof)
    frame = pd.DataFrame({"subject_id": truth["subject_id"].to_numpy()[ok],
                          "w": lf[ok].astype(np.float64),
                          "hit": (oof[ok] >= DETECT_FRACTION).astype(np.float64)})
    frame["wh"] = frame["w"] * frame["hit"]
    per = frame.groupby("subject_id")[["w", "wh"]].sum()
    return (per["wh"] / per["w"].where(per["w"] > 0)).dropna()


def detection_metrics(
    oof: npt.NDArray[np.float64],
    truth: pd.DataFrame,
    lung_fraction: npt.NDArray[Any],
    true_fraction: Mapping[str, float],
) -> dict[str, float]:
    """Subject-level detection from patch predictions.

    Args:
        oof: (n,) out-of-subject predicted emphysema fraction per truth row (NaN: not predicted).
        truth: patch truth rows (``subject_id``, ``store_index``, ``landmark``).
        lung_fraction: (L, capacity) the store's lung fraction per patch (weights).
        true_fraction: subject -> true emphysema share of the lung (voxel truth).

    Returns:
        ``healthy_detected_fraction`` (mean detected share of subjects with true share below
        :data:`HEALTHY_TRUE_FRACTION`), ``detected_true_spearman``, ``detected_share_mean``
        (mean over all subjects: how much of the lung the maps flag).
    """
    share = detected_shares(oof, truth, lung_fraction)
    true = pd.Series({k: float(v) for k, v in true_fraction.items()}).reindex(share.index)
    keep = true.notna()
    share, true = share[keep], true[keep]
    healthy = share[true < HEALTHY_TRUE_FRACTION]
    rho = spearmanr(share, true).statistic if len(share) > 2 and share.std() > 0 else np.nan
    return {"healthy_detected_fraction": float(healthy.mean()) if len(healthy) else np.nan,
            "detected_true_spearman": float(rho),
            "detected_share_mean": float(share.mean()) if len(share) else np.nan,
            "n_healthy": len(healthy)}


def image_metrics(
    patch_features: npt.NDArray[Any] | None,
    image_features: npt.NDArray[Any] | None,
    labels: pd.DataFrame,
    repeats: int = 5,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Image-level readouts (repeated 5-fold CV, pooled out-of-fold score per repeat).

    Args:
        patch_features: (S, L, D) patch features (NaN where invalid): pooled inside each fold
            with per-landmark standardisation; or None.
        image_features: (S, d) ready image features (e.g. LAA-950), used when
            ``patch_features`` is None.
        labels: the S subjects' labels, same order.
        repeats, seed: CV repeats and first seed.

    Returns:
        metric -> per-repeat scores (:data:`IMAGE_METRICS`).
    """
    if patch_features is not None:
        s, L, d = patch_features.shape
        x, n_landmarks = patch_features.reshape(s, L * d), L
    else:
        x, n_landmarks = np.asarray(image_features, dtype=np.float64), None
    out: dict[str, list[float]] = {}
    for metric, (column, kind, log) in IMAGE_METRICS.items():
        if column not in labels:
            continue
        y = labels[column].to_numpy()
        keep = pd.notna(y)
        if keep.sum() < 10:  # too few labelled subjects for a 5-fold readout
            continue
        y = y[keep]
        y = np.log(y.astype(np.float64)) if log else y.astype(np.int64)
        res = repeated_cv(x[keep], y, kind, 5, repeats, seed, n_landmarks)  # type: ignore[arg-type]
        out[metric] = res["scores"]
    return out


def survival_metric(
    image_features: npt.NDArray[Any], labels: pd.DataFrame, seed: int = 0
) -> dict[str, list[float]]:
    """Harrell's C of out-of-fold Cox risk from image features (penalised Cox on PCs).

    Returns:
        ``{"survival_cindex": [c]}`` (empty when the labels have no survival columns).
    """
    if not {"survival_time", "survival_event"} <= set(labels):
        return {}
    from lifelines.utils import concordance_index

    from drasclr.evaluate.config import EvaluateConfig
    from drasclr.evaluate.survival import oof_cox_risk

    x = np.asarray(image_features, dtype=np.float64)
    t = labels["survival_time"].to_numpy(np.float64)
    e = labels["survival_event"].to_numpy().astype(int)
    ok = np.isfinite(x).all(axis=1) & np.isfinite(t)
    cfg = EvaluateConfig(seed=seed)
    risk, _ = oof_cox_risk(x[ok], np.zeros((int(ok.sum()), 0)), t[ok], e[ok], cfg)
    return {"survival_cindex": [float(concordance_index(t[ok], -risk, e[ok]))]}


def standardized_mean(patch_features: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """(S, L, D) -> (S, D): per-landmark standardisation over subjects, then the mean over
    landmarks (label-free; used where a fold-internal version is not available, e.g. Cox)."""
    from drasclr.evaluate.image_probe import LandmarkStandardizedMean

    s, L, d = patch_features.shape
    flat = patch_features.reshape(s, L * d)
    return LandmarkStandardizedMean(L).fit(flat).transform(flat)
