"""Pretraining on Ray Train with 2 CPU workers (gloo): sharded queues, learning, worker loss.

One Ray Train run carries all checks (each run costs ~15 s of start-up).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from drasclr.store.reader import PatchStore
from drasclr.train.checkpoint import CheckpointError, load_model_state, rank_file
from drasclr.train.config import PretrainConfig
from drasclr.train.export import load_encoder
from drasclr.train.loop import build_model, probe_loss, read_metrics
from drasclr.train.run import pretrain
from drasclr.train.synthetic import make_synthetic_store

L, S, K, D = 8, 16, 24, 128  # 4 visits x 8 keys per landmark: pointers end at 8


def test_two_worker_run_shards_queues_learns_and_survives_a_killed_worker(
    ray_local: None, tmp_path: Path
) -> None:
    store_path = make_synthetic_store(tmp_path / "store", L, S, 16, subject_offset_hu=200, seed=0)
    cfg = PretrainConfig(
        workers=2, cpus_per_worker=0.5, threads_per_worker=1, batch_size=8, queue_size=K,
        steps=16, lr=0.1, momentum=0.99, checkpoint_every=4, log_every=2, max_failures=2,
        prefetch=2, run_name="tiny", queue_cap_by_cohort=False,  # K as given: memory layout
    )
    out = tmp_path / "run"
    marker = tmp_path / "killed"
    result = pretrain(cfg, store_path, out, progress=False,
                      fault={"rank": 1, "step": 6, "marker": str(marker)})

    # --- a worker was killed after step 6 and training resumed from the step-4 checkpoint
    assert marker.exists()
    assert result.steps == 16
    log = read_metrics(out)
    starts = [m for m in log if m["event"] == "start"]
    assert [m["step"] for m in starts] == [0, 4], starts
    assert starts[1]["restored_from"] is not None
    logged_before = [m["step"] for m in log[: log.index(starts[1])] if m["event"] == "train"]
    assert max(logged_before) - starts[1]["step"] <= cfg.checkpoint_every  # <= one interval lost
    train_steps = [m["step"] for m in log[log.index(starts[1]):] if m["event"] == "train"]
    assert train_steps == list(range(6, 17, 2))

    # --- each worker checkpointed only its own landmarks' queues: L*K*D*4/N bytes each
    ckpt = result.checkpoint
    banks = [torch.load(ckpt / rank_file(r), weights_only=True) for r in range(2)]
    ids = [set(b["memory_bank"]["landmark_ids"].tolist()) for b in banks]
    assert ids[0].isdisjoint(ids[1]) and ids[0] | ids[1] == set(range(L))
    for b in banks:
        assert b["memory_bank"]["keys"].shape == (L // 2, K, D)
        assert b["memory_bank"]["keys"].nbytes == L * K * D * 4 // 2
        assert (b["memory_bank"]["pointers"] == 32 % K).all()

    # --- the model learned: subject-discrimination loss on fixed batches fell below the start
    store = PatchStore(store_path)
    init = build_model(cfg, np.arange(L), False)
    trained = build_model(cfg, np.arange(L), False)
    state = load_model_state(ckpt)["model"]
    trained.load_state_dict({**state, **{f"memory_bank.{k}": v
                                         for k, v in trained.memory_bank.state_dict().items()}})
    before, after = [], []
    for j in range(L):
        x = torch.from_numpy(store.read_landmark_batch(j, store.store_indices))
        loc = torch.tensor(store.landmarks_norm[j], dtype=torch.float32)
        before.append(probe_loss(init, x, loc, seed=j))
        after.append(probe_loss(trained, x, loc, seed=j))
    # the margin is CPU-dependent: > 0.05 on the 2-core AMD EPYC of earlier sessions, 0.039 on
    # an Intel Xeon (2026-12-06, at the code of 13a1789 and after); 16 steps learn little
    assert np.mean(after) < np.mean(before) - 0.02, (before, after)
    train_log = [m for m in log if m["event"] == "train"]
    assert all(np.isfinite(m["loss"]) and m["samples_per_s"] > 0 for m in train_log)

    # --- export loads; a re-run returns the finished run without training
    encoder, info = load_encoder(out / "export")
    assert info["training"]["world_size"] == 2 and info["training"]["steps"] == 16
    with torch.no_grad():
        h = encoder(torch.zeros(2, 1, 16, 16, 16), torch.tensor(info["landmarks"]["landmarks_norm"][3]))
    assert h.shape == (2, 128) and torch.isfinite(h).all()
    again = pretrain(cfg, store_path, out, progress=False)
    assert again.steps == 16 and len(read_metrics(out)) == len(log)

    # --- a corrupt checkpoint to resume from is refused before any training starts
    (out / "result.json").unlink()
    victim = ckpt / rank_file(1)
    victim.write_bytes(victim.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"rank_001\.pt: corrupt"):
        pretrain(cfg, store_path, out, progress=False)


def test_two_workers_train_a_neighbour_head_through_a_warm_up(
    ray_local: None, tmp_path: Path
) -> None:
    """DDP with the paired recipe's own neighbour head: warm-up steps without the neighbour loss
    leave ``g_n`` out of the loss, and DDP still reduces it (no unused-parameter failure);
    the neighbour loss joins after the warm-up."""
    store_path = make_synthetic_store(tmp_path / "store", L, S, 16, subject_offset_hu=200, seed=0)
    cfg = PretrainConfig(
        workers=2, cpus_per_worker=0.5, threads_per_worker=1, batch_size=4, queue_size=K,
        steps=4, warmup_steps=2, neighbours=1, neighbour_local_weight=1.0, neighbour_head=True,
        checkpoint_every=100, log_every=1, prefetch=2, run_name="nh",
        queue_cap_by_cohort=False,
    )
    result = pretrain(cfg, store_path, tmp_path / "run", progress=False)
    assert result.steps == 4
    train = [m for m in read_metrics(tmp_path / "run") if m["event"] == "train"]
    assert [m["step"] for m in train] == [1, 2, 3, 4]
    assert all(np.isfinite(m["loss"]) for m in train)
    assert [m["neighbour_loss"] > 0 for m in train] == [False, False, True, True]
    state = load_model_state(result.checkpoint)["model"]
    assert any(k.startswith("neighbour_head.") for k in state)
