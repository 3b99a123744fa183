"""Evaluation figures (PNG): readout bars, survival C-index, label efficiency, fraction per GOLD.

Figures are drawn on ``matplotlib.figure.Figure`` with the Agg canvas directly, so nothing here
touches pyplot's global state or switches the caller's backend (safe in notebooks and on
display-less nodes). Each function takes a tidy table from this package and a PNG path, writes the
file atomically and returns the path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from drasclr.fsutil import atomic_path

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


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _colours(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


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
    colours = _colours(len(methods))
    n_tasks = max(t.groupby("metric")["task"].nunique())
    fig = _figure(
        max(6.0, 1.6 + 0.55 * n_tasks * len(metrics) + 0.25 * len(methods) * n_tasks), 4.2
    )
    widths = [max(1, t.loc[t["metric"] == m, "task"].nunique()) for m in metrics]
    axes = fig.subplots(1, len(metrics), squeeze=False, gridspec_kw={"width_ratios": widths})[0]
    bar_w = 0.8 / len(methods)
    for ax, metric in zip(axes, metrics):
        sub = t[t["metric"] == metric]
        tasks = list(dict.fromkeys(sub["task"]))
        x = np.arange(len(tasks))
        for k, (method, colour) in enumerate(zip(methods, colours)):
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
    return _save(fig, path)


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
    fig = _figure(7.5, 4.2)
    ax = fig.subplots()
    offsets = np.linspace(-0.15, 0.15, len(series)) if len(series) > 1 else [0.0]
    for s, colour, off in zip(series, _colours(len(series)), offsets):
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
    return _save(fig, path)


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
    fig = _figure(4.2 * len(tasks) + 1.5, 3.8)
    axes = fig.subplots(1, len(tasks), squeeze=False)[0]
    for ax, task in zip(axes, tasks):
        for method, colour in zip(methods, _colours(len(methods))):
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
    return _save(fig, path)


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
    fig = _figure(4.0 * len(values) + 0.8, 3.8)
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
    return _save(fig, path)
