"""The run report: Markdown tables shaped like the paper's, PNG figures and a generated reading.

:func:`write_report` takes a run folder (``drasclr demo`` layout: ``evaluation/``, ``store/``,
``models/<m>/metrics.jsonl``, ``timings.json``) or an evaluation folder alone, and writes::

    <out>/report.md
    <out>/figures/readouts.png          image-level readouts (Table 2)
    <out>/figures/patch_probe.png       patch probe R² per lesion target
    <out>/figures/survival.png          time-dependent C-index (Table 3)
    <out>/figures/box_detection.png     box readouts (Table 5)
    <out>/figures/label_efficiency.png  F1 vs share of labels (Fig. 5)
    <out>/figures/fraction_by_gold.png  detected emphysema per GOLD stage (Fig. 4)
    <out>/figures/dense_overlays.png    coronal CT, truth outline, predicted mask (Fig. 3)
    <out>/figures/pretraining.png       pretraining loss curves (when metrics.jsonl exist)
    <out>/figures/qc_sheet.png          the preprocessing QC sheet (copied from the store)
    <out>/figures/sweep_<name>.png      one per Ray Tune sweep of the run (:func:`sweep_section`)

Each figure is drawn only when its table exists (figures: :mod:`drasclr.report.figures`).
Numbers come only from the evaluation's tables; the "reading" paragraph is generated from them
and says where DrasCLR does not beat a baseline. :class:`ReportError` when no evaluation results
are found.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from drasclr.evaluate.patch_probe import PROBE_SHARE_SUFFIX, WITH_LAA950_SUFFIX
from drasclr.fsutil import atomic_write_text
from drasclr.report.figures import dense_overlay_figure, patch_probe_figure, pretraining_figure

RESULTS_FILE = "results.json"


FIGURES = "figures"


class ReportError(RuntimeError):
    """No evaluation results where the report looks for them."""


# ------------------------------------------------------------------------------------ inputs
def find_evaluation(path: str | Path) -> tuple[Path, Path | None]:
    """``(evaluation folder, run folder or None)`` for a run folder or an evaluation folder."""
    p = Path(path)
    if (p / RESULTS_FILE).is_file():
        run = p.parent if (p.parent / "pipeline.yaml").is_file() else None
        return p, run
    if (p / "evaluation" / RESULTS_FILE).is_file():
        return p / "evaluation", p
    raise ReportError(
        f"{p}: no {RESULTS_FILE} here or in {p}/evaluation; run `drasclr evaluate` first"
    )


def _table(eval_dir: Path, name: str) -> pd.DataFrame | None:
    path = eval_dir / f"{name}.parquet"
    return pd.read_parquet(path) if path.is_file() else None


def read_metrics(path: str | Path, event: str = "train") -> pd.DataFrame:
    """The ``event`` records (``train``, ``probe``, ...) of a ``metrics.jsonl`` as a frame, one
    row a step (the last record of a step a resumed run wrote twice); empty when there are none."""
    rows = []
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("event") == event and "step" in rec:
            rows.append(rec)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame = frame.drop_duplicates("step", keep="last").sort_values("step")
    return frame


def training_curves(path: str | Path) -> pd.DataFrame:
    """A run's ``train`` records with its training-time probe (``probe`` records: ``probe_r2``
    and the other ``probe_*`` columns) joined on the step; a probe step without a train record
    keeps its own row, so the probe curve is whole whatever ``log_every`` was."""
    train = read_metrics(path)
    probe = read_metrics(path, event="probe")
    if probe.empty:
        return train
    probe = probe[["step"] + [c for c in probe.columns if c.startswith("probe_")]]
    if train.empty:
        return probe.reset_index(drop=True)
    return train.merge(probe, on="step", how="outer").sort_values("step").reset_index(drop=True)


# ------------------------------------------------------------------------------------ markdown
def markdown_table(frame: pd.DataFrame, index: str | None = None) -> str:
    """A GitHub Markdown table (index as first column when named)."""
    f = frame.reset_index() if index is not None else frame
    if index is not None and f.columns[0] != index:
        f = f.rename(columns={f.columns[0]: index})
    cols = [str(c) for c in f.columns]

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "–" if not np.isfinite(v) else f"{v:.3g}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in f.itertuples(index=False)]
    return "\n".join(lines)


def _mean_sd(mean: float, sd: float, digits: int = 2, scale: float = 1.0) -> str:
    if not np.isfinite(mean):
        return "–"
    d = 1 if scale == 100.0 else digits
    s = f"{mean * scale:.{d}f}"
    return s + (f" ± {sd * scale:.{d}f}" if np.isfinite(sd) else "")


def wide_readouts(table: pd.DataFrame, row_cols: Sequence[str] = ("method",)) -> pd.DataFrame:
    """Tidy readout table → one row per method (and readout), one column per task/metric;
    accuracies and F1 in percent, R² as is, cells "mean ± s.d." over folds."""
    t = table.copy()
    t["cell"] = [
        _mean_sd(m, s, 2, 1.0 if metric == "r2" else 100.0)
        for m, s, metric in zip(t["mean"], t["sd"], t["metric"])
    ]
    short = {"accuracy": "acc", "one_off_accuracy": "1-off", "r2": "R²", "f1": "F1",
             "precision": "prec.", "recall": "recall"}
    t["column"] = t["task"] + " " + t["metric"].map(lambda m: short.get(m, m))
    key = list(row_cols)
    t["_row"] = t[key].astype(str).agg(" / ".join, axis=1)
    order_rows = list(dict.fromkeys(t["_row"]))
    order_cols = list(dict.fromkeys(t["column"]))
    wide = t.pivot(index="_row", columns="column", values="cell")
    wide = wide.reindex(index=order_rows, columns=order_cols)
    wide.index.name = " / ".join(key)
    return wide


def survival_wide(table: pd.DataFrame) -> pd.DataFrame:
    """Survival table → rows (method, model), columns C-index ± s.e. per follow-up percentile."""
    t = table.copy()
    t["cell"] = [_mean_sd(c, s, 3) for c, s in zip(t["c_index"], t["se"])]
    t["row"] = np.where(t["method"] == "clinical", "clinical: " + t["model"],
                        t["method"] + ": " + t["model"])
    t["column"] = "C-index @ " + t["quantile"].map(lambda q: f"{q:g}th pct")
    rows = list(dict.fromkeys(t["row"]))
    wide = t.pivot(index="row", columns="column", values="cell").reindex(rows)
    wide.index.name = "method: model"
    return wide


#: A dense map flagging more than this share of the lung gets a warning next to its F1.
FLAG_WARN_SHARE: float = 0.5


def flagged_share(overlap: pd.DataFrame | None) -> dict[str, float]:
    """Mean share of the lung each method's dense map flags (from ``dense_overlap``)."""
    if overlap is None or overlap.empty or "detected_fraction" not in overlap:
        return {}
    return {str(k): float(v) for k, v in overlap.groupby("method")["detected_fraction"].mean()
            .items()}


