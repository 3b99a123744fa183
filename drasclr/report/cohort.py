"""Figures of a synthetic cohort's report (``drasclr synth report``): a slice preview with the
truth overlays and the label distributions. Read from the cohort folder, drawn with
:mod:`drasclr.report.plotting`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from drasclr.labels import read_labels
from drasclr.report.plotting import new_figure, save_png
from drasclr.synth.report import LESION_COLOURS, LESION_NAMES, r_squared
from drasclr.tables import read_frame

__all__ = ["distributions_figure", "preview_figure"]


def preview_figure(folder: Path, subject_ids: list[str], path: Path) -> Path:
    """Axial and coronal slices of a few subjects with lung outline and lesion overlays."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from drasclr.imaging.io import read_ct, read_mask

    manifest = read_frame(folder / "manifest.parquet", "synth_manifest").set_index("subject_id")
    labels = read_labels(folder / "labels.parquet", folder / "truth.parquet").set_index(
        "subject_id"
    )
    fig = new_figure(4.2 * len(subject_ids), 8.4, dpi=100, constrained=False)
    axes = fig.subplots(2, len(subject_ids), squeeze=False)
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
            (
                ct[:, y_mid, :],
                lungs[:, y_mid, :],
                lesions[:, y_mid, :],
                sz / sx,
                "lower",
                f"coronal y={y_mid}",
            ),
        ]
        for r, (img, lung, les, aspect, origin, title) in enumerate(views):
            ax = axes[r, col]
            ax.imshow(
                img,
                cmap="gray",
                vmin=-1350,
                vmax=150,
                aspect=aspect,
                origin=origin,
                interpolation="nearest",
            )
            ax.contour(lung > 0, levels=[0.5], colors=["#3fa9ff"], linewidths=0.6)
            masked = np.ma.masked_where(les == 0, les)
            ax.imshow(
                masked,
                cmap=cmap,
                vmin=0,
                vmax=5,
                alpha=0.55,
                aspect=aspect,
                origin=origin,
                interpolation="nearest",
            )
            ax.set_xticks([])
            ax.set_yticks([])
            lab = labels.loc[sid]
            if lab["mode"] == "copd":
                gold = "PRISm" if lab["gold"] == -1 else int(lab["gold"])
                desc = (
                    f"GOLD {gold}, FEV1pp {lab['fev1pp']:.0f}, "
                    f"CLE {lab['true_cle_fraction']:.1%} PSE {lab['true_pse_fraction']:.1%} "
                    f"PLE {lab['true_ple_fraction']:.1%}"
                )
            else:
                desc = (
                    f"grade {int(lab['covid_grade'])}, involvement {lab['true_covid_fraction']:.0%}"
                )
            ax.set_title(f"{sid} {title}\n{desc}", fontsize=8)
            if origin == "upper":
                ax.text(
                    2, img.shape[0] - 4, "R", color="w", fontsize=8
                )  # patient right = low x (LPS)
    handles = [Patch(color=LESION_COLOURS[i], label=LESION_NAMES[i]) for i in range(1, 6)]
    handles.append(Patch(color="#3fa9ff", label="lung outline"))
    fig.legend(handles=handles, loc="lower center", ncol=6, fontsize=9)
    fig.suptitle(
        f"{folder.name}: synthetic chest CT (window -1350..150 HU), truth overlays", fontsize=11
    )
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    return save_png(fig, path, dpi=110)


def distributions_figure(folder: Path, path: Path) -> Path:
    """Histograms of the main labels and the LAA-950 vs log FEV1pp scatter."""
    labels = read_labels(folder / "labels.parquet", folder / "truth.parquet")
    manifest = read_frame(folder / "manifest.parquet", "synth_manifest")
    df = labels.merge(manifest[["subject_id", "laa950"]], on="subject_id")
    if df["mode"].iloc[0] == "copd":
        fig = new_figure(16, 3.6, dpi=100, constrained=False)
        axes = fig.subplots(1, 4)
        y = np.log(df["fev1pp"].astype(float))
        axes[0].scatter(df["laa950"] * 100, y, s=8, c=df["true_upper_fraction"], cmap="coolwarm_r")
        axes[0].set_xlabel("LAA-950 (% of lung)")
        axes[0].set_ylabel("log FEV1pp")
        axes[0].set_title(
            f"R² = {r_squared(df['laa950'], y):.2f} (colour: share of emphysema in upper zones)",
            fontsize=8,
        )
        gold = df["gold"].astype(int).value_counts().sort_index()
        axes[1].bar(
            ["PRISm" if g == -1 else str(g) for g in gold.index], gold.values, color="#4c72b0"
        )
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
        fig = new_figure(8, 3.6, dpi=100, constrained=False)
        axes = fig.subplots(1, 2)
        g = df["covid_grade"].astype(int).value_counts().sort_index()
        axes[0].bar(g.index.astype(str), g.values, color="#55a868")
        axes[0].set_title("COVID-like grade")
        axes[1].hist(df["true_covid_fraction"] * 100, bins=20)
        axes[1].set_title("involvement (% of lung)")
    fig.tight_layout()
    return save_png(fig, path, dpi=100)
