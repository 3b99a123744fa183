"""Losses vs explicit formulas, memory-bank FIFO, momentum update, DrasCLR steps, shuffle-BN."""

from __future__ import annotations

import math
import os
import tempfile
from collections import deque

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from drasclr.moco import (
    DrasCLR,
    MemoryBank,
    PlainMoCo,
    bank_neighbour_logits,
    batch_shuffle,
    batch_unshuffle,
    contrast_top1,
    local_contrastive_loss,
    neighbour_contrastive_loss,
    neighbour_weight_at,
    update_momentum,
)

P = 8  # patch edge for model tests (the encoder accepts any size >= 1)


# ---------------------------------------------------------------------------- losses
def _unit(rows: list[list[float]]) -> np.ndarray:
    a = np.asarray(rows, dtype=np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


Q = _unit([[1.0, 0.2, -0.3], [0.1, -1.0, 0.5]])
KPOS = _unit([[0.9, 0.1, -0.2], [-0.4, 0.3, 1.0]])
NEG = _unit([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [-1.0, 0.0, 0.5], [0.3, -0.7, 0.1]])
R = np.stack(  # (B=2, k=2, D=3) neighbour embeddings
    [_unit([[0.5, 0.5, 0.0], [0.2, -0.9, 0.1]]), _unit([[1.0, -0.2, 0.3], [0.0, 0.1, 1.0]])],
    axis=1,
)
TAU = 0.2


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    return float(sum(a[i] * b[i] for i in range(len(a))))


def test_local_loss_matches_formula() -> None:
    expected = 0.0
    for b in range(Q.shape[0]):
        pos = math.exp(_dot(Q[b], KPOS[b]) / TAU)
        negs = sum(math.exp(_dot(Q[b], NEG[n]) / TAU) for n in range(NEG.shape[0]))
        expected += -math.log(pos / (pos + negs))
    expected /= Q.shape[0]
    t = torch.from_numpy
    loss, logits = local_contrastive_loss(t(Q), t(KPOS), t(NEG), TAU)
    assert logits.shape == (2, 1 + NEG.shape[0])
    assert abs(loss.item() - expected) < 1e-12


def test_neighbour_loss_matches_formula() -> None:
    expected = 0.0
    for b in range(R.shape[0]):
        s_pos = sum(_dot(R[b, j], KPOS[b]) for j in range(R.shape[1]))
        s_neg = [sum(_dot(R[b, j], NEG[n]) for j in range(R.shape[1])) for n in range(NEG.shape[0])]
        pos = math.exp(s_pos / TAU)
        expected += -math.log(pos / (pos + sum(math.exp(s / TAU) for s in s_neg)))
    expected /= R.shape[0]
    t = torch.from_numpy
    loss, _ = neighbour_contrastive_loss(t(R), t(KPOS), t(NEG), TAU)
    assert abs(loss.item() - expected) < 1e-12


def test_top1_and_warmup() -> None:
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0], [2.0, 2.0, -1.0], [9.0, 0.0, 0.0]])
    assert contrast_top1(logits).item() == pytest.approx(0.75)  # ties resolve to the positive
    assert neighbour_weight_at(0, 1.0, 2) == 0.0
    assert neighbour_weight_at(2, 0.5, 2) == 0.5


# ---------------------------------------------------------------------------- memory bank
def test_memory_bank_fifo_with_wraparound() -> None:
    bank = MemoryBank([7, 3], size=5, dim=2, seed=0)
    initial = bank.keys.clone()
    torch.testing.assert_close(initial.norm(dim=-1), torch.ones(2, 5))
    model: deque[int] = deque([-1] * 5, maxlen=5)  # FIFO of key ids, oldest first
    slots: list[float] = initial[bank.row(3), :, 0].tolist()
    ptr = 0
    counter = 0
    for n in (3, 3, 1, 7, 5, 2):
        keys = torch.arange(counter, counter + n, dtype=torch.float32).unsqueeze(1).repeat(1, 2)
        bank.enqueue(3, keys)
        for i in range(n):  # reference: write one by one at the pointer
            slots[ptr] = float(counter + i)
            ptr = (ptr + 1) % 5
            model.append(counter + i)
        counter += n
        assert bank.pointers[bank.row(3)].item() == ptr
        assert bank.keys[bank.row(3), :, 0].tolist() == slots
        if counter >= 5:  # once filled, the queue holds exactly the last K keys
            assert sorted(bank.keys[bank.row(3), :, 0].tolist()) == sorted(float(k) for k in model)
    assert torch.equal(bank.keys[bank.row(7)], initial[bank.row(7)])  # other queue untouched
    assert bank.pointers[bank.row(7)].item() == 0
    with pytest.raises(KeyError, match="no queue"):
        bank.enqueue(4, torch.zeros(1, 2))


