"""Issue 10 item 7, the throughput part, as one script for a lent GPU: samples/s of a full DrasCLR
training step per GPU, Loc-CondConv against static convolutions, float32 against mixed precision
(the training loop's ``PretrainConfig.amp``: float16 with loss scaling on CUDA).

Needs only torch and numpy (the device image has both; Ray, MONAI and ANTs are not needed), so it
runs from the repository root as ``PYTHONPATH=. python3 docs/experiments/gpu_item7.py --out DIR``.
Every variant of one batch size is timed in the same process, interleaved
(:func:`drasclr.nn.speed.best_seconds_interleaved`), after a warm-up step. Writes
``DIR/item7_throughput.json`` and prints one line per variant.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from drasclr.nn.speed import training_step_speed


def main() -> None:
    """Time every batch size and print the table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, nargs="+", default=[32, 128])
    ap.add_argument("--neighbours", type=int, default=2, help="k (the paper's 2)")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    info = {"device": a.device, "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    rows = []
    for b in a.batch:
        ts = training_step_speed(batch_size=b, neighbours=a.neighbours, queue_size=4096,
                                 steps=a.repeats, threads=None, device=a.device,
                                 amp=(False, True))
        rows.append(ts)
        for v, rate in ts["samples_per_s"].items():
            print(f"B={b:4d} k={a.neighbours} {v:16s} {rate:9.1f} samples/s")
        print(f"B={b:4d} Loc-CondConv / static step time "
              f"{ts['step_time_ratio_loccondconv_over_static']:.2f}; amp speed-up "
              + ", ".join(f"{c} {s:.2f}x" for c, s in ts["amp_speedup"].items()), flush=True)
    res = {**info, "rows": rows, "seconds": round(time.perf_counter() - t0, 1)}
    (a.out / "item7_throughput.json").write_text(json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if k != "rows"}))


if __name__ == "__main__":
    main()
