"""Dense map experiment (paper Fig. 3 and the 25 % rule of Table 5) on a few held-out subjects.

* :func:`choose_dense_subjects` — the subjects with dense maps, spanning GOLD stages.
* :func:`dense_maps` — for each dense method a readout fitted on the *other* subjects is applied
  at every ``dense_stride``-th lung voxel of each dense subject
  (:func:`drasclr.features.dense_features`); the maps are compared with the voxel truth (Dice,
  sensitivity), each of the subject's boxes gets its positive-voxel fraction, and a coronal slice
  is kept for the overlay figure. The readout is the patch probe's ridge (a voxel is flagged
  where its window's predicted emphysema fraction is at least
  :data:`~drasclr.evaluate.science.DETECT_FRACTION`) when the cohort has voxel truth to fit it,
  else the paper's box readout (p > ``prob_threshold``), which learns "this subject has
  emphysema" from boxes and flags most of a diseased lung.
* :func:`box_rule_table` — F1 / precision / recall of the paper's rule (a box is detected when
  >= 25 % of its voxels have p > 0.5) and of a labelled departure, the box fraction chosen by
  leave-one-subject-out F1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from torch import nn

from drasclr.evaluate.boxes import BOX_TASKS, BoxPatches, Scan, fit_probe
from drasclr.evaluate.config import EvaluateConfig
from drasclr.evaluate.detection import (
    EMPHYSEMA_CODES,
    box_detections,
    detected_fraction,
    detection_scores,
    dice_per_subtype,
    overlap_by_subtype,
)
from drasclr.evaluate.readouts import ID_COLUMN
from drasclr.evaluate.science import DETECT_FRACTION

DENSE_BOX_COLUMNS = ["box_id", "positive_fraction", "detected", "method", "task", ID_COLUMN,
                     "label"]
"""Columns of the dense boxes table."""
RULE_COLUMNS = ["method", "task", "rule", "fraction", "f1", "precision", "recall", "n_boxes",
                "n_positive", "fallback", "readout"]
"""Columns of the box rule table."""
PROBE_READOUT = f"patch probe (emphysema fraction >= {DETECT_FRACTION:.0%})"
"""The dense maps' readout when a patch-probe head is given."""
BOX_READOUT = "box readout (p > threshold)"
"""The dense maps' readout otherwise (the paper's)."""


def choose_dense_subjects(labels: pd.DataFrame, subject_ids: list[str], k: int) -> list[str]:
    """``k`` subjects spanning GOLD stages: evenly spaced in (GOLD, true emphysema, id) order."""
    if k <= 0 or not subject_ids:
        return []
    lab = labels.astype({ID_COLUMN: str}).set_index(ID_COLUMN).reindex(subject_ids)
    key = pd.DataFrame(
        {
            ID_COLUMN: subject_ids,
            "gold": lab["gold"].fillna(-2).to_numpy() if "gold" in lab else 0,
            "emph": lab["true_emphysema_fraction"].fillna(0).to_numpy()
            if "true_emphysema_fraction" in lab
            else 0.0,
        }
    ).sort_values(["gold", "emph", ID_COLUMN], kind="stable")
    pos = np.unique(np.round(np.linspace(0, len(key) - 1, min(k, len(key)))).astype(int))
    return key[ID_COLUMN].iloc[pos].tolist()


def coronal_index(scan: Scan) -> int:
    """Coronal slice (y index) with the most emphysema truth voxels, else the most lung."""
    if scan.lesions is not None:
        emph = np.isin(scan.lesions, EMPHYSEMA_CODES).sum(axis=(0, 2))
        if emph.max() > 0:
            return int(emph.argmax())
    return int(scan.lungs.sum(axis=(0, 2)).argmax())


@dataclass(frozen=True, eq=False)
class DenseSlice:
    """The coronal slice of one dense map kept for the overlay figure.

    Attributes:
        method: the method.
        subject_id: the subject.
        ct: (Z, X) clipped HU.
        lungs: (Z, X) lung mask.
        truth: (Z, X) lesion codes (zeros without voxel truth).
        prob: (tasks, Z, X) probabilities (with the patch probe's readout: its 0 / 1 flags).
        y_index: the slice's y index.
        spacing: (3,) voxel spacing of the scan.
        readout: the readout that made the map (:data:`PROBE_READOUT` or :data:`BOX_READOUT`).
    """

    method: str
    subject_id: str
    ct: npt.NDArray[Any]
    lungs: npt.NDArray[Any]
    truth: npt.NDArray[Any]
    prob: npt.NDArray[Any]
    y_index: int
    spacing: npt.NDArray[Any]
    readout: str = BOX_READOUT

    def arrays(self) -> dict[str, Any]:
        """The ``.npz`` content, in file order."""
        return {"ct": self.ct, "lungs": self.lungs, "truth": self.truth, "prob": self.prob,
                "y_index": self.y_index, "spacing": self.spacing, "method": self.method,
                "subject_id": self.subject_id, "readout": self.readout}