def test_memory_bank_init_independent_of_sharding_and_state_dict() -> None:
    full = MemoryBank(range(4), size=6, dim=3, seed=5)
    shard = MemoryBank([2, 0], size=6, dim=3, seed=5)
    assert torch.equal(shard.negatives(2), full.negatives(2))
    assert not torch.equal(full.negatives(0), full.negatives(1))
    assert shard.pointers.dtype == torch.int64
    shard.enqueue(0, F.normalize(torch.randn(4, 3), dim=1))
    restored = MemoryBank([2, 0], size=6, dim=3, seed=99)
    restored.load_state_dict(shard.state_dict())
    assert torch.equal(restored.keys, shard.keys) and torch.equal(restored.pointers, shard.pointers)
    restored.enqueue(0, torch.ones(1, 3))  # the id -> row map still works after loading
    assert restored.pointers[restored.row(0)].item() == 5
    with pytest.raises(RuntimeError, match="landmark_ids"):
        MemoryBank([0, 1], size=6, dim=3).load_state_dict(shard.state_dict())
    keys, ptr = shard.queue(0)
    full.set_queue(0, keys, ptr)
    assert torch.equal(full.negatives(0), keys)


# ---------------------------------------------------------------------------- momentum
def test_momentum_update_equation() -> None:
    torch.manual_seed(0)
    theta = torch.nn.Linear(3, 2).double()
    xi = torch.nn.Linear(3, 2).double()
    before = [p.clone() for p in xi.parameters()]
    update_momentum(theta, xi, 0.9)
    for new, old, src in zip(xi.parameters(), before, theta.parameters()):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * src, atol=1e-15, rtol=0)


# ---------------------------------------------------------------------------- model
def _batch(b: int = 4, k: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "query": torch.randn(b, 1, P, P, P, generator=g),
        "key": torch.randn(b, 1, P, P, P, generator=g),
        "neighbours": torch.randn(b, k, 1, P, P, P, generator=g),
        "loc": torch.rand(3, generator=g) * 2 - 1,
        "neighbour_locs": torch.rand(k, 3, generator=g) * 2 - 1,
    }


def test_drasclr_forward_matches_parts() -> None:
    torch.manual_seed(0)
    model = DrasCLR.build(landmarks=[1, 4], queue_size=16, seed=0).eval()
    data = _batch()
    out = model(**data, landmark=4, neighbour_weight=0.5, update_key_encoder=False)
    assert set(out) == {"loss", "local_loss", "neighbour_loss", "top1", "negatives", "keys", "q"}
    assert out["keys"].shape == (4, 128) and not out["keys"].requires_grad
    # Recompute from the parts (eval mode: BatchNorm uses running statistics, per sample).
    with torch.no_grad():
        q = F.normalize(model.head(model.encoder(data["query"], data["loc"])), dim=1)
        k = F.normalize(model.key_head(model.key_encoder(data["key"], data["loc"])), dim=1)
        ngb, ngb_locs = data["neighbours"], data["neighbour_locs"]
        r = torch.stack(
            [F.normalize(model.head(model.encoder(ngb[:, j], ngb_locs[j])), dim=1)
             for j in range(2)],
            dim=1,
        )
        negs = model.memory_bank.negatives(4)
        local, _ = local_contrastive_loss(q, k, negs, 0.2)
        ngb_loss, _ = neighbour_contrastive_loss(r, k, negs, 0.2)
    torch.testing.assert_close(out["keys"], k, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["local_loss"], local, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["neighbour_loss"], ngb_loss, atol=1e-5, rtol=1e-5)
    expected = local + 0.5 * ngb_loss
    torch.testing.assert_close(out["loss"].detach(), expected, atol=1e-5, rtol=1e-5)
    warm = model(**data, landmark=4, neighbour_weight=0.0, update_key_encoder=False)
    assert warm["neighbour_loss"].item() == 0.0
    torch.testing.assert_close(warm["loss"].detach(), warm["local_loss"])


def _train_steps(seed: int, steps: int = 2) -> DrasCLR:
    torch.manual_seed(seed)
    model = DrasCLR.build(landmarks=[0, 1], queue_size=8, seed=seed)
    opt = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9, weight_decay=1e-4
    )
    for step in range(steps):
        data = _batch(seed=step)
        out = model(**data, landmark=step % 2)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        model.enqueue(step % 2, out["keys"])
    return model


def test_training_steps_deterministic_and_effective() -> None:
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        a, b = _train_steps(0), _train_steps(0)
    finally:
        torch.use_deterministic_algorithms(previous)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    torch.manual_seed(0)
    fresh = DrasCLR.build(landmarks=[0, 1], queue_size=8, seed=0)
    first = fresh.encoder.layers[0].conv.experts_weight
    assert not torch.equal(first, a.encoder.layers[0].conv.experts_weight)
    # the key encoder moved by momentum, slightly
    key_first = fresh.key_encoder.layers[0].conv.experts_weight
    delta = key_first - a.key_encoder.layers[0].conv.experts_weight
    assert 0 < delta.abs().max() < 1e-2
    assert a.memory_bank.pointers.tolist() == [4, 4]


