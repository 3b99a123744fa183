"""Powered image readouts: Table 2's readouts with repeated CV on landmark-standardised features.

:func:`powered_readouts_table` scores every method's patch features, image LAA-950 and the sanity
rows ("LAA-950 alone", "LAA-950 + 128 random features", which must score alike) with the repeated
5-fold CV of :mod:`drasclr.evaluate.image_probe` (pooled out-of-fold score per repeat; mean and
s.d. over repeats).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from drasclr.evaluate.baselines import LAA_IMAGE
from drasclr.evaluate.config import EvaluateConfig
from drasclr.evaluate.image_probe import sanity_rows
from drasclr.evaluate.inputs import MethodFeatures
from drasclr.evaluate.readouts import ID_COLUMN
from drasclr.evaluate.science import IMAGE_METRICS, image_metrics


def powered_readouts_table(
    methods: Mapping[str, MethodFeatures],
    laa_image: pd.DataFrame,
    labels: pd.DataFrame,
    subjects: list[str],
    cfg: EvaluateConfig,
) -> pd.DataFrame:
    """Image readouts with repeated CV for every method, LAA-950 and the sanity rows.

    Args:
        methods: method -> its features folder (patch features are read).
        laa_image: ``subject_id``, ``laa950``; the LAA-950 and sanity rows need it for every
            subject.
        labels: the labels table.
        subjects: the subjects scored, in order.
        cfg: evaluation settings (``readout_repeats``, ``seed``).

    Returns:
        method, metric, mean, sd, n (no columns at all when no metric has 10 labelled subjects).
    """
    from drasclr.features import read_patch_features

    lab = labels.set_index(ID_COLUMN).loc[subjects].reset_index()
    rows: list[dict[str, Any]] = []

    def add(method: str, scores: Mapping[str, list[float]]) -> None:
        for metric, vals in scores.items():
            v = np.asarray(vals, dtype=np.float64)
            rows.append({"method": method, "metric": metric, "mean": float(np.nanmean(v)),
                         "sd": float(np.nanstd(v, ddof=1)) if len(v) > 1 else 0.0,
                         "n": len(lab)})

    for name, m in methods.items():
        pf = read_patch_features(m.folder)
        pos = {s: k for k, s in enumerate(pf.subject_ids)}
        x = pf.features.astype(np.float64)[[pos[s] for s in subjects]]
        add(name, image_metrics(x, None, lab, cfg.readout_repeats, cfg.seed))
    laa = laa_image.set_index(ID_COLUMN).loc[subjects, ["laa950"]].to_numpy(np.float64)
    if not np.isfinite(laa).all():
        return pd.DataFrame(rows)
    add(LAA_IMAGE, image_metrics(None, laa, lab, cfg.readout_repeats, cfg.seed))
    for metric, (column, kind, log) in IMAGE_METRICS.items():
        if kind != "regression" or column not in lab or lab[column].notna().sum() < 10:
            continue
        y = lab[column].to_numpy(np.float64)
        ok = np.isfinite(y) & np.isfinite(laa[:, 0])
        for row_name, res in sanity_rows(laa[ok, 0], np.log(y[ok]) if log else y[ok],
                                         repeats=cfg.readout_repeats).items():
            add(f"sanity: {row_name}", {metric: res["scores"]})
    return pd.DataFrame(rows)
