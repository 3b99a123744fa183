"""Label efficiency experiment (paper Fig. 5): box F1 vs the share of training labels used.

:func:`label_efficiency_table` draws the curve of
:func:`drasclr.evaluate.detection.label_efficiency` for each box task (CLE vs healthy, PSE vs
healthy) with the same subject-grouped folds for every method: frozen linear readouts of every
encoder's box features and of the box LAA-950, and, when fine-tuning is on, the fine-tuned primary
encoder and the CNN trained from scratch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from torch import nn

from drasclr.evaluate.baselines import LAA_BOX, SCRATCH
from drasclr.evaluate.boxes import BOX_TASKS, BoxPatches, task_labels
from drasclr.evaluate.config import EvaluateConfig
from drasclr.evaluate.detection import label_efficiency
from drasclr.evaluate.readouts import ID_COLUMN

CURVE_COLUMNS = ["method", "fraction", "metric", "mean", "sd", "n_folds", "task"]
"""Columns of the label efficiency table."""


def label_efficiency_table(
    boxes: BoxPatches,
    box_feats: Mapping[str, npt.NDArray[np.float32]],
    laa_box: npt.NDArray[np.float64],
    modules: Mapping[str, nn.Module],
    cfg: EvaluateConfig,
    primary: str | None,
) -> pd.DataFrame:
    """F1 vs share of training labels per task; frozen linear readouts (+ fine-tuning).

    Args:
        boxes: the cohort's boxes as encoder inputs.
        box_feats: method -> (B, D) frozen box features.
        laa_box: (B,) box LAA-950.
        modules: method -> encoder (``primary``'s is fine-tuned).
        cfg: evaluation settings (``label_fractions``, ``finetune_*``).
        primary: the fine-tuned method (None: no fine-tuning curves).

    Returns:
        :data:`CURVE_COLUMNS`; a task whose folds cannot be split is left out.
    """
    from drasclr.evaluate.finetune import copy_factory, fit_predict
    from drasclr.nn.encoder import DrasEncoder

    parts = []
    for task in BOX_TASKS:
        pos, y = task_labels(boxes.boxes, task)
        groups = boxes.boxes[ID_COLUMN].to_numpy()[pos]
        curve_methods: dict[str, Any] = {n: f[pos] for n, f in box_feats.items()}
        curve_methods[LAA_BOX] = laa_box[pos][:, None]
        if cfg.finetune_epochs > 0 and primary is not None:
            for name, factory in ((f"{primary} (fine-tuned)", copy_factory(modules[primary])),
                                  (SCRATCH, DrasEncoder)):
                curve_methods[name] = fit_predict(
                    {"rows": pos, "make_encoder": factory, "boxes": boxes,
                     "epochs": cfg.finetune_epochs, "lr": cfg.finetune_lr, "seed": cfg.seed,
                     "device": cfg.device},
                    y,
                )
        try:
            c = label_efficiency(curve_methods, y, cfg, "f1", groups=groups)
        except ValueError:
            continue
        parts.append(c.assign(task=task))
    if not parts:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    return pd.concat(parts, ignore_index=True)