def probe_wide(probe: pd.DataFrame) -> pd.DataFrame:
    """method (index) x (target R², target AUC) cells ``mean ± sd``."""
    out = pd.DataFrame(index=list(dict.fromkeys(probe["method"])))
    for t in dict.fromkeys(probe["target"]):
        d = probe[probe["target"] == t].set_index("method")
        out[f"{t} R²"] = [_mean_sd(d.loc[m, "r2"], d.loc[m, "r2_sd"]) for m in out.index]
        out[f"{t} AUC"] = [_mean_sd(d.loc[m, "auc"], d.loc[m, "auc_sd"]) for m in out.index]
    return out.rename_axis("method")


def powered_wide(powered: pd.DataFrame) -> pd.DataFrame:
    """method (index) x metric cells ``mean ± sd`` of the powered image readouts."""
    table = powered.pivot_table(index="method", columns="metric", values=["mean", "sd"],
                                sort=False)
    out = pd.DataFrame(index=list(dict.fromkeys(powered["method"])))
    for metric in dict.fromkeys(powered["metric"]):
        out[metric] = [_mean_sd(table.loc[m, ("mean", metric)], table.loc[m, ("sd", metric)])
                       if ("mean", metric) in table.columns else "" for m in out.index]
    return out.rename_axis("method")


def primary_name(results: Mapping[str, Any]) -> str:
    """The report's primary method."""
    return str(results.get("primary") or "DrasCLR")


def probe_reading(probe: pd.DataFrame, primary: str) -> str:
    """One plain sentence: did pretraining beat the random encoder on the patch probe?"""
    d = probe[probe["target"] == "emphysema"].set_index("method")
    if primary not in d.index or "random encoder" not in d.index:
        return "Patch probe: the primary method or the random encoder is missing."
    a, r = d.loc[primary], d.loc["random encoder"]
    margin = max(float(a["r2_sd"]), float(r["r2_sd"]))
    if a["r2"] - r["r2"] > margin:
        verdict = "**beat** the random encoder"
    elif r["r2"] - a["r2"] > margin:
        verdict = "was **worse** than the random encoder"
    else:
        verdict = "was **not distinguishable** from the random encoder"
    laa = (f"; LAA-950 (patch) {d.loc['LAA-950 (patch)', 'r2']:.3f}"
           if "LAA-950 (patch)" in d.index else "")
    return (f"Patch probe (emphysema fraction, out-of-fold R²): pretraining {verdict} — "
            f"{primary} {a['r2']:.3f} ± {a['r2_sd']:.3f} vs random encoder {r['r2']:.3f} ± "
            f"{r['r2_sd']:.3f}{laa}.{_best_other(d, primary)}{beyond_density(d, primary)}")


