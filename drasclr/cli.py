"""The ``drasclr`` command line: one subcommand per stage, each calling a library function."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from drasclr import __version__
from drasclr.config import ConfigError

Handler = Callable[[argparse.Namespace], int]


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
    res = generate_cohort(cfg, out, overwrite=args.overwrite, num_cpus=args.num_cpus, progress=not args.quiet)
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
        print(f"LAA-950 vs log FEV1pp: R² = {summary['r2_logfev1pp_on_laa950']:.3f} (target band 0.2-0.7)")
    print(f"report: {path}\npreview: {path.parent / 'preview.png'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with all subcommands."""
    from drasclr.synth.config import PRESETS

    parser = argparse.ArgumentParser(prog="drasclr", description=__doc__)
    parser.add_argument("--version", action="version", version=f"drasclr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="generate a synthetic chest-CT cohort with known disease truth")
    p.add_argument("--preset", default="demo", help=f"one of {', '.join(PRESETS)} (default demo)")
    p.add_argument("--mode", choices=["copd", "covid"], default=None, help="cohort kind (default copd)")
    p.add_argument("--n", type=int, default=None, help="number of subjects (default: the preset's)")
    p.add_argument("--seed", type=int, default=None, help="cohort seed (default 0)")
    p.add_argument("--config", default=None, help="a synth_config.yaml instead of --preset/--n/--seed")
    p.add_argument("--out", default=None, help="cohort folder (default cohorts/<preset>)")
    p.add_argument("--overwrite", action="store_true", help="replace a different cohort in --out")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs for the embedded Ray instance")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    synth_sub = p.add_subparsers(dest="synth_cmd", required=False)
    r = synth_sub.add_parser("report", help="label distributions, LAA-950 R², preview.png")
    r.add_argument("folder", type=Path)
    p.set_defaults(handler=_synth)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``drasclr`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"drasclr: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
