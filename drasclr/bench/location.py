"""``drasclr bench location RUN``: do a science run's encoders use their anatomical location?

Runs :func:`drasclr.evaluate.location_check.location_check` (the paper's location-perturbation
test: the patch probe at each patch's own landmark location and at another landmark's) on every
encoder of a finished ``drasclr bench science`` run folder (``RUN/models/*/export``, with
``RUN/store`` and ``RUN/patch_truth.parquet``), and writes ``RUN/location_check.json``
atomically. The science run itself is not changed.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from drasclr.fsutil import atomic_write_text

#: The result file, in the run folder.
RESULT_FILE = "location_check.json"


def model_exports(run: Path) -> dict[str, Path]:
    """Model name -> export folder of every ``RUN/models/<name>/export`` (sorted by name).

    Raises:
        FileNotFoundError: the run folder lacks its store, patch truth or any export.
    """
    for need in (run / "store", run / "patch_truth.parquet"):
        if not need.exists():
            raise FileNotFoundError(f"{need}: missing; {run} is not a finished "
                                    "`drasclr bench science` run folder")
    exports = {p.parent.name: p for p in sorted((run / "models").glob("*/export"))
               if (p / "encoder_config.json").is_file()}
    if not exports:
        raise FileNotFoundError(f"{run / 'models'}: no encoder exports (models/<name>/export)")
    return exports


def check_exports(exports: dict[str, Path], store_dir: Path, truth: pd.DataFrame,
                  n_landmarks: int = 40, seed: int = 0, repeats: int = 2,
                  say: Callable[[str], None] = print) -> tuple[list[dict[str, Any]], int]:
    """The location check of each named encoder export against one store and its truth.

    Returns:
        (one JSON-ready row per export, :func:`check_table`'s columns plus ``conditioning``,
        NaN as None; the number of evaluation landmarks).
    """
    from drasclr.evaluate.location_check import check_table, location_check
    from drasclr.store.reader import PatchStore
    from drasclr.train.export import load_encoder

    store = PatchStore(store_dir)
    checks, conditioning = [], []
    for name, path in exports.items():
        say(f"location check: {name}")
        encoder, cfg = load_encoder(path)
        conditioning.append(str(cfg["encoder"]["conditioning"]))
        checks.append((name, location_check(encoder, store, truth, n_landmarks, seed, repeats)))
    table = check_table(checks)
    table.insert(1, "conditioning", conditioning)
    rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in table.to_dict("records")]
    return rows, len(checks[0][1].landmarks)


def run_location(run: Path, n_landmarks: int = 40, seed: int = 0, repeats: int = 2,
                 models: list[str] | None = None,
                 say: Callable[[str], None] = print) -> dict[str, Any]:
    """Check every (or each named) encoder of ``run``; write and return the result.

    Raises:
        FileNotFoundError: see :func:`model_exports`; a named model that has no export.
    """
    exports = model_exports(run)
    if models:
        missing = sorted(set(models) - set(exports))
        if missing:
            raise FileNotFoundError(f"{run / 'models'}: no export for {missing}; "
                                    f"found {sorted(exports)}")
        exports = {m: exports[m] for m in models}
    truth = pd.read_parquet(run / "patch_truth.parquet")
    rows, n = check_exports(exports, run / "store", truth, n_landmarks, seed, repeats, say)
    res = {"run": str(run), "n_landmarks": n, "seed": seed, "repeats": repeats, "rows": rows}
    atomic_write_text(run / RESULT_FILE, json.dumps(res, indent=1) + "\n")
    return res


def run_from_args(args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, Any]:
    """``bench_run`` of ``drasclr bench location``."""
    return run_location(args.run, args.landmarks, args.seed, args.repeats, args.models, say)


def register(sub: Any) -> None:
    """Add ``bench location``."""
    p = sub.add_parser("location", help="the paper's location-perturbation test on a science "
                                        "run's encoders: patch probe at own vs swapped landmark "
                                        "locations; RUN/location_check.json")
    p.add_argument("run", type=Path, help="a finished `drasclr bench science` run folder")
    p.add_argument("--landmarks", type=int, default=40, help="evaluation landmarks")
    p.add_argument("--seed", type=int, default=0, help="landmark, derangement and fold seed")
    p.add_argument("--repeats", type=int, default=2, help="CV repeats of the probe")
    p.add_argument("--models", nargs="*", default=None,
                   help="model folder names under RUN/models (default: all)")
    p.set_defaults(bench_run=run_from_args)