def beyond_density(d: pd.DataFrame, primary: str) -> str:
    """A sentence on what ``primary``'s features add to LAA-950 (patch) on the emphysema probe,
    next to what the random encoder's add (the check that extra columns alone do not help);
    empty when the table lacks those rows. ``d``: the emphysema rows indexed by method."""
    names = ("LAA-950 (patch)", primary + WITH_LAA950_SUFFIX,
             "random encoder" + WITH_LAA950_SUFFIX)
    if not all(n in d.index for n in names):
        return ""
    laa, mine, rand = (d.loc[n] for n in names)
    gain = mine["r2"] - laa["r2"]
    clear = gain - (rand["r2"] - laa["r2"]) > max(float(mine["r2_sd"]), float(rand["r2_sd"]))
    verdict = "adds to" if clear and gain > 0 else "adds nothing measurable to"
    return (f" Beyond density: {primary} {verdict} LAA-950 (patch) — with its features beside "
            f"LAA-950, {mine['r2']:.3f} ± {mine['r2_sd']:.3f} vs LAA-950 alone "
            f"{laa['r2']:.3f} ({gain:+.3f}); the random encoder's features beside it give "
            f"{rand['r2']:.3f} ({rand['r2'] - laa['r2']:+.3f}).")


def _best_other(d: pd.DataFrame, primary: str) -> str:
    """A sentence on the best other pretrained encoder where it is ahead of ``primary`` (density
    scores and the random encoder excluded); empty when none is."""
    others = d.drop(index=[primary, "random encoder"], errors="ignore")
    others = others[~others.index.str.startswith("LAA-")
                    & ~others.index.str.endswith(WITH_LAA950_SUFFIX)]
    if others.empty:
        return ""
    name = str(others["r2"].idxmax())
    b, a = others.loc[name], d.loc[primary]
    if b["r2"] <= a["r2"]:
        return ""
    clear = b["r2"] - a["r2"] > max(float(a["r2_sd"]), float(b["r2_sd"]))
    how = "by more than the larger spread" if clear else "within the spread"
    return (f" {primary} is not the best pretrained encoder here: {name} "
            f"{b['r2']:.3f} ± {b['r2_sd']:.3f} is ahead of it {how}.")


# ------------------------------------------------------------------------------------ reading
def _fmt(v: float, pct: bool = False) -> str:
    if v is None or not np.isfinite(v):
        return "n/a"
    return f"{v * 100:.1f} %" if pct else f"{v:.3f}"


