"""Baseline features and method-comparison tables.

LAA-950 (low-attenuation area: share of lung voxels below -950 HU) is the clinical emphysema
descriptor the paper compares against, at image level (one number per subject, Table 2) and at
patch level (one number per landmark patch or annotated box, Table 5). Both come out as feature
frames that the readouts take like any learned features.

The other baselines (random-initialised encoder, plain MoCo, DrasCLR without the neighbour loss,
...) are simply other feature frames: :func:`compare_methods` runs the same readouts on a mapping
``method name -> features`` and returns one tidy table with a ``method`` column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from drasclr.evaluate.config import EvaluateConfig
from drasclr.evaluate.readouts import (
    ID_COLUMN,
    IMAGE_TASKS,
    FeatureInput,
    Task,
    image_readout_table,
)

LAA_THRESHOLD_HU = -950.0


def laa950(
    ct_hu: NDArray[Any], lung_mask: NDArray[Any], threshold_hu: float = LAA_THRESHOLD_HU
) -> float:
    """Share of lung voxels with attenuation strictly below ``threshold_hu``.

    Args:
        ct_hu: CT in Hounsfield units, any shape.
        lung_mask: same shape; non-zero = lung.
        threshold_hu: LAA threshold (-950 HU).

    Raises:
        ValueError: shapes differ or the lung mask is empty.
    """
    ct = np.asarray(ct_hu)
    lung = np.asarray(lung_mask) != 0
    if ct.shape != lung.shape:
        raise ValueError(f"CT {ct.shape} and lung mask {lung.shape} differ in shape")
    n = int(lung.sum())
    if n == 0:
        raise ValueError("lung mask is empty; LAA-950 is undefined")
    return float(np.count_nonzero((ct < threshold_hu) & lung) / n)


def laa950_frame(
    volumes: Mapping[str, tuple[NDArray[Any], NDArray[Any]]], threshold_hu: float = LAA_THRESHOLD_HU
) -> pd.DataFrame:
    """Image-level LAA-950 feature frame from ``subject_id -> (ct_hu, lung_mask)``.

    Returns:
        ``subject_id``, ``laa950``: a features frame for the readouts.
    """
    return pd.DataFrame(
        {
            ID_COLUMN: [str(s) for s in volumes],
            "laa950": [laa950(ct, m, threshold_hu) for ct, m in volumes.values()],
        }
    )


def patch_laa950(
    patches_hu: NDArray[Any],
    lung_masks: NDArray[Any] | None = None,
    threshold_hu: float = LAA_THRESHOLD_HU,
    lung_fraction: NDArray[Any] | None = None,
    min_lung_fraction: float = 0.0,
) -> NDArray[np.float64]:
    """Patch-level LAA-950: share of (lung) voxels below ``threshold_hu`` in each patch.

    Args:
        patches_hu: (..., P, P, P) patches in HU (e.g. (S, L, P, P, P) for S subjects, L landmarks).
        lung_masks: optional (..., P, P, P) lung masks of the same patches. Without them every
            voxel of the patch counts, so air outside the lungs (trachea, outside the body) counts
            as low attenuation; landmark patches are mostly lung, so this is a fair
            approximation. Large inputs: pass a chunk of subjects at a time.
        threshold_hu: LAA threshold.
        lung_fraction: optional (...) lung fraction of each patch (the store's per-patch value);
            patches below ``min_lung_fraction`` get NaN.
        min_lung_fraction: see ``lung_fraction``.

    Returns:
        (...) float64 LAA fractions (NaN for patches without lung).
    """
    p = np.asarray(patches_hu)
    if p.ndim < 3:
        raise ValueError(f"patches must end in three spatial axes, got shape {p.shape}")
    low = (p < threshold_hu).reshape(*p.shape[:-3], -1)
    if lung_masks is None:
        out = low.mean(axis=-1, dtype=np.float64)
    else:
        m = np.asarray(lung_masks)
        if m.shape != p.shape:
            raise ValueError(f"lung masks {m.shape} and patches {p.shape} differ in shape")
        lung = (m != 0).reshape(low.shape)
        n = lung.sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(n > 0, (low & lung).sum(axis=-1) / np.maximum(n, 1), np.nan)
    if lung_fraction is not None:
        lf = np.asarray(lung_fraction, np.float64)
        if lf.shape != out.shape:
            raise ValueError(f"lung_fraction {lf.shape} does not match patches {out.shape}")
        out = np.where(lf >= min_lung_fraction, out, np.nan)
    return out


def patch_laa950_frame(
    patches_hu: NDArray[Any],
    subject_ids: Sequence[str],
    lung_masks: NDArray[Any] | None = None,
    lung_fraction: NDArray[Any] | None = None,
    min_lung_fraction: float = 0.0,
    threshold_hu: float = LAA_THRESHOLD_HU,
) -> pd.DataFrame:
    """Patch-level LAA-950 of every landmark as one feature frame (``laa_000`` … per landmark).

    Args:
        patches_hu: (S, L, P, P, P) HU patches, subject-major (a landmark-major store array can be
            passed as ``np.swapaxes(arr, 0, 1)``).
        subject_ids: S ids.
        lung_masks, lung_fraction, min_lung_fraction, threshold_hu: see :func:`patch_laa950`.

    Returns:
        ``subject_id`` + L columns; NaN patches (no lung) take the landmark's mean over subjects.
    """
    p = np.asarray(patches_hu)
    if p.ndim != 5 or p.shape[0] != len(subject_ids):
        raise ValueError(
            f"patches must be (S, L, P, P, P) with S = {len(subject_ids)}, got {p.shape}"
        )
    values = patch_laa950(p, lung_masks, threshold_hu, lung_fraction, min_lung_fraction)
    col_mean = np.nanmean(
        np.where(np.isnan(values).all(axis=0, keepdims=True), 0.0, values), axis=0
    )
    values = np.where(np.isnan(values), col_mean[None], values)
    width = max(3, len(str(p.shape[1] - 1)))
    cols = {f"laa_{j:0{width}d}": values[:, j] for j in range(p.shape[1])}
    return pd.DataFrame({ID_COLUMN: [str(s) for s in subject_ids], **cols})


def compare_methods(
    methods: Mapping[str, FeatureInput],
    labels: pd.DataFrame,
    cfg: EvaluateConfig | None = None,
    tasks: Sequence[Task] = IMAGE_TASKS,
) -> pd.DataFrame:
    """Image-level readout table of several feature sets (DrasCLR, LAA-950, random encoder, ...).

    Methods over the same subjects get the same folds (rows are ordered by subject id before the
    seeded split), so their scores are paired fold by fold.

    Returns:
        Tidy DataFrame: method, task, metric, mean, sd, n, n_folds, note.
    """
    parts = []
    for name, feats in methods.items():
        table = image_readout_table(feats, labels, cfg, tasks)
        table.insert(0, "method", name)
        parts.append(table)
    if not parts:
        raise ValueError("compare_methods: no methods given")
    return pd.concat(parts, ignore_index=True)