def test_plain_moco_single_queue() -> None:
    torch.manual_seed(0)
    model = PlainMoCo.build(queue_size=8)
    assert model.encoder.conditioning == "none"
    assert model.memory_bank.keys.shape == (1, 8, 128)
    data = _batch()
    out = model(data["query"], data["key"], landmark=17)
    assert out["neighbour_loss"].item() == 0.0
    out["loss"].backward()
    model.enqueue(17, out["keys"])
    assert model.memory_bank.pointers.tolist() == [4]


def test_local_shuffle_roundtrip() -> None:
    x = torch.arange(6.0).view(6, 1)
    loc = torch.arange(18.0).view(6, 3)
    xs, ls, unshuffle = batch_shuffle(x, loc, distributed=False)
    assert torch.equal(ls[:, 0] / 3, xs[:, 0])  # locations travel with their patches
    assert torch.equal(batch_unshuffle(xs, unshuffle, distributed=False), x)


# ---------------------------------------------------------------------------- distributed
def _ddp_worker(rank: int, world: int, init_file: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)  # same weights on every rank; landmark shards differ in size
        landmarks = [0, 2] if rank == 0 else [1]
        model = DrasCLR.build(landmarks=landmarks, queue_size=8, distributed=True)
        data = _batch(b=4, seed=10 + rank)
        data["loc"] = torch.tensor([0.5, -0.5, 0.25]) * (1 if rank == 0 else -1)

        # Shuffle-BN keys equal a by-hand shuffle of the gathered batch (train-mode BatchNorm).
        torch.manual_seed(123)
        keys = model.embed_keys(data["key"], data["loc"])
        xs = [torch.empty_like(data["key"]) for _ in range(world)]
        dist.all_gather(xs, data["key"])
        locs = [torch.empty(3) for _ in range(world)]
        dist.all_gather(locs, data["loc"])
        x_all = torch.cat(xs)
        loc_all = torch.cat([l.expand(4, 3) for l in locs])
        perm = torch.randperm(4 * world, generator=torch.Generator().manual_seed(123))
        with torch.no_grad():
            k_sh = torch.cat([
                F.normalize(model.key_head(model.key_encoder(x_all[c], loc_all[c])), dim=1)
                for c in perm.view(world, 4)
            ])
        expected = k_sh[torch.argsort(perm)][rank * 4 : (rank + 1) * 4]
        torch.testing.assert_close(keys, expected, atol=1e-5, rtol=1e-5)

        # One DDP training step: gradients averaged, the unequal banks ignored by DDP.
        ddp = DDP(model)
        opt = torch.optim.SGD([p for p in ddp.parameters() if p.requires_grad], lr=0.1)
        landmark = landmarks[0]
        out = ddp(**data, landmark=landmark)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        ddp.module.enqueue(landmark, out["keys"])
        checksum = torch.stack([p.detach().double().sum() for p in model.encoder.parameters()])
        gathered = [torch.empty_like(checksum) for _ in range(world)]
        dist.all_gather(gathered, checksum)
        assert torch.equal(gathered[0], gathered[1]), "query encoders diverged across ranks"
        assert model.memory_bank.pointers[model.memory_bank.row(landmark)].item() == 4
        # Both ranks are done with every collective before either tears gloo down: a rank that
        # destroys its group while the other is still inside one aborted (SIGABRT) under load.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_shuffle_bn_and_ddp_step_with_two_gloo_processes() -> None:
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "init")
        mp.spawn(_ddp_worker, args=(2, init_file), nprocs=2, join=True)


# ---------------------------------------------------------------------------- real negatives
def test_bank_records_subjects_and_starts_empty() -> None:
    from drasclr.moco.memory_bank import EMPTY, UNKNOWN

    bank = MemoryBank([3, 5], size=4, dim=3, seed=0)
    assert bank.filled_fraction() == 0.0
    assert (bank.negative_subjects(3) == EMPTY).all()
    bank.enqueue(3, torch.as_tensor(NEG[:3], dtype=torch.float32), torch.tensor([7, 8, 9]))
    assert bank.negative_subjects(3).tolist() == [7, 8, 9, EMPTY]
    bank.enqueue(3, torch.as_tensor(NEG[:2], dtype=torch.float32))  # wraps; subjects unknown
    assert bank.negative_subjects(3).tolist() == [UNKNOWN, 8, 9, UNKNOWN]
    assert bank.filled_fraction() == pytest.approx(4 / 8)
    with pytest.raises(ValueError, match="subjects must have"):
        bank.enqueue(5, torch.as_tensor(NEG[:2], dtype=torch.float32), torch.tensor([1]))


def _real_negative_loss(q: np.ndarray, k: np.ndarray, queue: np.ndarray, usable: np.ndarray,
                        tau: float) -> float:
    """-log softmax of the positive over: other rows' keys + usable queue keys (direct sums)."""
    total = 0.0
    for b in range(len(q)):
        pos = math.exp(_dot(q[b], k[b]) / tau)
        den = pos + sum(math.exp(_dot(q[b], k[c]) / tau) for c in range(len(q)) if c != b)
        den += sum(math.exp(_dot(q[b], queue[n]) / tau) for n in range(len(queue)) if usable[b, n])
        total += -math.log(pos / den)
    return total / len(q)


