"""What do extracted patch features encode? (docs/results.md, round 4)

For each feature folder (``drasclr extract`` / ``bench science`` output), a subject-grouped ridge
probe from frozen features to:
- patch level (lung patches, lung fraction >= 0.5): the patch's true emphysema fraction;
- subject level (features averaged over the subject's lung patches): the scan-level nuisances of
  the synthetic cohort that identify a scan without any disease (scanner noise sigma, blur sigma,
  parenchymal texture amplitude, inspiration) and the subject's true emphysema fraction.

A contrastive encoder that tells subjects apart by their scan-level nuisances scores high on the
nuisance rows and low on emphysema.

Usage: python what_features_encode.py --run RUN NAME=DIR [NAME=DIR ...]
DIR is a features folder, or an encoder export (encoder_config.json): exports are encoded here
on all subjects x 40 landmarks drawn with seed 7 (as recipe_probe.py), per-landmark BatchNorm.
(RUN holds cohort/synth_config.yaml and patch_truth.parquet, as ``bench science`` writes them.)
"""
import argparse
import json
import os

import numpy as np
import pandas as pd

from drasclr.probing import ridge_probe

NUISANCES = ("noise_hu", "blur_mm", "texture_hu", "inspiration")

ap = argparse.ArgumentParser()
ap.add_argument("--run", required=True)
ap.add_argument("features", nargs="+")
a = ap.parse_args()
truth = pd.read_parquet(f"{a.run}/patch_truth.parquet")
# the latents are a pure function of the cohort's saved config (drasclr.synth.latents)
from drasclr.synth.config import SynthConfig
from drasclr.synth.latents import sample_latents, subject_ids

scfg = SynthConfig.load(f"{a.run}/cohort/synth_config.yaml")
gen = sample_latents(scfg)
gen.index = subject_ids(scfg)
lung = truth[truth.valid & (truth.lung_fraction >= 0.5)][["subject_id", "landmark", "emphysema"]]
out: dict[str, dict[str, float]] = {}
def encode_export(path: str) -> pd.DataFrame:
    """Patch features of an encoder export at 40 landmarks (seed 7), per-landmark BatchNorm."""
    import torch

    from drasclr.features.encoding import encode_patches_landmark_bn
    from drasclr.store.reader import PatchStore
    from drasclr.train.export import load_encoder

    torch.set_num_threads(1)
    store = PatchStore(f"{a.run}/store")
    enc, _ = load_encoder(path)
    lms = np.sort(np.random.default_rng(7).choice(np.unique(truth.landmark), 40, replace=False))
    rows = truth[truth.landmark.isin(lms) & truth.valid].sort_values(["landmark", "store_index"])
    locs = np.asarray(store.landmarks_norm, dtype=np.float32)
    parts = []
    for j in lms:
        r = rows[rows.landmark == j]
        if len(r) < 2:
            continue
        hu = store.read_landmark_batch(int(j), r.store_index.to_numpy())
        f = encode_patches_landmark_bn(enc, hu, locs[int(j)], torch.device("cpu"))
        parts.append(pd.concat([r[["subject_id", "landmark"]].reset_index(drop=True),
                                pd.DataFrame(f, columns=[f"f{k:03d}" for k in range(f.shape[1])])],
                               axis=1))
    return pd.concat(parts, ignore_index=True)


for name, path in (e.split("=", 1) for e in a.features):
    if os.path.isfile(f"{path}/encoder_config.json"):
        pf = encode_export(path)
    else:
        pf = pd.read_parquet(f"{path}/patch_features.parquet")
    cols = [c for c in pf.columns if c.startswith("f") and c[1:].isdigit()]
    d = lung.merge(pf[["subject_id", "landmark", *cols]], on=["subject_id", "landmark"])
    d = d.dropna(subset=cols)
    x = d[cols].to_numpy(np.float64)
    groups = pd.factorize(d.subject_id)[0]
    res = {"patch emphysema": ridge_probe(x, d.emphysema.to_numpy(), groups, 5, 2, 0).summary()["r2"]}
    subj = d.groupby("subject_id")[[*cols, "emphysema"]].mean()
    xs = subj[cols].to_numpy(np.float64)
    ids = np.arange(len(subj))
    targets = {k: gen.loc[subj.index, k].to_numpy(np.float64) for k in NUISANCES}
    targets["subject emphysema"] = subj.emphysema.to_numpy()
    for k, y in targets.items():
        res[k] = ridge_probe(xs, y, ids, 5, 2, 0).summary()["r2"]
    out[name] = {k: round(v, 3) for k, v in res.items()}
    print(name, out[name], flush=True)
print(json.dumps(out, indent=1))
