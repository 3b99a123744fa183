"""Baseline features and method-comparison tables.

LAA-950 (low-attenuation area: share of lung voxels below -950 HU) is the clinical emphysema
descriptor the paper compares against, at image level (one number per subject, Table 2) and at
patch level (one number per landmark patch or annotated box, Table 5). Both come out as feature
frames that the readouts take like any learned features.

The other baselines (random-initialised encoder, plain MoCo, DrasCLR without the neighbour loss,
...) are simply other feature frames: :func:`compare_methods` runs the same readouts on a mapping
``method name -> features`` and returns one tidy table with a ``method`` column.

The evaluation names its baseline rows :data:`LAA_IMAGE`, :data:`LAA_PATCH`, :data:`LAA_BOX` and
:data:`SCRATCH`; :func:`store_patch_laa` computes the patch-level LAA-950 of every landmark from
a patch store.
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
from drasclr.imaging.density import LAA_THRESHOLD_HU, laa950, patch_laa950
from drasclr.store.reader import PatchStore

LAA_IMAGE = "LAA-950 (image)"
"""Row name of image-level LAA-950 (preprocessing's own lung mask, manifest column ``laa950``)."""
LAA_PATCH = "LAA-950 (patch)"
"""Row name of patch-level LAA-950 of every landmark patch (:func:`store_patch_laa`)."""
LAA_BOX = "LAA-950 (box)"
"""Row name of box-level LAA-950 (the box patch inside its lung mask)."""
SCRATCH = "supervised CNN (scratch)"
"""Row name of the encoder trained from scratch on the boxes (the supervised baseline)."""


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


def _laa_frame(values: NDArray[np.float64], ids: list[str], prefix: str) -> pd.DataFrame:
    """(S, L) LAA values → frame; NaN entries take the landmark's mean over subjects."""
    v = np.asarray(values, np.float64)
    col_mean = np.nanmean(np.where(np.isnan(v).all(axis=0, keepdims=True), 0.0, v), axis=0)
    v = np.where(np.isnan(v), col_mean[None], v)
    width = max(3, len(str(v.shape[1] - 1)))
    cols = {f"{prefix}{j:0{width}d}": v[:, j] for j in range(v.shape[1])}
    return pd.DataFrame({ID_COLUMN: ids, **cols})


def store_patch_laa(store: PatchStore, subject_ids: list[str]) -> pd.DataFrame:
    """Patch-level LAA-950 at every landmark from the store, read subject by subject.

    Every voxel of a stored patch counts (the store keeps no lung masks); invalid patches (out of
    view) and patches without lung (store ``lung_fraction`` 0) become the landmark's mean.
    """
    lf = store.lung_fraction
    valid = store.valid
    rows = []
    for sid in subject_ids:
        idx = store.index_of(sid)
        v = patch_laa950(store.read_subject(idx))
        rows.append(np.where(valid[:, idx] & (lf[:, idx] > 0), v, np.nan))
    return _laa_frame(np.stack(rows), subject_ids, "laa_")
