"""Fixtures shared by the training tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from drasclr.train.checkpoint import latest_checkpoint, rank_file

CheckpointReader = Callable[[Path], tuple[dict, dict]]


def _read_last_checkpoint(out: Path) -> tuple[dict, dict]:
    """The newest checkpoint of a run directory as (model file, rank-0 file)."""
    ckpt = latest_checkpoint(out / "checkpoints")
    assert ckpt is not None, f"no checkpoint under {out}"
    return (torch.load(ckpt / "model.pt", weights_only=True),
            torch.load(ckpt / rank_file(0), weights_only=True))


@pytest.fixture(scope="session")
def last_checkpoint() -> CheckpointReader:
    """Reads a run's newest checkpoint: ``model, rank0 = last_checkpoint(run_dir)``."""
    return _read_last_checkpoint
