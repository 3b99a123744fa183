"""``drasclr run``: a lab's scans and labels table through the whole chain to a report."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any


def _run(args: argparse.Namespace) -> int:
    from drasclr.labels import LabelsError
    from drasclr.pipeline import run_config, run_pipeline

    cfg = run_config(args.inputs, args.labels, label_columns=tuple(args.label_column or ()),
                     atlas=args.atlas, steps=args.steps, seed=args.seed,
                     methods=tuple(args.method) if args.method else None,
                     stop_after=args.stop_after, batch_size=args.batch_size,
                     queue_size=args.queue_size, input_map=args.input_map)
    t0 = time.perf_counter()
    try:
        report = run_pipeline(args.out, cfg, num_cpus=args.num_cpus, progress=not args.quiet)
    except LabelsError as err:
        print(f"drasclr run: error: {err}", file=sys.stderr)
        return 2
    print(f"\nrun finished in {(time.perf_counter() - t0) / 60:.1f} min")
    print(f"report: {report}" if report else f"run folder: {args.out}")
    return 0


def register(sub: Any) -> None:
    """Add ``run``."""
    from drasclr.imaging.intensity import INPUT_MAPS
    from drasclr.pipeline import STAGES

    p = sub.add_parser(
        "run", help="your scans + labels table -> atlas -> preprocess -> pretrain -> extract -> "
                    "evaluate -> report (embedded Ray; resumable)",
        description="The whole chain on your own data. --labels is a CSV or Parquet table with "
                    "subject_id and whichever clinical columns you have (README: labels "
                    "contract); each experiment runs when its columns exist and the report "
                    "lists the others as not run.")
    p.add_argument("--inputs", type=Path, required=True,
                   help="folder of scans (NIfTI, NRRD, MHA/MHD, DICOM series folders) or a "
                        "subject_id,input_path table")
    p.add_argument("--labels", type=Path, required=True, help="labels table (.csv or .parquet)")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--label-column", action="append", default=None, metavar="'HEADER=COLUMN'",
                   help="map one of your headers to a contract column (repeatable), e.g. "
                        "'FEV1 %% predicted=fev1pp'")
    p.add_argument("--atlas", type=Path, default=None,
                   help="atlas folder (drasclr atlas); default: built from the scan with the "
                        "lowest LAA-950 among full-field-of-view candidates")
    p.add_argument("--method", action="append", default=None,
                   help="pretraining methods to compare (repeatable; default: all)")
    p.add_argument("--steps", type=int, default=None,
                   help="pretraining steps per method (default 60)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="subjects per pretraining batch (default 32; at most the cohort size)")
    p.add_argument("--queue-size", type=int, default=None,
                   help="keys per landmark queue (default 256; small cohorts need small queues)")
    p.add_argument("--stop-after", default=None, choices=STAGES,
                   help="stop after this stage (e.g. preprocess, to check the store and QC "
                        "first); re-run without it to resume")
    p.add_argument("--seed", type=int, default=None, help="training and fold seed (default 0)")
    p.add_argument("--num-cpus", type=int, default=None,
                   help="CPUs of the embedded Ray (default: all)")
    p.add_argument("--input-map", choices=INPUT_MAPS, default=None,
                   help="the encoders' input map (default parenchyma: HU below -600 get 80 %% "
                        "of the input range; linear: the paper's window scaling)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=_run)
