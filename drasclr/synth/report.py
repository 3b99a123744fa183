"""``drasclr synth report DIR``: label distributions, LAA-950 vs FEV1 and a preview figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from drasclr.fsutil import atomic_write_text
from drasclr.labels import read_labels
from drasclr.synth.config import SynthConfig
from drasclr.tables import read_frame

LESION_COLOURS = {1: "#ff3030", 2: "#ffd21f", 3: "#d23cff", 4: "#35d04a", 5: "#ff8c1a"}
LESION_NAMES = {1: "CLE", 2: "PSE", 3: "PLE", 4: "GGO", 5: "consolidation"}


def r_squared(x: np.ndarray, y: np.ndarray) -> float:
    """In-sample R^2 of an ordinary least-squares line y ~ a + b x."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    design = np.stack([np.ones_like(x), x], axis=1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    return float(1.0 - resid.var() / y.var()) if y.var() > 0 else float("nan")


def cohort_summary(folder: Path) -> dict[str, Any]:
    """Numbers describing a cohort folder (labels, events, LAA-950 association)."""
    labels = read_labels(folder / "labels.parquet", folder / "truth.parquet")
    manifest = read_frame(folder / "manifest.parquet", "synth_manifest")
    boxes = read_frame(folder / "boxes.parquet", "boxes")
    df = labels.merge(manifest[["subject_id", "laa950", "lung_volume_ml", "seconds"]], on="subject_id")
    out: dict[str, Any] = {"n_subjects": len(df), "mode": str(df["mode"].iloc[0])}
    out["boxes"] = boxes["label"].value_counts().to_dict()
    out["seconds_per_subject_median"] = float(df["seconds"].median())
    out["lung_volume_ml_median"] = float(df["lung_volume_ml"].median())
    out["laa950_median"] = float(df["laa950"].median())
    if out["mode"] == "copd":
        y = np.log(df["fev1pp"].astype(float).to_numpy())
        out["r2_logfev1pp_on_laa950"] = r_squared(df["laa950"].to_numpy(), y)
        out["r2_logfev1pp_on_true_emphysema"] = r_squared(df["true_emphysema_fraction"].to_numpy(), y)
        out["r2_logfev1pp_on_functional_burden"] = r_squared(df["functional_burden"].to_numpy(), y)
        out["r2_logfev1fvc_on_laa950"] = r_squared(df["laa950"].to_numpy(), np.log(df["fev1_fvc"].astype(float)))
        out["gold"] = {("PRISm" if int(k) == -1 else f"GOLD {int(k)}"): int(v) for k, v in df["gold"].value_counts().sort_index().items()}
        out["cle_score"] = {int(k): int(v) for k, v in df["cle_score"].value_counts().sort_index().items()}
        out["paraseptal_score"] = {int(k): int(v) for k, v in df["paraseptal_score"].value_counts().sort_index().items()}
        out["exacerbation_rate"] = float(df["exacerbation_history"].astype(float).mean())
        out["event_rate"] = float(df["survival_event"].astype(float).mean())
        out["followup_median_years"] = float(df["survival_time"].astype(float).median())
        out["bode_mean"] = float(df["bode"].astype(float).mean())
    else:
        out["covid_grade"] = {int(k): int(v) for k, v in df["covid_grade"].value_counts().sort_index().items()}
    return out


def _pick_subjects(labels: pd.DataFrame, k: int = 4) -> list[str]:
    """A few contrasting subjects: most CLE, most PSE, most PLE / COVID, and the healthiest."""
    chosen: list[str] = []
    for col in ("true_cle_fraction", "true_pse_fraction", "true_ple_fraction", "true_covid_fraction"):
        ranked = labels.sort_values(col, ascending=False)["subject_id"]
        for sid in ranked:
            if sid not in chosen:
                if labels.set_index("subject_id").loc[sid, col] > 0:
                    chosen.append(sid)
                break
    for sid in labels.sort_values("true_emphysema_fraction")["subject_id"]:
        if len(chosen) >= k:
            break
        if sid not in chosen:
            chosen.append(sid)
    return chosen[:k]


def write_report(folder: str | Path) -> tuple[dict[str, Any], Path]:
    """Compute the summary, write ``report/report.md`` + figures; return (summary, report path)."""
    folder = Path(folder)
    cfg = SynthConfig.load(folder / "synth_config.yaml")
    summary = cohort_summary(folder)
    labels = read_labels(folder / "labels.parquet", folder / "truth.parquet")
    from drasclr.report.cohort import distributions_figure, preview_figure

    rep = folder / "report"
    preview_figure(folder, _pick_subjects(labels), rep / "preview.png")
    distributions_figure(folder, rep / "distributions.png")
    lines = [f"# Synthetic cohort `{folder.name}`", "", f"preset `{cfg.preset}`, mode `{cfg.mode}`, seed {cfg.seed}, "
             f"{summary['n_subjects']} subjects", "", "| quantity | value |", "|---|---|"]
    for k, v in summary.items():
        lines.append(f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |")
    lines += ["", "![preview](preview.png)", "", "![distributions](distributions.png)", ""]
    atomic_write_text(rep / "report.md", "\n".join(lines))
    return summary, rep / "report.md"
