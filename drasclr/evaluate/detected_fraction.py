"""Detected emphysema fraction experiment (paper Fig. 4 analogue) for every subject.

The box readout (CLE, PSE vs healthy), fitted out of subject (subject folds), is applied to every
stored landmark patch's features; a patch counts as emphysema when either probability exceeds
``EvaluateConfig.prob_threshold``, and a subject's detected share is the lung-fraction-weighted
share of its flagged patches (:func:`patch_fractions`). :func:`detected_fraction_table` adds the
labels (GOLD, the generator's true fractions) and the image LAA-950 to compare with.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from drasclr.evaluate.boxes import BOX_TASKS, BoxPatches, fit_probe, subject_groups
from drasclr.evaluate.config import EvaluateConfig
from drasclr.evaluate.readouts import ID_COLUMN
from drasclr.store.reader import PatchStore

LABEL_COLUMNS: tuple[str, ...] = (
    "gold", "true_emphysema_fraction", "true_cle_fraction", "true_pse_fraction"
)
"""Label columns the table carries when the labels hold them."""


def patch_fractions(
    feature_folders: Mapping[str, Path],
    boxes: BoxPatches,
    box_feats: Mapping[str, npt.NDArray[np.float32]],
    store: PatchStore,
    subjects: list[str],
    cfg: EvaluateConfig,
) -> pd.DataFrame:
    """Detected emphysema share per subject from landmark-patch predictions, out of subject.

    Subjects are split into folds; for each fold the box readout is fitted on the boxes of the
    other folds' subjects and applied to the fold's landmark patches.

    Args:
        feature_folders: method -> features folder whose patch features the readout is applied
            to (extracted with BatchNorm running statistics, like the box features).
        boxes: the cohort's boxes as encoder inputs.
        box_feats: method -> (B, D) box features of the same encoder.
        store: the patch store (lung fraction weights, validity).
        subjects: the subjects, in the output's order.
        cfg: evaluation settings.

    Returns:
        ``subject_id`` and, per method, ``<method>: cle``, ``<method>: pse``,
        ``<method>: emphysema``.
    """
    from drasclr.features import read_patch_features

    out = pd.DataFrame({ID_COLUMN: subjects})
    groups = subject_groups(subjects, cfg.n_folds, cfg.seed)
    box_subject = boxes.boxes[ID_COLUMN].astype(str).to_numpy()
    box_label = boxes.boxes["label"].astype(str).to_numpy()
    lf_all, valid_all = store.lung_fraction, store.valid
    for name, folder in feature_folders.items():
        pf = read_patch_features(folder)
        row_of = {s: k for k, s in enumerate(pf.subject_ids)}
        values = np.full((len(subjects), len(BOX_TASKS) + 1), np.nan)
        for test in groups:
            train = ~np.isin(box_subject, test)
            probe = fit_probe(box_feats[name][train], box_label[train], BOX_TASKS, cfg.logistic_c)
            if probe is None:
                continue
            for sid in test:
                if sid not in row_of:
                    continue
                k = subjects.index(sid)
                idx = store.index_of(sid)
                w = np.where(valid_all[:, idx], lf_all[:, idx], 0.0).astype(np.float64)
                feats = pf.features[row_of[sid]]
                ok = np.isfinite(feats).all(axis=1)
                p = np.zeros((len(w), len(BOX_TASKS)))
                p[ok] = probe.predict_proba(feats[ok])
                w = np.where(ok, w, 0.0)
                fitted = np.asarray(probe.fitted)
                hit = (p > cfg.prob_threshold) & fitted[None]
                det = np.concatenate([hit, hit.any(axis=1, keepdims=True)], axis=1)
                if w.sum() > 0:
                    values[k] = (w[:, None] * det).sum(axis=0) / w.sum()
                    values[k, : len(BOX_TASKS)][~fitted] = np.nan
        for j, task in enumerate((*BOX_TASKS, "emphysema")):
            out[f"{name}: {task}"] = values[:, j]
    return out


def detected_fraction_table(
    feature_folders: Mapping[str, Path],
    boxes: BoxPatches,
    box_feats: Mapping[str, npt.NDArray[np.float32]],
    store: PatchStore,
    subjects: list[str],
    labels: pd.DataFrame,
    laa_image: pd.DataFrame,
    cfg: EvaluateConfig,
) -> pd.DataFrame:
    """:func:`patch_fractions` with the subjects' :data:`LABEL_COLUMNS` and image ``laa950``.

    Returns:
        ``subject_id``, ``<method>: cle|pse|emphysema`` per method, the label columns the labels
        hold, ``laa950``.
    """
    fractions = patch_fractions(feature_folders, boxes, box_feats, store, subjects, cfg)
    extra = labels[[c for c in (ID_COLUMN, *LABEL_COLUMNS) if c in labels]]
    return fractions.merge(extra, on=ID_COLUMN, how="left").merge(
        laa_image, on=ID_COLUMN, how="left"
    )
