"""The location check (`drasclr.evaluate.location_check`) on screening exports.

`drasclr bench location RUN` runs it on a science run's models; this runs it on the exports of
the recipe harness (`recipe_probe.py`), whose stores and truth sit beside their round folders.
One JSON line per export is printed and appended to --out.

Usage: python location_probe.py --store S --truth T --export DIR [DIR ...] [--out FILE]
"""
import argparse
import json
from pathlib import Path

import pandas as pd
import torch

from drasclr.bench.location import check_exports

ap = argparse.ArgumentParser()
ap.add_argument("--store", required=True)
ap.add_argument("--truth", required=True)
ap.add_argument("--export", nargs="+", required=True)
ap.add_argument("--out", default="")
ap.add_argument("--landmarks", type=int, default=40)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--threads", type=int, default=1)
a = ap.parse_args()
torch.set_num_threads(a.threads)
truth = pd.read_parquet(a.truth)
for path in a.export:  # one at a time, so each line is written as soon as it is measured
    rows, _ = check_exports({path: Path(path)}, Path(a.store), truth, a.landmarks, a.seed,
                            say=lambda line: None)
    print(json.dumps(rows[0]), flush=True)
    if a.out:
        with open(a.out, "a") as fh:
            fh.write(json.dumps(rows[0]) + "\n")
