"""Plain MoCo's mixed batches (``batch_mode: mixed``): random (landmark, subject) patches."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from drasclr.config import ConfigError
from drasclr.store.reader import PatchStore
from drasclr.train.config import PretrainConfig
from drasclr.train.loader import LoaderError, MixedBatchSampler, PatchLoader
from drasclr.train.loop import read_metrics
from drasclr.train.run import train_single_process
from drasclr.train.synthetic import make_synthetic_store

# Fixture type from tests/train/conftest.py: run directory -> (model file, rank-0 file).
CheckpointReader = Callable[[Path], tuple[dict, dict]]



@pytest.fixture(scope="module")
def holey(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 landmarks x 24 subjects of 8^3 patches, a quarter of them invalid."""
    return make_synthetic_store(tmp_path_factory.mktemp("mix") / "store", 8, 24, 8,
                                invalid_fraction=0.25, seed=2)


def _moco(**kw: object) -> PretrainConfig:
    base: dict[str, object] = {
        "model": "moco", "conditioning": "none", "neighbours": 0, "batch_mode": "mixed",
        "batch_size": 4, "queue_size": 16, "steps": 4, "lr": 0.05, "checkpoint_every": 2,
        "log_every": 1, "threads_per_worker": 1, "deterministic": True, "momentum": 0.99,
        "prefetch": 2}
    base.update(kw)
    return PretrainConfig(**base)  # type: ignore[arg-type]


def test_mixed_batches_draw_valid_distinct_patches_across_ranks(holey: Path) -> None:
    valid = PatchStore(holey).valid
    B, world = 4, 2
    samplers = [MixedBatchSampler(valid, B, r, world, seed=3) for r in range(world)]
    steps = samplers[0].steps_per_epoch
    assert steps == int(valid.sum()) // world // B and steps > 0
    assert all(sm.steps_per_epoch == steps for sm in samplers)
    seen = []
    for sm in samplers:
        assert sm.k == 0 and sm.landmarks.tolist() == list(range(valid.shape[0]))
        specs = [sm.spec(t) for t in range(steps)]
        for spec in specs:
            assert spec.landmark == -1 and spec.neighbours.size == 0
            assert spec.row_landmarks is not None and len(spec.store_indices) == B
            assert valid[spec.row_landmarks, spec.store_indices].all()
        pairs = [(int(j), int(s)) for spec in specs
                 for j, s in zip(spec.row_landmarks, spec.store_indices)]
        seen += pairs
    assert len(set(seen)) == len(seen) == world * steps * B  # an epoch repeats no patch
    # batches mix locations; the next epoch is another shuffle; the seed fixes the sequence
    firsts = [samplers[0].spec(t).row_landmarks for t in range(steps)]
    assert np.mean([len(np.unique(x)) > 1 for x in firsts]) > 0.5
    nxt = samplers[0].spec(steps)
    assert not np.array_equal(nxt.store_indices, samplers[0].spec(0).store_indices) or \
        not np.array_equal(nxt.row_landmarks, samplers[0].spec(0).row_landmarks)
    again = MixedBatchSampler(valid, B, 0, world, seed=3).spec(1)
    assert np.array_equal(again.row_landmarks, samplers[0].spec(1).row_landmarks)
    with pytest.raises(LoaderError, match="no full batch"):
        MixedBatchSampler(valid, int(valid.sum()) + 1)


def test_loader_reads_each_row_at_its_own_landmark(holey: Path) -> None:
    store = PatchStore(holey)
    sampler = MixedBatchSampler(store.valid, 4, seed=0)
    with PatchLoader(store, sampler, prefetch=2) as loader:
        batches = [loader.next_batch() for _ in range(3)]
    for batch in batches:
        spec = batch.spec
        assert batch.patches.shape == (1, 4, 8, 8, 8)
        for b, (j, s) in enumerate(zip(spec.row_landmarks, spec.store_indices)):
            want = store.read_landmark_batch(int(j), [int(s)])[0]
            assert np.array_equal(batch.patches[0, b].numpy(), want)
    lms, idx = np.array([3, 0, 3, 5]), np.array([1, 2, 0, 1])
    pairs = store.read_pairs(lms, idx)
    for i in range(4):
        assert np.array_equal(pairs[i], store.read_landmark_batch(int(lms[i]), [int(idx[i])])[0])
    with pytest.raises(ValueError, match="store indices"):
        store.read_pairs([0, 1], [0])


def test_mixed_batches_are_plain_mocos_only() -> None:
    with pytest.raises(ConfigError, match="batch_mode"):
        PretrainConfig(batch_mode="mixed")  # DrasCLR: one landmark a batch
    with pytest.raises(ConfigError, match="batch_mode"):
        PretrainConfig(batch_mode="random")
    assert PretrainConfig().batch_mode == "landmark"


def test_plain_moco_trains_on_mixed_batches_and_resumes_exactly(
        holey: Path, tmp_path: Path, last_checkpoint: CheckpointReader) -> None:
    cfg = _moco()
    assert train_single_process(cfg, holey, tmp_path / "a") is not None
    assert train_single_process(cfg, holey, tmp_path / "b", stop_after=2) is None
    resumed = train_single_process(cfg, holey, tmp_path / "b")
    assert resumed is not None and resumed.resumed and resumed.steps == 4
    (ma, ra), (mb, rb) = last_checkpoint(tmp_path / "a"), last_checkpoint(tmp_path / "b")
    for key, value in ma["model"].items():
        assert torch.equal(value, mb["model"][key]), key
    bank = ra["memory_bank"]
    assert torch.equal(bank["keys"], rb["memory_bank"]["keys"])
    assert (bank["subjects"] >= 0).all()  # pre-filled and written with real subjects
    train = [m for m in read_metrics(tmp_path / "a") if m["event"] == "train"]
    assert len(train) == 4 and all(np.isfinite(m["loss"]) for m in train)
    card = (tmp_path / "a" / "export" / "model_card.md").read_text()
    assert "batch 4 random (landmark, subject) patches (mixed batches) per worker" in card
