"""Recipe experiment harness (docs/results.md): pretrain one configuration with overrides,
log the training-time patch probe, then probe frozen patch features of all subjects at 40
landmarks (BatchNorm running statistics and per-landmark statistics)."""
"""Experiment harness: pretrain with overrides, then probe patch features (eval BN and per-landmark BN)."""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from drasclr.features.encoding import encode_patches, encode_patches_landmark_bn
from drasclr.probing import ridge_probe
from drasclr.store.reader import PatchStore
from drasclr.train.config import PretrainConfig
from drasclr.train.export import export_initial_encoder, load_encoder
from drasclr.train.run import train_single_process

ap = argparse.ArgumentParser()
ap.add_argument("--store"); ap.add_argument("--truth"); ap.add_argument("--out")
ap.add_argument("--steps", type=int, default=300); ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--set", nargs="*", default=[]); ap.add_argument("--random", action="store_true")
ap.add_argument("--eval-landmarks", type=int, default=36); ap.add_argument("--eval-only", action="store_true")
ap.add_argument("--momentum-encoder", action="store_true",
                help="also probe the key (momentum) encoder of the final checkpoint (per-landmark BN)")
a = ap.parse_args()
torch.set_num_threads(a.threads)
over = {}
for kv in a.set:
    k, v = kv.split("=", 1); over[k] = json.loads(v)
out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
truth = pd.read_parquet(a.truth)
probe_file = out.parent / "probe_train.npz"
if not probe_file.exists():
    from drasclr.evaluate.patch_probe import write_probe_file
    write_probe_file(truth, probe_file, 100, 30, seed=123)
base = dict(steps=a.steps, batch_size=32, queue_size=256, lr=0.03, lr_warmup_steps=20,
            checkpoint_every=10**6, log_every=10, probe_every=50, probe_file=str(probe_file),
            threads_per_worker=a.threads, seed=0)
base.update(over)
cfg = PretrainConfig(**base)
store = PatchStore(a.store)
t0 = time.time()
if a.eval_only:
    exp = out / "export"
elif a.random:
    exp = export_initial_encoder(cfg, store, out)
else:
    train_single_process(cfg, a.store, out, overwrite=True)
    exp = out / "export"
train_s = time.time() - t0
enc, _ = load_encoder(exp)
encoders = {"lmbn": enc}
if a.momentum_encoder and not a.random:
    import copy
    from drasclr.train.checkpoint import load_model_state
    from drasclr.train.export import encoder_state
    ck = json.loads((out / "result.json").read_text())["checkpoint"]
    enc_k = copy.deepcopy(enc)
    enc_k.load_state_dict(encoder_state(load_model_state(ck)["model"], "key_encoder.")); enc_k.eval()
    encoders["mom_lmbn"] = enc_k
# evaluation probe: all subjects x eval-landmarks fixed landmarks (seed 7)
rng = np.random.default_rng(7)
lms = np.sort(rng.choice(np.unique(truth.landmark), a.eval_landmarks, replace=False))
rows = truth[truth.landmark.isin(lms) & truth.valid & (truth.lung_fraction >= 0.5)].sort_values(["landmark", "store_index"]).reset_index(drop=True)
locs = np.asarray(store.landmarks_norm, dtype=np.float32)
feats = {"eval": [], **{m: [] for m in encoders}}
cpu = torch.device("cpu")
lms = np.array([j for j in lms if (rows.landmark == j).sum() >= 2])
rows = rows[rows.landmark.isin(lms)].reset_index(drop=True)
enc.eval()
with torch.inference_mode():
    for j in lms:
        r = rows[rows.landmark == j]
        hu = store.read_landmark_batch(int(j), r.store_index.to_numpy())
        feats["eval"].append(np.concatenate([encode_patches(enc, hu[i:i + 128], locs[int(j)], cpu)
                                             for i in range(0, len(hu), 128)]))
for j in lms:  # BatchNorm statistics of this landmark's patches (FeaturesConfig.bn_stats: landmark)
    hu = store.read_landmark_batch(int(j), rows[rows.landmark == j].store_index.to_numpy())
    for m, e in encoders.items():
        feats[m].append(encode_patches_landmark_bn(e, hu, locs[int(j)], cpu))
res = {"name": out.name, "over": over, "steps": a.steps, "train_s": round(train_s, 1)}
for mode, f in feats.items():
    X = np.concatenate(f)
    for tgt in ("emphysema", "cle", "pse"):
        s = ridge_probe(X, rows[tgt].to_numpy(), rows.store_index.to_numpy(), 5, 2, 0).summary()
        res[f"{mode}_{tgt}_r2"] = round(s["r2"], 3); res[f"{mode}_{tgt}_auc"] = round(s["auc"], 3)
# density baselines on the same rows
hu_rows = []
for j in lms:
    r = rows[rows.landmark == j]
    hu_rows.append(store.read_landmark_batch(int(j), r.store_index.to_numpy()).reshape(len(r), -1))
H = np.concatenate(hu_rows)
for nm, t in (("laa950", -950), ("laa910", -910)):
    s = ridge_probe((H < t).mean(1), rows["emphysema"].to_numpy(), rows.store_index.to_numpy(), 5, 2, 0).summary()
    res[f"{nm}_emphysema_r2"] = round(s["r2"], 3)
mpath = out / "metrics.jsonl"
if mpath.exists():
    recs = [json.loads(l) for l in mpath.read_text().splitlines()]
    res["probe_curve"] = [(r["step"], round(r["probe_r2"], 3)) for r in recs if r.get("event") == "probe"]
    tr = [r for r in recs if r.get("event") == "train"]
    res["train_curve"] = [(r["step"], round(r["top1"], 2), round(r["top1_chance"], 3), round(r["between_subject_cosine"], 3)) for r in tr[:: max(1, len(tr)//8)]]
print(json.dumps(res))
with open(out.parent / "results.jsonl", "a") as fh: fh.write(json.dumps(res) + "\n")