def reading(results: Mapping[str, Any], table2: pd.DataFrame | None,
            table5: pd.DataFrame | None, rule: pd.DataFrame | None,
            table7: pd.DataFrame | None, overlap: pd.DataFrame | None = None) -> list[str]:
    """Sentences read from the numbers: wins, ties within one s.d., and losses of DrasCLR.

    The 25 % rule's F1 is only given next to the share of the lung its map flags (``overlap``),
    with a warning when that is most of the lung.
    """
    primary = results.get("primary") or "DrasCLR"
    head = results.get("headline", {})
    out: list[str] = []
    if table2 is not None and not table2.empty:
        wins, ties, losses = [], [], []
        for (task, metric), g in table2.groupby(["task", "metric"], sort=False):
            g = g.dropna(subset=["mean"]).set_index("method")
            if primary not in g.index or len(g) < 2:
                continue
            mine = g.loc[primary]
            others = g.drop(index=primary)
            best_other = others["mean"].idxmax()
            b = others.loc[best_other]
            label = f"{task} ({metric})"
            if np.isclose(mine["mean"], b["mean"]):
                ties.append(f"{label} {_fmt(mine['mean'])} with {best_other}")
            elif mine["mean"] > b["mean"]:
                wins.append(f"{label} {_fmt(mine['mean'])} vs next {best_other} {_fmt(b['mean'])}")
            else:
                within = np.isfinite(mine["sd"]) and b["mean"] - mine["mean"] <= mine["sd"]
                losses.append(
                    f"{label}: {best_other} {_fmt(b['mean'])} vs {primary} {_fmt(mine['mean'])}"
                    + (" (within one s.d.)" if within else "")
                )
        if wins:
            out.append(f"**Image-level readouts.** {primary} is best on " + "; ".join(wins) + ".")
        r2 = table2[table2["metric"] == "r2"].groupby("task")["mean"].max()
        negative = [t for t, v in r2.items() if np.isfinite(v) and v < 0]
        if negative:
            out.append(
                "No method explains variance out of fold on " + ", ".join(negative)
                + " (every R² < 0): being 'best' there only means being least bad."
            )
        if ties:
            out.append(f"{primary} ties for best on " + "; ".join(ties) + ".")
        if losses:
            out.append(f"{primary} does **not** beat every baseline on " + "; ".join(losses) + ".")
        rnd = "random encoder"
        if rnd in set(table2["method"]):
            diffs = []
            for (task, metric), g in table2.groupby(["task", "metric"], sort=False):
                g = g.set_index("method")["mean"]
                if primary in g and rnd in g and np.isfinite(g[primary]) and np.isfinite(g[rnd]):
                    diffs.append(g[primary] - g[rnd])
            if diffs:
                d = np.asarray(diffs)
                out.append(
                    f"Against the random-initialised encoder, {primary} is ahead on "
                    f"{int(np.sum(d > 1e-9))}, level on {int(np.sum(np.abs(d) <= 1e-9))} and "
                    f"behind on {int(np.sum(d < -1e-9))} of {len(d)} task metrics. Where it is "
                    "not ahead, pretraining has not (yet) added disease signal beyond what random "
                    "3D filters averaged over the landmarks already capture (short pretraining, "
                    "small cohort)."
                )
    surv = head.get("survival", {})
    if surv:
        best = max(surv, key=lambda k: surv[k] if np.isfinite(surv[k]) else -1)
        clin = head.get("survival_clinical", {})
        clin_txt = ", ".join(f"{k} {_fmt(v)}" for k, v in clin.items())
        out.append(
            "**Survival.** Mean C-index of the imaging-only Cox models (over the follow-up "
            "percentiles): " + ", ".join(f"{k} {_fmt(v)}" for k, v in surv.items())
            + f"; best {best}. Clinical-only models: {clin_txt or 'n/a'}."
        )
    boxes = head.get("boxes", {})
    for key, info in boxes.items():
        means = info["means"]
        best = info["best"]
        mine = means.get(primary)
        if all(abs(v) < 1e-12 for v in means.values() if np.isfinite(v)):
            out.append(f"**Box detection ({key}).** every method scores 0 (no positive box "
                       "predicted on the test folds).")
            continue
        txt = f"**Box detection ({key}).** best {best} {_fmt(means[best])}"
        if mine is not None and best != primary:
            txt += f"; {primary} {_fmt(mine)} does not beat it"
        laa = means.get("LAA-950 (box)")
        if laa is not None and best != "LAA-950 (box)":
            txt += f"; LAA-950 of the box {_fmt(laa)}"
        rnd = means.get("random encoder")
        if rnd is not None and best != "random encoder":
            txt += f"; random encoder {_fmt(rnd)}"
        out.append(txt + ".")
    if rule is not None and not rule.empty:
        paper = rule[rule["rule"].str.startswith("paper")]
        dep = rule[~rule["rule"].str.startswith("paper")]
        flagged = flagged_share(overlap)
        maps = ", ".join(
            f"{m}: {r}" + (f", flagging {100 * flagged[m]:.0f} % of the lung" if m in flagged
                           else "")
            for m, r in rule.groupby("method", sort=False)["readout"].first().items()
        ) if "readout" in rule else ""
        over = [m for m, v in flagged.items() if v > FLAG_WARN_SHARE]
        out.append(
            "**The paper's 25 % box rule** on dense maps"
            + (f" ({maps})" if maps else "")
            + " gives F1 "
            + ", ".join(f"{r.task} {_fmt(r.f1)}" for r in paper.itertuples())
            + "; with the out-of-subject chosen box fraction (a departure, median "
            + ", ".join(f"{r.task} {r.fraction:.3g}" for r in dep.itertuples())
            + ") F1 "
            + ", ".join(f"{r.task} {_fmt(r.f1)}" for r in dep.itertuples())
            + (" (the chosen fraction fell back to the stated default for some subject: its "
               "training subjects lacked one class)" if dep["fallback"].any() else "")
            + f". Our lesion boxes hold {_lesion_range(results)} lesion voxels"
            + (", so a 25 % rule can only fire on a map that over-segments"
               if _lesion_max(results) < 0.25 else
               "; boxes below 25 % can only be found by a map that over-segments")
            + f". These rule scores come from {int(paper['n_boxes'].max())} boxes of the dense "
            "subjects only."
            + (" **They are not detection scores:** the map of " + ", ".join(over)
               + " flags most of the lung, and a map that marks everything finds every box."
               if over else "")
        )
    rho = head.get("fraction_spearman", {})
    if rho:
        how = head.get("fraction_readout")
        out.append(
            "**Detected emphysema vs truth** (Spearman over subjects"
            + (f"; the {how}'s flags" if how else "") + "): "
            + ", ".join(f"{k} {_fmt(v)}" for k, v in rho.items()) + "."
        )
    if table7 is not None and not table7.empty:
        wide = table7.pivot_table(index=["task", "metric"], columns="locations", values="mean")
        if {"random", "landmark"} <= set(wide.columns):
            d = (wide["landmark"] - wide["random"]).dropna()
            better = int((d > 1e-9).sum())
            out.append(
                f"**Random locations (Table 7).** Landmark locations score higher than random "
                f"ones on {better} of {len(d)} task metrics"
                + (" — perturbing the location hurts, as in the paper." if better > len(d) / 2
                   else " — no consistent loss from perturbing the location here, unlike the "
                   "paper: the conditioning has not become location-specific in this run.")
                + " Random locations differ from patch to patch, so part of a loss can come "
                "from one landmark's patches no longer sharing a kernel rather than from the "
                "right location itself; `drasclr bench location` separates the two on a "
                "science run."
            )
    return out


