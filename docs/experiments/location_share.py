"""Diagnostic (round 44): how much location do a screening export's features carry?

For each export, every subject's lung patches at 40 fixed landmarks (the harness's evaluation
rows, seed 7) are encoded with the encoder's own running BatchNorm statistics (eval mode: the
extraction a user gets without per-landmark statistics), and two numbers are printed:
- the share of the feature variance that lies between the landmarks' means;
- the accuracy of a linear classifier of the landmark from the features (5-fold, grouped by
  subject; chance 1/40).

Usage: python location_share.py --store S --truth T --export DIR [DIR ...]
"""
import argparse
import json

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.preprocessing import StandardScaler

from drasclr.features.encoding import encode_patches
from drasclr.store.reader import PatchStore
from drasclr.train.export import load_encoder

ap = argparse.ArgumentParser()
ap.add_argument("--store", required=True)
ap.add_argument("--truth", required=True)
ap.add_argument("--export", nargs="+", required=True)
ap.add_argument("--threads", type=int, default=1)
a = ap.parse_args()
torch.set_num_threads(a.threads)
truth = pd.read_parquet(a.truth)
store = PatchStore(a.store)
rng = np.random.default_rng(7)  # the harness's evaluation landmarks (recipe_probe.py)
lms = np.sort(rng.choice(np.unique(truth.landmark), 40, replace=False))
rows = truth[truth.landmark.isin(lms) & truth.valid & (truth.lung_fraction >= 0.5)]
rows = rows.sort_values(["landmark", "store_index"]).reset_index(drop=True)
lms = np.array([j for j in lms if (rows.landmark == j).sum() >= 2])  # as recipe_probe.py
rows = rows[rows.landmark.isin(lms)].reset_index(drop=True)
locs = np.asarray(store.landmarks_norm, dtype=np.float32)
hu = {int(j): store.read_landmark_batch(int(j), rows[rows.landmark == j].store_index.to_numpy())
      for j in lms}
for path in a.export:
    enc, _ = load_encoder(path)
    enc.eval()
    with torch.inference_mode():
        x = np.concatenate([np.concatenate([encode_patches(enc, h[i:i + 128], locs[j],
                                                           torch.device("cpu"))
                                            for i in range(0, len(h), 128)])
                            for j, h in hu.items()]).astype(np.float64)
    lab = rows.landmark.to_numpy()
    xc = x - x.mean(axis=0)
    means = pd.DataFrame(xc).groupby(lab).transform("mean").to_numpy()
    share = float((means ** 2).sum() / (xc ** 2).sum())
    acc = []
    for tr, te in GroupKFold(5).split(x, lab, rows.store_index.to_numpy()):
        sc = StandardScaler().fit(x[tr])
        clf = LogisticRegression(max_iter=300, C=1.0).fit(sc.transform(x[tr]), lab[tr])
        acc.append(float((clf.predict(sc.transform(x[te])) == lab[te]).mean()))
    print(json.dumps({"export": path, "between_landmark_share": round(share, 3),
                      "landmark_accuracy": round(float(np.mean(acc)), 3)}), flush=True)
