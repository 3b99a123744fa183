"""Seconds per training step on a real store, timed exactly as ``drasclr bench science``
calibrates (:func:`drasclr.bench.science.step_seconds`: 32 steps, the first 8 untimed, logging
every 8, two threads, no probes; a queue pre-fill is printed apart), one configuration after
the other in one process.

    python docs/experiments/step_cost.py STORE nongb full nongb full rows8 moco bank
    python docs/experiments/step_cost.py STORE pairnh pairnh64 moco moco64 pairnh pairnh64 moco moco64
"""
import sys
import tempfile
from pathlib import Path

from drasclr.bench.science import step_seconds
from drasclr.train.config import PretrainConfig

METHODS = {
    "full": dict(neighbours=2),
    "nongb": dict(neighbours=0),
    "rows8": dict(neighbours=2, neighbour_rows=8),
    "nlocal": dict(neighbours=2, neighbour_local_weight=1.0),
    "bank": dict(neighbours=2, neighbour_source="bank"),
    "moco": dict(model="moco", conditioning="none", neighbours=0),
    "pair": dict(batch_size=16, neighbours=1, neighbour_local_weight=1.0),
    "pairnh": dict(batch_size=16, neighbours=1, neighbour_local_weight=1.0, neighbour_head=True,
                   momentum=0.95, temperature=0.2),
    "pairnh64": dict(batch_size=32, neighbours=1, neighbour_local_weight=1.0,
                     neighbour_head=True, momentum=0.95, temperature=0.2),
    "moco64": dict(model="moco", conditioning="none", neighbours=0, batch_size=64,
                   temperature=0.5),
}
store, modes = Path(sys.argv[1]), sys.argv[2:]
with tempfile.TemporaryDirectory(prefix="step_cost_") as tmp:
    for mode in modes:
        cfg = PretrainConfig(**{**dict(batch_size=32, lr=0.03, momentum=0.99, queue_size=4096,
                                       lr_warmup_steps=20, checkpoint_every=10**6,
                                       threads_per_worker=2), **METHODS[mode]})
        per_step, fill = step_seconds(cfg, store, Path(tmp) / mode, 32)
        print(f"{mode}: {per_step:.3f} s/step" + (f" (+ {fill:.1f} s queue pre-fill)" if fill else ""),
              flush=True)
