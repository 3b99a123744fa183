"""Build a screening run folder: a bench cohort, its store and the patch truth (the first stages
of ``drasclr bench science``), as the round*.sh scripts read it (``R/store``,
``R/patch_truth.parquet``). Rounds 26-31 used cohort seed 6.

Usage: python docs/experiments/make_store.py RUN COHORT_SEED
"""

from __future__ import annotations

import sys
from pathlib import Path

from drasclr.bench.science import ScienceConfig, prepare
from drasclr.evaluate.patch_probe import read_patch_truth
from drasclr.raytools import ray_session
from drasclr.store.reader import PatchStore


def main(out: Path, seed: int) -> None:
    """Synthesize, register and store a 200-subject bench cohort, then cut its patch truth."""
    cfg = ScienceConfig(preset="bench", n_subjects=200, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    with ray_session(num_cpus=2):
        cohort, store = prepare(out, cfg, progress=True)
    truth = out / "patch_truth.parquet"
    if not truth.exists():
        read_patch_truth(cohort, PatchStore(store), progress=True).to_parquet(truth)
    print("done", out)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