def test_in_batch_negatives_and_own_subject_masking_match_the_formula() -> None:
    torch.manual_seed(0)
    model = DrasCLR.build(landmarks=[4], queue_size=6, seed=0).eval()
    model.batch_negatives, model.mask_queue = True, True
    data = _batch(b=4)
    subjects = torch.tensor([10, 11, 12, 13])
    # fresh bank: only the 3 other subjects of the batch are negatives (no random vectors)
    out = model(**data, landmark=4, neighbour_weight=0.0, update_key_encoder=False,
                subjects=subjects)
    q, k = out["q"].double().numpy(), out["keys"].double().numpy()
    queue = model.memory_bank.negatives(4).double().numpy()
    none = np.zeros((4, 6), dtype=bool)
    assert out["negatives"].item() == 3
    assert out["local_loss"].item() == pytest.approx(_real_negative_loss(q, k, queue, none, 0.2),
                                                     rel=1e-4)
    # queue: keys of subjects 11 and 20 (x2); row of subject 11 must not see its own key
    model.enqueue(4, torch.as_tensor(k[:3], dtype=torch.float32), torch.tensor([11, 20, 20]))
    out2 = model(**data, landmark=4, neighbour_weight=0.0, update_key_encoder=False,
                 subjects=subjects)
    queue = model.memory_bank.negatives(4).double().numpy()
    ids = model.memory_bank.negative_subjects(4).numpy()
    usable = (ids[None] >= 0) & (ids[None] != subjects.numpy()[:, None])
    assert usable.sum() == 3 * 4 - 1
    assert out2["local_loss"].item() == pytest.approx(
        _real_negative_loss(q, k, queue, usable, 0.2), rel=1e-4)
    assert out2["negatives"].item() == pytest.approx(3 + usable.sum() / 4)


def _soft_nn_loss(q: np.ndarray, k: np.ndarray, queue: np.ndarray, usable: np.ndarray,
                  tau: float, w: float) -> float:
    """``-(1-w) log p_own - w log p_nn``: nn = the usable negative key (other rows' keys, then
    usable queue keys) with the largest dot product with the row's own key (direct sums)."""
    total = 0.0
    for b in range(len(q)):
        cands = [k[c] for c in range(len(q)) if c != b]
        cands += [queue[n] for n in range(len(queue)) if usable[b, n]]
        nn = max(cands, key=lambda c: _dot(k[b], c))
        den = math.exp(_dot(q[b], k[b]) / tau) + sum(math.exp(_dot(q[b], c) / tau)
                                                      for c in cands)
        total += -((1 - w) * (_dot(q[b], k[b]) / tau - math.log(den))
                   + w * (_dot(q[b], nn) / tau - math.log(den)))
    return total / len(q)


def test_nearest_key_soft_positive_matches_the_formula() -> None:
    """``nn_positive_weight`` w: the local target is 1 - w on the own key and w on the usable
    negative key nearest to it (by key-key cosine; never a masked key of the own subject);
    w = 0 is the paper's loss, top-1 and the keys are unchanged."""
    torch.manual_seed(0)
    # train mode: batch statistics spread the untrained encoder's embeddings apart
    model = DrasCLR.build(landmarks=[4], queue_size=6, seed=0).train()
    model.batch_negatives, model.mask_queue = True, True
    data = _batch(b=4)
    subjects = torch.tensor([10, 11, 12, 13])
    kw = {"landmark": 4, "neighbour_weight": 0.0, "update_key_encoder": False,
          "subjects": subjects}
    base = model(**data, **kw)
    k = base["keys"]
    # the queue holds a copy of row 1's key: nearest to row 1 but its own subject (masked),
    # and a near copy of row 0's key under subject 20 (row 0's nearest usable key)
    near0 = F.normalize(k[0] + 0.01 * torch.randn(128), dim=0)
    model.enqueue(4, torch.stack([k[1], near0]), torch.tensor([11, 20]))
    plain = model(**data, **kw)
    model.nn_positive_weight = 0.3
    soft = model(**data, **kw)
    q, kk = soft["q"].double().numpy(), soft["keys"].double().numpy()
    queue = model.memory_bank.negatives(4).double().numpy()
    ids = model.memory_bank.negative_subjects(4).numpy()
    usable = (ids[None] >= 0) & (ids[None] != subjects.numpy()[:, None])
    assert soft["local_loss"].item() == pytest.approx(
        _soft_nn_loss(q, kk, queue, usable, 0.2, 0.3), rel=1e-4)
    assert plain["local_loss"].item() == pytest.approx(
        _soft_nn_loss(q, kk, queue, usable, 0.2, 0.0), rel=1e-4)
    assert soft["local_loss"].item() != pytest.approx(plain["local_loss"].item(), rel=1e-3)
    torch.testing.assert_close(soft["top1"], plain["top1"])
    # the function itself: row 0's nearest column is the near copy, row 1 never its own key
    from drasclr.moco.losses import contrast_logits_real, nearest_key_columns
    qt, kt = soft["q"], soft["keys"]
    negs = model.memory_bank.negatives(4)
    logits = contrast_logits_real(qt, kt, kt, negs, torch.as_tensor(usable), 0.2)
    cols = nearest_key_columns(kt, logits, torch.cat([kt, negs]))
    slot = int(np.flatnonzero(ids == 20)[0])
    assert int(cols[0]) == 1 + 4 + slot
    assert int(cols[1]) != 1 + 4 + int(np.flatnonzero(ids == 11)[0])
    assert all(c != 1 + b for b, c in enumerate(cols.tolist()))  # never the own batch column


