"""What do an encoder's patch features encode? A subject-grouped ridge probe (docs/results.md,
round 2) from frozen patch features to the patch's true emphysema fraction and to two scan-level
nuisances of the synthetic cohort that a contrastive encoder could use to tell scans apart: the
scanner noise sigma (HU) and the true lung volume (inspiration and body size), both from the
cohort's manifest.parquet. Same lung patches as recipe_probe.py
(all subjects x 40 landmarks drawn with seed 7, lung fraction >= 0.5), BatchNorm running statistics.

Usage: python nuisance_probe.py --store S --truth T --cohort C --export NAME=DIR [NAME=DIR ...]
"""
import argparse
import json

import numpy as np
import pandas as pd
import torch

from drasclr.features.encoding import encode_patches
from drasclr.probing import ridge_probe
from drasclr.store.reader import PatchStore
from drasclr.train.export import load_encoder

ap = argparse.ArgumentParser()
ap.add_argument("--store"); ap.add_argument("--truth"); ap.add_argument("--cohort")
ap.add_argument("--export", nargs="+"); ap.add_argument("--eval-landmarks", type=int, default=40)
a = ap.parse_args()
torch.set_num_threads(1)
store = PatchStore(a.store)
truth = pd.read_parquet(a.truth)
gen = pd.read_parquet(f"{a.cohort}/manifest.parquet").set_index("subject_id")
rng = np.random.default_rng(7)
lms = np.sort(rng.choice(np.unique(truth.landmark), a.eval_landmarks, replace=False))
rows = truth[truth.landmark.isin(lms) & truth.valid & (truth.lung_fraction >= 0.5)]
rows = rows.sort_values(["landmark", "store_index"]).reset_index(drop=True)
lms = np.array([j for j in lms if (rows.landmark == j).sum() >= 2])
rows = rows[rows.landmark.isin(lms)].reset_index(drop=True)
sid = np.asarray(store.subject_ids)[rows.store_index.to_numpy()]
targets = {"emphysema": rows["emphysema"].to_numpy(),
           "noise_hu": gen.loc[sid, "noise_hu"].to_numpy(np.float64),
           "lung_volume": gen.loc[sid, "lung_volume_ml"].to_numpy(np.float64)}
hu = [store.read_landmark_batch(int(j), rows[rows.landmark == j].store_index.to_numpy())
      for j in lms]
locs = np.asarray(store.landmarks_norm, dtype=np.float32)
density = np.concatenate([(h < -950).reshape(len(h), -1).mean(1) for h in hu])
out = {"n_patches": len(rows)}
for name, path in [e.split("=", 1) for e in a.export]:
    enc, _ = load_encoder(path)
    enc.eval()
    with torch.inference_mode():
        x = np.concatenate([encode_patches(enc, h, locs[int(j)], torch.device("cpu"))
                            for h, j in zip(hu, lms)])
    out[name] = {t: round(ridge_probe(x, y, rows.store_index.to_numpy(), 5, 2, 0).summary()["r2"], 3)
                 for t, y in targets.items()}
out["LAA-950 (patch)"] = {t: round(ridge_probe(density, y, rows.store_index.to_numpy(), 5, 2,
                                               0).summary()["r2"], 3) for t, y in targets.items()}
print(json.dumps(out, indent=1))
