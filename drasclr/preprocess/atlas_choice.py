"""Choosing the atlas subject from the input scans alone (no labels needed).

Rule: among candidate scans (at most ``n_candidates``, evenly spread over the sorted subject
ids), keep those whose lungs lie fully inside the field of view (no lung voxel on the first or
last axial slice) and whose segmented lung volume is within 50-150 % of the candidates' median
(a guard against failed segmentations and partial scans); of these, take the one with the lowest
LAA-950 (share of lung voxels below -950 HU): the least emphysematous, most normal-looking lungs.
Each candidate is read, resampled and segmented exactly as preprocessing does, one Ray task per
scan (:func:`choose_atlas_subject`); :func:`decide` applies the rule to the per-scan summaries
without Ray, and :class:`AtlasChoice` records the choice and why (``atlas_choice.json``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from drasclr.preprocess.config import PreprocessConfig

VOLUME_RANGE = (0.5, 1.5)


@dataclass(frozen=True)
class AtlasChoice:
    """The chosen subject, why, and every candidate's numbers."""

    subject_id: str
    input_path: str
    reason: str
    candidates: pd.DataFrame

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (``atlas_choice.json``)."""
        return {"subject_id": self.subject_id, "input_path": self.input_path,
                "reason": self.reason,
                "candidates": self.candidates.replace({np.nan: None}).to_dict("records")}


def scan_summary(item: tuple[str, str, PreprocessConfig]) -> dict[str, Any]:
    """LAA-950, lung volume and field-of-view check of one scan (a Ray task; never raises)."""
    from drasclr.imaging.density import laa950
    from drasclr.imaging.io import read_ct
    from drasclr.imaging.resample import clipped_ct
    from drasclr.imaging.segment import segment_lungs

    sid, path, cfg = item
    row: dict[str, Any] = {"subject_id": sid, "input_path": path, "laa950": np.nan,
                           "lung_ml": np.nan, "full_fov": False, "error": None}
    try:
        iso = clipped_ct(read_ct(path), cfg.spacing_mm)
        lungs = segment_lungs(iso, cfg.segment) != 0
        if not lungs.any():
            raise ValueError("no lung found")
        row["laa950"] = laa950(iso.array, lungs)
        row["lung_ml"] = float(lungs.sum() * np.prod(iso.geometry.spacing) / 1000.0)
        row["full_fov"] = bool(not lungs[0].any() and not lungs[-1].any())
    except Exception as err:  # noqa: BLE001 - a bad scan is reported, not fatal
        row["error"] = f"{type(err).__name__}: {err}"
    return row


def candidate_rows(inputs: pd.DataFrame, n_candidates: int) -> pd.DataFrame:
    """At most ``n_candidates`` inputs, evenly spread over the sorted subject ids."""
    table = inputs.sort_values("subject_id", kind="stable").reset_index(drop=True)
    if len(table) <= n_candidates:
        return table
    pos = np.unique(np.round(np.linspace(0, len(table) - 1, n_candidates)).astype(int))
    return table.iloc[pos].reset_index(drop=True)


def decide(summary: pd.DataFrame, n_inputs: int) -> AtlasChoice:
    """Apply the rule of the module docstring to per-scan summaries.

    Raises:
        ValueError: no candidate could be read and segmented.
    """
    ok = summary[summary["error"].isna()]
    if ok.empty:
        raise ValueError("no candidate scan could be read and segmented for the atlas: "
                         + "; ".join(f"{r.subject_id}: {r.error}" for r in summary.itertuples()))
    med = float(ok["lung_ml"].median())
    lo, hi = VOLUME_RANGE[0] * med, VOLUME_RANGE[1] * med
    good = ok[ok["full_fov"] & ok["lung_ml"].between(lo, hi)]
    rule = (f"lungs fully inside the field of view and lung volume {lo:.0f}-{hi:.0f} ml "
            f"(50-150 % of the median)")
    if good.empty:
        good, rule = ok, "no scan passed the field-of-view and volume checks; all readable scans"
    best = good.sort_values(["laa950", "subject_id"], kind="stable").iloc[0]
    reason = (f"{best['subject_id']}: lowest LAA-950 ({best['laa950']:.2%} of lung below -950 HU) "
              f"among {len(good)} of {len(summary)} candidate scans ({rule}); candidates: "
              f"{len(summary)} of {n_inputs} scans, evenly spread over the sorted ids")
    return AtlasChoice(str(best["subject_id"]), str(best["input_path"]), reason, summary)


def choose_atlas_subject(
    inputs: pd.DataFrame,
    config: PreprocessConfig,
    n_candidates: int = 16,
    progress: bool = True,
) -> AtlasChoice:
    """Pick the atlas subject from the scans (``subject_id``, ``input_path``) on Ray."""
    from drasclr.raytools import map_tasks

    cand = candidate_rows(inputs, n_candidates)
    items = [(str(s), str(p), config) for s, p in zip(cand["subject_id"], cand["input_path"])]
    rows = map_tasks(scan_summary, items, num_cpus=1, desc="atlas candidates", progress=progress)
    return decide(pd.DataFrame(rows), len(inputs))
