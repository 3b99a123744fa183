"""CUDA paths: generator, pinned memory, one-GPU and one-rank NCCL training, AMP, timing.

Marked ``gpu``: deselected by the default run (``addopts``); run them with ``pytest -m gpu`` on a
machine with a CUDA device. Without one they skip with that reason instead of failing.
"""

from __future__ import annotations

import math
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from drasclr.imaging.augment import AugmentParams, augment
from drasclr.moco.model import DrasCLR
from drasclr.store.reader import PatchStore
from drasclr.train.config import PretrainConfig
from drasclr.train.loader import LandmarkBatchSampler, PatchLoader
from drasclr.train.run import train_single_process
from drasclr.train.synthetic import make_synthetic_store

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 landmarks x 16 subjects of 16^3 patches."""
    return make_synthetic_store(tmp_path_factory.mktemp("gpu") / "store", 8, 16, 16, seed=1)


def _config(**kw: object) -> PretrainConfig:
    base: dict[str, object] = {"batch_size": 4, "queue_size": 8, "steps": 4, "lr": 0.05,
                               "checkpoint_every": 2, "log_every": 1, "threads_per_worker": 1,
                               "momentum": 0.99, "prefetch": 2, "use_gpu": True}
    base.update(kw)
    return PretrainConfig(**base)  # type: ignore[arg-type]


def test_cuda_generator_drives_the_augmentation() -> None:
    x = torch.rand(4, 1, 16, 16, 16, device="cuda") * 2 - 1
    params = AugmentParams()

    def run(seed: int) -> torch.Tensor:
        return augment(x, torch.Generator(device="cuda").manual_seed(seed), params)

    a, b, c = run(3), run(3), run(4)
    assert a.device.type == "cuda" and a.shape == x.shape
    assert torch.equal(a, b), "the same CUDA generator seed must give the same views"
    assert not torch.equal(a, c)


def test_loader_pins_memory_and_copies_exactly(store: Path) -> None:
    ps = PatchStore(store)
    sampler = LandmarkBatchSampler(ps.valid, ps.neighbours, 4, 2, 0, 1, seed=0)
    with PatchLoader(ps, sampler, prefetch=2, pin_memory=True) as loader:
        batch = loader.next_batch()
    assert batch.patches.is_pinned()
    on_gpu = batch.patches.to("cuda", non_blocking=True)
    torch.cuda.synchronize()
    spec = batch.spec
    want = ps.read_landmarks_batch([spec.landmark, *spec.neighbours], spec.store_indices)
    assert np.array_equal(on_gpu.cpu().numpy(), want)


def test_single_gpu_training_run(store: Path, tmp_path: Path) -> None:
    from drasclr.train.loop import read_metrics

    result = train_single_process(_config(), store, tmp_path / "run")
    assert result is not None
    train = [m for m in read_metrics(tmp_path / "run") if m["event"] == "train"]
    assert len(train) == 4 and all(math.isfinite(m["loss"]) for m in train)


def test_amp_training_run_scales_float16_losses(tmp_path: Path) -> None:
    """``amp`` on CUDA: float16 autocast with a gradient scaler whose state is checkpointed."""
    from drasclr.train.checkpoint import latest_checkpoint
    from drasclr.train.loop import read_metrics

    store32 = make_synthetic_store(tmp_path / "store", 8, 16, 32, seed=1)
    result = train_single_process(_config(amp=True), store32, tmp_path / "run")
    assert result is not None
    train = [m for m in read_metrics(tmp_path / "run") if m["event"] == "train"]
    assert len(train) == 4 and all(math.isfinite(m["loss"]) for m in train)
    ckpt = latest_checkpoint(tmp_path / "run" / "checkpoints")
    assert ckpt is not None
    sched = torch.load(ckpt / "model.pt", weights_only=True)["schedule"]
    assert sched["scaler"]["scale"] > 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_nccl_one_rank_run(store: Path, tmp_path: Path) -> None:
    """The distributed code path (DDP, all-gathers of shuffle-BN) on a one-rank NCCL group."""
    import torch.distributed as dist

    from drasclr.train.loop import WorkerContext, read_metrics, train_worker

    assert dist.is_nccl_available()
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0,
                            world_size=1)
    published: list[int] = []
    try:
        torch.cuda.set_device(0)
        ctx = WorkerContext(rank=0, world_size=1, device=torch.device("cuda", 0),
                            distributed=True,
                            publish=lambda d, step, m: published.append(step), progress=False)
        final = train_worker(_config(), store, tmp_path / "run", ctx)
    finally:
        dist.destroy_process_group()
    assert final["step"] == 4 and published and published[-1] == 4
    train = [m for m in read_metrics(tmp_path / "run") if m["event"] == "train"]
    assert train and all(math.isfinite(m["loss"]) for m in train)


def test_amp_training_step_matches_float32() -> None:
    """A bf16-autocast DrasCLR step: finite, parameters move, loss close to the fp32 loss."""
    torch.manual_seed(0)
    q, k = (torch.randn(4, 1, 32, 32, 32, device="cuda") for _ in range(2))
    ngb = torch.randn(4, 2, 1, 32, 32, 32, device="cuda")
    locs = torch.rand(3, 3, device="cuda") * 2 - 1
    losses = {}
    for amp in (False, True):
        torch.manual_seed(0)
        model = DrasCLR.build(landmarks=range(4), queue_size=64, seed=0).cuda()
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
        before = [p.detach().clone() for p in model.encoder.parameters()]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            out = model(q, k, ngb, locs[0], locs[1:], landmark=1)
        opt.zero_grad(set_to_none=True)
        out["loss"].float().backward()
        opt.step()
        losses[amp] = float(out["loss"])
        assert math.isfinite(losses[amp])
        moved = any(not torch.equal(a, b) for a, b in zip(before, model.encoder.parameters()))
        assert moved, "the optimiser step changed no encoder parameter"
    assert losses[True] == pytest.approx(losses[False], rel=0.05)


def test_best_seconds_waits_for_cuda_work() -> None:
    """A queued 0.2 s kernel is timed as >= 0.2 s (launch alone takes microseconds)."""
    from drasclr.nn.speed import best_seconds

    torch.cuda.init()
    torch.cuda._sleep(1000)  # warm the kernel
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    torch.cuda._sleep(int(1e8))
    torch.cuda.synchronize()
    per_1e8 = time.perf_counter() - t0
    cycles = int(1e8 * 0.2 / per_1e8)
    wall, _ = best_seconds(lambda: torch.cuda._sleep(cycles), repeats=2, warmup=1)
    assert wall >= 0.15


def test_queue_memory_is_measured_by_the_cuda_allocator() -> None:
    from drasclr.bench.train import queue_memory

    rows = queue_memory(64, 1024, 128, (1, 2), device="cuda")
    for row in rows:
        for r in row["ranks"]:
            assert r["source"] == "cuda memory_allocated"
            keys = r["landmarks"] * 1024 * 128 * 4
            assert keys <= r["measured_bytes"] <= keys * 1.1 + 2**20
