"""``drasclr synth report DIR``: label distributions, LAA-950 vs FEV1 and a preview figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from drasclr.fsutil import atomic_path, atomic_write_text
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


def preview_figure(folder: Path, subject_ids: list[str], path: Path) -> Path:
    """Axial and coronal slices of a few subjects with lung outline and lesion overlays."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from drasclr.imaging.io import read_ct, read_mask

    manifest = read_frame(folder / "manifest.parquet", "synth_manifest").set_index("subject_id")
    labels = read_labels(folder / "labels.parquet", folder / "truth.parquet").set_index("subject_id")
    fig, axes = plt.subplots(2, len(subject_ids), figsize=(4.2 * len(subject_ids), 8.4), squeeze=False)
    cmap = ListedColormap(["none"] + [LESION_COLOURS[i] for i in range(1, 6)])
    for col, sid in enumerate(subject_ids):
        row = manifest.loc[sid]
        ct = read_ct(folder / row["image"]).array
        lungs = read_mask(folder / row["lungs"]).array
        lesions = read_mask(folder / row["lesions"]).array
        sx, sy, sz = row["spacing"]
        zz, yy, _ = np.nonzero(lungs)
        z_mid = int(np.percentile(zz, 60))
        y_mid = int(np.median(yy))
        views = [
            (ct[z_mid], lungs[z_mid], lesions[z_mid], sy / sx, "upper", f"axial z={z_mid}"),
            (ct[:, y_mid, :], lungs[:, y_mid, :], lesions[:, y_mid, :], sz / sx, "lower", f"coronal y={y_mid}"),
        ]
        for r, (img, lung, les, aspect, origin, title) in enumerate(views):
            ax = axes[r, col]
            ax.imshow(img, cmap="gray", vmin=-1350, vmax=150, aspect=aspect, origin=origin, interpolation="nearest")
            ax.contour(lung > 0, levels=[0.5], colors=["#3fa9ff"], linewidths=0.6)
            masked = np.ma.masked_where(les == 0, les)
            ax.imshow(masked, cmap=cmap, vmin=0, vmax=5, alpha=0.55, aspect=aspect, origin=origin, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            lab = labels.loc[sid]
            if lab["mode"] == "copd":
                desc = (f"GOLD {'PRISm' if lab['gold'] == -1 else int(lab['gold'])}, FEV1pp {lab['fev1pp']:.0f}, "
                        f"CLE {lab['true_cle_fraction']:.1%} PSE {lab['true_pse_fraction']:.1%} PLE {lab['true_ple_fraction']:.1%}")
            else:
                desc = f"grade {int(lab['covid_grade'])}, involvement {lab['true_covid_fraction']:.0%}"
            ax.set_title(f"{sid} {title}\n{desc}", fontsize=8)
            if origin == "upper":
                ax.text(2, img.shape[0] - 4, "R", color="w", fontsize=8)  # patient right = low x (LPS)
    handles = [Patch(color=LESION_COLOURS[i], label=LESION_NAMES[i]) for i in range(1, 6)]
    handles.append(Patch(color="#3fa9ff", label="lung outline"))
    fig.legend(handles=handles, loc="lower center", ncol=6, fontsize=9)
    fig.suptitle(f"{folder.name}: synthetic chest CT (window -1350..150 HU), truth overlays", fontsize=11)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def distributions_figure(folder: Path, path: Path) -> Path:
    """Histograms of the main labels and the LAA-950 vs log FEV1pp scatter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = read_labels(folder / "labels.parquet", folder / "truth.parquet")
    manifest = read_frame(folder / "manifest.parquet", "synth_manifest")
    df = labels.merge(manifest[["subject_id", "laa950"]], on="subject_id")
    if df["mode"].iloc[0] == "copd":
        fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
        y = np.log(df["fev1pp"].astype(float))
        axes[0].scatter(df["laa950"] * 100, y, s=8, c=df["true_upper_fraction"], cmap="coolwarm_r")
        axes[0].set_xlabel("LAA-950 (% of lung)")
        axes[0].set_ylabel("log FEV1pp")
        axes[0].set_title(f"R² = {r_squared(df['laa950'], y):.2f} (colour: share of emphysema in upper zones)", fontsize=8)
        gold = df["gold"].astype(int).value_counts().sort_index()
        axes[1].bar(["PRISm" if g == -1 else str(g) for g in gold.index], gold.values, color="#4c72b0")
        axes[1].set_title("GOLD stage")
        cle = df["cle_score"].astype(int).value_counts().sort_index()
        axes[2].bar(cle.index.astype(str), cle.values, color="#dd8452")
        axes[2].set_title("CLE visual score")
        t = df["survival_time"].astype(float)
        e = df["survival_event"].astype(int)
        axes[3].hist([t[e == 1], t[e == 0]], bins=20, stacked=True, label=["death", "censored"])
        axes[3].legend(fontsize=8)
        axes[3].set_title("follow-up (years)")
    else:
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
        g = df["covid_grade"].astype(int).value_counts().sort_index()
        axes[0].bar(g.index.astype(str), g.values, color="#55a868")
        axes[0].set_title("COVID-like grade")
        axes[1].hist(df["true_covid_fraction"] * 100, bins=20)
        axes[1].set_title("involvement (% of lung)")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def write_report(folder: str | Path) -> tuple[dict[str, Any], Path]:
    """Compute the summary, write ``report/report.md`` + figures; return (summary, report path)."""
    folder = Path(folder)
    cfg = SynthConfig.load(folder / "synth_config.yaml")
    summary = cohort_summary(folder)
    labels = read_labels(folder / "labels.parquet", folder / "truth.parquet")
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