@dataclass(frozen=True, eq=False)
class DenseMaps:
    """The dense map experiment's outputs.

    Attributes:
        overlap: one row per method x dense subject (detected and true fraction, Dice and
            sensitivity against the voxel truth when there is some, unfitted tasks).
        boxes: positive-voxel fraction and the paper's rule for each box of a dense subject
            (:data:`DENSE_BOX_COLUMNS`).
        slices: the coronal slices for the overlay figure, in computation order.
    """

    overlap: pd.DataFrame
    boxes: pd.DataFrame
    slices: list[DenseSlice]


def dense_maps(
    dense_methods: list[str],
    modules: Mapping[str, nn.Module],
    boxes: BoxPatches,
    box_feats: Mapping[str, npt.NDArray[np.float32]],
    scans: Mapping[str, Scan],
    manifest: pd.DataFrame,
    bounds: Any,
    labels: pd.DataFrame,
    cfg: EvaluateConfig,
    heads: Mapping[str, nn.Module] | None = None,
) -> DenseMaps:
    """Dense probability maps of the dense subjects with a readout fitted on the other subjects.

    Args:
        dense_methods: methods with dense maps (each needs an encoder and box features).
        modules: method -> encoder.
        boxes: the cohort's boxes as encoder inputs.
        box_feats: method -> (B, D) box features.
        scans: dense subject -> scan (with lesion truth when the cohort has it).
        manifest: the store manifest indexed by ``subject_id`` (``inverse_transform``).
        bounds: the landmark grid's normalisation.
        labels: the labels table (``gold``).
        cfg: evaluation settings.
        heads: method -> patch-probe head (features -> emphysema fraction,
            :func:`drasclr.evaluate.patch_probe.dense_heads`, fitted without the dense subjects);
            a method with a head is mapped with it (both box tasks then share its flags and no
            subtype Dice is made), the others with the box readout.
    """
    from drasclr.features import dense_features

    box_subject = boxes.boxes[ID_COLUMN].astype(str).to_numpy()
    box_label = boxes.boxes["label"].astype(str).to_numpy()
    train = ~np.isin(box_subject, list(scans))
    gold = labels.set_index(ID_COLUMN)["gold"] if "gold" in labels else None
    overlap_rows, box_rows, slices = [], [], []
    for name in dense_methods:
        head = (heads or {}).get(name)
        probe_map = head is not None
        if probe_map:
            readout, fitted = PROBE_READOUT, [True] * len(BOX_TASKS)
        else:
            head = fit_probe(box_feats[name][train], box_label[train], BOX_TASKS, cfg.logistic_c)
            if head is None:
                continue
            readout, fitted = BOX_READOUT, list(head.fitted)
        for sid, scan in scans.items():
            dense = dense_features(
                modules[name], scan.hu, scan.geometry, manifest.loc[sid, "inverse_transform"],
                bounds, mask=scan.lungs, stride=cfg.dense_stride, head=head,
                patch_size=boxes.patches.shape[-1], batch_size=cfg.batch_size, device=cfg.device,
            )
            prob = dense.to_volume(fill=0.0).astype(np.float32)  # (2, Z, Y, X) or (1, Z, Y, X)
            if probe_map:  # flags (0 / 1) of each box task: both share them
                flag = (prob[0] >= DETECT_FRACTION).astype(np.float32)
                prob = np.repeat(flag[None], len(BOX_TASKS), axis=0)
            hit = prob > cfg.prob_threshold
            any_hit = hit.any(axis=0)
            pred_codes = np.where(any_hit, np.where(prob[0] >= prob[1], 1, 2), 0).astype(np.uint8)
            row: dict[str, Any] = {
                "method": name,
                "readout": readout,
                ID_COLUMN: sid,
                "gold": int(gold[sid]) if gold is not None and pd.notna(gold.get(sid)) else None,
                "n_encoded": dense.num_encoded,
                "lung_voxels": int(scan.lungs.sum()),
                "detected_fraction": detected_fraction(any_hit.astype(np.float32), scan.lungs,
                                                       0.5),
            }
            if scan.lesions is not None:
                truth = scan.lesions
                row["true_fraction"] = float(
                    np.count_nonzero(np.isin(truth, EMPHYSEMA_CODES) & scan.lungs)
                    / max(1, int(scan.lungs.sum()))
                )
                row.update(overlap_by_subtype(any_hit, truth, region=scan.lungs))
                if not probe_map:  # the probe's map does not tell the subtypes apart
                    d = dice_per_subtype(pred_codes, truth, {"cle": 1, "pse": 2},
                                         region=scan.lungs)
                    row.update({f"dice_{k}": v for k, v in d.items()})
            row["unfitted_tasks"] = ",".join(t for t, f in zip(BOX_TASKS, fitted) if not f)
            overlap_rows.append(row)
            mine = np.flatnonzero(box_subject == sid)
            for j, task in enumerate(BOX_TASKS):
                rows = mine[np.isin(box_label[mine], [task, "healthy"])]
                if len(rows) == 0 or not fitted[j]:
                    continue
                det = box_detections(prob[j], scan.geometry, boxes.boxes.iloc[rows],
                                     cfg.prob_threshold, cfg.box_min_fraction)
                box_rows.append(det.assign(method=name, task=task, **{ID_COLUMN: sid},
                                           label=box_label[rows], readout=readout))
            y = coronal_index(scan)
            slices.append(DenseSlice(
                method=name,
                subject_id=sid,
                ct=scan.hu[:, y, :],
                lungs=scan.lungs[:, y, :],
                truth=(scan.lesions[:, y, :] if scan.lesions is not None
                       else np.zeros_like(scan.hu[:, y, :], np.uint8)),
                prob=prob[:, :, y, :],
                y_index=y,
                spacing=np.asarray(scan.geometry.spacing),
                readout=readout,
            ))
    dboxes = (pd.concat(box_rows, ignore_index=True) if box_rows
              else pd.DataFrame(columns=DENSE_BOX_COLUMNS))
    return DenseMaps(pd.DataFrame(overlap_rows), dboxes, slices)


