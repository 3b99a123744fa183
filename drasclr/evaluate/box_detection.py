"""Box detection experiment (paper §4.3, Table 5): readouts of the annotated boxes.

:func:`box_detection_table` reads out each subtype's boxes against the healthy boxes (CLE vs
healthy, PSE vs healthy; F1, precision, recall by subject-grouped CV,
:func:`drasclr.evaluate.detection.box_readout_table`) from

* every encoder's frozen box features (``linear (frozen)``),
* the box's LAA-950 inside its lung mask (:data:`drasclr.evaluate.baselines.LAA_BOX`,
  ``linear``; :func:`box_laa`),
* when fine-tuning is on, the fine-tuned encoders and the same CNN trained from scratch
  (``fine-tuned``; :func:`finetune_rows`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from torch import nn

from drasclr.evaluate.baselines import LAA_BOX, SCRATCH
from drasclr.evaluate.boxes import BOX_TASKS, BoxPatches, box_feature_frame, task_labels
from drasclr.evaluate.config import EvaluateConfig
from drasclr.evaluate.detection import DETECTION_METRICS, box_readout_table
from drasclr.evaluate.readouts import ID_COLUMN, TABLE_COLUMNS, Task, cross_validate, task_rows


def box_laa(boxes: BoxPatches) -> npt.NDArray[np.float64]:
    """(B,) LAA-950 of each box inside its lung mask; 0 for a box without lung."""
    return np.nan_to_num(boxes.laa950, nan=0.0)


def finetune_rows(
    boxes: BoxPatches, modules: Mapping[str, nn.Module], cfg: EvaluateConfig, primary: str
) -> list[pd.DataFrame]:
    """Table 5 rows of full fine-tuning (CV like the linear rows) and the CNN from scratch.

    Fine-tunes ``cfg.finetune_methods`` (default: ``primary``) among ``modules``, then
    :data:`drasclr.evaluate.baselines.SCRATCH`; one frame per method, readout ``fine-tuned``.
    """
    from drasclr.evaluate.finetune import FineTuner, copy_factory
    from drasclr.nn.encoder import DrasEncoder

    tuned = [m for m in (cfg.finetune_methods or (primary,)) if m in modules]
    factories = {m: copy_factory(modules[m]) for m in tuned}
    factories[SCRATCH] = DrasEncoder
    parts = []
    for name, factory in factories.items():
        rows = []
        for task in BOX_TASKS:
            pos, y = task_labels(boxes.boxes, task)
            groups = boxes.boxes[ID_COLUMN].to_numpy()[pos]

            def make(*_: Any, f: Any = factory) -> FineTuner:
                return FineTuner(f, boxes, cfg.finetune_epochs, cfg.finetune_lr,
                                 seed=cfg.seed, device=cfg.device)

            res = cross_validate(
                pos[:, None], y, "classification", DETECTION_METRICS, cfg, groups=groups,
                pipeline_factory=make,
            )
            rows.extend(task_rows(res, Task(task, "label", "classification", DETECTION_METRICS), y))
        parts.append(
            pd.DataFrame(rows, columns=TABLE_COLUMNS).assign(method=name, readout="fine-tuned")
        )
    return parts


def box_detection_table(
    boxes: BoxPatches,
    box_feats: Mapping[str, npt.NDArray[np.float32]],
    laa_box: npt.NDArray[np.float64],
    modules: Mapping[str, nn.Module],
    cfg: EvaluateConfig,
    primary: str | None,
) -> pd.DataFrame:
    """Table 5: box readouts of every encoder, of the box LAA-950 and (when
    ``cfg.finetune_epochs`` > 0 and there is a ``primary`` method) of fine-tuning.

    Args:
        boxes: the cohort's boxes as encoder inputs.
        box_feats: method -> (B, D) frozen box features, in table order.
        laa_box: (B,) box LAA-950 (:func:`box_laa`).
        modules: method -> encoder (fine-tuning starts from a copy).
        cfg: evaluation settings.
        primary: the method fine-tuned by default (None: no fine-tuning rows).

    Returns:
        method, readout, task, metric, mean, sd, pooled, n, n_folds, note.
    """
    parts = []
    for name, feats in box_feats.items():
        t = box_readout_table(box_feature_frame(boxes, feats), boxes.boxes, cfg)
        parts.append(t.assign(method=name, readout="linear (frozen)"))
    laa_frame = boxes.boxes[["box_id", ID_COLUMN, "label"]].assign(laa950=laa_box)
    parts.append(
        box_readout_table(laa_frame, boxes.boxes, cfg).assign(method=LAA_BOX, readout="linear")
    )
    if cfg.finetune_epochs > 0 and primary is not None:
        parts.extend(finetune_rows(boxes, modules, cfg, primary))
    table = pd.concat(parts, ignore_index=True)
    return table[["method", "readout", *TABLE_COLUMNS]]
