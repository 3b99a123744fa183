"""Draw ``drasclr bench science``'s figure for a finished run folder, e.g. one made before the
command drew it (docs/results.md embeds these).

Usage: python science_figure.py RUN OUT.png
The per-seed patch probe comes from the run's science.json when it has it, otherwise from its
``metrics/<method>_s<seed>.json`` files; the training probe from each run's ``metrics.jsonl``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from drasclr.bench.science import IMAGE_METRICS, SCIENCE_METHODS, per_seed, probe_curve
from drasclr.fsutil import slug
from drasclr.report.figures import science_figure


def per_seed_of(run: Path, doc: dict) -> dict[str, list[float]]:
    """Method -> patch probe per pretraining seed (the mean over its CV repeats)."""
    if "per_seed_patch_lesion_r2" in doc:
        return doc["per_seed_patch_lesion_r2"]
    return per_seed({m: [json.loads((run / "metrics" / f"{slug(m)}_s{s}.json").read_text())
                         for s in doc["config"]["seeds"]] for m in SCIENCE_METHODS})


def main(run: Path, png: Path) -> None:
    """Write the figure of ``run`` to ``png``."""
    doc = json.loads((run / "science.json").read_text())
    curves = {f"{m} s{s}": probe_curve(run / "models" / f"{slug(m)}_s{s}")
              for m, over in SCIENCE_METHODS.items() if over is not None
              for s in doc["config"]["seeds"]}
    print(science_figure(doc["rows"], per_seed_of(run, doc), curves, png,
                         image_metrics=IMAGE_METRICS))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
