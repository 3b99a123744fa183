"""``drasclr sweep``: Ray Tune ablation / hyper-parameter sweeps over pretrain -> evaluate."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _sweep(args: argparse.Namespace) -> int:
    from drasclr.tune import SweepConfig, run_sweep

    cfg = SweepConfig.load(args.config) if args.config else SweepConfig()
    changes = {k: v for k, v in {"space": args.space, "steps": args.steps,
                                 "eval_every": args.eval_every,
                                 "cpus_per_trial": args.cpus_per_trial,
                                 "gpus_per_trial": args.gpus_per_trial}.items() if v is not None}
    cfg = cfg.replace(**changes) if changes else cfg
    stores: dict[str, str] = {}
    for spec in args.store:
        name, _, path = spec.rpartition("=")
        stores[name or Path(path).name] = path
    table = run_sweep(stores, args.labels, args.out, cfg)
    print(table.to_string(index=False))
    print(f"results: {Path(args.out) / 'results.csv'}; figure {Path(args.out) / 'sweep.png'}")
    return 0


def register(sub: Any) -> None:
    """Add ``sweep``."""
    from drasclr.tune import SPACES

    p = sub.add_parser("sweep", help="Ray Tune sweep over pretrain -> extract -> evaluate")
    p.add_argument("--store", action="append", required=True,
                   help="patch store, or NAME=STORE (repeat; the atlas space needs "
                        "healthy=... and diseased=...)")
    p.add_argument("--labels", type=Path, required=True, help="the cohort's labels.parquet")
    p.add_argument("--out", type=Path, required=True, help="sweep folder")
    p.add_argument("--space", choices=list(SPACES), default=None,
                   help="search space (default neighbours_x_conditioning)")
    p.add_argument("--config", type=Path, default=None, help="sweep_config.yaml")
    p.add_argument("--steps", type=int, default=None,
                   help="pretraining steps per trial (default 40)")
    p.add_argument("--eval-every", type=int, default=None,
                   help="steps between the downstream evaluations reported to Tune (default 20)")
    p.add_argument("--cpus-per-trial", type=float, default=None,
                   help="CPUs per trial; torch threads follow (default 1)")
    p.add_argument("--gpus-per-trial", type=float, default=None,
                   help="GPUs per trial (default 0)")
    p.set_defaults(handler=_sweep)