def _lesion_max(results: Mapping[str, Any]) -> float:
    counts = results.get("boxes", {}).get("counts", {})
    hi = [v["lesion_fraction_max"] for k, v in counts.items() if k != "healthy"]
    return max(hi) if hi else 0.0


def _lesion_range(results: Mapping[str, Any]) -> str:
    counts = results.get("boxes", {}).get("counts", {})
    lo = [v["lesion_fraction_min"] for k, v in counts.items() if k != "healthy"]
    hi = [v["lesion_fraction_max"] for k, v in counts.items() if k != "healthy"]
    if not lo:
        return "n/a"
    return f"{min(lo):.1%}-{max(hi):.1%}"


# ------------------------------------------------------------------------------------ report
def write_report(
    run_dir_or_eval_dir: str | Path,
    out: str | Path,
    metrics: Mapping[str, str | Path] | None = None,
) -> Path:
    """Write ``report.md`` and its figures.

    Args:
        run_dir_or_eval_dir: a run folder (holding ``evaluation/``) or an evaluation folder.
        out: report folder.
        metrics: name → ``metrics.jsonl`` (or its run folder) for the pretraining curves;
            default: every ``models/*/metrics.jsonl`` of the run folder.

    Returns:
        The path of ``report.md``.
    """
    from drasclr.evaluate.readouts import format_mean_sd  # noqa: F401  (same cell format)
    from drasclr.report import figures as F

    out = Path(out)
    figs = out / FIGURES
    sweep_dirs = _sweep_dirs(Path(run_dir_or_eval_dir))
    try:
        eval_dir, run = find_evaluation(run_dir_or_eval_dir)
    except ReportError:
        if not sweep_dirs:
            raise
        figs.mkdir(parents=True, exist_ok=True)  # a run folder holding sweeps only
        text = "# DrasCLR sweeps\n\n" + "\n".join(sweep_section(d, figs) for d in sweep_dirs)
        atomic_write_text(out / "report.md", text)
        return out / "report.md"
    figs.mkdir(parents=True, exist_ok=True)
    results = json.loads((eval_dir / RESULTS_FILE).read_text())
    t2 = _table(eval_dir, "table2_image_readouts")
    t3 = _table(eval_dir, "table3_survival")
    t5 = _table(eval_dir, "table5_box_detection")
    rule = _table(eval_dir, "table5_box_rule")
    curve = _table(eval_dir, "label_efficiency")
    frac = _table(eval_dir, "detected_fraction")
    overlap = _table(eval_dir, "dense_overlap")
    t7 = _table(eval_dir, "table7_random_locations")
    probe = _table(eval_dir, "patch_probe")
    powered = _table(eval_dir, "image_readouts_powered")
    primary = results.get("primary") or "DrasCLR"
    made: dict[str, Path] = {}

    if t2 is not None:
        made["readouts"] = F.readout_bars(t2, figs / "readouts.png",
                                          "Image-level linear readouts (Table 2)")
    if probe is not None and not probe.empty:
        made["patch_probe"] = patch_probe_figure(probe, figs / "patch_probe.png")
    if t3 is not None:
        keep = t3[t3["model"].isin(["imaging", "spirometry", "bode"])]
        made["survival"] = F.survival_plot(keep, figs / "survival.png",
                                           "Time-dependent C-index, imaging vs clinical (Table 3)")
    if t5 is not None:
        t5b = t5.assign(method=np.where(t5["readout"] == "fine-tuned",
                                        t5["method"] + " (fine-tuned)", t5["method"]))
        made["box_detection"] = F.readout_bars(t5b, figs / "box_detection.png",
                                               "Emphysema box detection (Table 5)")
    if curve is not None and not curve.empty:
        made["label_efficiency"] = F.label_efficiency_plot(
            curve, figs / "label_efficiency.png", "Label efficiency, box detection (Fig. 5)")
    if frac is not None and "gold" in frac:
        own = f"{primary}{PROBE_SHARE_SUFFIX}"
        names = {(own if own in frac else f"{primary}: emphysema"):
                 f"{primary}: detected (landmark patches"
                 + (", patch probe)" if own in frac else ", box readout)"),
                 "laa950": "LAA-950 (image)", "true_emphysema_fraction": "truth (generator)"}
        data = frac.dropna(subset=["gold"]).astype({"gold": int}).rename(columns=names)
        cols = [c for c in names.values() if c in data and data[c].notna().any()]
        if cols:
            made["fraction_by_gold"] = F.fraction_by_gold_plot(
                data, figs / "fraction_by_gold.png", cols,
                "Emphysema share of the lung by GOLD stage (Fig. 4 analogue)")
    npz = sorted((eval_dir / "dense").glob("*.npz")) if (eval_dir / "dense").is_dir() else []
    dense_png = dense_overlay_figure(npz, figs / "dense_overlays.png")
    if dense_png:
        made["dense_overlays"] = dense_png
    qc = Path(results.get("store", {}).get("qc_sheet", ""))
    if run is not None and not qc.is_file():
        qc = run / "store" / "reports" / "qc_sheet.png"
    if qc.is_file():
        shutil.copyfile(qc, figs / "qc_sheet.png")
        made["qc_sheet"] = figs / "qc_sheet.png"
    curves = _pretraining_curves(run, metrics)
    pre_png = pretraining_figure(curves, figs / "pretraining.png")
    if pre_png:
        made["pretraining"] = pre_png

    text = _markdown(results, run, made, out, t2, t3, t5, rule, curve, frac, overlap, t7, curves,
                     probe, powered)
    if run is not None:
        text += "".join("\n" + sweep_section(d, figs) for d in _sweep_dirs(run))
    path = out / "report.md"
    atomic_write_text(path, text)
    return path