def test_nearest_key_soft_positive_is_checked() -> None:
    """The weight's range, and the real negatives it needs, are named errors."""
    from drasclr.config import ConfigError
    from drasclr.train.config import PretrainConfig

    PretrainConfig(nn_positive_weight=0.5)
    PretrainConfig(model="moco", conditioning="none", nn_positive_weight=0.5)
    with pytest.raises(ConfigError, match="nn_positive_weight"):
        PretrainConfig(nn_positive_weight=1.0)
    with pytest.raises(ConfigError, match="nn_positive_weight"):
        PretrainConfig(nn_positive_weight=0.5, mask_queue=False, batch_negatives=False)
    m = DrasCLR.build(landmarks=[1])  # the published formulation: neither mask nor batch keys
    with pytest.raises(ValueError, match="real negatives"):
        DrasCLR(m.encoder, m.head, MemoryBank([1]), nn_positive_weight=0.5)


def test_ghost_batchnorm_groups_change_statistics_not_shapes() -> None:
    torch.manual_seed(0)
    model = DrasCLR.build(landmarks=[0], queue_size=8, seed=0).train()
    data = _batch(b=8)
    one = model.embed(data["query"], data["loc"])
    model.bn_groups = 2
    two = model.embed(data["query"], data["loc"])
    assert one.shape == two.shape == (8, 128)
    assert not torch.allclose(one, two)  # each half normalised with its own statistics
    model.bn_groups = 1
    ref = torch.cat([model.head(model.encoder(data["query"][:4], data["loc"])),
                     model.head(model.encoder(data["query"][4:], data["loc"]))])
    torch.testing.assert_close(two, F.normalize(ref, dim=1))
    model.bn_groups = 2
    assert model.embed_keys(data["key"], data["loc"]).shape == (8, 128)


