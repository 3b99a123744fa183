"""Throughput measurements for the encoder and the DrasCLR training step (samples per second).

Every function returns a plain dict (JSON-friendly) so that ``drasclr.bench`` or a notebook can
record it. Each timing, of every path alike, is the best of ``repeats`` runs after a warm-up run
(CUDA synchronised before and after each timed run), measured twice: wall
clock (``samples_per_s``) and process CPU time (``samples_per_cpu_s``: samples per CPU-second
summed over all threads). On a machine shared with other jobs the wall clock swings by 2-5x while
the CPU time stays within a few percent, so compare paths with the CPU-time figures there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from drasclr.nn.condconv import LocCondConv3d
from drasclr.nn.encoder import ENCODER_LAYERS, Conditioning, DrasEncoder

#: The published landmark grid (../shared/reference next to the checkout), used when present.
PUBLISHED_GRID = Path(__file__).resolve().parents[3] / "shared/reference/atlas_patch_loc.npy"


def synchronize() -> None:
    """Wait for queued CUDA work (a no-op unless this process has initialised CUDA).

    CUDA kernels run asynchronously: without a synchronisation before and after, a timer
    measures only the launch of the work.
    """
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall, process CPU) seconds of one call of ``fn``, CUDA work included."""
    synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    synchronize()
    return time.perf_counter() - t0, time.process_time() - c0


def best_seconds(
    fn: Callable[[], object], repeats: int = 3, warmup: int = 1
) -> tuple[float, float]:
    """Best (wall, process CPU) seconds of ``repeats`` calls of ``fn`` after ``warmup`` calls."""
    return best_seconds_interleaved({"fn": fn}, repeats, warmup)["fn"]