def best_fraction(frac: npt.NDArray[Any], y: npt.NDArray[Any], grid: tuple[float, ...]) -> float:
    """The grid box fraction with the best F1 (ties: the larger fraction); NaN if undefined."""
    if len(np.unique(y)) < 2:
        return float("nan")
    f1 = [detection_scores(frac >= g, y)["f1"] for g in grid]
    best = max(f1)
    return float(max(g for g, s in zip(grid, f1) if s == best))


def box_rule_table(dboxes: pd.DataFrame, cfg: EvaluateConfig) -> pd.DataFrame:
    """F1 / precision / recall of the 25 % rule and of the leave-one-subject-out chosen fraction.

    Args:
        dboxes: :attr:`DenseMaps.boxes`.
        cfg: evaluation settings (``box_min_fraction``, ``rule_fractions``,
            ``rule_fallback_fraction``).

    Returns:
        :data:`RULE_COLUMNS`, two rows (``paper (25 %)``, ``chosen fraction (departure)``) per
        method and task.
    """
    rows = []
    for (method, task), grp in dboxes.groupby(["method", "task"], sort=False):
        readout = str(grp["readout"].iloc[0]) if "readout" in grp else BOX_READOUT
        y = (grp["label"] == task).to_numpy().astype(int)
        frac = np.nan_to_num(grp["positive_fraction"].to_numpy(float))
        paper = detection_scores(frac >= cfg.box_min_fraction, y)
        rows.append({"method": method, "task": task, "rule": "paper (25 %)",
                     "fraction": cfg.box_min_fraction, **paper, "n_boxes": len(y),
                     "n_positive": int(y.sum()), "fallback": False, "readout": readout})
        chosen = np.zeros(len(y), bool)
        used = []
        fallback = False
        subj = grp[ID_COLUMN].to_numpy()
        for s in np.unique(subj):
            other = subj != s
            g = best_fraction(frac[other], y[other], cfg.rule_fractions)
            if not np.isfinite(g):
                g, fallback = cfg.rule_fallback_fraction, True
            used.append(g)
            chosen[subj == s] = frac[subj == s] >= g
        rows.append({"method": method, "task": task, "rule": "chosen fraction (departure)",
                     "fraction": float(np.median(used)), **detection_scores(chosen, y),
                     "n_boxes": len(y), "n_positive": int(y.sum()), "fallback": fallback,
                     "readout": readout})
    return pd.DataFrame(rows, columns=RULE_COLUMNS)
