"""Diagnostic: the patch probe of seed 0's features with per-landmark BatchNorm statistics (the
benchmark's) and with the encoders' own running statistics, and the share of feature variance
that lies between landmarks (docs/results.md, "Do per-landmark BatchNorm statistics hand plain
MoCo DrasCLR's advantage?").

Usage: python bn_stats_probe.py RUN [RUN ...]
RUN is a ``drasclr bench science`` output folder; seed 0's ``features/<method>_s0_running``
(made for its dense maps) must be there.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from drasclr.evaluate.patch_probe import features_for_truth
from drasclr.evaluate.science import patch_metrics
from drasclr.features import read_patch_features

RUNS = ("drasclr_s0", "drasclr_no_neighbour_loss_s0", "plain_moco_s0", "random_encoder_s0")


def between_landmark_share(features: np.ndarray) -> float:
    """The share of the total variance of (subjects, landmarks, dims) features that lies
    between the landmarks' means (patches with NaN features left out)."""
    flat = features.reshape(-1, features.shape[-1])
    landmark = np.tile(np.arange(features.shape[1]), features.shape[0])
    keep = np.isfinite(flat).all(axis=1)
    x = flat[keep] - flat[keep].mean(axis=0)
    means = pd.DataFrame(x).groupby(landmark[keep]).transform("mean").to_numpy()
    return float((means ** 2).sum() / (x ** 2).sum())


def main(runs: list[str]) -> None:
    """Print one line per method for every run folder."""
    for root in map(Path, runs):
        truth = pd.read_parquet(root / "patch_truth.parquet")
        print(root)
        for run in RUNS:
            cells = []
            for suffix, label in (("", "per-landmark"), ("_running", "running")):
                pf = read_patch_features(root / "features" / f"{run}{suffix}")
                x = pf.features.astype(np.float64)
                metrics, _ = patch_metrics(features_for_truth(x, list(pf.subject_ids), truth),
                                           truth, 2, 0)
                cells.append(f"{label} {np.mean(metrics['patch_lesion_r2']):.3f} "
                             f"(between landmarks {between_landmark_share(x):.2f})")
            print(f"  {run:30s} " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