def best_seconds_interleaved(
    fns: dict[str, Callable[[], object]], repeats: int = 3, warmup: int = 1
) -> dict[str, tuple[float, float]]:
    """Best (wall, CPU) seconds per function, timing them in turn within each repeat.

    Every function gets the same warm-up calls and the same number of timed calls.
    Interleaving keeps slow drifts of a shared machine's load from favouring one function.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    synchronize()
    best = {k: (float("inf"), float("inf")) for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            wall, cpu = timed(fn)
            best[k] = (min(best[k][0], wall), min(best[k][1], cpu))
    return best


def _rates(n: int, timings: dict[str, tuple[float, float]]) -> dict[str, dict[str, float]]:
    return {
        "seconds": {k: w for k, (w, _) in timings.items()},
        "cpu_seconds": {k: c for k, (_, c) in timings.items()},
        "samples_per_s": {k: n / w for k, (w, _) in timings.items()},
        "samples_per_cpu_s": {k: n / c for k, (_, c) in timings.items()},
    }


def landmark_locations(n: int, seed: int = 0) -> Tensor:
    """(n, 3) normalised landmark locations in [-1, 1].

    The published 581-landmark grid (``../shared/reference/atlas_patch_loc.npy``) when present,
    normalised per axis over its bounding box and cycled to ``n`` rows; random points otherwise.
    """
    if PUBLISHED_GRID.exists():
        grid = np.load(PUBLISHED_GRID).astype(np.float64) + 16.0  # corners -> centres (voxels)
        lo, hi = grid.min(0), grid.max(0)
        norm = torch.from_numpy(2.0 * (grid - lo) / (hi - lo) - 1.0).float()
        return norm[torch.arange(n) % norm.shape[0]]
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, generator=g) * 2 - 1


def _setup(threads: int | None, seed: int) -> None:
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)


def encoder_forward_speed(
    batch_size: int = 581,
    patch_size: int = 32,
    paths: tuple[str, ...] = ("shared", "static", "auto", "batched", "grouped", "split", "loop"),
    repeats: int = 2,
    threads: int | None = 2,
    device: str = "cpu",
    train_mode: bool = False,
    seed: int = 0,
) -> dict[str, object]:
    """Encoder forward throughput (no autograd) for one batch, per execution path.

    ``shared`` runs one landmark for the whole batch; ``static`` is the unconditioned encoder;
    every other entry runs ``batch_size`` distinct landmarks (one subject's whole landmark set
    when ``batch_size`` = 581) through that Loc-CondConv path.

    Returns:
        ``{"batch_size", "threads", "seconds", "cpu_seconds", "samples_per_s",
        "samples_per_cpu_s"}``, each a ``{path: float}``.
    """
    _setup(threads, seed)
    dev = torch.device(device)
    cond = DrasEncoder("loccondconv").to(dev).train(train_mode)
    static = DrasEncoder("none").to(dev).train(train_mode)
    x = torch.randn(batch_size, 1, patch_size, patch_size, patch_size, device=dev)
    loc = landmark_locations(batch_size, seed).to(dev)
    fns: dict[str, Callable[[], object]] = {}
    for path in paths:
        if path == "static":
            fns[path] = lambda: static(x, loc)
        elif path == "shared":
            fns[path] = lambda: cond(x, loc[0])
        else:
            fns[path] = lambda p=path: cond(x, loc, p)
    with torch.inference_mode():  # every path, the loop too: one warm-up, best of repeats
        timings = best_seconds_interleaved(fns, repeats=repeats)
    rates = _rates(batch_size, timings)
    return {"batch_size": batch_size, "threads": torch.get_num_threads(), **rates}


def mixed_path_sweep(
    batch_size: int = 64,
    unique_counts: tuple[int, ...] = (2, 4, 8, 16, 32, 64),
    paths: tuple[str, ...] = ("split", "batched", "grouped"),
    repeats: int = 2,
    threads: int | None = 2,
    seed: int = 0,
) -> dict[str, object]:
    """Encoder forward samples/s with ``U`` distinct locations in a batch, per mixed path.

    Used to set ``SPLIT_MAX_UNIQUE_FRACTION`` (where ``split`` stops beating ``batched``).

    Returns:
        ``{"batch_size", "by_unique": {U: rates}}`` with rates as in :func:`encoder_forward_speed`.
    """
    _setup(threads, seed)
    enc = DrasEncoder("loccondconv").eval()
    x = torch.randn(batch_size, 1, 32, 32, 32)
    table = landmark_locations(max(unique_counts), seed)
    out: dict[int, dict[str, dict[str, float]]] = {}
    with torch.inference_mode():
        for u in unique_counts:
            loc = table[torch.arange(batch_size) % u]
            timings = best_seconds_interleaved(
                {p: (lambda p=p: enc(x, loc, p)) for p in paths}, repeats=repeats
            )
            out[u] = _rates(batch_size, timings)
    return {"batch_size": batch_size, "by_unique": out}


def layer_path_speed(
    batch_size: int = 64,
    paths: tuple[str, ...] = ("shared", "grouped", "experts", "split"),
    repeats: int = 2,
    threads: int | None = 2,
    seed: int = 0,
) -> dict[str, object]:
    """Per-layer forward time (ms) of each Loc-CondConv path over the encoder's 13 layers.

    Used to set ``EXPERTS_MAX_OUT_VOXELS``.

    Returns:
        ``{"batch_size", "layers": [{"in", "out", "stride", "size", "ms": {path: float},
        "cpu_ms": {path: float}}]}``.
    """
    _setup(threads, seed)
    size = 32
    rows: list[dict[str, object]] = []
    with torch.inference_mode():
        for c_in, c_out, stride in ENCODER_LAYERS:
            conv = LocCondConv3d(c_in, c_out, stride=stride)
            x = torch.randn(batch_size, c_in, size, size, size)
            loc = landmark_locations(batch_size, seed)
            timings = best_seconds_interleaved(
                {p: (lambda p=p: conv(x, loc[0] if p == "shared" else loc, p)) for p in paths},
                repeats=repeats,
            )
            ms = {p: 1e3 * w for p, (w, _) in timings.items()}
            cpu_ms = {p: 1e3 * c for p, (_, c) in timings.items()}
            rows.append({"in": c_in, "out": c_out, "stride": stride, "size": size, "ms": ms,
                         "cpu_ms": cpu_ms})
            size = (size - 1) // stride + 1
    return {"batch_size": batch_size, "layers": rows}


def training_step_speed(
    batch_size: int = 32,
    conditionings: tuple[Conditioning, ...] = ("loccondconv", "none"),
    neighbours: int = 2,
    queue_size: int = 4096,
    steps: int = 3,
    threads: int | None = 2,
    device: str = "cpu",
    seed: int = 0,
    amp: tuple[bool, ...] = (False,),
) -> dict[str, object]:
    """Throughput of full DrasCLR training steps at one landmark.

    One step: query, key and ``neighbours`` neighbour patches per subject; both losses; backward;
    SGD step (momentum 0.9, weight decay 1e-4); enqueue. Augmentation excluded. With ``True`` in
    ``amp`` each conditioning is also timed with the training loop's mixed precision
    (:mod:`drasclr.nn.precision`: float16 and loss scaling on CUDA, bfloat16 on CPU).

    Returns:
        ``{"batch_size", "neighbours", "threads", "seconds", "cpu_seconds", "samples_per_s",
        "samples_per_cpu_s"}`` (per step, ``{variant: float}``; a variant is the conditioning's
        name, with ``+amp`` appended for mixed precision), the Loc-CondConv over static
        step-time ratios (wall and CPU, float32) and, when timed, ``amp_speedup`` (float32 over
        mixed-precision step time, ``{conditioning: float}``). A sample is one subject at the
        landmark (1 query + 1 key + k neighbour patches).
    """
    from drasclr.moco.model import DrasCLR  # local import: moco depends on nn
    from drasclr.nn.precision import StepScaler, autocast

    _setup(threads, seed)
    dev = torch.device(device)
    p = 32
    locs = landmark_locations(1 + neighbours, seed).to(dev)
    q = torch.randn(batch_size, 1, p, p, p, device=dev)
    k = torch.randn(batch_size, 1, p, p, p, device=dev)
    ngb = torch.randn(batch_size, neighbours, 1, p, p, p, device=dev)

    def make_step(cond: Conditioning, mixed: bool) -> Callable[[], None]:
        torch.manual_seed(seed)
        model = DrasCLR.build(
            landmarks=range(8), conditioning=cond, queue_size=queue_size, seed=seed
        ).to(dev)
        opt = torch.optim.SGD(
            [w for w in model.parameters() if w.requires_grad],
            lr=0.01, momentum=0.9, weight_decay=1e-4,
        )
        scaler = StepScaler(dev, mixed)

        def step() -> None:
            with autocast(dev, mixed):
                out = model(q, k, ngb, locs[0], locs[1:], landmark=3)
            opt.zero_grad(set_to_none=True)
            scaler.backward(out["loss"])
            scaler.step(opt)
            model.enqueue(3, out["keys"])

        return step

    variants = {(f"{c}+amp" if m else c): (c, m) for m in amp for c in conditionings}
    timings = best_seconds_interleaved(
        {name: make_step(c, m) for name, (c, m) in variants.items()}, repeats=steps)
    rates = _rates(batch_size, timings)
    ratio = ratio_cpu = None
    if "loccondconv" in timings and "none" in timings:
        ratio = timings["loccondconv"][0] / timings["none"][0]
        ratio_cpu = timings["loccondconv"][1] / timings["none"][1]
    result: dict[str, object] = {
        "batch_size": batch_size,
        "neighbours": neighbours,
        "threads": torch.get_num_threads(),
        **rates,
        "step_time_ratio_loccondconv_over_static": ratio,
        "step_cpu_time_ratio_loccondconv_over_static": ratio_cpu,
    }
    if False in amp and True in amp:
        result["amp_speedup"] = {c: timings[c][0] / timings[f"{c}+amp"][0]
                                 for c in conditionings}
    return result
