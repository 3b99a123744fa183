"""What do extracted patch features encode? (docs/results.md, round 4)

For each feature folder (``drasclr extract`` / ``bench science`` output), a subject-grouped ridge
probe from frozen features to:
- patch level (lung patches, lung fraction >= 0.5): the patch's true emphysema fraction;
- subject level (features averaged over the subject's lung patches): the scan-level nuisances of
  the synthetic cohort that identify a scan without any disease (scanner noise sigma, blur sigma,
  parenchymal texture amplitude, inspiration) and the subject's true emphysema fraction.

A contrastive encoder that tells subjects apart by their scan-level nuisances scores high on the
nuisance rows and low on emphysema.

Usage: python what_features_encode.py --run RUN NAME=FEATURES_DIR [NAME=FEATURES_DIR ...]
(RUN holds cohort/manifest.parquet and patch_truth.parquet, as ``bench science`` writes them.)
"""
import argparse
import json

import numpy as np
import pandas as pd

from drasclr.probing import ridge_probe

NUISANCES = ("noise_hu", "blur_mm", "texture_hu", "inspiration")

ap = argparse.ArgumentParser()
ap.add_argument("--run", required=True)
ap.add_argument("features", nargs="+")
a = ap.parse_args()
truth = pd.read_parquet(f"{a.run}/patch_truth.parquet")
gen = pd.read_parquet(f"{a.run}/cohort/manifest.parquet").set_index("subject_id")
lung = truth[truth.valid & (truth.lung_fraction >= 0.5)][["subject_id", "landmark", "emphysema"]]
out: dict[str, dict[str, float]] = {}
for name, path in (e.split("=", 1) for e in a.features):
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
