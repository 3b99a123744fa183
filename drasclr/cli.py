"""The ``drasclr`` command line: one subcommand per stage, each calling a library function."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Callable, Sequence

from drasclr import __version__
from drasclr.config import ConfigError

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand of :mod:`drasclr.commands`."""
    import drasclr.commands

    parser = argparse.ArgumentParser(prog="drasclr", description=__doc__)
    parser.add_argument("--version", action="version", version=f"drasclr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, help="the stage to run")
    for mod in sorted(pkgutil.iter_modules(drasclr.commands.__path__), key=lambda m: m.name):
        if not mod.name.startswith("_"):
            importlib.import_module(f"drasclr.commands.{mod.name}").register(sub)
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
