"""Pretraining without Ray: loader sharding, resume continuity, checkpoints, export, errors."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from drasclr.config import ConfigError
from drasclr.store.layout import StoreError
from drasclr.store.reader import PatchStore
from drasclr.train.checkpoint import CheckpointError, latest_checkpoint, rank_file
from drasclr.train.config import PretrainConfig
from drasclr.train.export import load_encoder
from drasclr.train.loader import (
    LandmarkBatchSampler,
    LoaderError,
    PatchLoader,
    landmark_shard,
)
from drasclr.train.loop import NonFiniteLossError, learning_rate, make_optimizer, read_metrics
from drasclr.train.run import train_single_process
from drasclr.train.synthetic import make_synthetic_store

L, S = 8, 16

# Fixture type from tests/train/conftest.py: run directory -> (model file, rank-0 file).
CheckpointReader = Callable[[Path], tuple[dict, dict]]



@pytest.fixture(scope="module")
def store16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 landmarks x 16 subjects of 16^3 CT-like patches, every patch valid."""
    return make_synthetic_store(tmp_path_factory.mktemp("s") / "store", L, S, 16, seed=1)


@pytest.fixture(scope="module")
def holey_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 x 24 patches of 8^3 with a quarter of the patches invalid."""
    return make_synthetic_store(
        tmp_path_factory.mktemp("h") / "store", L, 24, 8, invalid_fraction=0.25, seed=2
    )


def tiny_config(**kw: object) -> PretrainConfig:
    base = {"batch_size": 4, "queue_size": 8, "steps": 6, "lr": 0.05, "checkpoint_every": 3, "log_every": 1,
                "threads_per_worker": 1, "deterministic": True, "momentum": 0.99, "prefetch": 2}
    base.update(kw)
    return PretrainConfig(**base)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- loader
def test_landmark_shards_disjoint_and_covering() -> None:
    for n in (1, 2, 3, 8):
        shards = [set(landmark_shard(L, n, r).tolist()) for r in range(n)]
        assert set().union(*shards) == set(range(L))
        assert sum(len(s) for s in shards) == L
    with pytest.raises(LoaderError, match="only 8 landmarks"):
        landmark_shard(L, 9, 0)


def _check_epoch(sm: LandmarkBatchSampler, epoch: int, valid: np.ndarray, table: np.ndarray) -> None:
    """One epoch of ``sm``: sharded, valid, every full batch once, padding only repeats batches."""
    B, k = sm.batch_size, sm.k
    own = set(sm.landmarks.tolist())
    n_batches = sum(len(sm.eligible_subjects(j)) // B for j in own)
    assert n_batches == sm.batches_per_rank[sm.rank] >= 1
    specs = [sm.spec(epoch * sm.steps_per_epoch + t) for t in range(sm.steps_per_epoch)]
    for spec in specs:
        assert spec.epoch == epoch and spec.landmark in own
        assert spec.store_indices.shape == (B,)
        assert np.array_equal(spec.neighbours, table[spec.landmark, :k])
        for lm in [spec.landmark, *spec.neighbours]:
            assert valid[lm, spec.store_indices].all(), "an invalid patch was batched"
    # the first n_batches steps hold every full batch of every owned landmark, no subject twice
    seen: dict[int, list[int]] = {j: [] for j in own}
    for spec in specs[:n_batches]:
        seen[spec.landmark].extend(spec.store_indices.tolist())
    for j, subs in seen.items():
        assert len(subs) == len(set(subs)) == len(sm.eligible_subjects(j)) // B * B
    # the remaining (padding) steps cycle through the same batches in the same order
    for t in range(n_batches, sm.steps_per_epoch):
        pad, orig = specs[t], specs[t % n_batches]
        assert pad.landmark == orig.landmark
        assert np.array_equal(pad.store_indices, orig.store_indices)


def test_batches_are_sharded_valid_and_complete(holey_store: Path) -> None:
    store = PatchStore(holey_store)
    valid, table = store.valid, store.neighbours
    B, k, world = 4, 2, 2
    samplers = [LandmarkBatchSampler(valid, table, B, k, r, world, seed=3) for r in range(world)]
    assert samplers[0].steps_per_epoch == samplers[1].steps_per_epoch
    for sm in samplers:
        for epoch in (0, 1):
            _check_epoch(sm, epoch, valid, table)
    # the next epoch is another shuffle
    a = [samplers[0].spec(t).store_indices for t in range(samplers[0].steps_per_epoch)]
    e1 = samplers[0].steps_per_epoch
    b = [samplers[0].spec(e1 + t).store_indices for t in range(e1)]
    assert any(not np.array_equal(x, y) for x, y in zip(a, b))
    with pytest.raises(LoaderError, match="neighbour table has only"):
        LandmarkBatchSampler(valid, table, B, table.shape[1] + 1)
    with pytest.raises(LoaderError, match="no full batch"):
        LandmarkBatchSampler(valid, table, 64, k)


def test_uneven_shards_cycle_the_smaller_plan() -> None:
    """Batch counts 6 and 2: the small rank cycles its batches (a one-time pad crashed at step 4)."""
    S, B = 6, 2
    valid = np.zeros((4, S), dtype=bool)
    valid[[0, 2]] = True  # rank 0 owns 0, 2: 3 batches each
    valid[[1, 3], :2] = True  # rank 1 owns 1, 3: 1 batch each
    table = np.array([[2], [0], [0], [2]], dtype=np.int64)
    samplers = [LandmarkBatchSampler(valid, table, B, 1, r, 2, seed=5) for r in range(2)]
    assert samplers[0].batches_per_rank == (6, 2)
    assert [sm.steps_per_epoch for sm in samplers] == [6, 6]
    for sm in samplers:
        for epoch in range(3):
            _check_epoch(sm, epoch, valid, table)


@pytest.mark.parametrize(("num_landmarks", "world"), [(5, 2), (7, 3), (8, 3)])
def test_landmarks_not_divisible_by_workers(num_landmarks: int, world: int) -> None:
    rng = np.random.default_rng(num_landmarks * 10 + world)
    S = 20
    valid = rng.random((num_landmarks, S)) < 0.8
    table = np.stack(
        [(np.arange(num_landmarks) + d) % num_landmarks for d in (1, 2)], axis=1
    ).astype(np.int64)
    samplers = [LandmarkBatchSampler(valid, table, 3, 2, r, world, seed=1) for r in range(world)]
    assert len({sm.steps_per_epoch for sm in samplers}) == 1
    assert sorted(j for sm in samplers for j in sm.landmarks.tolist()) == list(range(num_landmarks))
    for sm in samplers:
        for epoch in range(2):
            _check_epoch(sm, epoch, valid, table)


def test_loader_reads_right_patches_and_resumes_position(holey_store: Path) -> None:
    store = PatchStore(holey_store)
    sampler = LandmarkBatchSampler(store.valid, store.neighbours, 4, 2, 1, 2, seed=0)
    with PatchLoader(store, sampler, prefetch=2) as loader:
        got = [loader.next_batch() for _ in range(5)]
        state = loader.state_dict()
        after = [loader.next_batch() for _ in range(3)]
    for batch in got:
        spec = batch.spec
        want = store.read_landmarks_batch([spec.landmark, *spec.neighbours], spec.store_indices)
        assert batch.patches.shape == (3, 4, 8, 8, 8)
        assert np.array_equal(batch.patches.numpy(), want)
    assert [b.spec.step for b in got] == list(range(5))
    restored = PatchLoader(store, sampler)
    restored.load_state_dict(json.loads(json.dumps(state)))  # plain JSON-able state
    again = [restored.next_batch() for _ in range(3)]
    restored.close()
    for a, b in zip(after, again):
        assert a.spec.step == b.spec.step and torch.equal(a.patches, b.patches)
    other = PatchLoader(store, LandmarkBatchSampler(store.valid, store.neighbours, 4, 2, 0, 2))
    with pytest.raises(LoaderError, match="rank"):
        other.load_state_dict(state)


# ----------------------------------------------------------------------------- schedule
def test_learning_rate_warmup_then_cosine() -> None:
    cfg = tiny_config(lr=0.1, lr_warmup_steps=4, steps=20)
    lrs = [learning_rate(cfg, s, 20) for s in range(20)]
    assert lrs[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:], strict=False))  # noqa: RUF007
    assert lrs[-1] < 0.01
    with pytest.raises(ConfigError, match="conditioning"):
        PretrainConfig(model="moco", conditioning="loccondconv")


def test_learning_rate_of_a_time_budget_follows_the_elapsed_share() -> None:
    cfg = tiny_config(lr=0.1, lr_warmup_steps=4, steps=10**6, time_budget_s=60.0)
    assert learning_rate(cfg, 1, 10**6, 0.9) == pytest.approx(0.05)  # warm-up stays in steps
    shares = [0.0, 0.25, 0.5, 1.0, 1.5]
    assert [learning_rate(cfg, 10, 10**6, f) for f in shares] == pytest.approx(
        [0.1, 0.1 * (1 + 0.5**0.5) / 2, 0.05, 0.0, 0.0])
    with pytest.raises(ConfigError, match="time_budget_s"):
        tiny_config(time_budget_s=-1.0)


def test_optimizer_choice() -> None:
    w = [torch.nn.Parameter(torch.ones(3))]
    sgd = make_optimizer(tiny_config(lr=0.1), w)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9
    adamw = make_optimizer(tiny_config(optimizer="adamw", lr=1e-3, weight_decay=0.05), w)
    assert isinstance(adamw, torch.optim.AdamW)
    assert (adamw.defaults["lr"], adamw.defaults["weight_decay"]) == (1e-3, 0.05)
    with pytest.raises(ConfigError, match="optimizer"):
        tiny_config(optimizer="lion")


# ----------------------------------------------------------------------------- resume
def test_resume_gives_identical_parameters_and_queues(store16: Path, tmp_path: Path,
                                                      last_checkpoint: CheckpointReader) -> None:
    cfg = tiny_config()
    straight = train_single_process(cfg, store16, tmp_path / "a")
    assert straight is not None and straight.steps == 6
    assert train_single_process(cfg, store16, tmp_path / "b", stop_after=3) is None
    assert latest_checkpoint(tmp_path / "b" / "checkpoints").name == "step_00000003"
    resumed = train_single_process(cfg, store16, tmp_path / "b")
    assert resumed is not None and resumed.resumed and resumed.steps == 6

    (ma, ra), (mb, rb) = last_checkpoint(tmp_path / "a"), last_checkpoint(tmp_path / "b")
    for key, value in ma["model"].items():
        assert torch.equal(value, mb["model"][key]), key
    assert torch.equal(ra["memory_bank"]["keys"], rb["memory_bank"]["keys"])
    assert torch.equal(ra["memory_bank"]["pointers"], rb["memory_bank"]["pointers"])
    assert ra["loader"] == rb["loader"]
    mom_a = [s["momentum_buffer"] for s in ma["optimizer"]["state"].values()]
    mom_b = [s["momentum_buffer"] for s in mb["optimizer"]["state"].values()]
    assert all(torch.equal(x, y) for x, y in zip(mom_a, mom_b))
    # training changed things: queues hold real keys, weights moved
    assert int(ra["memory_bank"]["pointers"].sum()) > 0
    fresh = train_single_process(cfg.replace(steps=1), store16, tmp_path / "c")
    assert fresh is not None
    w = "encoder.layers.0.conv.experts_weight"
    assert not torch.equal(last_checkpoint(tmp_path / "c")[0]["model"][w], ma["model"][w])

    # metrics: both runs logged every step; the resumed one restarted at step 3
    starts = [m for m in read_metrics(tmp_path / "b") if m["event"] == "start"]
    assert [m["step"] for m in starts] == [0, 3]
    train = [m for m in read_metrics(tmp_path / "a") if m["event"] == "train"]
    assert [m["step"] for m in train] == list(range(1, 7))
    for m in train:
        assert np.isfinite(m["loss"]) and 0 <= m["top1"] <= 1 and m["samples_per_s"] > 0
        assert 0 <= m["data_wait_fraction"] < 1

    # the export: encoder weights equal the checkpoint's query encoder
    encoder, info = load_encoder(straight.export_dir)
    assert info["encoder"]["conditioning"] == "loccondconv"
    assert len(info["landmarks"]["landmarks_norm"]) == L
    assert torch.equal(encoder.layers[0].conv.experts_weight, ma["model"][w])
    card = (straight.export_dir / "model_card.md").read_text()
    assert card.startswith("# DrasCLR encoder")
    assert ("neighbours from patches (sum of their embeddings, projected by the shared head), "
            "queue negatives on") in card
    x = torch.zeros(2, 1, 16, 16, 16)
    assert encoder(x, torch.tensor(info["landmarks"]["landmarks_norm"][0])).shape == (2, 128)
    # a finished run returns at once; another config in the same folder is refused
    assert train_single_process(cfg, store16, tmp_path / "a").steps == 6
    with pytest.raises(ConfigError, match="another config"):
        train_single_process(cfg.replace(lr=0.5), store16, tmp_path / "a")


# ----------------------------------------------------------------------------- errors
def test_corrupt_or_missing_checkpoint_is_a_clear_error(store16: Path, tmp_path: Path) -> None:
    cfg = tiny_config(steps=4, checkpoint_every=2)
    assert train_single_process(cfg, store16, tmp_path / "r", stop_after=2) is None
    ckpt = latest_checkpoint(tmp_path / "r" / "checkpoints")
    assert ckpt is not None
    rank0 = ckpt / rank_file(0)
    data = bytearray(rank0.read_bytes())
    data[len(data) // 2] ^= 0xFF
    rank0.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"rank_000\.pt: corrupt"):
        train_single_process(cfg, store16, tmp_path / "r")
    (ckpt / "model.pt").unlink()
    with pytest.raises(CheckpointError, match=r"model\.pt: missing"):
        train_single_process(cfg, store16, tmp_path / "r")


def test_store_with_other_schema_version_is_refused(store16: Path, tmp_path: Path) -> None:
    bad = tmp_path / "old_store"
    shutil.copytree(store16, bad)
    meta = json.loads((bad / "zarr.json").read_text())
    meta["attributes"]["patch_store"]["schema_version"] = 99
    (bad / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="schema_version 99"):
        train_single_process(tiny_config(), bad, tmp_path / "out")


def test_nan_loss_stops_with_a_diagnostic(store16: Path, tmp_path: Path) -> None:
    cfg = tiny_config(lr=1e30, steps=5, deterministic=False)
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step") as err:
        train_single_process(cfg, store16, tmp_path / "nan")
    diag = err.value.diagnostic
    assert diag["step"] >= 1 and diag["max_abs_parameter"] > 1e20
    assert len(diag["store_indices"]) == 4 and 0 <= diag["landmark"] < L
    saved = json.loads((tmp_path / "nan" / "nonfinite_loss.json").read_text())
    assert saved["step"] == diag["step"]
    trained = [m["step"] for m in read_metrics(tmp_path / "nan") if m["event"] == "train"]
    assert max(trained, default=0) <= diag["step"], "kept training after the NaN"


# ----------------------------------------------------------------------------- learning signals
def test_real_negatives_probe_and_collapse_metrics(store16: Path, tmp_path: Path) -> None:
    """From step 1 every negative is real (the other subjects of the batch; empty queue slots
    and the own subject masked); the probe runs at step 0 and every probe_every steps; the
    train records carry the between-subject cosine, chance level and the collapse flag."""
    store = PatchStore(store16)
    # probe target: each patch's mean input intensity (what any encoder should carry)
    idx = np.repeat(store.store_indices, L)
    lms = np.tile(np.arange(L), S)
    target = np.array([store.read_landmark_batch(int(j), [int(i)]).mean()
                       for j, i in zip(lms, idx)])
    probe = tmp_path / "probe.npz"
    np.savez(probe, store_index=idx, landmark=lms, target=target)
    # 10 steps over 8 landmarks: some landmark repeats (pigeonhole), so its queue is non-empty
    cfg = tiny_config(steps=10, probe_every=5, probe_file=str(probe), deterministic=False,
                      checkpoint_every=100)
    train_single_process(cfg, store16, tmp_path / "run")
    recs = read_metrics(tmp_path / "run")
    start = next(r for r in recs if r["event"] == "start")
    assert start["queue_size"] == min(8, S - 4)  # K capped at N - B
    train = [r for r in recs if r["event"] == "train"]
    assert train[0]["negatives"] == pytest.approx(3.0)  # B - 1 in-batch, queue still empty
    assert train[0]["top1_chance"] == pytest.approx(0.25)
    assert max(r["negatives"] for r in train) > 3.0  # queue keys join once written
    for r in train:
        assert -1.0 <= r["between_subject_cosine"] <= 1.0
        assert isinstance(r["collapse_warning"], bool)
    probes = [r for r in recs if r["event"] == "probe"]
    assert [p["step"] for p in probes] == [0, 5, 10]
    assert all(np.isfinite(p["probe_r2"]) and p["probe_patches"] == S * L for p in probes)
    with pytest.raises(ConfigError, match="probe_file"):
        tiny_config(probe_every=5)


def test_ray_workers_get_an_absolute_probe_path(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative probe file (the demo's runs/demo/models/probe_train.npz) reaches Ray Train
    workers, which run in another working directory, as an absolute path."""
    from drasclr.train.config import PretrainConfig
    from drasclr.train.run import worker_config

    monkeypatch.chdir(tmp_path)
    cfg = PretrainConfig(probe_every=5, probe_file="runs/demo/models/probe_train.npz")
    sent = worker_config(cfg)
    assert sent["probe_file"] == str(tmp_path / "runs/demo/models/probe_train.npz")
    assert PretrainConfig.from_dict(sent).replace(probe_file=cfg.probe_file) == cfg
    assert worker_config(PretrainConfig())["probe_file"] == ""


