"""``drasclr bench NAME``: benchmarks discovered from :mod:`drasclr.bench`."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import drasclr.bench


def register(sub: Any) -> None:
    """Add ``bench`` with one sub-subcommand per module of :mod:`drasclr.bench`."""
    p = sub.add_parser("bench", help="benchmarks: figures and ratios measured in one run")
    bench_sub = p.add_subparsers(dest="bench_cmd", required=True)
    for mod in sorted(pkgutil.iter_modules(drasclr.bench.__path__), key=lambda m: m.name):
        if mod.name.startswith("_"):
            continue
        module = importlib.import_module(f"drasclr.bench.{mod.name}")
        if hasattr(module, "register"):
            module.register(bench_sub)