def test_neighbour_loss_of_the_first_rows_is_their_share_of_the_full_loss() -> None:
    """``neighbour_rows``: neighbours of the first A of B subjects give the mean of those rows'
    neighbour losses against the same negatives (in-batch keys of all B, the queue)."""
    torch.manual_seed(0)
    model = DrasCLR.build(landmarks=[1, 4], queue_size=16, seed=0).eval()
    model.batch_negatives, model.mask_queue = True, True
    data = _batch(b=4)
    subjects = torch.arange(4)
    full = model(**data, landmark=4, update_key_encoder=False, subjects=subjects)
    part = model(**{**data, "neighbours": data["neighbours"][:2]}, landmark=4,
                 update_key_encoder=False, subjects=subjects)
    torch.testing.assert_close(part["local_loss"], full["local_loss"])
    with torch.no_grad():  # per-row neighbour losses of the full batch, from the parts
        keys = full["keys"]
        r = torch.stack([F.normalize(model.head(model.encoder(
            data["neighbours"][:, j], data["neighbour_locs"][j])), dim=1) for j in range(2)], 1)
        from drasclr.moco.losses import contrast_logits_real
        from drasclr.moco.memory_bank import EMPTY

        valid = (model.memory_bank.negative_subjects(4) != EMPTY).expand(4, -1)  # none yet
        logits = contrast_logits_real(r.sum(1), keys, keys, model.memory_bank.negatives(4),
                                      valid, 0.2)
        rows = F.cross_entropy(logits, torch.zeros(4, dtype=torch.long), reduction="none")
    torch.testing.assert_close(full["neighbour_loss"], rows.mean(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(part["neighbour_loss"], rows[:2].mean(), atol=1e-5, rtol=1e-5)
    assert part["neighbour_loss"] != full["neighbour_loss"]


def test_neighbour_local_losses_reuse_the_neighbour_queries() -> None:
    """``neighbour_local_weight`` gamma: ``L = L_loc,j + gamma sum_j' L_loc,j' + beta L_ngb``,
    each neighbour's local contrast uses its own queue (where this worker holds one) and the
    batch's other subjects at that landmark; without a queue only the in-batch negatives."""
    torch.manual_seed(0)
    model = DrasCLR.build(landmarks=[1, 4], queue_size=6, seed=0).eval()
    model.batch_negatives, model.mask_queue = True, True
    data = _batch(b=4)
    g = torch.Generator().manual_seed(7)
    nkey = torch.randn(4, 2, 1, P, P, P, generator=g)
    subjects = torch.tensor([10, 11, 12, 13])
    # landmark 1 (neighbour 0) has a queue holding keys of subjects 11 and 20; landmark 9
    # (neighbour 1) has no queue on this worker
    model.enqueue(1, F.normalize(torch.randn(3, 128, generator=g), dim=1),
                  torch.tensor([11, 20, 20]))
    base = model(**data, landmark=4, neighbour_weight=0.5, update_key_encoder=False,
                 subjects=subjects)
    out = model(**data, landmark=4, neighbour_weight=0.5, update_key_encoder=False,
                subjects=subjects, neighbour_keys=nkey, neighbour_landmarks=[1, 9],
                neighbour_local_weight=0.25)
    torch.testing.assert_close(out["local_loss"], base["local_loss"])
    torch.testing.assert_close(out["neighbour_loss"], base["neighbour_loss"])
    assert out["neighbour_keys"].shape == (4, 2, 128) and not out["neighbour_keys"].requires_grad
    with torch.no_grad():
        locs = data["neighbour_locs"]
        r = [F.normalize(model.head(model.encoder(data["neighbours"][:, j], locs[j])), dim=1)
             for j in range(2)]
        kn = [F.normalize(model.key_head(model.key_encoder(nkey[:, j], locs[j])), dim=1)
              for j in range(2)]
    torch.testing.assert_close(out["neighbour_keys"], torch.stack(kn, 1), atol=1e-5, rtol=1e-5)
    queue = model.memory_bank.negatives(1).double().numpy()
    ids = model.memory_bank.negative_subjects(1).numpy()
    usable = (ids[None] >= 0) & (ids[None] != subjects.numpy()[:, None])
    own_queue = _real_negative_loss(r[0].double().numpy(), kn[0].double().numpy(), queue,
                                    usable, 0.2)
    batch_only = _real_negative_loss(r[1].double().numpy(), kn[1].double().numpy(),
                                     np.zeros((0, 128)), np.zeros((4, 0), dtype=bool), 0.2)
    expected = base["loss"].item() + 0.25 * (own_queue + batch_only)
    assert out["loss"].item() == pytest.approx(expected, rel=1e-4)
    assert out["loss"].requires_grad
    with pytest.raises(ValueError, match="landmark ids"):
        model(**data, landmark=4, update_key_encoder=False, subjects=subjects,
              neighbour_keys=nkey, neighbour_landmarks=[1], neighbour_local_weight=1.0)
    with pytest.raises(KeyError, match="no queue"):  # the anchor's own queue must be held
        model(**data, landmark=9, update_key_encoder=False, subjects=subjects)


def test_symmetric_neighbour_contrast_adds_the_anchors_direction() -> None:
    """``neighbour_symmetric``: ``L_ngb`` is the mean of the paper's direction (the neighbour
    patch picks the anchor's key at j) and the anchors' direction (``g_n`` of the anchor picks
    its subject's key at each j' among j''s queue and the other rows' keys there); the local
    losses are unchanged, and without neighbour keys the flag changes nothing."""
    from drasclr.nn.encoder import ProjectionHead

    torch.manual_seed(0)
    model = DrasCLR.build(landmarks=[1, 4], queue_size=6, seed=0).eval()
    model.batch_negatives, model.mask_queue = True, True
    model.neighbour_head = ProjectionHead(128, 128, 128)
    data = _batch(b=4, k=1)
    g = torch.Generator().manual_seed(5)
    nkey = torch.randn(4, 1, 1, P, P, P, generator=g)
    subjects = torch.tensor([10, 11, 12, 13])
    model.enqueue(1, F.normalize(torch.randn(3, 128, generator=g), dim=1),
                  torch.tensor([12, 20, 21]))
    kw = {"landmark": 4, "neighbour_weight": 0.5, "update_key_encoder": False,
          "subjects": subjects, "neighbour_keys": nkey, "neighbour_landmarks": [1],
          "neighbour_local_weight": 1.0}
    one_way = model(**data, **kw)
    model.neighbour_symmetric = True
    both = model(**data, **kw)
    no_keys = model(**data, landmark=4, neighbour_weight=0.5, update_key_encoder=False,
                    subjects=subjects)
    torch.testing.assert_close(both["local_loss"], one_way["local_loss"])
    torch.testing.assert_close(no_keys["neighbour_loss"], one_way["neighbour_loss"])
    with torch.no_grad():
        s = F.normalize(model.neighbour_head(model.encoder(data["query"], data["loc"])), dim=1)
    kn = both["neighbour_keys"][:, 0].double().numpy()
    queue = model.memory_bank.negatives(1).double().numpy()
    ids = model.memory_bank.negative_subjects(1).numpy()
    usable = (ids[None] >= 0) & (ids[None] != subjects.numpy()[:, None])
    reverse = _real_negative_loss(s.double().numpy(), kn, queue, usable, 0.2)
    expected = 0.5 * (one_way["neighbour_loss"].item() + reverse)
    assert both["neighbour_loss"].item() == pytest.approx(expected, rel=1e-4)
    assert both["loss"].item() == pytest.approx(
        one_way["loss"].item() + 0.5 * (expected - one_way["neighbour_loss"].item()), rel=1e-4)


def test_symmetric_neighbour_contrast_needs_the_neighbour_keys() -> None:
    """The config names the field when the reverse direction has no neighbour keys to read."""
    from drasclr.config import ConfigError
    from drasclr.train.config import PretrainConfig

    PretrainConfig(neighbours=1, neighbour_local_weight=1.0, neighbour_symmetric=True)
    with pytest.raises(ConfigError, match="neighbour_symmetric"):
        PretrainConfig(neighbours=1, neighbour_symmetric=True)


def test_bank_neighbour_contrast_reads_the_newest_own_key_of_each_neighbour_queue() -> None:
    """``neighbour_source="bank"``: for each held neighbour landmark the anchor query's positive
    is its subject's newest key in that queue, the negatives the other subjects' real keys
    there; rows whose subject is not queued drop out, a landmark of another shard is skipped."""
    torch.manual_seed(0)
    model = DrasCLR.build(landmarks=[1, 4, 6], queue_size=5, seed=0).eval()
    model.batch_negatives, model.mask_queue = True, True
    model.neighbour_source = "bank"
    bank = model.memory_bank
    g = torch.Generator().manual_seed(3)
    keys1 = F.normalize(torch.randn(7, 128, generator=g), dim=1)
    # queue 1 wraps: its slots end up holding subjects [20, 10, 11, 10, 12], slot 1 newest, so
    # subject 10 has two keys there (the newer one is its positive)
    bank.enqueue(1, keys1[:4], torch.tensor([12, 12, 11, 10]))
    bank.enqueue(1, keys1[4:], torch.tensor([12, 20, 10]))
    keys6 = F.normalize(torch.randn(2, 128, generator=g), dim=1)
    bank.enqueue(6, keys6, torch.tensor([13, 30]))  # three empty slots stay unusable
    assert bank.ages(1).tolist() == [1, 0, 4, 3, 2] and bank.ages(6).tolist()[:2] == [1, 0]
    data = _batch(b=4)
    data["neighbours"] = None
    subjects = torch.tensor([10, 11, 12, 13])
    base = model(**data, landmark=4, neighbour_weight=0.0, update_key_encoder=False,
                 subjects=subjects)
    out = model(**data, landmark=4, neighbour_weight=0.5, update_key_encoder=False,
                subjects=subjects, neighbour_landmarks=[1, 6, 9])
    q = out["q"].double().numpy()

    def expected_terms(queue: np.ndarray, ids: np.ndarray, ages: np.ndarray) -> list[float]:
        terms = []
        for b, s in enumerate(subjects.tolist()):
            own = [n for n in range(len(ids)) if ids[n] == s]
            if not own:
                continue
            newest = min(own, key=lambda n: ages[n])
            pos = math.exp(_dot(q[b], queue[newest]) / 0.2)
            den = pos + sum(math.exp(_dot(q[b], queue[n]) / 0.2)
                            for n in range(len(ids)) if ids[n] >= 0 and ids[n] != s)
            terms.append(-math.log(pos / den))
        return terms

    terms = []
    for lm in (1, 6):
        terms += expected_terms(bank.negatives(lm).double().numpy(),
                                bank.negative_subjects(lm).numpy(), bank.ages(lm).numpy())
    assert len(terms) == 3 + 1  # queue 1: subjects 10, 11, 12; queue 6: subject 13 only
    assert out["neighbour_loss"].item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)
    expected = base["loss"].item() + 0.5 * sum(terms) / len(terms)
    assert out["loss"].item() == pytest.approx(expected, rel=1e-5)
    logits, rows = bank_neighbour_logits(out["q"], subjects, bank.negatives(6),
                                         bank.negative_subjects(6), bank.ages(6), 0.2)
    assert rows.tolist() == [False, False, False, True] and logits.shape == (1, 6)
    # no subject of the batch queued at any held neighbour: a zero loss that keeps the graph
    none = model(**data, landmark=4, neighbour_weight=1.0, update_key_encoder=False,
                 subjects=torch.tensor([40, 41, 42, 43]), neighbour_landmarks=[6])
    assert none["neighbour_loss"].item() == 0.0 and none["loss"].requires_grad
    with pytest.raises(ValueError, match="subject ids"):
        model(**data, landmark=4, update_key_encoder=False, neighbour_landmarks=[1])
    with pytest.raises(ValueError, match="neighbour_source"):
        DrasCLR(model.encoder, model.head, bank, neighbour_source="queue")


def test_batch_only_negatives_ignore_the_queue() -> None:
    """``queue_negatives=False``: the loss is the in-batch-only contrast even when the landmark's
    queue holds usable keys; the anchor's queue must still be held."""
    torch.manual_seed(0)
    model = DrasCLR.build(landmarks=[4], queue_size=6, seed=0).eval()
    model.batch_negatives, model.mask_queue = True, True
    g = torch.Generator().manual_seed(5)
    model.enqueue(4, F.normalize(torch.randn(4, 128, generator=g), dim=1),
                  torch.tensor([20, 21, 22, 23]))
    data = _batch(b=4)
    subjects = torch.tensor([10, 11, 12, 13])
    with_queue = model(**data, landmark=4, neighbour_weight=0.0, update_key_encoder=False,
                       subjects=subjects)
    model.queue_negatives = False
    out = model(**data, landmark=4, neighbour_weight=0.0, update_key_encoder=False,
                subjects=subjects)
    q, k = out["q"].double().numpy(), out["keys"].double().numpy()
    batch_only = _real_negative_loss(q, k, np.zeros((0, 128)), np.zeros((4, 0), dtype=bool), 0.2)
    assert out["local_loss"].item() == pytest.approx(batch_only, rel=1e-5)
    assert out["negatives"].item() == 3.0 and with_queue["negatives"].item() == 7.0
    assert with_queue["local_loss"].item() > out["local_loss"].item()
    with pytest.raises(KeyError, match="no queue"):
        model(**data, landmark=9, update_key_encoder=False, subjects=subjects)
    with pytest.raises(ValueError, match="batch's negatives"):
        DrasCLR(model.encoder, model.head, model.memory_bank, queue_negatives=False)


def test_neighbour_mean_is_the_sum_at_k_times_the_temperature() -> None:
    """``neighbour_reduce="mean"``: the neighbour loss's anchor is the mean of the k neighbour
    embeddings, i.e. the official sum's logits divided by k; the local loss is unchanged."""
    torch.manual_seed(0)
    model = DrasCLR.build(landmarks=[4], queue_size=8, seed=0)  # train-mode BatchNorm: the
    model.batch_negatives, model.mask_queue = True, True       # embeddings differ enough
    data = _batch(b=4)
    subjects = torch.arange(4)
    summed = model(**data, landmark=4, update_key_encoder=False, subjects=subjects)
    model.neighbour_reduce = "mean"
    mean = model(**data, landmark=4, update_key_encoder=False, subjects=subjects)
    torch.testing.assert_close(mean["local_loss"], summed["local_loss"])
    model.neighbour_reduce, model.temperature = "sum", 0.4  # sum / 2 at tau 0.2 == sum at 0.4
    hot = model(**data, landmark=4, update_key_encoder=False, subjects=subjects)
    torch.testing.assert_close(mean["neighbour_loss"], hot["neighbour_loss"])
    assert mean["neighbour_loss"] != summed["neighbour_loss"]
    with pytest.raises(ValueError, match="neighbour_reduce"):
        DrasCLR(model.encoder, model.head, model.memory_bank, neighbour_reduce="max")


def test_neighbour_head_keeps_the_local_contrasts_head_to_the_local_loss() -> None:
    """``neighbour_head``: the neighbour loss projects with ``g_n``; it still trains the encoder,
    but the shared head ``g`` gets exactly the local loss's gradient, and the local loss is the
    same as with a shared head."""
    from drasclr.nn.encoder import ProjectionHead

    torch.manual_seed(0)
    model = DrasCLR.build(landmarks=[4], queue_size=8, seed=0)
    data = _batch(b=4)

    def grads(beta: float) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        out = model(**data, landmark=4, neighbour_weight=beta, update_key_encoder=False)
        out["loss"].backward()
        got = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return out, got

    shared, _ = grads(1.0)
    model.neighbour_head = ProjectionHead(128, 128, 128)
    own, g_own = grads(1.0)
    _, g_local = grads(0.0)  # the local loss alone (no neighbour pass)
    torch.testing.assert_close(own["local_loss"], shared["local_loss"])
    assert own["neighbour_loss"] > 0 and own["neighbour_loss"] != shared["neighbour_loss"]
    head = [n for n in g_local if n.startswith("head.")]
    assert head and all(torch.allclose(g_own[n], g_local[n], atol=1e-7) for n in head)
    assert any(g_own[n].abs().sum() > 0 for n in g_own if n.startswith("neighbour_head."))
    enc = [n for n in g_local if n.startswith("encoder.")]
    assert any(not torch.allclose(g_own[n], g_local[n]) for n in enc)  # L_ngb trains e


def test_neighbour_head_gets_a_gradient_in_every_distributed_step() -> None:
    """Under DDP every trainable parameter needs a gradient each step: with a neighbour head, a
    step without the neighbour loss (beta 0) gives ``g_n`` a zero gradient, not none; one
    process leaves it untouched."""
    from drasclr.nn.encoder import ProjectionHead

    torch.manual_seed(0)
    model = DrasCLR.build(landmarks=[4], queue_size=8, seed=0)
    model.neighbour_head = ProjectionHead(128, 128, 128)
    data = _batch(b=4)
    for distributed in (False, True):
        model.distributed = distributed
        model.zero_grad(set_to_none=True)
        # batch_shuffle's collectives are only for keys; keep them local for this check
        model.embed_keys = lambda x, loc: F.normalize(  # type: ignore[method-assign]
            model.key_head(model.key_encoder(x, loc.expand(x.shape[0], 3))), dim=1)
        out = model(**data, landmark=4, neighbour_weight=0.0, update_key_encoder=False)
        out["loss"].backward()
        grads = [p.grad for p in model.neighbour_head.parameters()]
        if distributed:
            assert all(g is not None and torch.count_nonzero(g) == 0 for g in grads)
        else:
            assert all(g is None for g in grads)
