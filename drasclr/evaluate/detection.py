"""Emphysema detection (paper §4.3, Table 5, Figs 4–5): boxes, dense maps and voxel truth.

* :func:`box_readout_table` — linear readout (standardise → L2 logistic regression) on frozen
  features of each annotated box vs healthy boxes, one binary problem per subtype (CLE vs healthy,
  PSE vs healthy), F1 / precision / recall by 5-fold CV. Folds are grouped by subject, so the boxes
  of one subject never sit on both sides of a split.
* :func:`box_detections` — the paper's rule on a dense probability map: a box is positive when at
  least 25 % of its voxels have p > 0.5.
* :func:`label_efficiency` — the metric as a function of the share of training labels used
  (10 % … 100 %), for feature sets (linear readout) or any fit/predict callable (fine-tuning).
* :func:`detected_fraction` / :func:`fraction_by_gold` — detected emphysema volume fraction per
  subject and its distribution per GOLD stage (box-plot data).
* :func:`dice_per_subtype` / :func:`overlap_by_subtype` — dense masks against the generator's voxel
  truth (lesion codes 1 cle, 2 pse, 3 ple, 4 ggo, 5 consolidation).

Box geometry (which voxels a box holds, and counting them) is pure image math and lives in
:mod:`drasclr.imaging.boxes`; ``box_index_bounds``, ``box_voxel_fraction`` and ``SLICE_BOXES_MAX``
are re-exported here for existing callers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from drasclr.evaluate.config import EvaluateConfig
from drasclr.evaluate.readouts import (
    ID_COLUMN,
    METRICS,
    TABLE_COLUMNS,
    Task,
    choose_folds,
    cross_validate,
    feature_columns,
    make_readout,
    task_rows,
)
from drasclr.imaging.boxes import SLICE_BOXES_MAX as SLICE_BOXES_MAX  # re-exported
from drasclr.imaging.boxes import box_index_bounds, box_voxel_fraction
from drasclr.imaging.overlap import dice

LESION_CODES: dict[str, int] = {"cle": 1, "pse": 2, "ple": 3, "ggo": 4, "consolidation": 5}
"""Voxel codes of ``truth/<id>_lesions.nii.gz`` (as written by :mod:`drasclr.synth.cohort`)."""
EMPHYSEMA_CODES: tuple[int, ...] = (1, 2, 3)
DETECTION_METRICS: tuple[str, ...] = ("f1", "precision", "recall")


# ------------------------------------------------------------------------------------ box readout
def box_dataset(
    box_features: pd.DataFrame, boxes: pd.DataFrame, subtype: str
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[Any]]:
    """Features, binary labels (1 = ``subtype`` box, 0 = healthy box) and subject of each box.

    Args:
        box_features: ``box_id`` + numeric feature columns (a ``subject_id`` column is ignored).
        boxes: the cohort's boxes table (schema ``boxes``).
        subtype: ``cle`` or ``pse``.
    """
    if "box_id" not in box_features.columns:
        raise ValueError("box features need a 'box_id' column")
    cols = feature_columns(box_features, exclude=("label",))
    merged = box_features[["box_id", *cols]].merge(
        boxes[["box_id", ID_COLUMN, "label"]], on="box_id"
    )
    merged = merged[merged["label"].isin([subtype, "healthy"])]
    X = merged[cols].to_numpy(np.float64)
    y = (merged["label"] == subtype).to_numpy(np.int64)
    return X, y, merged[ID_COLUMN].to_numpy()


def box_readout_table(
    box_features: pd.DataFrame,
    boxes: pd.DataFrame,
    cfg: EvaluateConfig | None = None,
    subtypes: Sequence[str] = ("cle", "pse"),
    group_by_subject: bool = True,
) -> pd.DataFrame:
    """Linear readout per subtype vs healthy boxes: F1, precision, recall (mean ± s.d. over folds).

    Returns:
        Tidy DataFrame like the image readouts' (task ``cle`` / ``pse``; f1, precision, recall).
    """
    cfg = cfg or EvaluateConfig()
    rows = []
    for subtype in subtypes:
        X, y, groups = box_dataset(box_features, boxes, subtype)
        result = cross_validate(
            X,
            y,
            "classification",
            DETECTION_METRICS,
            cfg,
            groups=groups if group_by_subject else None,
        )
        rows.extend(
            task_rows(result, Task(subtype, "label", "classification", DETECTION_METRICS), y)
        )
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


# ------------------------------------------------------------------------------------ 25 % rule
def box_detections(
    prob_map_zyx: NDArray[Any],
    geom: Any,
    boxes: pd.DataFrame,
    prob_threshold: float = 0.5,
    min_fraction: float = 0.25,
) -> pd.DataFrame:
    """The paper's rule: a box is detected when >= ``min_fraction`` of its voxels have p > thr.

    Args:
        prob_map_zyx: dense emphysema probability of one subject, indexed [z, y, x].
        geom: geometry of the map (LPS mm).
        boxes: that subject's rows of the boxes table (centre_x/y/z, size_mm).
        prob_threshold: voxel probability threshold (strict >).
        min_fraction: share of box voxels needed.

    Returns:
        ``box_id`` (when present), ``positive_fraction`` and ``detected`` per box, in input order.
    """
    centres = boxes[["centre_x", "centre_y", "centre_z"]].to_numpy(np.float64)
    bounds = box_index_bounds(
        centres, boxes["size_mm"].to_numpy(np.float64), geom, prob_map_zyx.shape
    )
    frac = box_voxel_fraction(np.asarray(prob_map_zyx) > prob_threshold, bounds)
    out = pd.DataFrame(
        {"positive_fraction": frac, "detected": np.nan_to_num(frac, nan=0.0) >= min_fraction}
    )
    if "box_id" in boxes.columns:
        out.insert(0, "box_id", boxes["box_id"].to_numpy())
    return out


def detection_scores(detected: NDArray[Any], truth: NDArray[Any]) -> dict[str, float]:
    """F1, precision and recall of boolean detections against boolean truth."""
    y, p = np.asarray(truth).astype(int), np.asarray(detected).astype(int)
    return {m: METRICS[m](y, p) for m in DETECTION_METRICS}


# ---------------------------------------------------------------------------- label efficiency
FitPredict = Callable[[NDArray[np.int64], NDArray[np.int64]], NDArray[Any]]
"""``(train_idx, test_idx) -> predictions for test_idx``: any model (e.g. encoder fine-tuning)."""


def subsample_labels(
    y: NDArray[Any], fraction: float, rng: np.random.Generator
) -> NDArray[np.int64]:
    """Stratified subsample (positions into ``y``) keeping ``fraction`` of each class, >= 1 each."""
    picks = []
    for c in np.unique(y):
        where = np.flatnonzero(y == c)
        k = max(1, round(fraction * len(where)))
        picks.append(rng.choice(where, size=min(k, len(where)), replace=False))
    return np.sort(np.concatenate(picks))


def label_efficiency(
    methods: Mapping[str, NDArray[Any] | FitPredict],
    y: NDArray[Any],
    cfg: EvaluateConfig | None = None,
    metric: str = "f1",
    groups: NDArray[Any] | None = None,
    fractions: Sequence[float] | None = None,
) -> pd.DataFrame:
    """Label-efficiency curve (paper Fig. 5): test metric vs share of training labels used.

    The outer folds are the same for every method and fraction; inside each training fold a
    seeded stratified subsample of ``fraction`` of the labels trains the model, which is scored on
    the full test fold. A method is either an (n, D) feature array (linear readout) or a
    :data:`FitPredict` callable that receives positions into ``y``.

    Returns:
        Tidy DataFrame: method, fraction, metric, mean, sd, n_folds.
    """
    cfg = cfg or EvaluateConfig()
    y = np.asarray(y)
    fractions = tuple(fractions or cfg.label_fractions)
    folds, note = choose_folds(y, "classification", cfg.n_folds, cfg.seed, groups)
    if not folds:
        raise ValueError(f"label_efficiency: no cross-validation split possible ({note})")
    rows = []
    for name, method in methods.items():
        for frac in fractions:
            scores = []
            for f, (tr, te) in enumerate(folds):
                rng = np.random.default_rng([cfg.seed, f, round(frac * 1000)])
                sub = tr[subsample_labels(y[tr], frac, rng)]
                if callable(method):
                    pred = method(sub, te)
                else:
                    X = np.asarray(method, np.float64)
                    if len(np.unique(y[sub])) < 2:
                        pred = np.full(len(te), y[sub][0])
                    else:
                        pred = (
                            make_readout("classification", cfg, len(sub), X.shape[1])
                            .fit(X[sub], y[sub])
                            .predict(X[te])
                        )
                scores.append(METRICS[metric](y[te], pred))
            s = np.asarray(scores)
            rows.append(
                {
                    "method": name,
                    "fraction": float(frac),
                    "metric": metric,
                    "mean": float(s.mean()),
                    "sd": float(s.std(ddof=1)) if len(s) > 1 else float("nan"),
                    "n_folds": len(folds),
                }
            )
    return pd.DataFrame(rows, columns=["method", "fraction", "metric", "mean", "sd", "n_folds"])


# ------------------------------------------------------------------------------------ volumes
def detected_fraction(
    prob_map_zyx: NDArray[Any], lung_mask_zyx: NDArray[Any], prob_threshold: float = 0.5
) -> float:
    """Share of lung voxels with emphysema probability > threshold (paper Fig. 4)."""
    lung = np.asarray(lung_mask_zyx) != 0
    if prob_map_zyx.shape != lung.shape:
        raise ValueError(
            f"probability map {prob_map_zyx.shape} and lung mask {lung.shape} differ in shape"
        )
    n = int(lung.sum())
    if n == 0:
        raise ValueError("lung mask is empty")
    return float(np.count_nonzero((np.asarray(prob_map_zyx) > prob_threshold) & lung) / n)


def fraction_by_gold(
    fractions: pd.DataFrame | Mapping[str, float], labels: pd.DataFrame, value: str = "fraction"
) -> pd.DataFrame:
    """Join per-subject detected fractions with GOLD stage (box-plot data; PRISm is stage -1).

    Args:
        fractions: ``subject_id`` + ``value`` columns, or a mapping subject_id -> fraction.
        labels: labels table with ``gold``.
        value: name of the fraction column (several subtypes can be passed one at a time).

    Returns:
        ``subject_id``, ``gold`` (int), ``value``; subjects without a GOLD stage are left out.
    """
    if isinstance(fractions, Mapping):
        fractions = pd.DataFrame({ID_COLUMN: list(fractions), value: list(fractions.values())})
    lab = labels[[ID_COLUMN, "gold"]].astype({ID_COLUMN: str})
    out = fractions.astype({ID_COLUMN: str}).merge(lab, on=ID_COLUMN).dropna(subset=["gold"])
    return out.astype({"gold": int})[[ID_COLUMN, "gold", value]].reset_index(drop=True)


# ------------------------------------------------------------------------------------ voxel truth
def dice_per_subtype(
    pred_codes: NDArray[Any],
    truth_codes: NDArray[Any],
    codes: Mapping[str, int] = LESION_CODES,
    region: NDArray[Any] | None = None,
) -> dict[str, float]:
    """Dice of a predicted lesion label map against the truth label map, per subtype code.

    Args:
        pred_codes: predicted codes (same coding as the truth), indexed [z, y, x].
        truth_codes: ``truth/<id>_lesions.nii.gz`` codes.
        codes: subtype name -> code.
        region: optional mask restricting the comparison (e.g. the lungs).

    Returns:
        subtype -> Dice (NaN when neither mask holds that subtype).
    """
    if pred_codes.shape != truth_codes.shape:
        raise ValueError(
            f"prediction {pred_codes.shape} and truth {truth_codes.shape} differ in shape"
        )
    keep = np.ones(truth_codes.shape, bool) if region is None else np.asarray(region) != 0
    return {
        name: dice((pred_codes == c) & keep, (truth_codes == c) & keep, empty=float("nan"))
        for name, c in codes.items()
    }


def overlap_by_subtype(
    pred_mask: NDArray[Any],
    truth_codes: NDArray[Any],
    codes: Mapping[str, int] = LESION_CODES,
    positive_codes: Sequence[int] = EMPHYSEMA_CODES,
    region: NDArray[Any] | None = None,
) -> dict[str, float]:
    """A binary emphysema mask against the truth: Dice with all ``positive_codes`` together
    (``dice_emphysema``), and per subtype the share of its truth voxels the mask covers
    (``sensitivity_<name>``, NaN when absent) — a binary detector cannot be scored by per-subtype
    Dice without penalising it for the other subtypes it finds."""
    if pred_mask.shape != truth_codes.shape:
        raise ValueError(f"mask {pred_mask.shape} and truth {truth_codes.shape} differ in shape")
    keep = np.ones(truth_codes.shape, bool) if region is None else np.asarray(region) != 0
    pred = np.asarray(pred_mask, bool) & keep
    out = {"dice_emphysema": dice(pred, np.isin(truth_codes, positive_codes) & keep)}
    for name, c in codes.items():
        t = (truth_codes == c) & keep
        n = int(t.sum())
        out[f"sensitivity_{name}"] = float(np.count_nonzero(pred & t) / n) if n else float("nan")
    return out