def _sweep_dirs(run: Path) -> list[Path]:
    """Sweep folders (``drasclr sweep --out <run>/sweeps/<name>``) of a run folder."""
    root = run / "sweeps"
    return sorted(p.parent for p in root.glob("*/results.csv")) if root.is_dir() else []


def sweep_section(sweep_dir: str | Path, figs: str | Path) -> str:
    """Markdown section of one Ray Tune sweep: its space, one row per trial, its figure.

    Args:
        sweep_dir: a sweep folder written by :func:`drasclr.tune.run_sweep`.
        figs: the report's figure folder (the sweep's PNG is copied there).
    """
    sweep_dir, figs = Path(sweep_dir), Path(figs)
    table = pd.read_csv(sweep_dir / "results.csv")
    cfg = {}
    if (sweep_dir / "sweep_config.yaml").is_file():
        import yaml

        cfg = yaml.safe_load((sweep_dir / "sweep_config.yaml").read_text()) or {}
    metric = cfg.get("metric", "")
    params = [c for c in table.columns if c.startswith("param_")]
    shown = params + [c for c in ("training_iteration", "step", metric) if c in table]
    shown += [c for c in table.columns if c.endswith(("_r2", "_accuracy")) and c not in shown][:4]
    lines = [f"## Sweep `{sweep_dir.name}` (Ray Tune)", "",
             (f"Space **{cfg.get('space', '?')}**, {cfg.get('steps', '?')} pretraining steps per "
             f"trial, downstream evaluation every {cfg.get('eval_every', '?')} steps, metric "
             f"`{metric}` ({cfg.get('mode', 'max')}), early stopping "
             f"{'on (ASHA)' if cfg.get('early_stopping') else 'off'}. One row per trial; "
             "`training_iteration` is the number of evaluations the trial reached."), "",
             "| " + " | ".join(c.replace("param_", "") for c in shown) + " |",
             "|" + "---|" * len(shown)]
    for _, row in table.iterrows():
        cells = [f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in shown]
        lines.append("| " + " | ".join(cells) + " |")
    png = sweep_dir / "sweep.png"
    if png.is_file():
        target = figs / f"sweep_{sweep_dir.name}.png"
        shutil.copyfile(png, target)
        lines += ["", f"![sweep {sweep_dir.name}]({FIGURES}/{target.name})"]
    return "\n".join(lines) + "\n"


def _pretraining_curves(
    run: Path | None, metrics: Mapping[str, str | Path] | None
) -> dict[str, pd.DataFrame]:
    files: dict[str, Path] = {}
    if metrics:
        for name, p in metrics.items():
            p = Path(p)
            files[name] = p / "metrics.jsonl" if p.is_dir() else p
    elif run is not None and (run / "models").is_dir():
        for p in sorted((run / "models").glob("*/metrics.jsonl")):
            files[p.parent.name] = p
    return {n: training_curves(p) for n, p in files.items() if p.is_file()}


def _box_counts(counts: Mapping[str, Any]) -> str:
    if not counts:
        return "No boxes."
    rows = pd.DataFrame(
        [
            {"label": k, "boxes": v.get("boxes"), "subjects": v.get("subjects"),
             "lesion fraction": f"{v.get('lesion_fraction_min', 0):.1%} – "
                                f"{v.get('lesion_fraction_max', 0):.1%}"}
            for k, v in counts.items()
        ]
    )
    return markdown_table(rows)