def test_steps_between_logs_read_nothing_back_from_the_device(store16: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    """Metrics are read back (item / float / tolist / cpu / numpy) only on logging steps: a run
    of 8 steps logging once makes as many read-backs as a run of 4 steps logging once.

    Without the neighbour pass: its mixed-location plan reads the location counts back once per
    step (``drasclr.nn.condconv._unique_rows``), a sync of the split path that remains."""
    counts = {"n": 0}
    for name in ("item", "tolist", "cpu", "numpy", "__float__"):
        original = getattr(torch.Tensor, name)

        def counted(self: torch.Tensor, *a: object, _f: object = original, **k: object) -> object:
            counts["n"] += 1
            return _f(self, *a, **k)  # type: ignore[operator]

        monkeypatch.setattr(torch.Tensor, name, counted)
    reads = []
    for steps in (4, 8):
        counts["n"] = 0
        cfg = tiny_config(steps=steps, log_every=steps, checkpoint_every=100,
                          deterministic=False, neighbours=0)
        train_single_process(cfg, store16, tmp_path / f"r{steps}")
        reads.append(counts["n"])
    assert reads[0] == reads[1], reads


def test_input_map_travels_with_the_export(store16: Path, tmp_path: Path) -> None:
    cfg = tiny_config(steps=2, checkpoint_every=2, input_map="parenchyma")
    train_single_process(cfg, store16, tmp_path / "run", overwrite=True)
    encoder, info = load_encoder(tmp_path / "run")
    assert encoder.input_map == "parenchyma" and info["encoder"]["input_map"] == "parenchyma"
    x = torch.linspace(-1, 1, 16 ** 3).view(1, 1, 16, 16, 16)
    linear = load_encoder(tmp_path / "run")[0]
    linear.input_map = "linear"
    loc = torch.zeros(3)
    with torch.no_grad():
        assert not torch.allclose(encoder(x, loc), linear(x, loc))
    with pytest.raises(ConfigError, match="input_map"):
        tiny_config(input_map="log")


def test_neighbour_local_losses_fill_the_neighbours_queues(
        store16: Path, tmp_path: Path, last_checkpoint: CheckpointReader) -> None:
    """With ``neighbour_local_weight`` one step writes keys into the anchor's and each
    neighbour's queue (B per landmark); the paper's loss writes only the anchor's."""
    paper = train_single_process(tiny_config(steps=1, checkpoint_every=1), store16,
                                 tmp_path / "paper")
    local = train_single_process(tiny_config(steps=1, checkpoint_every=1,
                                             neighbour_local_weight=1.0), store16,
                                 tmp_path / "local")
    assert paper is not None and local is not None
    filled = {}
    for name in ("paper", "local"):
        subjects = last_checkpoint(tmp_path / name)[1]["memory_bank"]["subjects"]
        filled[name] = (subjects >= 0).sum(dim=1)
    assert sorted(filled["paper"].tolist()) == [0] * (L - 1) + [4]
    assert sorted(filled["local"].tolist()) == [0] * (L - 3) + [4, 4, 4]
    # the benchmark's paired DrasCLR: k = 1, so the anchor's and one neighbour's queue
    pair = train_single_process(tiny_config(steps=1, checkpoint_every=1, neighbours=1,
                                            neighbour_local_weight=1.0), store16,
                                tmp_path / "pair")
    assert pair is not None
    pair_filled = (last_checkpoint(tmp_path / "pair")[1]["memory_bank"]["subjects"] >= 0).sum(dim=1)
    assert sorted(pair_filled.tolist()) == [0] * (L - 2) + [4, 4]
    train = [r for r in read_metrics(tmp_path / "local") if r["event"] == "train"]
    assert np.isfinite(train[0]["loss"]) and train[0]["loss"] > train[0]["local_loss"]
    # its ablation (neighbour_weight 0): the same two landmarks trained, no neighbour loss
    cut = train_single_process(tiny_config(steps=1, checkpoint_every=1, neighbours=1,
                                           neighbour_local_weight=1.0, neighbour_weight=0.0),
                               store16, tmp_path / "cut")
    assert cut is not None
    cut_bank = last_checkpoint(tmp_path / "cut")[1]["memory_bank"]["subjects"]
    assert torch.equal((cut_bank >= 0).sum(dim=1), pair_filled)
    both = [[r for r in read_metrics(tmp_path / n) if r["event"] == "train"][0]
            for n in ("pair", "cut")]
    assert both[0]["neighbour_loss"] > 0 and both[1]["neighbour_loss"] == 0
    # the same batch, so the same local loss of the anchors
    assert both[1]["local_loss"] == pytest.approx(both[0]["local_loss"])
    assert both[1]["loss"] > both[1]["local_loss"]  # + the neighbour landmark's local loss
    with pytest.raises(ConfigError, match="neighbour_rows"):
        tiny_config(neighbour_local_weight=1.0, neighbour_rows=2)


def test_bank_neighbour_contrast_prefills_and_reads_no_neighbour_patches(
    store16: Path, tmp_path: Path
) -> None:
    """``neighbour_source: bank``: the per-landmark queues start pre-filled with real keys of
    their subjects, the sampler reads no neighbour patch (k = 0), and the neighbour contrast
    enters the loss from the first step."""
    cfg = tiny_config(steps=2, checkpoint_every=100, neighbour_source="bank")
    assert cfg.neighbour_patches == 0 and cfg.prefills_queues
    assert tiny_config().neighbour_patches == 2 and not tiny_config().prefills_queues
    train_single_process(cfg, store16, tmp_path / "bank")
    records = read_metrics(tmp_path / "bank")
    start = next(r for r in records if r["event"] == "start")
    assert start["prefilled_keys"] > 0
    train = [r for r in records if r["event"] == "train"]
    assert all(r["neighbour_loss"] > 0 and r["loss"] > r["local_loss"] for r in train)
    with pytest.raises(ConfigError, match="neighbour_source"):
        tiny_config(neighbour_source="queue")
    with pytest.raises(ConfigError, match="neighbour_source"):
        tiny_config(neighbour_source="bank", neighbour_rows=2)
    with pytest.raises(ConfigError, match="queue_negatives"):
        tiny_config(model="moco", conditioning="none", neighbours=0, queue_negatives=False)
    tiny_config(queue_negatives=False)  # DrasCLR with in-batch negatives: valid


def test_neighbour_warmup_in_steps(store16: Path, tmp_path: Path) -> None:
    """``warmup_steps``: the first steps train the local loss only (no neighbour pass)."""
    cfg = tiny_config(steps=4, warmup_steps=2, checkpoint_every=100)
    train_single_process(cfg, store16, tmp_path / "run")
    train = [r for r in read_metrics(tmp_path / "run") if r["event"] == "train"]
    assert [r["neighbour_weight"] for r in train] == [0.0, 0.0, 1.0, 1.0]
    assert [r["neighbour_loss"] > 0 for r in train] == [False, False, True, True]
    for r in train[:2]:
        assert r["loss"] == pytest.approx(r["local_loss"])
    with pytest.raises(ConfigError, match="warmup_steps"):
        tiny_config(warmup_steps=-1)


def test_time_budget_ends_the_run_on_time_and_resumes_with_the_time_spent(
    store16: Path, tmp_path: Path
) -> None:
    """``time_budget_s``: steps only cap the run; it stops once the budget is spent, its
    learning rate annealed to 0 by then, with a final checkpoint and an export; a resumed run
    carries the seconds already spent."""
    budget = 3.0
    cfg = tiny_config(steps=10**6, time_budget_s=budget, log_every=2, checkpoint_every=3,
                      lr_warmup_steps=2)
    res = train_single_process(cfg, store16, tmp_path / "a")
    assert res is not None and 3 < res.steps < 10**6
    rows = read_metrics(tmp_path / "a")
    end = next(r for r in rows if r["event"] == "end")
    train = [r for r in rows if r["event"] == "train"]
    assert end["complete"] and end["step"] == res.steps == train[-1]["step"]
    assert budget <= end["elapsed_s"] <= budget + 2.0  # the last step (and its checkpoint)
    lrs = [r["lr"] for r in train]
    assert lrs[-1] < 1e-3 * cfg.lr and all(a >= b for a, b in zip(lrs, lrs[1:]))  # noqa: RUF007
    assert latest_checkpoint(tmp_path / "a" / "checkpoints").name == f"step_{res.steps:08d}"
    assert (res.export_dir / "encoder.safetensors").is_file()

    assert train_single_process(cfg, store16, tmp_path / "b", stop_after=3) is None
    ckpt = latest_checkpoint(tmp_path / "b" / "checkpoints")
    spent = torch.load(ckpt / "model.pt", weights_only=True)["schedule"]["elapsed_s"]
    assert 0 < spent < budget
    resumed = train_single_process(cfg, store16, tmp_path / "b")
    assert resumed is not None and resumed.resumed and resumed.steps > 3
    end_b = [r for r in read_metrics(tmp_path / "b") if r["event"] == "end"][-1]
    assert end_b["complete"] and budget <= end_b["elapsed_s"] <= budget + 2.0


def _elapsed_on_rank(rank: int, init: str, out: str) -> None:
    import torch.distributed as dist

    from drasclr.train.loop import elapsed_seconds

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        # rank 1's clock reads 100 s more: both ranks must take rank 0's value
        since = time.perf_counter() - (5.0 if rank == 0 else 105.0)
        got = elapsed_seconds(since, 1.0, True, torch.device("cpu"))
        Path(out, f"r{rank}").write_text(repr(got))
    finally:
        dist.destroy_process_group()


def test_ranks_share_rank_zeros_clock(tmp_path: Path) -> None:
    """A time-budgeted DDP run: every rank takes rank 0's elapsed time (same learning rate, same
    step to stop at)."""
    import torch.multiprocessing as mp

    init = f"file://{tmp_path / 'rendezvous'}"
    mp.spawn(_elapsed_on_rank, args=(init, str(tmp_path)), nprocs=2, join=True)
    got = [float((tmp_path / f"r{r}").read_text()) for r in range(2)]
    assert got[0] == got[1] and 6.0 <= got[0] < 8.0


def test_symmetric_neighbour_contrast_is_built_from_the_config(store16: Path,
                                                               tmp_path: Path) -> None:
    """``neighbour_symmetric: true`` reaches the model and trains: a finite neighbour loss from
    the first step, the export's card says the contrast runs both ways."""
    cfg = tiny_config(steps=2, log_every=1, neighbours=1, neighbour_local_weight=1.0,
                      neighbour_head=True, neighbour_symmetric=True)
    assert train_single_process(cfg, store16, tmp_path / "sym") is not None
    train = [r for r in read_metrics(tmp_path / "sym") if r["event"] == "train"]
    assert [r["step"] for r in train] == [1, 2]
    assert all(np.isfinite(r["neighbour_loss"]) and r["neighbour_loss"] > 0 for r in train)
    cards = [f.read_text() for f in (tmp_path / "sym").rglob("*.md")]
    assert any("both ways" in c for c in cards)


def test_neighbours_at_a_minimum_distance_reach_the_batches(store16: Path,
                                                            tmp_path: Path) -> None:
    """``neighbour_min_mm``: the run's neighbour table is the store's nearest landmarks at least
    that far away (0: the store's own table), and the batches carry those neighbours."""
    from drasclr.imaging.atlas import neighbour_table
    from drasclr.store.reader import PatchStore

    store = PatchStore(store16)
    assert tiny_config(neighbours=1).neighbour_landmarks(store) is store.neighbours
    d_near = np.linalg.norm(store.landmarks - store.landmarks[store.neighbours[:, 0]], axis=1)
    far_mm = float(np.median(d_near)) + 1e-3
    cfg = tiny_config(steps=1, log_every=1, neighbours=1, neighbour_min_mm=far_mm)
    table = cfg.neighbour_landmarks(store)
    np.testing.assert_array_equal(table, neighbour_table(store.landmarks, 1, far_mm))
    assert np.all(np.linalg.norm(store.landmarks - store.landmarks[table[:, 0]], axis=1)
                  >= far_mm)
    assert train_single_process(cfg, store16, tmp_path / "far") is not None
    with pytest.raises(ConfigError, match="neighbour_min_mm"):
        tiny_config(neighbour_min_mm=-1.0)


def test_neighbour_head_is_built_from_the_config(store16: Path, tmp_path: Path,
                                                 last_checkpoint: CheckpointReader) -> None:
    """``neighbour_head: true`` gives the model a head of its own for the neighbour loss (saved
    in the checkpoint); plain MoCo and the bank neighbour contrast refuse it."""
    cfg = tiny_config(steps=1, checkpoint_every=1, neighbours=1, neighbour_local_weight=1.0,
                      neighbour_head=True)
    assert train_single_process(cfg, store16, tmp_path / "nh") is not None
    model = last_checkpoint(tmp_path / "nh")[0]
    keys = model.get("model", model)
    assert any(k.startswith("neighbour_head.") for k in keys)
    train = [r for r in read_metrics(tmp_path / "nh") if r["event"] == "train"]
    assert train[0]["neighbour_loss"] > 0
    with pytest.raises(ConfigError, match="neighbour_head"):
        tiny_config(neighbour_head=True, model="moco", conditioning="none")
    with pytest.raises(ConfigError, match="neighbour_head"):
        tiny_config(neighbour_head=True, neighbour_source="bank")
