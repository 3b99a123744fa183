"""``drasclr demo``: the whole chain on the ``demo`` synthetic cohort, on an embedded Ray."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any


def _demo(args: argparse.Namespace) -> int:
    from drasclr.pipeline import demo_config, run_pipeline

    cfg = demo_config(preset=args.preset, n_subjects=args.n, steps=args.steps, seed=args.seed)
    t0 = time.perf_counter()
    report = run_pipeline(args.out, cfg, num_cpus=args.num_cpus, progress=not args.quiet)
    print(f"\ndemo finished in {(time.perf_counter() - t0) / 60:.1f} min")
    print(f"report: {report}")
    print(f"figures: {Path(report).parent}")
    return 0


def register(sub: Any) -> None:
    """Add ``demo``."""
    p = sub.add_parser("demo", help="synth -> preprocess -> pretrain -> extract -> evaluate -> "
                                    "report on the demo cohort (embedded Ray, ~20 min on 2 cores)")
    p.add_argument("--out", type=Path, default=Path("runs/demo"),
                   help="run folder (default runs/demo; re-running resumes)")
    p.add_argument("--preset", default=None, help="cohort preset (default demo)")
    p.add_argument("--n", type=int, default=None, help="subjects (default: the preset's)")
    p.add_argument("--steps", type=int, default=None,
                   help="pretraining steps per method (default 60)")
    p.add_argument("--seed", type=int, default=None, help="cohort and training seed (default 0)")
    p.add_argument("--num-cpus", type=int, default=None,
                   help="CPUs of the embedded Ray (default: all)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=_demo)