def _img(made: Mapping[str, Path], key: str, out: Path, caption: str) -> list[str]:
    if key not in made:
        return []
    return [f"![{caption}]({made[key].relative_to(out).as_posix()})", ""]


def not_run_section(results: Mapping[str, Any]) -> list[str]:
    """Report lines naming each experiment the labels / cohort did not allow, and why."""
    skipped = results.get("not_run", [])
    if not skipped:
        return []
    return (["## Not run", "", "Experiments whose inputs this cohort does not have:", ""]
            + [f"- {s['experiment']}: not run: {s['reason']}" for s in skipped] + [""])


def _markdown(
    results: Mapping[str, Any], run: Path | None, made: Mapping[str, Path], out: Path,
    t2: pd.DataFrame | None, t3: pd.DataFrame | None, t5: pd.DataFrame | None,
    rule: pd.DataFrame | None, curve: pd.DataFrame | None, frac: pd.DataFrame | None,
    overlap: pd.DataFrame | None, t7: pd.DataFrame | None, curves: Mapping[str, pd.DataFrame],
    probe: pd.DataFrame | None = None, powered: pd.DataFrame | None = None,
) -> str:
    cohort = results.get("cohort", {})
    store = results.get("store", {})
    cfg = results.get("config", {})
    boxes = results.get("boxes", {})
    L: list[str] = ["# DrasCLR evaluation report", ""]
    L += [
        (f"Cohort `{cohort.get('path')}`: "
        + (f"preset **{cohort['preset']}** ({cohort.get('mode', 'n/a')}), " if cohort.get("preset")
           else "")
        + f"{cohort.get('n_subjects')} subjects in the store with "
        f"labels, GOLD counts {cohort.get('gold_counts', {})}, "
        f"{cohort.get('n_events', 'n/a')} deaths. Patch store `{store.get('path')}`: "
        f"{store.get('n_landmarks')} landmarks, atlas `{store.get('atlas_id')}`."),
        "",
        "Methods: " + ", ".join(
            f"**{n}**" + (" (random locations)" if m.get("random_locations")
                          and "random location" not in n.lower() else "")
            + ("" if m.get("encoder") else " (features only)")
            for n, m in results.get("methods", {}).items()
        ) + f". Primary method: **{results.get('primary')}**.",
        "",
        f"Settings: {cfg.get('n_folds')}-fold cross-validation (seed {cfg.get('seed')}), "
        f"mean ± s.d. over test folds; ridge / L2-logistic readouts fitted inside each training "
        f"fold; Cox penalizer {cfg.get('cox_penalizer')}, {cfg.get('survival_pca')} image PCs, "
        f"{cfg.get('n_bootstrap')} bootstrap resamples; dense stride {cfg.get('dense_stride')} on "
        f"{len(results.get('dense', {}).get('subjects', []))} subject(s); fine-tuning "
        + (f"{cfg.get('finetune_epochs')} epoch(s)" if cfg.get("finetune_epochs") else
           "**not run** (finetune_epochs = 0: no fine-tuned or from-scratch supervised CNN rows)")
        + ".",
        "",
    ]
    if run is not None and (run / "timings.json").is_file():
        timings = json.loads((run / "timings.json").read_text())
        L += ["Stage times (s): " + ", ".join(f"{k} {v}" for k, v in timings.items()), ""]
    secs = results.get("seconds", {})
    if secs:
        L += ["Evaluation times (s): " + ", ".join(f"{k} {v}" for k, v in secs.items()), ""]
    L += ["## Reading", ""]
    L += [probe_reading(probe, primary_name(results)) + "\n"] if probe is not None else []
    L += [s + "\n" for s in reading(results, t2, t5, rule, t7, overlap)] or ["(no numbers)", ""]
    small = ("The cohort is synthetic and small; fold-to-fold s.d. are large"
             if cohort.get("preset") else "Fold-to-fold s.d. show how much scores move")
    L += [f"{small}, so differences smaller than one s.d. are not evidence either way.", ""]
    L += not_run_section(results)

    if probe is not None and not probe.empty:
        L += ["## Patch probe — does a patch's representation carry its lesion burden?", "",
              ("Ridge from frozen patch features to the patch's true lesion fraction (voxel "
              "truth cut like the stored patch), subject-grouped 5-fold CV, repeated; R² of the "
              "pooled out-of-fold predictions (mean ± s.d. over repeats) and AUC for "
              "fraction > 1 %. LAA-950 / LAA-910 (patch) use the share of the patch's voxels "
              "below the threshold as their one feature. A row \"<method> + LAA-950 (patch)\" "
              "probes the method's features with the patch's LAA-950 beside them: what the "
              "encoder adds to the density score (the random encoder's such row shows what "
              "extra columns alone do)."), "",
              markdown_table(probe_wide(probe), index="method"), ""]
        L += _img(made, "patch_probe", out, "patch probe")
    if powered is not None and not powered.empty:
        L += ["## Image-level readouts with power (repeated CV, pooled out-of-fold)", "",
              ("Per-landmark standardisation before pooling, lasso / top-8-feature logistic "
              "readouts, 5 x 5-fold CV; the sanity rows check the readout itself: LAA-950 alone "
              "and LAA-950 + 128 random features should score alike."), "",
              markdown_table(powered_wide(powered), index="method"), ""]
    if t2 is not None:
        L += ["## Table 2 — image-level readouts (the paper's plain mean, fold-mean scores)", "",
              "R² for log FEV1pp and log FEV1/FVC; accuracy / 1-off accuracy in %. "
              "LAA-950 (image) is computed inside the pipeline's own lung mask (preprocessing's "
              "segmentation), as a user would, not inside the generator's truth mask.", "",
              markdown_table(wide_readouts(t2), index="method"), ""]
        L += _img(made, "readouts", out, "image readouts")
    if t3 is not None:
        L += ["## Table 3 — survival (time-dependent C-index ± bootstrap s.e.)", "",
              ("Every model holds the five confounders (age, sex, race, smoking status, "
              "pack-years); `clinical` rows are fitted on the same subjects as the imaging "
              "rows they are compared with (column `subjects` of the table names them)."), "",
              markdown_table(survival_wide(t3), index="method: model"), ""]
        L += _img(made, "survival", out, "survival")
    if t5 is not None:
        L += ["## Table 5 — emphysema box detection", "",
              (f"Boxes: {json.dumps(boxes.get('counts', {}))}. Linear readout on frozen features "
              "of the 32³ patch centred at each box (location = the box centre carried to the "
              "atlas), per subtype vs healthy boxes, folds grouped by subject; F1 / precision / "
              "recall in %."), "",
              markdown_table(wide_readouts(t5, ("method", "readout")), index="method / readout"),
              ""]
        L += _img(made, "box_detection", out, "box detection")
    if rule is not None and not rule.empty:
        r = rule.copy()
        for c in ("f1", "precision", "recall"):
            r[c] = (r[c] * 100).round(1)
        flagged = flagged_share(overlap)
        warn: list[str] = []
        if flagged:
            r.insert(1, "lung flagged %", [round(100 * flagged.get(m, float("nan")), 1)
                                           for m in r["method"]])
            for m, v in flagged.items():
                if v > FLAG_WARN_SHARE:
                    warn.append(f"**Warning:** the {m} map flags {100 * v:.0f} % of the lung as "
                                "emphysema on the dense subjects; its F1 below rewards marking "
                                "everything and is not a detection score.")
        L += warn + ([""] if warn else [])
        L += ["### The 25 % rule on dense maps", "",
              ("Dense subjects are held out of the readout that makes their maps. `paper (25 %)`: "
              "a box is positive when ≥ 25 % of its voxels have p > 0.5. `chosen fraction "
              "(departure)`: the box fraction chosen by leave-one-subject-out F1 — **not the "
              "paper's rule**."), "",
              markdown_table(r), ""]
    if curve is not None and not curve.empty:
        L += ["## Fig. 5 — label efficiency", ""]
        L += _img(made, "label_efficiency", out, "label efficiency")
    if frac is not None:
        L += ["## Fig. 4 — detected emphysema by GOLD stage", "",
              ("Detected share of the lung for every subject from out-of-subject landmark-patch "
              "predictions — the patch probe's (a patch flagged at a predicted emphysema "
              "fraction ≥ 5 %) where the cohort has voxel truth, else the box readout's (see "
              "notes) — next to image-level LAA-950 and the generator's true emphysema "
              "fraction."), ""]
        L += _img(made, "fraction_by_gold", out, "fraction by GOLD")
    if overlap is not None and not overlap.empty:
        L += ["## Fig. 3 — dense masks vs voxel truth", ""]
        L += _img(made, "dense_overlays", out, "dense overlays")
        L += [markdown_table(overlap), ""]
    if t7 is not None and not t7.empty:
        L += ["## Table 7 — random locations (perturbation ablation)", "",
              markdown_table(wide_readouts(t7, ("method", "locations")),
                             index="method / locations"), ""]
    if "pretraining" in made:
        L += ["## Pretraining", ""]
        for name, v in curves.items():
            if not v.empty:
                last = v.iloc[-1]
                L.append(f"- {name}: {int(last['step'])} steps, final loss "
                         f"{_fmt(float(last.get('loss', np.nan)))}, top-1 "
                         f"{_fmt(float(last.get('top1', np.nan)))}")
        L += [""]
        L += _img(made, "pretraining", out, "pretraining curves")
    if "qc_sheet" in made:
        L += ["## Preprocessing QC", ""]
        L += _img(made, "qc_sheet", out, "QC sheet")
    notes = results.get("notes", [])
    if notes:
        L += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(L)
