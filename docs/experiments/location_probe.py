"""Does a trained encoder use its anatomical location? (the paper's Table 7, on our encoders).

For one exported encoder: the patch probe (per-landmark BatchNorm, the harness's 40 evaluation
landmarks, lung patches; as ``recipe_probe.py``) with each patch encoded at its own landmark's
location, and again with every landmark's patches encoded at another evaluation landmark's
location (a fixed random derangement). For Loc-CondConv layers it also reports how far the
kernel moves with location: mean over landmarks of ||W(l) - mean_l W(l)|| / ||mean_l W(l)||,
and the spread of the routing weights. An encoder without location conditioning scores the
same both ways (a check of the script).

Usage: python location_probe.py --store S --truth T --export DIR [--tag NAME] [--out FILE]
"""
import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from drasclr.features.encoding import encode_patches_landmark_bn
from drasclr.nn.condconv import LocCondConv3d
from drasclr.probing import ridge_probe
from drasclr.store.reader import PatchStore
from drasclr.train.export import load_encoder

ap = argparse.ArgumentParser()
ap.add_argument("--store", required=True)
ap.add_argument("--truth", required=True)
ap.add_argument("--export", required=True)
ap.add_argument("--tag", default="")
ap.add_argument("--out", default="")
ap.add_argument("--eval-landmarks", type=int, default=40)
ap.add_argument("--threads", type=int, default=1)
a = ap.parse_args()
torch.set_num_threads(a.threads)
truth = pd.read_parquet(a.truth)
store = PatchStore(a.store)
enc, _ = load_encoder(Path(a.export))
enc.eval()
rng = np.random.default_rng(7)  # the harness's evaluation landmarks
lms = np.sort(rng.choice(np.unique(truth.landmark), a.eval_landmarks, replace=False))
rows = truth[truth.landmark.isin(lms) & truth.valid & (truth.lung_fraction >= 0.5)]
rows = rows.sort_values(["landmark", "store_index"]).reset_index(drop=True)
lms = np.array([j for j in lms if (rows.landmark == j).sum() >= 2])
rows = rows[rows.landmark.isin(lms)].reset_index(drop=True)
locs = np.asarray(store.landmarks_norm, dtype=np.float32)
perm_rng = np.random.default_rng(11)
while True:  # a derangement: no landmark keeps its own location
    perm = perm_rng.permutation(len(lms))
    if not (perm == np.arange(len(lms))).any():
        break
other = {int(j): int(lms[p]) for j, p in zip(lms, perm)}
cpu = torch.device("cpu")
feats: dict[str, list[np.ndarray]] = {"own": [], "other": []}
for j in lms:
    hu = store.read_landmark_batch(int(j), rows[rows.landmark == j].store_index.to_numpy())
    feats["own"].append(encode_patches_landmark_bn(enc, hu, locs[int(j)], cpu))
    feats["other"].append(encode_patches_landmark_bn(enc, hu, locs[other[int(j)]], cpu))
res: dict[str, object] = {"tag": a.tag, "export": a.export}
groups = rows.store_index.to_numpy()
for mode, f in feats.items():
    X = np.concatenate(f)
    for tgt in ("emphysema", "cle", "pse"):
        s = ridge_probe(X, rows[tgt].to_numpy(), groups, 5, 2, 0).summary()
        res[f"{mode}_{tgt}_r2"] = round(float(s["r2"]), 3)
        res[f"{mode}_{tgt}_auc"] = round(float(s["auc"]), 3)
X_own, X_other = np.concatenate(feats["own"]), np.concatenate(feats["other"])
res["feature_change"] = round(float(np.linalg.norm(X_own - X_other) / np.linalg.norm(X_own)), 4)
# How far each Loc-CondConv kernel moves with location, over all landmarks of the store.
L = torch.as_tensor(locs)
kernel_moves, routing_cv = [], []
with torch.no_grad():
    for m in enc.modules():
        if isinstance(m, LocCondConv3d):
            alpha = m.routing_weights(L)  # (J, E)
            W = torch.einsum("je,e...->j...", alpha, m.experts_weight).flatten(1)
            mean = W.mean(0, keepdim=True)
            kernel_moves.append(float(((W - mean).norm(dim=1) / mean.norm()).mean()))
            routing_cv.append(float((alpha.std(0) / alpha.mean(0)).mean()))
res["kernel_move_per_layer"] = [round(v, 4) for v in kernel_moves]
res["routing_cv_per_layer"] = [round(v, 4) for v in routing_cv]
print(json.dumps(res))
if a.out:
    with open(a.out, "a") as fh:
        fh.write(json.dumps(res) + "\n")
