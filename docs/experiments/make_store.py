"""Build a screening run folder: a synthetic cohort, its store and the patch truth (the first
stages of ``drasclr bench science``), as the round*.sh scripts read it (``R/store``,
``R/patch_truth.parquet``). Rounds 26-31 used the bench preset (200 subjects) at cohort seed 6,
round 32 the demo preset at cohort seed 1.

Usage: python docs/experiments/make_store.py RUN COHORT_SEED [PRESET [N]]
    PRESET defaults to bench, N to 200 for bench and to the preset's own size otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path

from drasclr.bench.science import ScienceConfig, prepare
from drasclr.evaluate.patch_probe import read_patch_truth
from drasclr.raytools import ray_session
from drasclr.store.reader import PatchStore
from drasclr.synth.config import preset_config


def main(out: Path, seed: int, preset: str = "bench", n: int | None = None) -> None:
    """Synthesize, register and store a cohort of ``preset``, then cut its patch truth."""
    n = n or (200 if preset == "bench" else preset_config(preset).n_subjects)
    cfg = ScienceConfig(preset=preset, n_subjects=n, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    with ray_session(num_cpus=2):
        cohort, store = prepare(out, cfg, progress=True)
    truth = out / "patch_truth.parquet"
    if not truth.exists():
        read_patch_truth(cohort, PatchStore(store), progress=True).to_parquet(truth)
    print("done", out)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:4],
         *(int(v) for v in sys.argv[4:5]))
