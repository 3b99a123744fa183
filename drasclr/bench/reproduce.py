"""``drasclr bench reproduce``: the demo chain on the ``bench`` cohort with longer pretraining,
printing DrasCLR against every baseline (mean ± s.d. over folds)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any


def _cmd(args: argparse.Namespace) -> int:
    import pandas as pd

    from drasclr.pipeline import reproduce_config, run_pipeline

    cfg = reproduce_config(n_subjects=args.n, steps=args.steps, seed=args.seed,
                           batch_size=args.batch_size, queue_size=args.queue_size,
                           finetune_epochs=args.finetune_epochs)
    t0 = time.perf_counter()
    report = run_pipeline(args.out, cfg, num_cpus=args.num_cpus, progress=not args.quiet)
    print(f"\nreproduce finished in {(time.perf_counter() - t0) / 60:.1f} min; report {report}")
    table = Path(args.out) / "evaluation" / "table2_image_readouts.csv"
    if table.exists():
        with pd.option_context("display.width", 200, "display.max_columns", 30):
            print(pd.read_csv(table).to_string(index=False))
    return 0


def register(sub: Any) -> None:
    """Add ``bench reproduce``."""
    p = sub.add_parser("reproduce", help="the whole chain on the bench cohort, longer pretraining, "
                                         "DrasCLR vs every baseline")
    p.add_argument("--out", type=Path, default=Path("runs/reproduce"))
    p.add_argument("--n", type=int, default=None, help="subjects (default 200)")
    p.add_argument("--steps", type=int, default=None, help="pretraining steps per method")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None, help="subjects per pretraining batch")
    p.add_argument("--queue-size", type=int, default=None, help="K, keys per landmark queue")
    p.add_argument("--finetune-epochs", type=int, default=None,
                   help="epochs of full fine-tuning on boxes (0 skips it)")
    p.add_argument("--num-cpus", type=int, default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(handler=_cmd)
