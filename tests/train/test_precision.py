"""Mixed-precision pretraining (``PretrainConfig.amp``) on CPU: bfloat16 autocast in the loop,
float32 state, exact resume."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from drasclr.train.config import PretrainConfig
from drasclr.train.loop import read_metrics
from drasclr.nn.precision import StepScaler, autocast, autocast_dtype
from drasclr.train.run import train_single_process
from drasclr.train.synthetic import make_synthetic_store

# Fixture type from tests/train/conftest.py: run directory -> (model file, rank-0 file).
CheckpointReader = Callable[[Path], tuple[dict, dict]]



@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 landmarks x 16 subjects of 32^3 CT-like patches.

    32^3, not the 16^3 of the other training tests: torch 2.13's CPU bfloat16 ``conv3d`` returns
    a wrong (inf, run-to-run different) weight gradient for a 1^3 input at stride 2, which is
    what the encoder's last layer sees on 16^3 patches.
    """
    return make_synthetic_store(tmp_path_factory.mktemp("amp") / "store", 8, 16, 32, seed=1)


def _config(**kw: object) -> PretrainConfig:
    base: dict[str, object] = {"batch_size": 4, "queue_size": 8, "steps": 4, "lr": 0.05,
                               "checkpoint_every": 2, "log_every": 1, "threads_per_worker": 1,
                               "deterministic": True, "momentum": 0.99, "prefetch": 2}
    base.update(kw)
    return PretrainConfig(**base)  # type: ignore[arg-type]


def test_precision_helpers_on_cpu() -> None:
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu) == torch.bfloat16
    assert autocast_dtype(torch.device("cuda")) == torch.float16
    conv = torch.nn.Conv3d(1, 2, 3)
    x = torch.randn(1, 1, 6, 6, 6)
    with autocast(cpu, True):
        assert conv(x).dtype == torch.bfloat16
    with autocast(cpu, False):
        assert conv(x).dtype == torch.float32
    scaler = StepScaler(cpu, amp=True)  # bfloat16 needs no loss scaling
    assert not scaler.active and scaler.state_dict() == {}


def test_amp_run_uses_bfloat16_and_keeps_float32_state(store: Path, tmp_path: Path,
                                                       last_checkpoint: CheckpointReader) -> None:
    full = train_single_process(_config(), store, tmp_path / "fp32")
    amp = train_single_process(_config(amp=True), store, tmp_path / "amp")
    assert full is not None and amp is not None and amp.steps == 4
    loss = {name: [m["loss"] for m in read_metrics(tmp_path / name) if m["event"] == "train"]
            for name in ("fp32", "amp")}
    assert all(np.isfinite(loss["amp"]))
    # the first step sees the same weights and views: only the precision differs
    assert loss["amp"][0] != loss["fp32"][0], "the amp run's loss is bit-identical to float32"
    assert loss["amp"][0] == pytest.approx(loss["fp32"][0], rel=0.05)
    model, rank = last_checkpoint(tmp_path / "amp")
    assert all(v.dtype == torch.float32 for v in model["model"].values()
               if v.is_floating_point())
    assert rank["memory_bank"]["keys"].dtype == torch.float32
    assert int(rank["memory_bank"]["pointers"].sum()) > 0
    assert model["schedule"]["scaler"] == {}


def test_amp_run_resumes_exactly(store: Path, tmp_path: Path,
                                 last_checkpoint: CheckpointReader) -> None:
    cfg = _config(amp=True)
    assert train_single_process(cfg, store, tmp_path / "a") is not None
    assert train_single_process(cfg, store, tmp_path / "b", stop_after=2) is None
    resumed = train_single_process(cfg, store, tmp_path / "b")
    assert resumed is not None and resumed.resumed and resumed.steps == 4
    (ma, ra), (mb, rb) = last_checkpoint(tmp_path / "a"), last_checkpoint(tmp_path / "b")
    for key, value in ma["model"].items():
        assert torch.equal(value, mb["model"][key]), key
    assert torch.equal(ra["memory_bank"]["keys"], rb["memory_bank"]["keys"])
