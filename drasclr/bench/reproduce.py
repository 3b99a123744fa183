"""``drasclr bench reproduce``: the demo chain on the ``bench`` cohort with longer pretraining,
printing DrasCLR against every baseline (mean ± s.d. over folds)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any


def run_from_args(args: argparse.Namespace, say: Any = None) -> dict[str, Any]:
    """``drasclr bench reproduce``: the run's minutes, report path and image-readout table.

    Returns:
        ``{"minutes", "report", "table"}``; ``table`` is ``evaluation/table2_image_readouts.csv``
        as a DataFrame, or None when the run wrote none.
    """
    import pandas as pd

    from drasclr.pipeline import reproduce_config, run_pipeline

    cfg = reproduce_config(n_subjects=args.n, steps=args.steps, seed=args.seed,
                           batch_size=args.batch_size, queue_size=args.queue_size,
                           finetune_epochs=args.finetune_epochs)
    t0 = time.perf_counter()
    report = run_pipeline(args.out, cfg, num_cpus=args.num_cpus, progress=not args.quiet)
    minutes = (time.perf_counter() - t0) / 60
    table = Path(args.out) / "evaluation" / "table2_image_readouts.csv"
    return {"minutes": minutes, "report": report,
            "table": pd.read_csv(table) if table.exists() else None}


def register(sub: Any) -> None:
    """Add ``bench reproduce`` (printed by :mod:`drasclr.commands.bench`)."""
    p = sub.add_parser("reproduce", help="the whole chain on the bench cohort, longer pretraining, "
                                         "DrasCLR vs every baseline")
    p.add_argument("--out", type=Path, default=Path("runs/reproduce"),
                   help="run folder (default runs/reproduce; re-running resumes)")
    p.add_argument("--n", type=int, default=None, help="subjects (default 200)")
    p.add_argument("--steps", type=int, default=None,
                   help="pretraining steps per method (default 600)")
    p.add_argument("--seed", type=int, default=None, help="cohort and training seed (default 0)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="subjects per pretraining batch (default 64)")
    p.add_argument("--queue-size", type=int, default=None,
                   help="K, keys per landmark queue (default 1024)")
    p.add_argument("--finetune-epochs", type=int, default=None,
                   help="epochs of full fine-tuning on boxes (0 skips it; default 2)")
    p.add_argument("--num-cpus", type=int, default=None,
                   help="CPUs of the embedded Ray (default: all)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(bench_run=run_from_args)
