"""Does an encoder's patch feature add disease information to the patch's LAA-950?

Reads a finished ``drasclr bench science`` folder and probes, with the benchmark's patch probe
(``patch_metrics``: standardised ridge, 5 subject-grouped folds, 2 repeats), four feature sets
per method and pretraining seed: LAA-950 alone, the encoder alone, the encoder plus LAA-950,
and LAA-950 plus as many Gaussian random features as the encoder has (the sanity row: extra
columns that carry nothing must not lift LAA-950). Prints a markdown table and writes JSON.

    python docs/experiments/complement_probe.py RUN_DIR --out complement.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from drasclr.bench.science import SCIENCE_METHODS, slug
from drasclr.evaluate.patch_probe import density_scores, features_for_truth
from drasclr.evaluate.science import beside, patch_metrics
from drasclr.features import read_patch_features
from drasclr.store.reader import PatchStore

METRICS = ("patch_lesion_r2", "patch_lesion_auc", "patch_cle_r2", "patch_pse_r2")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a bench science --out folder")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = ap.parse_args()
    truth = pd.read_parquet(args.run / "patch_truth.parquet")
    store = PatchStore(args.run / "store")
    laa = density_scores(store, truth)["LAA-950 (patch)"]
    rows = []

    def score(label: str, method: str, seed: int, x: np.ndarray) -> None:
        m, _ = patch_metrics(x, truth, repeats=2, seed=max(seed, 0))
        rows.append({"method": method, "seed": seed, "features": label,
                     **{k: float(np.mean(m[k])) for k in METRICS}})
        print(rows[-1], flush=True)

    score("LAA-950", "LAA-950 (patch)", -1, laa)
    for method in SCIENCE_METHODS:
        for seed in args.seeds:
            pf = read_patch_features(args.run / "features" / f"{slug(method)}_s{seed}")
            x = features_for_truth(pf.features.astype(np.float64), list(pf.subject_ids), truth)
            score("encoder", method, seed, x)
            score("encoder + LAA-950", method, seed, beside(x, laa))
            if method == "random encoder":
                noise = np.random.default_rng(seed).standard_normal(x.shape)
                score("LAA-950 + Gaussian noise", "LAA-950 (patch)", seed, beside(noise, laa))
    table = pd.DataFrame(rows)
    mean = table.groupby(["method", "features"], sort=False)[list(METRICS)].agg(["mean", "std"])
    args.out.write_text(json.dumps({"run": str(args.run), "rows": rows}, indent=1))
    print(mean.round(3).to_string())


if __name__ == "__main__":
    main()
