"""DrasCLR's patch probe minus plain MoCo's and minus its ablation's, seed by seed, over several
``drasclr bench science`` runs (docs/results.md, "Every benchmark run, paired by pretraining seed").

Usage: python paired_by_seed.py LABEL=RUN [LABEL=RUN ...]
RUN is a ``bench science`` output folder. A seed's value is the mean over its CV repeats: the
``per_seed_patch_lesion_r2`` of the run's science.json when it has one, otherwise read from the
run's ``metrics/<method>_s<seed>.json`` files (runs made before that key existed).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from drasclr.bench.science import per_seed

METHODS = {"DrasCLR": "drasclr", "DrasCLR (no neighbour loss)": "drasclr_no_neighbour_loss",
           "plain MoCo": "plain_moco"}


def seeds_of(run: Path) -> dict[str, list[float]]:
    """Method -> patch probe per pretraining seed."""
    doc = json.loads((run / "science.json").read_text())
    if "per_seed_patch_lesion_r2" in doc:
        return {m: doc["per_seed_patch_lesion_r2"][m] for m in METHODS}
    return per_seed({m: [json.loads((run / "metrics" / f"{stem}_s{s}.json").read_text())
                         for s in doc["config"]["seeds"]] for m, stem in METHODS.items()})


def main(args: list[str]) -> None:
    """Print the markdown table and the pooled mean ± sd of each difference."""
    pooled: dict[str, list[float]] = {"MoCo": [], "ablation": []}
    print("| run | DrasCLR − MoCo, per seed | DrasCLR − ablation, per seed |\n|---|---|---|")
    for arg in args:
        label, run = arg.split("=", 1)
        s = seeds_of(Path(run))
        d = {"MoCo": [a - b for a, b in zip(s["DrasCLR"], s["plain MoCo"], strict=True)],
             "ablation": [a - b for a, b in zip(s["DrasCLR"], s["DrasCLR (no neighbour loss)"],
                                                strict=True)]}
        for k, v in d.items():
            pooled[k] += v
        print(f"| {label} | " + " | ".join(" / ".join(f"{x:+.4f}" for x in d[k]) for k in d) + " |")
    for k, v in pooled.items():
        print(f"DrasCLR − {k}: {statistics.fmean(v):+.3f} ± {statistics.stdev(v):.3f} over "
              f"{len(v)} pairs, above on {sum(x > 0 for x in v)}")


if __name__ == "__main__":
    main(sys.argv[1:])
