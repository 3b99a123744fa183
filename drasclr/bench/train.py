"""``drasclr bench train``: training-step, feature-extraction, data-wait and queue-memory figures.

Measured in one run and printed with the issue's targets:

- full DrasCLR step (query, key, k neighbours, both losses, SGD, enqueue) samples/s with
  Loc-CondConv vs static convolutions (target ratio >= 0.85), and with ``--amp`` each in mixed
  precision too (the training loop's ``PretrainConfig.amp``);
- feature extraction samples/s: the published per-sample loop, the mixed-location path (one
  subject's whole landmark set in one batch; target >= 1.5x loop), landmark-major batches with
  one shared kernel (target >= 0.9x static) and the static encoder;
- fraction of step time waiting for data in a real single-process run over a synthetic store
  (target < 10 %);
- memory-bank bytes per worker, measured as the real allocation (process RSS growth, or the CUDA
  allocator's statistics with ``--device cuda``) in N = 1 and N = 2 worker processes running at
  once, printed beside ``L*K*D*4/N``.

Wall-clock and CPU-time rates are both printed (:mod:`drasclr.nn.speed`); on a shared machine
compare the CPU-time figures.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from drasclr.nn.speed import encoder_forward_speed, training_step_speed


def _bank_allocation(num_landmarks: int, queue_size: int, dim: int, workers: int, rank: int,
                     device: str) -> dict[str, Any]:
    """In a fresh worker process: memory that building rank ``rank``'s memory bank allocates.

    CPU: growth of the process's resident set (RSS) from just before to just after building the
    bank (keys are written, so every page is touched). CUDA: growth of the caching allocator's
    ``memory_allocated``.
    """
    import gc

    import psutil

    from drasclr.moco.memory_bank import MemoryBank
    from drasclr.train.loader import landmark_shard

    own = landmark_shard(num_landmarks, workers, rank).tolist()
    dev = torch.device(device)
    proc = psutil.Process()
    # a one-landmark toy bank first, so the kernels' code pages that the first build touches are
    # resident before "before" is read: the growth measured below is the bank's memory alone
    MemoryBank(own[:1], size=2, dim=dim)
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.init()
        before = torch.cuda.memory_allocated(dev)
        bank = MemoryBank(own, size=queue_size, dim=dim).to(dev)
        torch.cuda.synchronize(dev)
        measured, source = torch.cuda.memory_allocated(dev) - before, "cuda memory_allocated"
    else:
        before = proc.memory_info().rss
        bank = MemoryBank(own, size=queue_size, dim=dim)
        gc.collect()
        measured, source = proc.memory_info().rss - before, "process RSS"
    return {"rank": rank, "landmarks": len(own), "measured_bytes": int(measured),
            "source": source,
            "tensor_bytes": sum(b.nelement() * b.element_size() for b in bank.buffers())}


def queue_memory(num_landmarks: int, queue_size: int, dim: int, workers: tuple[int, ...],
                 device: str = "cpu") -> list[dict[str, Any]]:
    """Memory each worker's memory bank really allocates, with N workers running at once.

    For each N, N fresh processes (spawned together, one per rank) each build their shard's
    bank and report its allocation (:func:`_bank_allocation`); the formula ``L*K*D*4/N`` is
    printed beside it, not substituted for it.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    rows = []
    for n in workers:
        with ProcessPoolExecutor(n, mp_context=mp.get_context("spawn")) as pool:
            futs = [pool.submit(_bank_allocation, num_landmarks, queue_size, dim, n, r, device)
                    for r in range(n)]
            ranks = [f.result() for f in futs]
        rows.append({
            "workers": n,
            "ranks": ranks,
            "measured_bytes_max": max(r["measured_bytes"] for r in ranks),
            "formula_bytes": num_landmarks * queue_size * dim * 4 / n,
        })
    return rows


def data_wait(batch_size: int, steps: int, patch_size: int, threads: int) -> dict[str, Any]:
    """Data-wait fraction of a short single-process run over a synthetic store."""
    from drasclr.train.config import PretrainConfig
    from drasclr.train.loop import read_metrics
    from drasclr.train.run import train_single_process
    from drasclr.train.synthetic import make_synthetic_store

    with tempfile.TemporaryDirectory() as tmp:
        store = make_synthetic_store(Path(tmp) / "store", 8, batch_size * 2, patch_size)
        cfg = PretrainConfig(batch_size=batch_size, steps=steps, queue_size=256,
                             log_every=steps, checkpoint_every=steps, threads_per_worker=threads)
        train_single_process(cfg, store, Path(tmp) / "out")
        rec = [m for m in read_metrics(Path(tmp) / "out") if m["event"] == "train"][-1]
    return {"batch_size": batch_size, "steps": steps,
            "data_wait_fraction": rec["data_wait_fraction"],
            "samples_per_s": rec["samples_per_s"]}


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    """All measurements; returns a JSON-able dict."""
    t0 = time.perf_counter()
    out: dict[str, Any] = {"threads": args.threads, "device": args.device,
                           "cuda_available": torch.cuda.is_available()}
    out["train_step"] = training_step_speed(
        batch_size=args.step_batch, queue_size=args.queue_size, steps=args.repeats,
        threads=args.threads, device=args.device, amp=(False, True) if args.amp else (False,),
    )
    out["extraction"] = encoder_forward_speed(
        batch_size=args.extract_batch, paths=("shared", "static", "auto", "loop"),
        repeats=args.repeats, threads=args.threads, device=args.device,
    )
    out["data_wait"] = data_wait(args.wait_batch, args.wait_steps, 32, args.threads)
    out["queue_memory"] = queue_memory(args.landmarks, args.queue_size, 128, (1, 2), args.device)
    out["seconds"] = time.perf_counter() - t0
    return out


def run_from_args(args: argparse.Namespace, say: Any = None) -> dict[str, Any]:
    """``drasclr bench train``: :func:`run_bench` (also written to ``--json`` when given)."""
    res = run_bench(args)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str))
    return res


def register(sub: Any) -> None:
    """Add ``bench train`` (printed by :mod:`drasclr.commands.bench`)."""
    p = sub.add_parser("train", help="training step, feature extraction, data wait, queue memory")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--amp", action="store_true",
                   help="also time the training step in mixed precision (float16 on CUDA, "
                        "bfloat16 on CPU)")
    p.add_argument("--step-batch", dest="step_batch", type=int, default=32,
                   help="subjects per training step (default 32)")
    p.add_argument("--extract-batch", dest="extract_batch", type=int, default=581,
                   help="patches per extraction batch (581 = one subject's landmark set)")
    p.add_argument("--wait-batch", dest="wait_batch", type=int, default=32,
                   help="batch size of the data-wait run (default 32)")
    p.add_argument("--wait-steps", dest="wait_steps", type=int, default=6,
                   help="optimizer steps of the data-wait run (default 6)")
    p.add_argument("--landmarks", type=int, default=581,
                   help="L for the queue memory figure (default 581)")
    p.add_argument("--queue-size", dest="queue_size", type=int, default=4096,
                   help="K, keys per landmark queue, for the step and queue memory figures "
                        "(default 4096)")
    p.add_argument("--repeats", type=int, default=2,
                   help="timed runs of each step / forward pass after one warm-up; the best is "
                        "reported (default 2)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.set_defaults(bench_run=run_from_args)
