"""The headline numbers of an evaluation (``results.json["headline"]``, read by the report).

:func:`headline` condenses the tables: per image task the best method and every method's mean,
the survival C-index of the imaging and clinical rows, per box task the best F1, and the Spearman
correlation of each method's detected emphysema fraction (and of image LAA-950) with the true
fraction: the patch probe's when the table has it, else the box readout's
(``fraction_readout`` says which).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from drasclr.evaluate.baselines import LAA_IMAGE
from drasclr.evaluate.patch_probe import PROBE_SHARE_SUFFIX


def headline(
    table2: pd.DataFrame,
    table3: pd.DataFrame | None,
    table5: pd.DataFrame | None,
    fractions: pd.DataFrame | None,
    enc_names: list[str],
) -> dict[str, Any]:
    """Per task, the best method and every method's mean (the report's reading uses it).

    Args:
        table2: image readouts (Table 2).
        table3: survival (Table 3) or None.
        table5: box detection (Table 5) or None.
        fractions: detected fraction per subject or None.
        enc_names: methods with an encoder (their detected fractions are correlated).
    """
    out: dict[str, Any] = {"image": {}, "survival": {}, "boxes": {}, "fraction_spearman": {}}
    for (task, metric), grp in table2.groupby(["task", "metric"], sort=False):
        g = grp.dropna(subset=["mean"])
        if g.empty:
            continue
        best = g.loc[g["mean"].idxmax()]
        out["image"][f"{task} {metric}"] = {
            "best": str(best["method"]),
            "means": dict(zip(g["method"], g["mean"].astype(float))),
        }
    if table3 is not None:
        img = table3[table3["model"] == "imaging"]
        means = img.groupby("method")["c_index"].mean()
        out["survival"] = {k: float(v) for k, v in means.items()}
        clin = table3[table3["group"] == "clinical"].groupby(["method", "model"], sort=False)
        out["survival_clinical"] = {  # one entry per subject set the clinical rows were fitted on
            (model if method == "clinical" else f"{model} [{method}]"): float(v)
            for (method, model), v in clin["c_index"].mean().items()
        }
    if table5 is not None:
        for (task, metric), grp in table5.groupby(["task", "metric"], sort=False):
            if metric != "f1":
                continue
            g = grp.dropna(subset=["mean"])
            if g.empty:
                continue
            key = g["method"] + np.where(g["readout"] == "fine-tuned", " (fine-tuned)", "")
            out["boxes"][f"{task} f1"] = {
                "best": str(key.loc[g["mean"].idxmax()]),
                "means": dict(zip(key, g["mean"].astype(float))),
            }
    if fractions is not None and "true_emphysema_fraction" in fractions:
        # the patch probe's flags when the cohort had voxel truth to fit them, else the box's
        probe = any(f"{n}{PROBE_SHARE_SUFFIX}" in fractions for n in enc_names)
        out["fraction_readout"] = "patch probe" if probe else "box readout"
        for name in enc_names:
            col = f"{name}{PROBE_SHARE_SUFFIX}" if probe else f"{name}: emphysema"
            if col in fractions:
                ok = fractions[[col, "true_emphysema_fraction"]].dropna()
                if len(ok) >= 3 and ok[col].nunique() > 1:
                    rho = spearmanr(ok[col], ok["true_emphysema_fraction"]).statistic
                    out["fraction_spearman"][name] = float(rho)
        ok = fractions[["laa950", "true_emphysema_fraction"]].dropna()
        if len(ok) >= 3 and ok["laa950"].nunique() > 1:
            out["fraction_spearman"][LAA_IMAGE] = float(
                spearmanr(ok["laa950"], ok["true_emphysema_fraction"]).statistic
            )
    return out
