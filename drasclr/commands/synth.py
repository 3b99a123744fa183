"""``drasclr synth``: generate a synthetic cohort; ``drasclr synth report DIR``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _synth(args: argparse.Namespace) -> int:
    from drasclr.synth.cohort import generate_cohort
    from drasclr.synth.config import SynthConfig, preset_config

    if args.synth_cmd == "report":
        return _synth_report(args)
    if args.config:
        cfg = SynthConfig.load(args.config)
    else:
        cfg = preset_config(args.preset, mode=args.mode, n_subjects=args.n, seed=args.seed)
    out = Path(args.out or f"cohorts/{cfg.preset}{'-covid' if cfg.mode == 'covid' else ''}")
    res = generate_cohort(
        cfg, out, overwrite=args.overwrite, num_cpus=args.num_cpus, progress=not args.quiet
    )
    print(
        f"cohort {res.folder}: {res.n_subjects} subjects ({res.n_generated} generated, "
        f"{res.n_skipped} already done) in {res.seconds:.1f} s"
    )
    return 0


def _synth_report(args: argparse.Namespace) -> int:
    from drasclr.synth.report import write_report

    summary, path = write_report(args.folder)
    print(json.dumps(summary, indent=1, default=str))
    if "r2_logfev1pp_on_laa950" in summary:
        print(
            f"LAA-950 vs log FEV1pp: R² = {summary['r2_logfev1pp_on_laa950']:.3f} "
            "(target band 0.2-0.7)"
        )
    print(f"report: {path}\npreview: {path.parent / 'preview.png'}")
    return 0


def register(sub: Any) -> None:
    """Add ``synth`` (and ``synth report``) to the subcommand parsers."""
    from drasclr.synth.config import PRESETS

    p = sub.add_parser("synth",
                       help="generate a synthetic chest-CT cohort with known disease truth")
    p.add_argument("--preset", default="demo", help=f"one of {', '.join(PRESETS)} (default demo)")
    p.add_argument("--mode", choices=["copd", "covid"], default=None,
                   help="cohort kind (default copd)")
    p.add_argument("--n", type=int, default=None, help="number of subjects (default: the preset's)")
    p.add_argument("--seed", type=int, default=None, help="cohort seed (default 0)")
    p.add_argument("--config", default=None,
                   help="a synth_config.yaml instead of --preset/--n/--seed")
    p.add_argument("--out", default=None, help="cohort folder (default cohorts/<preset>)")
    p.add_argument("--overwrite", action="store_true", help="replace a different cohort in --out")
    p.add_argument("--num-cpus", type=int, default=None,
                   help="CPUs for the embedded Ray instance (default: all)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    synth_sub = p.add_subparsers(dest="synth_cmd", required=False,
                                 help="without one: generate the cohort")
    r = synth_sub.add_parser("report", help="label distributions, LAA-950 R², preview.png")
    r.add_argument("folder", type=Path, help="cohort folder (drasclr synth --out)")
    p.set_defaults(handler=_synth)
