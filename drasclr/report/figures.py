"""Evaluation and pretraining figures (PNG), one function per figure of the paper or the report.

* :func:`readout_bars`: image-level readouts (Table 2) and box detection (Table 5) as bars.
* :func:`survival_plot`: time-dependent C-index per follow-up percentile (Table 3).
* :func:`label_efficiency_plot`: detection metric against the share of labels (Fig. 5).
* :func:`fraction_by_gold_plot`: detected emphysema share of the lung per GOLD stage (Fig. 4).
* :func:`dense_overlay_figure`: coronal CT, truth outline and predicted mask (Fig. 3).
* :func:`pretraining_figure`: pretraining loss and top-1 curves against the step.
* :func:`patch_probe_figure`: patch probe R² per method and lesion target.
* :func:`science_figure`: ``drasclr bench science`` at a glance (patch probe per seed, image
  metrics, the training probe of every pretraining run).

Each function takes a tidy table from the evaluation (or the files it points at) and a PNG path,
draws with :mod:`drasclr.report.plotting` (Agg canvas, never pyplot's global state, so safe in
notebooks and on display-less nodes), writes the file atomically and returns its path (None when
there is nothing to draw).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from drasclr.report.plotting import colours, new_figure, png_bytes, save_png


# ------------------------------------------------------------------------------------ figures
def _probe_map(slice_npz: Mapping[str, Any]) -> bool:
    """Whether a dense slice holds the patch probe's flags (``readout`` starts as
    :data:`drasclr.evaluate.dense_maps.PROBE_READOUT` does; older slices have no readout)."""
    return str(slice_npz.get("readout", "")).startswith("patch probe")


def dense_overlay_figure(npz_files: Sequence[Path], path: Path) -> Path | None:
    """Fig. 3 analogue: per dense subject, coronal CT; CT + truth emphysema outline (CLE orange,
    PSE cyan, PLE magenta); CT + predicted emphysema mask of each method (p > 0.5, CLE red, PSE
    blue; a patch-probe map, whose flags do not tell subtypes apart, in red) with the truth
    outline on top."""
    if not npz_files:
        return None
    data = [dict(np.load(f, allow_pickle=False)) for f in npz_files]
    subjects = list(dict.fromkeys(str(d["subject_id"]) for d in data))
    methods = list(dict.fromkeys(str(d["method"]) for d in data))
    ncols = 2 + len(methods)
    fig = new_figure(2.6 * ncols, 2.5 * len(subjects) + 0.4)
    axes = fig.subplots(len(subjects), ncols, squeeze=False)
    outline = {1: "orange", 2: "cyan", 3: "magenta"}
    for r, sid in enumerate(subjects):
        rows = {str(d["method"]): d for d in data if str(d["subject_id"]) == sid}
        first = next(iter(rows.values()))
        ct = first["ct"].astype(float)
        truth = first["truth"]
        for c in range(ncols):
            ax = axes[r, c]
            ax.imshow(ct, cmap="gray", vmin=-1000, vmax=200, origin="lower", aspect="equal")
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= 1:
                for code, colour in outline.items():
                    m = truth == code
                    if m.any():
                        ax.contour(m.astype(float), levels=[0.5], colors=colour, linewidths=0.6)
            if c >= 2:
                d = rows.get(methods[c - 2])
                if d is None:
                    continue
                prob = d["prob"]
                hit = prob > 0.5
                overlay = np.zeros((*ct.shape, 4))
                cle = hit[0] & (prob[0] >= prob[1])
                pse = hit[1] & ~cle
                if _probe_map(d):
                    cle, pse = hit.any(axis=0), np.zeros_like(cle)
                overlay[cle] = (1.0, 0.1, 0.1, 0.55)
                overlay[pse] = (0.2, 0.4, 1.0, 0.55)
                ax.imshow(overlay, origin="lower", aspect="equal")
                ax.contour(d["lungs"].astype(float), levels=[0.5], colors="yellow",
                           linewidths=0.4, alpha=0.6)
        axes[r, 0].set_ylabel(f"{sid}\ncoronal y={int(first['y_index'])}", fontsize=8)
    axes[0, 0].set_title("CT (coronal)", fontsize=9)
    axes[0, 1].set_title("truth: CLE / PSE / PLE outline", fontsize=9)
    for k, m in enumerate(methods):
        probe = any(_probe_map(d) for d in data if str(d["method"]) == m)
        axes[0, 2 + k].set_title(f"{m}: predicted\n" + ("(red: emphysema, patch probe)" if probe
                                 else "(red CLE, blue PSE)"), fontsize=9)
    fig.suptitle("Dense emphysema predictions vs voxel truth (Fig. 3 analogue)", fontsize=10)
    return save_png(fig, path)


def pretraining_figure(curves: Mapping[str, pd.DataFrame], path: Path) -> Path | None:
    """Loss, local / neighbour loss and top-1 of each pretraining run against the step."""
    curves = {k: v for k, v in curves.items() if not v.empty and "loss" in v}
    if not curves:
        return None
    panels = [c for c in ("loss", "local_loss", "neighbour_loss", "top1",
                          "between_subject_cosine", "probe_r2")
              if any(c in v and v[c].notna().any() for v in curves.values())]
    fig = new_figure(3.6 * len(panels) + 1.6, 3.3)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    for ax, col in zip(axes, panels):
        for k, (name, v) in enumerate(curves.items()):
            if col in v and v[col].notna().any():
                d = v[v[col].notna()]
                ax.plot(d["step"], d[col], color=cmap(k % 10), label=name, linewidth=1.2,
                        marker="o" if col == "probe_r2" else None, markersize=3)
                if col == "top1" and "top1_chance" in d:
                    ax.plot(d["step"], d["top1_chance"], color=cmap(k % 10), linestyle=":",
                            linewidth=0.8)
        ax.set_title({"probe_r2": "patch probe R² (emphysema)",
                      "between_subject_cosine": "between-subject cosine",
                      "top1": "top-1 (dotted: chance)"}.get(col, col.replace("_", " ")),
                     fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.suptitle("Pretraining curves (metrics.jsonl)", fontsize=11)
    return save_png(fig, path)


def patch_probe_figure(probe: pd.DataFrame, path: Path) -> Path:
    """Bars of the patch probe R² (± s.d.) per method and lesion target."""
    targets = list(dict.fromkeys(probe["target"]))
    methods = list(dict.fromkeys(probe["method"]))
    fig = new_figure(1.2 + 1.1 * len(methods), 3.6)
    ax = fig.subplots()
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    width = 0.8 / max(len(targets), 1)
    for k, t in enumerate(targets):
        d = probe[probe["target"] == t].set_index("method").reindex(methods)
        ax.bar(np.arange(len(methods)) + k * width, d["r2"].clip(lower=-0.2), width,
               yerr=d["r2_sd"].fillna(0), color=cmap(k), label=t, capsize=2)
    ax.axhline(0, color="k", linewidth=0.6)
    ax.set_xticks(np.arange(len(methods)) + width * (len(targets) - 1) / 2)
    ax.set_xticklabels(methods, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("out-of-fold R² (clipped at -0.2)")
    ax.set_title("Patch probe: frozen patch features -> true lesion fraction", fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return save_png(fig, path)


METRIC_LABELS = {
    "r2": "R²",
    "accuracy": "accuracy",
    "one_off_accuracy": "1-off accuracy",
    "f1": "F1",
    "precision": "precision",
    "recall": "recall",
    "c_index": "C-index",
}


R2_FLOOR = -1.0
"""Lowest R² shown by :func:`readout_bars`; worse values (tiny folds) run off the axis."""


GOLD_LABELS = {-1: "PRISm", 0: "GOLD 0", 1: "GOLD 1", 2: "GOLD 2", 3: "GOLD 3", 4: "GOLD 4"}


def readout_bars(
    table: pd.DataFrame, path: str | Path, title: str = "Image-level linear readouts"
) -> Path:
    """Grouped bars (mean ± s.d.) per task, one panel per metric, one colour per method.

    Args:
        table: tidy readout table (task, metric, mean, sd; optional ``method`` column).
        path: PNG to write.
        title: figure title.
    """
    t = table.copy()
    if "method" not in t.columns:
        t["method"] = "features"
    metrics = list(dict.fromkeys(t["metric"]))
    methods = list(dict.fromkeys(t["method"]))
    palette = colours(len(methods))
    n_tasks = max(t.groupby("metric")["task"].nunique())
    fig = new_figure(
        max(6.0, 1.6 + 0.55 * n_tasks * len(metrics) + 0.25 * len(methods) * n_tasks), 4.2
    )
    widths = [max(1, t.loc[t["metric"] == m, "task"].nunique()) for m in metrics]
    axes = fig.subplots(1, len(metrics), squeeze=False, gridspec_kw={"width_ratios": widths})[0]
    bar_w = 0.8 / len(methods)
    for ax, metric in zip(axes, metrics):
        sub = t[t["metric"] == metric]
        tasks = list(dict.fromkeys(sub["task"]))
        x = np.arange(len(tasks))
        for k, (method, colour) in enumerate(zip(methods, palette)):
            rows = sub[sub["method"] == method].set_index("task").reindex(tasks)
            ax.bar(
                x + (k - (len(methods) - 1) / 2) * bar_w,
                rows["mean"].to_numpy(float),
                bar_w,
                yerr=np.nan_to_num(rows["sd"].to_numpy(float)),
                capsize=2,
                color=colour,
                label=method,
                edgecolor="black",
                linewidth=0.4,
            )
        ax.set_xticks(x, [s.replace("_", "\n") for s in tasks], fontsize=8)
        cut = metric == "r2" and np.nanmin(
            sub["mean"].to_numpy(float) - np.nan_to_num(sub["sd"].to_numpy(float)), initial=0.0
        ) < R2_FLOOR
        panel = METRIC_LABELS.get(metric, metric) + (f" (axis cut at {R2_FLOOR:g})" if cut else "")
        ax.set_title(panel, fontsize=10)
        ax.axhline(0, color="black", linewidth=0.6)
        if metric != "r2":
            ax.set_ylim(0, 1.05)
        else:
            low = np.nanmin(sub["mean"].to_numpy(float) - np.nan_to_num(sub["sd"].to_numpy(float)))
            if np.isfinite(low) and low < R2_FLOOR:
                ax.set_ylim(R2_FLOOR, 1.0)
        ax.grid(axis="y", alpha=0.3)
    axes[-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.suptitle(title, fontsize=11)
    return save_png(fig, path)


def survival_plot(
    table: pd.DataFrame, path: str | Path, title: str = "Time-dependent concordance"
) -> Path:
    """C-index ± bootstrap s.e. at each follow-up percentile, one line per model (and method).

    Args:
        table: tidy survival table (model, quantile, c_index, se; optional ``method``).
        path: PNG to write.
        title: figure title.
    """
    t = table.copy()
    if "method" in t.columns:
        t["series"] = np.where(
            t["method"] == "clinical", t["model"], t["method"] + ": " + t["model"]
        )
    else:
        t["series"] = t["model"]
    series = list(dict.fromkeys(t["series"]))
    quantiles = sorted(t["quantile"].unique())
    fig = new_figure(7.5, 4.2)
    ax = fig.subplots()
    offsets = np.linspace(-0.15, 0.15, len(series)) if len(series) > 1 else [0.0]
    for s, colour, off in zip(series, colours(len(series)), offsets):
        rows = t[t["series"] == s].set_index("quantile").reindex(quantiles)
        ax.errorbar(
            np.arange(len(quantiles)) + off,
            rows["c_index"].to_numpy(float),
            yerr=np.nan_to_num(rows["se"].to_numpy(float)),
            marker="o",
            capsize=3,
            color=colour,
            label=s,
            linestyle="-" if "+" in s or "imaging" in s else "--",
        )
    ax.set_xticks(np.arange(len(quantiles)), [f"t = {q:g}th pct" for q in quantiles])
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    ax.set_ylabel("C-index (cumulative/dynamic)")
    ax.set_ylim(0.3, 1.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    ax.set_title(title, fontsize=11)
    return save_png(fig, path)


def label_efficiency_plot(
    curve: pd.DataFrame, path: str | Path, title: str = "Label efficiency"
) -> Path:
    """Metric (mean ± s.d. band) against the share of training labels, one line per method.

    Args:
        curve: output of :func:`drasclr.evaluate.detection.label_efficiency` (method, fraction,
            metric, mean, sd); an optional ``task`` column gives one panel per task.
        path: PNG to write.
        title: figure title.
    """
    c = curve.copy()
    if "task" not in c.columns:
        c["task"] = ""
    tasks = list(dict.fromkeys(c["task"]))
    methods = list(dict.fromkeys(c["method"]))
    fig = new_figure(4.2 * len(tasks) + 1.5, 3.8)
    axes = fig.subplots(1, len(tasks), squeeze=False)[0]
    for ax, task in zip(axes, tasks):
        for method, colour in zip(methods, colours(len(methods))):
            rows = c[(c["task"] == task) & (c["method"] == method)].sort_values("fraction")
            x, m, s = (
                rows["fraction"].to_numpy() * 100,
                rows["mean"].to_numpy(float),
                np.nan_to_num(rows["sd"].to_numpy(float)),
            )
            ax.plot(x, m, marker="o", color=colour, label=method)
            ax.fill_between(x, m - s, m + s, color=colour, alpha=0.18)
        metric = c["metric"].iloc[0]
        ax.set_xlabel("training labels used (%)")
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.set_ylim(0, 1.05)
        ax.set_xlim(0, 105)
        ax.grid(alpha=0.3)
        if task:
            ax.set_title(task, fontsize=10)
    axes[-1].legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=11)
    return save_png(fig, path)


def fraction_by_gold_plot(
    data: pd.DataFrame,
    path: str | Path,
    values: Sequence[str] = ("fraction",),
    title: str = "Detected emphysema by GOLD stage",
) -> Path:
    """Box plot of detected emphysema volume fraction per GOLD stage (PRISm first), one panel per
    value column (e.g. ``cle`` and ``pse`` fractions), individual subjects overlaid as points.

    Args:
        data: ``gold`` + value columns (from :func:`drasclr.evaluate.detection.fraction_by_gold`).
        path: PNG to write.
        values: columns to plot.
        title: figure title.
    """
    stages = sorted(int(g) for g in data["gold"].unique())
    fig = new_figure(4.0 * len(values) + 0.8, 3.8)
    axes = fig.subplots(1, len(values), squeeze=False)[0]
    rng = np.random.default_rng(0)
    for ax, col in zip(axes, values):
        groups = [data.loc[data["gold"] == g, col].to_numpy(float) * 100 for g in stages]
        ticks = [f"{GOLD_LABELS.get(g, str(g))}\n(n={len(v)})" for g, v in zip(stages, groups)]
        ax.boxplot(groups, tick_labels=ticks, showfliers=False)
        for k, g in enumerate(groups):
            ax.scatter(
                k + 1 + rng.uniform(-0.12, 0.12, len(g)),
                g,
                s=10,
                alpha=0.6,
                color="tab:blue",
                zorder=3,
            )
        ax.set_ylabel("detected emphysema (% of lung)")
        ax.set_title(col, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle(title, fontsize=11)
    return save_png(fig, path)


def sweep_figure(table: pd.DataFrame, metric: str) -> bytes:
    """Bar chart of the final metric per trial (PNG bytes)."""
    params = [c for c in table.columns if c.startswith("param_")]
    names = [", ".join(f"{c[6:]}={r[c]}" for c in params) for _, r in table.iterrows()]
    fig = new_figure(max(6, 1.4 * len(names)), 4, dpi=100, constrained=False)
    ax = fig.subplots()
    vals = table[metric].to_numpy(dtype=float)
    ax.bar(np.arange(len(vals)), vals, color="steelblue")
    ax.set_xticks(np.arange(len(vals)), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(metric)
    ax.set_title(f"sweep: {metric} per trial (final evaluation; early-stopped trials at their "
                 "last rung)", fontsize=9)
    fig.tight_layout()
    return png_bytes(fig, dpi=100)


#: Axis labels of image metrics in :func:`science_figure` (others show their name).
SCIENCE_IMAGE_LABELS = {"log_fev1pp_r2": "log FEV1pp R²", "log_fev1_fvc_r2": "log FEV1/FVC R²",
                        "gold_acc": "GOLD acc.", "cle_acc": "CLE acc.",
                        "exacerbation_acc": "exacerbation acc."}


def science_figure(rows: Sequence[Mapping[str, Any]], seeds: Mapping[str, Sequence[float]],
                   curves: Mapping[str, pd.DataFrame], path: Path, *,
                   image_metrics: Sequence[str], ceiling: str = "LAA-950 (patch)",
                   image_baseline: str = "LAA-950 (image)") -> Path:
    """Three panels: the patch probe per method (one dot per pretraining seed, mean ± s.d., the
    ``ceiling`` row as a dashed line); the five image metrics per method (mean ± s.d.); the
    training-time patch probe of each pretraining run against the step.

    Args:
        rows: ``science.json``'s rows (``method``, ``metric``, ``mean``, ``sd``).
        seeds: method -> patch probe per pretraining seed.
        curves: run name (``"<method> s<seed>"``) -> frame with ``step`` and ``probe_r2``.
        path: the PNG to write.
        image_metrics: the metrics of the middle panel.
        ceiling: the row drawn as a line on the patch-probe panel.
        image_baseline: the baseline row added to the image-metrics panel.
    """
    stat = {(r["method"], r["metric"]): (float(r["mean"]), float(r["sd"])) for r in rows}
    methods = list(seeds)
    cols = dict(zip([*methods, image_baseline], colours(len(methods) + 1)))
    fig = new_figure(15.0, 4.2)
    ax_p, ax_i, ax_c = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.0, 1.5, 1.3]})
    for k, m in enumerate(methods):
        vals = np.asarray(seeds[m], dtype=np.float64)
        ax_p.scatter(np.full(vals.size, k) + np.linspace(-0.12, 0.12, vals.size), vals,
                     color=cols[m], s=18, zorder=3)
        mean, sd = stat.get((m, "patch_lesion_r2"), (np.nan, np.nan))
        ax_p.errorbar(k + 0.25, mean, yerr=sd, fmt="_", color=cols[m], markersize=12, capsize=3)
    top = stat.get((ceiling, "patch_lesion_r2"), (np.nan, np.nan))[0]
    if np.isfinite(top):
        ax_p.axhline(top, color="k", linestyle="--", linewidth=0.9, label=f"{ceiling} {top:.3f}")
        ax_p.legend(fontsize=8, frameon=False, loc="center right")
    ax_p.set_xticks(range(len(methods)))
    ax_p.set_xticklabels(methods, rotation=20, ha="right", fontsize=8)
    ax_p.set_ylabel("patch probe R² (emphysema fraction)")
    ax_p.set_title("Patch probe: dots per seed, bar mean ± s.d.", fontsize=10)
    ax_p.grid(axis="y", alpha=0.3)
    shown = [m for m in [*methods, image_baseline]
             if any(np.isfinite(stat.get((m, k), (np.nan,))[0]) for k in image_metrics)]
    width = 0.8 / max(len(shown), 1)
    for j, m in enumerate(shown):
        ms = [stat.get((m, k), (np.nan, np.nan)) for k in image_metrics]
        ax_i.errorbar(np.arange(len(ms)) + (j - (len(shown) - 1) / 2) * width,
                      [v[0] for v in ms], yerr=[v[1] for v in ms], fmt="o", color=cols[m],
                      markersize=4, capsize=2, label=m)
    ax_i.set_xticks(range(len(image_metrics)))
    ax_i.set_xticklabels([SCIENCE_IMAGE_LABELS.get(k, k) for k in image_metrics], fontsize=8)
    ax_i.set_title("Image-level readouts (mean ± s.d.)", fontsize=10)
    ax_i.legend(fontsize=7, frameon=False, loc="lower right")
    ax_i.grid(axis="y", alpha=0.3)
    for run, c in curves.items():
        if c.empty or "probe_r2" not in c:
            continue
        method, _, seed = run.rpartition(" s")
        ax_c.plot(c["step"], c["probe_r2"], color=cols.get(method, "grey"), linewidth=1.1,
                  marker="o", markersize=2.5, linestyle="-" if seed in ("", "0") else "--",
                  label=run)
    ax_c.set_ylim(bottom=max(-0.2, ax_c.get_ylim()[0]))
    ax_c.set_xlabel("step")
    ax_c.set_ylabel("training-time probe R²")
    ax_c.set_title("During pretraining (cheap probe; equal wall-clock)", fontsize=10)
    ax_c.grid(alpha=0.3)
    if curves:
        ax_c.legend(fontsize=7, frameon=False, loc="lower right")
    fig.suptitle("drasclr bench science", fontsize=11)
    return save_png(fig, path)
