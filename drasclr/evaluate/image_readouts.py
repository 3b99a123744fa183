"""Image-level readout experiments of the evaluation: the paper's Table 2 and Table 7.

* :func:`image_readouts_table` — Table 2: every method's image features, LAA-950 of the image
  and LAA-950 of every landmark patch, read out by cross-validation
  (:func:`drasclr.evaluate.baselines.compare_methods`).
* :func:`random_locations_table` — Table 7: the Table 2 rows of each random-location run next to
  those of its partner (the same encoder at the landmark locations).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from drasclr.evaluate.baselines import LAA_IMAGE, LAA_PATCH, compare_methods
from drasclr.evaluate.config import EvaluateConfig
from drasclr.evaluate.inputs import MethodFeatures
from drasclr.evaluate.readouts import Task


def laa_image_methods(laa_image: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """``{LAA_IMAGE: laa_image}`` when any subject has an image LAA-950, else empty (a store
    written before the manifest column existed has none)."""
    return {LAA_IMAGE: laa_image} if laa_image["laa950"].notna().any() else {}


def image_readouts_table(
    frames: Mapping[str, pd.DataFrame],
    laa_image: pd.DataFrame,
    laa_patch: pd.DataFrame,
    labels: pd.DataFrame,
    tasks: Sequence[Task],
    cfg: EvaluateConfig,
) -> pd.DataFrame:
    """Table 2: image readouts of every method, then LAA-950 (image) and LAA-950 (patch).

    Args:
        frames: method -> image features frame (``subject_id`` + ``f000``..).
        laa_image: ``subject_id``, ``laa950`` (preprocessing's own lung mask).
        laa_patch: patch LAA-950 of every landmark
            (:func:`drasclr.evaluate.baselines.store_patch_laa`).
        labels: the labels table.
        tasks: the readouts the labels allow.
        cfg: evaluation settings.

    Returns:
        method, task, metric, mean, sd, pooled, n, n_folds, note.
    """
    methods = {**frames, **laa_image_methods(laa_image), LAA_PATCH: laa_patch}
    return compare_methods(methods, labels, cfg, tasks)


def random_locations_table(
    table2: pd.DataFrame, methods: Mapping[str, MethodFeatures], fallback: str | None
) -> pd.DataFrame | None:
    """Table 7: each random-location method's Table 2 rows next to its partner's.

    The partner is the method extracted at the landmarks with the same encoder; ``fallback``
    (or none) when there is no such method.

    Returns:
        Table 2's columns with ``locations`` (``landmark`` / ``random``) after ``method``;
        None without random-location methods.
    """
    rand = [n for n, m in methods.items() if m.random_locations]
    if not rand:
        return None
    rows = []
    for r in rand:
        partner = next(
            (
                n
                for n, m in methods.items()
                if not m.random_locations
                and m.encoder_fingerprint == methods[r].encoder_fingerprint
            ),
            fallback,
        )
        for n in (partner, r):
            if n is not None:
                part = table2[table2["method"] == n].copy()
                part.insert(1, "locations", "random" if n == r else "landmark")
                rows.append(part)
    return pd.concat(rows, ignore_index=True).drop_duplicates(["method", "task", "metric"])
