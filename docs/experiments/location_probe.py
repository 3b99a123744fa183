"""The location check (`drasclr.evaluate.location_check`) on screening exports.

`drasclr bench location RUN` runs it on a science run's models; this runs it on the exports of
the recipe harness (`recipe_probe.py`), whose stores and truth sit beside their round folders.
One JSON line per export is printed and appended to --out.

Usage: python location_probe.py --store S --truth T --export DIR [DIR ...] [--out FILE]
"""
import argparse
import json
import math

import pandas as pd
import torch

from drasclr.evaluate.location_check import check_table, location_check
from drasclr.store.reader import PatchStore
from drasclr.train.export import load_encoder

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
store = PatchStore(a.store)
truth = pd.read_parquet(a.truth)
for path in a.export:
    enc, cfg = load_encoder(path)
    row = check_table([(path, location_check(enc, store, truth, a.landmarks, a.seed))])
    rec = {k: (None if isinstance(v, float) and math.isnan(v) else v)
           for k, v in row.to_dict("records")[0].items()}
    rec["conditioning"] = cfg["encoder"]["conditioning"]
    print(json.dumps(rec), flush=True)
    if a.out:
        with open(a.out, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
