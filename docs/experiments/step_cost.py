"""Seconds per training step of the science benchmark's methods on a real store, measured the
way ``drasclr bench science`` calibrates (steps 10-30 of a 30-step run, logging every 10, two
threads, no probes), one after the other in one process.

    python docs/experiments/step_cost.py STORE nongb full nongb full rows8 moco
"""
import shutil
import sys
import tempfile

from drasclr.train.config import PretrainConfig
from drasclr.train.loop import read_metrics
from drasclr.train.run import train_single_process

METHODS = {
    "full": dict(neighbours=2),
    "nongb": dict(neighbours=0),
    "rows8": dict(neighbours=2, neighbour_rows=8),
    "moco": dict(model="moco", conditioning="none", neighbours=0),
}
store, modes = sys.argv[1], sys.argv[2:]
for mode in modes:
    cfg = PretrainConfig(batch_size=32, lr=0.03, momentum=0.99, queue_size=4096,
                         lr_warmup_steps=20, log_every=10, checkpoint_every=10**6,
                         threads_per_worker=2, probe_every=0, steps=30, prefill_queue=False,
                         **METHODS[mode])
    out = tempfile.mkdtemp(prefix=f"step_cost_{mode}_")
    train_single_process(cfg, store, out, overwrite=True)
    t = {m["step"]: m["time"] for m in read_metrics(out) if m.get("event") == "train"}
    print(f"{mode}: {(t[30] - t[10]) / 20:.3f} s/step", flush=True)
    shutil.rmtree(out)
