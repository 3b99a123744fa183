"""``drasclr evaluate`` (the paper's experiments from features) and ``drasclr report RUN``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def parse_pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    """``["NAME=DIR", ...]`` → ``{NAME: DIR}`` (names may contain spaces; split at the last '=')."""
    out: dict[str, str] = {}
    for v in values or []:
        name, sep, path = v.rpartition("=")
        if not sep or not name or not path:
            raise ValueError(f"{flag} expects NAME=PATH, got {v!r}")
        if name in out:
            raise ValueError(f"{flag}: method {name!r} given twice")
        out[name] = path
    return out


def _evaluate(args: argparse.Namespace) -> int:
    from drasclr.evaluate.config import EvaluateConfig
    from drasclr.evaluate.run import EvaluationError, run_evaluation

    features = parse_pairs(args.features, "--features")
    encoders = parse_pairs(args.encoder, "--encoder")
    detection = parse_pairs(args.detection_features, "--detection-features")
    cfg = EvaluateConfig.load(args.config) if args.config else EvaluateConfig()
    changes: dict[str, Any] = {}
    for name in ("n_folds", "seed", "dense_subjects", "dense_stride", "finetune_epochs",
                 "n_bootstrap", "device"):
        value = getattr(args, name)
        if value is not None:
            changes[name] = value
    cfg = cfg.replace(**changes) if changes else cfg
    try:
        res = run_evaluation(args.cohort, args.store, features, args.out, cfg,
                             encoders=encoders, progress=not args.quiet,
                             overwrite=args.overwrite, labels=args.labels,
                             detection_features=detection)
    except EvaluationError as err:
        print(f"drasclr evaluate: error: {err}", file=sys.stderr)
        return 2
    print(f"evaluation: {args.out} ({res['seconds'].get('total', 0):.1f} s)")
    if args.report:
        from drasclr.report.markdown import write_report

        path = write_report(args.out, Path(args.out) / "report")
        print(f"report: {path}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from drasclr.report.markdown import ReportError, find_evaluation, write_report

    try:
        eval_dir, run = find_evaluation(args.run)
    except ReportError as err:
        print(f"drasclr report: error: {err}", file=sys.stderr)
        return 2
    out = args.out or ((run or eval_dir) / "report")
    metrics = parse_pairs(args.metrics, "--metrics") or None
    path = write_report(args.run, out, metrics=metrics)
    print(f"report: {path}")
    return 0


def register(sub: Any) -> None:
    """Add ``evaluate`` and ``report``."""
    p = sub.add_parser(
        "evaluate",
        help="the paper's experiments (readouts, survival, detection, ablations) from features",
        description="Image-level readouts, survival, emphysema box detection, label efficiency, "
        "dense masks vs truth and the random-location ablation for each method's features, "
        "with LAA-950 baselines. Tables (Parquet + CSV) and results.json go to --out.",
    )
    p.add_argument("--cohort", type=Path, required=True,
                   help="cohort folder (labels, boxes, truth)")
    p.add_argument("--labels", type=Path, default=None,
                   help="labels table in the contract's column names (default: "
                        "<cohort>/labels.parquet; `drasclr run` checks a lab's table into one)")
    p.add_argument("--store", type=Path, required=True, help="patch store of the features")
    p.add_argument("--features", action="append", required=True, metavar="NAME=DIR",
                   help="a method's features folder (repeat per method)")
    p.add_argument("--encoder", action="append", default=None, metavar="NAME=EXPORT_DIR",
                   help="a method's encoder (run or export folder) for box and dense experiments")
    p.add_argument("--detection-features", action="append", default=None, metavar="NAME=DIR",
                   help="a method's features extracted with BatchNorm running statistics, for "
                        "the detected fraction; needed when --features used bn_stats: landmark")
    p.add_argument("--out", type=Path, required=True, help="evaluation output folder")
    p.add_argument("--config", type=Path, default=None, help="an evaluate_config.yaml")
    p.add_argument("--n-folds", type=int, default=None, help="cross-validation folds (5)")
    p.add_argument("--seed", type=int, default=None, help="fold / bootstrap seed (0)")
    p.add_argument("--dense-subjects", type=int, default=None, help="subjects with dense maps (4)")
    p.add_argument("--dense-stride", type=int, default=None, help="dense grid stride (8)")
    p.add_argument("--finetune-epochs", type=int, default=None,
                   help="full fine-tuning epochs (0 = off)")
    p.add_argument("--n-bootstrap", type=int, default=None,
                   help="C-index bootstrap resamples (200)")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--report", action="store_true", help="also write <out>/report")
    p.add_argument("--overwrite", action="store_true", help="recompute finished results")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(handler=_evaluate)

    r = sub.add_parser(
        "report",
        help="Markdown + PNG report of a run (or an evaluation folder)",
        description="Tables shaped like the paper's Tables 2, 3, 5, 7, figures (readouts, "
        "survival, label efficiency, fraction by GOLD, dense overlays, QC sheet, pretraining "
        "curves) and a reading generated from the numbers.",
    )
    r.add_argument("run", type=Path, help="run folder (with evaluation/) or evaluation folder")
    r.add_argument("--out", type=Path, default=None, help="report folder (default <run>/report)")
    r.add_argument("--metrics", action="append", default=None, metavar="NAME=METRICS_JSONL",
                   help="pretraining metrics.jsonl (or run folder) to plot (repeatable)")
    r.set_defaults(handler=_report)
