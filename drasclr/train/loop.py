"""The per-worker training loop: plain PyTorch, the same code on one CPU process or N GPU workers.

:func:`train_worker` runs on every rank. Everything distributed sits behind
``WorkerContext.distributed``: the DDP wrapper (gradient averaging), shuffle-BN (inside the model),
the agreement on non-finite losses, and metric averaging. Ray appears only in
:mod:`drasclr.train.run`, which builds the context (rank, device, checkpoint to restore, a
function that publishes checkpoints) and calls this loop.

One step at landmark ``j`` (DESIGN.md §4.5-4.8)::

    patches (1 + k, B, P, P, P) int16 --hu_to_input--> [-1, 1] on the device
    query, key = aug(x_j), aug'(x_j); neighbours = aug(x_j') for j' in N(j)   (batched, seeded)
    loss = L_loc + beta L_ngb  (beta = 0 during warm-up epochs); SGD step; enqueue keys in Q_j
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from drasclr.imaging.augment import NO_AUGMENTATION, AugmentParams, augment
from drasclr.imaging.intensity import hu_to_input
from drasclr.moco.losses import neighbour_weight_at
from drasclr.moco.memory_bank import MemoryBank
from drasclr.moco.model import DrasCLR, PlainMoCo
from drasclr.nn.encoder import ProjectionHead
from drasclr.store.reader import PatchStore
from drasclr.train.checkpoint import (
    CheckpointError,
    load_model_state,
    load_rank_state,
    save_model_state,
    save_rank_state,
)
from drasclr.train.config import PretrainConfig, new_encoder
from drasclr.train.loader import (
    LandmarkBatch,
    LandmarkBatchSampler,
    MixedBatchSampler,
    PatchLoader,
)
from drasclr.nn.precision import StepScaler, autocast

METRICS_FILE = "metrics.jsonl"
NAN_DIAGNOSTIC_FILE = "nonfinite_loss.json"

#: publish(directory, step, metrics): hand a checkpoint directory holding this rank's files on.
Publish = Callable[[Path, int, dict[str, Any]], None]


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the message carries the diagnostic JSON."""

    def __init__(self, diagnostic: dict[str, Any]) -> None:
        self.diagnostic = diagnostic
        super().__init__(
            f"non-finite loss at step {diagnostic.get('step')} (landmark "
            f"{diagnostic.get('landmark')}); training stopped. Diagnostic:\n"
            + json.dumps(diagnostic, indent=1, default=str)
        )


@dataclass
class WorkerContext:
    """Where a worker runs and how it saves.

    Attributes:
        rank: this worker's rank.
        world_size: number of workers N.
        device: training device.
        distributed: use torch.distributed (an initialised process group is required).
        restore_from: checkpoint directory to resume from, or None for a fresh start.
        publish: called with each checkpoint directory this rank wrote (all ranks, same steps).
        stop_after: stop after this global step although the run is longer (simulates an
            interruption; tests only).
        fault: test hook ``{"rank", "step", "marker"}``: that rank kills its own process (SIGKILL)
            after that step, once (the marker file records that it happened).
        progress: show a progress bar on rank 0.
    """

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    distributed: bool = False
    restore_from: Path | None = None
    publish: Publish | None = None
    stop_after: int | None = None
    fault: dict[str, Any] | None = None
    progress: bool = True


# --------------------------------------------------------------------------- pieces
def build_model(
    config: PretrainConfig, landmarks: np.ndarray, distributed: bool,
    num_subjects: int | None = None,
) -> DrasCLR:
    """The model of ``config`` whose memory bank holds only ``landmarks`` (this worker's shard).

    Plain MoCo keeps one global queue per worker instead. ``num_subjects`` (the cohort size)
    applies the queue-size rule of :meth:`PretrainConfig.effective_queue_size`.
    """
    torch.manual_seed(config.seed)  # identical initial weights on every rank
    encoder = new_encoder(config)
    head = ProjectionHead(encoder.out_dim, 128, config.dim)
    size = (config.effective_queue_size(num_subjects) if num_subjects is not None
            else config.queue_size)
    flags = {"mask_queue": config.mask_queue, "bn_groups": config.bn_groups,
             "nn_positive_weight": config.nn_positive_weight}
    if config.model == "moco":
        bank = MemoryBank((0,), size=size, dim=config.dim, seed=config.seed)
        return PlainMoCo(
            encoder, head, bank, config.temperature, config.momentum, distributed,
            use_neighbours=False, global_queue=True, batch_negatives=False, **flags,
        )
    bank = MemoryBank(landmarks.tolist(), size=size, dim=config.dim, seed=config.seed)
    return DrasCLR(encoder, head, bank, config.temperature, config.momentum, distributed,
                   batch_negatives=config.batch_negatives,
                   neighbour_source=config.neighbour_source,
                   queue_negatives=config.queue_negatives,
                   neighbour_reduce=config.neighbour_reduce,
                   neighbour_head=(ProjectionHead(encoder.out_dim, 128, config.dim)
                                   if config.neighbour_head else None),
                   neighbour_symmetric=config.neighbour_symmetric, **flags)


@torch.no_grad()
def prefill_queues(
    model: DrasCLR,
    store: PatchStore,
    sampler: LandmarkBatchSampler | MixedBatchSampler,
    locations: Tensor,
    gen: torch.Generator,
    aug_params: AugmentParams,
    batch_size: int,
) -> int:
    """Fill every queue of ``model`` with real keys of one key-encoder pass (fresh starts only).

    A global queue (plain MoCo) gets K keys of random (subject, landmark) patches of this
    worker's landmarks; a per-landmark queue gets up to K keys of random subjects at its
    landmark. Keys are augmented like training keys and carry their subject ids.

    Returns:
        Number of keys written.
    """
    device = locations.device
    rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,))))
    bank = model.memory_bank
    rows = [bank.landmarks[0]] if model.global_queue else list(bank.landmarks)
    written = 0
    for row in rows:
        if model.global_queue:  # K distinct random (landmark, subject) pairs of this shard
            lms = rng.choice(sampler.landmarks, size=2 * bank.size)
            subj = _random_subjects(sampler, lms, rng)
            pairs = np.unique(np.stack([lms, subj], axis=1), axis=0)
            pairs = pairs[rng.permutation(len(pairs))[: bank.size]]
        else:
            pool = rng.permutation(sampler.eligible_subjects(int(row)))[: bank.size]
            pairs = np.stack([np.full(len(pool), int(row)), pool], axis=1)
        pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]  # by landmark, then subject
        lms, subj = pairs[:, 0], pairs[:, 1]
        hu = store.read_pairs(lms, subj)
        mix = rng.permutation(len(subj))  # batches of mixed landmarks (per-sample locations)
        starts = list(range(0, len(mix), batch_size))
        if len(starts) > 1 and len(mix) - starts[-1] < 2:
            starts.pop()  # BatchNorm needs 2 samples: the last one joins the previous batch
        for lo, hi in zip(starts, [*starts[1:], len(mix)]):
            rows = mix[lo:hi]
            x = augment(hu_to_input(torch.from_numpy(hu[rows]).to(device)).unsqueeze(1), gen,
                        aug_params)
            keys = model.embed_keys(x, locations[torch.as_tensor(lms[rows], device=device)])
            model.memory_bank.enqueue(row, keys, torch.as_tensor(subj[rows]))
            written += len(rows)
    return written


def _random_subjects(
    sampler: LandmarkBatchSampler | MixedBatchSampler, landmarks: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """One random eligible subject per entry of ``landmarks`` (vectorised per unique landmark)."""
    out = np.empty(len(landmarks), dtype=np.int64)
    for j in np.unique(landmarks):
        where = np.flatnonzero(landmarks == j)
        out[where] = rng.choice(sampler.eligible_subjects(int(j)), size=len(where))
    return out


def make_optimizer(config: PretrainConfig, params: list[Tensor]) -> torch.optim.Optimizer:
    """The run's optimizer (``config.optimizer``) over ``params`` at the base learning rate."""
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.sgd_momentum, weight_decay=config.weight_decay
    )


def learning_rate(
    config: PretrainConfig, step: int, total_steps: int, elapsed_share: float | None = None
) -> float:
    """Learning rate of 0-based ``step``: linear warm-up, then cosine decay to 0 at the end.

    A time-budgeted run passes ``elapsed_share``, the share of its wall-clock budget spent so
    far: the cosine then follows that share (0 at the start, 1 at the budget) instead of the
    step count; the warm-up stays in steps.
    """
    w = min(config.lr_warmup_steps, max(total_steps - 1, 0))
    if step < w:
        return config.lr * (step + 1) / w
    if elapsed_share is not None:
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(max(elapsed_share, 0.0), 1.0)))
    span = max(total_steps - w, 1)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * (step - w) / span))


def elapsed_seconds(since: float, carried: float, distributed: bool, device: torch.device) -> float:
    """Wall-clock seconds of a run: ``carried`` (spent before a resume) plus the time since
    ``since`` (a ``time.perf_counter()`` reading, moved on past rank 0's probes); with
    ``distributed`` rank 0's value, broadcast, so every rank takes the same learning rate and
    the same decision to stop (one small collective a step, time-budgeted runs only)."""
    elapsed = carried + time.perf_counter() - since
    if distributed:
        shared = torch.tensor([elapsed], dtype=torch.float64, device=device)
        dist.broadcast(shared, src=0)
        elapsed = float(shared.item())
    return elapsed


def total_steps(config: PretrainConfig, steps_per_epoch: int) -> int:
    """Optimizer steps of the whole run."""
    return config.steps if config.steps > 0 else config.epochs * steps_per_epoch


def queue_bytes(bank: MemoryBank) -> int:
    """Bytes this worker's memory bank holds (keys + pointers + ids)."""
    return sum(b.nelement() * b.element_size() for b in bank.buffers())


def _rng_state(gen: torch.Generator, device: torch.device) -> dict[str, Tensor]:
    state = {"torch": torch.get_rng_state(), "augment": gen.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Tensor], gen: torch.Generator, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    gen.set_state(state["augment"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _bank_state(model: DrasCLR) -> dict[str, Tensor]:
    return {k: v.detach().cpu() for k, v in model.memory_bank.state_dict().items()}


def _model_state(model: DrasCLR) -> dict[str, Tensor]:
    return {
        k: v.detach().cpu()
        for k, v in model.state_dict().items()
        if not k.startswith("memory_bank.")
    }


class MetricsLog:
    """Rank 0's JSON-lines log (one object per line) plus TensorBoard scalars when installed."""

    def __init__(self, out_dir: Path | None, enabled: bool) -> None:
        self.path = out_dir / METRICS_FILE if (out_dir is not None and enabled) else None
        self._tb: Any = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                try:
                    from tensorboardX import SummaryWriter  # type: ignore[no-redef]
                except ImportError:
                    SummaryWriter = None  # type: ignore[assignment,misc]
            if SummaryWriter is not None:
                self._tb = SummaryWriter(str(out_dir / "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (and its numbers to TensorBoard when it has a step)."""
        if self.path is None:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record, default=float) + "\n")
        if self._tb is not None and "step" in record and record.get("event") == "train":
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self._tb.add_scalar(f"train/{k}", v, record["step"])

    def close(self) -> None:
        """Flush TensorBoard."""
        if self._tb is not None:
            self._tb.close()


def read_metrics(out_dir: str | Path) -> list[dict[str, Any]]:
    """All records of a run's ``metrics.jsonl`` (in write order; restarts repeat steps)."""
    path = Path(out_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _diagnostic(
    model: DrasCLR,
    batch: LandmarkBatch,
    views: dict[str, Tensor],
    out: dict[str, Tensor],
    step: int,
    lr: float,
    rank: int,
    last_grad_norm: float | None,
) -> dict[str, Any]:
    bad_params = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    max_param = max(float(p.detach().abs().max()) for p in model.parameters())
    spec = batch.spec
    hu = batch.patches
    return {
        "step": step,
        "epoch": spec.epoch,
        "rank": rank,
        "landmark": spec.landmark,
        "neighbours": spec.neighbours.tolist(),
        "store_indices": spec.store_indices.tolist(),
        "loss": float(out["loss"].detach()),
        "local_loss": float(out["local_loss"]),
        "neighbour_loss": float(out["neighbour_loss"]),
        "lr": lr,
        "input_hu_min": int(hu.min()),
        "input_hu_max": int(hu.max()),
        "nonfinite_input_values": {
            k: int((~torch.isfinite(v)).sum()) for k, v in views.items() if v is not None
        },
        "nonfinite_parameters": bad_params[:20],
        "max_abs_parameter": max_param,
        "last_grad_norm": last_grad_norm,
        "nonfinite_queue_values": int((~torch.isfinite(model.memory_bank.keys)).sum()),
        "hint": "lower lr, check the temperature, or inspect these subjects' patches",
    }


@torch.no_grad()
def probe_loss(
    model: DrasCLR,
    patches_hu: Tensor,
    loc: Tensor,
    seed: int = 0,
    augmented: bool = True,
) -> float:
    """Subject-discrimination InfoNCE of a model on one fixed batch (lower = more distinct).

    Queries ``f_theta(aug(x_b))`` are contrasted with keys ``f_xi(aug'(x_b))`` of the same batch:
    the positive of subject b is its own key, the negatives the other subjects' keys. Unlike the
    training loss it does not depend on the queues, so it compares models fairly (e.g. before
    and after training). BatchNorm uses batch statistics; the model is not changed.

    Args:
        model: a DrasCLR model (its state is left as it was).
        patches_hu: (B, P, P, P) HU patches of B subjects at one landmark.
        loc: (3,) normalised landmark.
        seed: seed of the augmentation.
        augmented: use the official augmentation for both views.
    """
    import copy

    m = copy.deepcopy(model).train()
    device = next(m.parameters()).device
    x = hu_to_input(patches_hu.to(device)).unsqueeze(1)
    gen = torch.Generator(device=device).manual_seed(seed)
    params = AugmentParams() if augmented else NO_AUGMENTATION
    q = torch.nn.functional.normalize(m.head(m.encoder(augment(x, gen, params), loc)), dim=1)
    k = torch.nn.functional.normalize(
        m.key_head(m.key_encoder(augment(x, gen, params), loc)), dim=1
    )
    logits = q @ k.t() / m.temperature
    target = torch.arange(x.shape[0], device=device)
    return float(torch.nn.functional.cross_entropy(logits, target))


# --------------------------------------------------------------------------- the loop
def train_worker(
    config: PretrainConfig,
    store_path: str | Path,
    out_dir: str | Path | None,
    ctx: WorkerContext,
) -> dict[str, Any]:
    """Train this worker's part of the run (all ranks call it with the same config).

    Args:
        config: the run's configuration.
        store_path: patch store directory.
        out_dir: run folder for ``metrics.jsonl`` (rank 0) and the non-finite diagnostic.
        ctx: rank, device, restore point and checkpoint publisher.

    Returns:
        Final metrics of this worker: ``step`` (steps done), ``complete`` (the run reached its
        last step: ``total_steps``, or the end of its time budget), ``elapsed_s`` (wall-clock
        seconds of the run so far), ``total_steps``, ``landmarks`` (owned ids), ``queue_bytes``
        and the last logged window's averages.

    Raises:
        NonFiniteLossError: the loss became NaN/inf (all ranks raise together).
        StoreError, LoaderError, CheckpointError: unusable inputs.
    """
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    if config.threads_per_worker:
        torch.set_num_threads(config.threads_per_worker)
    device = ctx.device
    out = Path(out_dir) if out_dir is not None else None
    store = PatchStore(store_path)
    k = config.neighbour_patches
    table = config.neighbour_landmarks(store)
    sampler = config.batch_sampler(store, ctx.rank, ctx.world_size)
    n_total = total_steps(config, sampler.steps_per_epoch)
    locations = torch.as_tensor(store.landmarks_norm, dtype=torch.float32, device=device)

    model = build_model(config, sampler.landmarks, ctx.distributed,
                        num_subjects=store.num_subjects).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(config, params)
    scaler = StepScaler(device, config.amp)
    gen = torch.Generator(device=device).manual_seed(config.seed * 7919 + ctx.rank + 1)
    torch.manual_seed(config.seed * 104729 + ctx.rank)
    aug_params = config.augment_params

    start, carried = 0, 0.0
    if ctx.restore_from is not None:
        shared = load_model_state(ctx.restore_from)
        own = load_rank_state(ctx.restore_from, ctx.rank, ctx.world_size)
        sched = shared["schedule"]
        if int(sched["total_steps"]) != n_total:
            raise CheckpointError(
                f"{ctx.restore_from}: checkpoint of a {sched['total_steps']}-step run, this run "
                f"has {n_total} steps (config or store changed); use a new output folder"
            )
        state = dict(shared["model"])
        state.update({f"memory_bank.{k_}": v for k_, v in own["memory_bank"].items()})
        model.load_state_dict(state)
        optimizer.load_state_dict(shared["optimizer"])
        scaler.load_state_dict(sched.get("scaler", {}))
        start = int(sched["step"])
        carried = float(sched.get("elapsed_s", 0.0))
        _set_rng_state(own["rng"], gen, device)
    loader = PatchLoader(
        store, sampler, start_step=start, prefetch=config.prefetch,
        pin_memory=device.type == "cuda",
    )
    if ctx.restore_from is not None:
        loader.load_state_dict(own["loader"])  # checks seed / rank / world size

    train_model: nn.Module = model
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        train_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    budget = config.time_budget_s
    began = time.perf_counter()  # a time budget counts from here, the queue pre-fill included
    prefilled, prefill_s = 0, 0.0
    if ctx.restore_from is None and config.prefills_queues:
        model.train()
        t_fill = time.perf_counter()
        prefilled = prefill_queues(model, store, sampler, locations, gen, aug_params,
                                   config.batch_size)
        prefill_s = time.perf_counter() - t_fill
    probe = None
    if config.probe_every and ctx.rank == 0:
        from drasclr.train.probe import TrainingProbe

        probe = TrainingProbe.load(config.probe_file, store, locations)

    log = MetricsLog(out, ctx.rank == 0)
    log.write({
        "event": "start", "step": start, "total_steps": n_total, "world_size": ctx.world_size,
        "restored_from": str(ctx.restore_from) if ctx.restore_from else None, "time": time.time(),
        "queue_size": model.memory_bank.size, "prefilled_keys": prefilled,
        "prefill_seconds": round(prefill_s, 3), "time_budget_s": budget,
    })
    if probe is not None and start == 0:
        t_probe = time.perf_counter()
        log.write({"event": "probe", "step": 0, **probe.run(model), "time": time.time()})
        began += time.perf_counter() - t_probe  # a measurement: off the time budget
    bar = None
    if ctx.rank == 0 and ctx.progress:
        from tqdm.auto import tqdm

        bar = (tqdm(total=round(budget), initial=round(carried), unit="s", disable=None,
                    desc=f"pretrain ({budget / 60:.1f} min budget)") if budget else
               tqdm(total=n_total, initial=start, desc="pretrain", unit="step", disable=None))

    # ``end``: the run's last step, n_total unless the time budget runs out first; ``stop``: where
    # this call stops (earlier on an interruption, ``ctx.stop_after``)
    end = n_total
    stop = n_total if ctx.stop_after is None else min(n_total, ctx.stop_after)
    elapsed = carried
    if budget and carried >= budget:  # restored from the checkpoint that spent the budget
        end = stop = start
    window = _Window()
    last: dict[str, Any] = {}
    last_grad_norm: float | None = None
    model.train()
    step = start
    try:
        while step < stop:
            t0 = time.perf_counter()
            wait0 = loader.wait_seconds
            batch = loader.next_batch()
            spec = batch.spec
            x = hu_to_input(batch.patches.to(device, non_blocking=True)).unsqueeze(2)
            subjects = torch.as_tensor(spec.store_indices, device=device)
            if k and 0 < config.neighbour_rows < x.shape[1]:
                # a random subset of the batch carries neighbours: shuffle, use the first rows
                perm = torch.randperm(x.shape[1], generator=gen, device=device)
                x, subjects = x[:, perm], subjects[perm]
            query = augment(x[0], gen, aug_params)
            key = augment(x[0], gen, aug_params)
            beta = neighbour_weight_at(spec.epoch, config.neighbour_weight, config.warmup_epochs,
                                       step, config.warmup_steps)
            ngb = nkey = None
            if k and (beta or config.neighbour_local_weight):  # neighbour loss / local losses
                b = config.neighbour_rows or x.shape[1]
                flat = augment(x[1:, :b].reshape(k * b, *x.shape[2:]), gen, aug_params)
                ngb = flat.view(k, b, *x.shape[2:]).transpose(0, 1)
                if config.neighbour_local_weight:
                    flat = augment(x[1:].reshape(k * b, *x.shape[2:]), gen, aug_params)
                    nkey = flat.view(k, b, *x.shape[2:]).transpose(0, 1)
            loc = (locations[spec.landmark] if spec.row_landmarks is None  # mixed: per row
                   else locations[torch.as_tensor(spec.row_landmarks, device=device)])
            nlocs = (locations[torch.as_tensor(spec.neighbours, device=device)]
                     if ngb is not None else None)
            local_ngb: dict[str, Any] = {} if nkey is None else {
                "neighbour_keys": nkey, "neighbour_landmarks": spec.neighbours.tolist(),
                "neighbour_local_weight": config.neighbour_local_weight}
            if config.neighbour_bank and beta:  # the neighbour contrast reads the neighbours' queues
                local_ngb["neighbour_landmarks"] = table[
                    spec.landmark, : config.neighbours].tolist()
            with autocast(device, config.amp):
                out_step = train_model(
                    query, key, ngb, loc, nlocs, landmark=spec.landmark, neighbour_weight=beta,
                    subjects=subjects, **local_ngb,
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.backward(out_step["loss"])
            if budget:
                elapsed = elapsed_seconds(began, carried, ctx.distributed, device)
                lr = learning_rate(config, step, n_total, elapsed / budget)
                if elapsed >= budget:  # this is the last step
                    end = stop = step + 1
            else:
                lr = learning_rate(config, step, n_total)
            for group in optimizer.param_groups:
                group["lr"] = lr
            # host synchronisations (finite check, gradient norm, metric read-back) happen only
            # on logging / checkpoint steps; a non-finite loss is caught there before any save
            sync = (step + 1) % config.log_every == 0 or step + 1 == stop or (
                (step + 1) % config.checkpoint_every == 0 or step + 1 == end)
            if sync:
                finite = torch.isfinite(out_step["loss"].detach()).to(torch.float32)
                finite = torch.minimum(finite, window.finite(device))
                if ctx.distributed:
                    dist.all_reduce(finite, op=dist.ReduceOp.MIN)
                if finite.item() < 1.0:
                    views = {"query": query, "key": key, "neighbours": ngb}
                    diag = _diagnostic(model, batch, views, out_step, step, lr, ctx.rank,
                                       last_grad_norm)
                    if out is not None and ctx.rank == 0:
                        from drasclr.fsutil import atomic_write_text

                        atomic_write_text(out / NAN_DIAGNOSTIC_FILE, json.dumps(diag, indent=1))
                    raise NonFiniteLossError(diag)
                scaler.unscale(optimizer)
                grads = [p.grad.detach() for p in params if p.grad is not None]
                last_grad_norm = float(
                    torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))))
            scaler.step(optimizer)
            model.enqueue(spec.landmark, out_step["keys"], subjects)
            if "neighbour_keys" in out_step:
                for i, lm in enumerate(spec.neighbours.tolist()):
                    if model.memory_bank.owns(lm):
                        model.enqueue(lm, out_step["neighbour_keys"][:, i], subjects)
            step += 1
            window.add(out_step, config.batch_size, time.perf_counter() - t0,
                       loader.wait_seconds - wait0)
            if bar is not None:
                bar.update(min(round(elapsed), bar.total) - bar.n if budget else 1)

            if step % config.log_every == 0 or step == stop:
                last = window.summary(ctx.distributed, ctx.world_size, device)
                last.update(step=step, epoch=spec.epoch, lr=lr, neighbour_weight=beta,
                            grad_norm=last_grad_norm,
                            queue_filled=model.memory_bank.filled_fraction(),
                            collapse_warning=bool(last["between_subject_cosine"]
                                                  > config.collapse_cosine))
                if bar is not None:
                    bar.set_postfix(loss=f"{last['loss']:.3f}", top1=f"{last['top1']:.2f}")
                log.write({"event": "train", **last, "time": time.time()})
                if last["collapse_warning"] and ctx.rank == 0:
                    import warnings

                    warnings.warn(
                        f"pretraining step {step}: between-subject cosine of the embeddings is "
                        f"{last['between_subject_cosine']:.3f} (> {config.collapse_cosine}); the "
                        "projection may be collapsing", RuntimeWarning, stacklevel=1)
                window = _Window()
            if probe is not None and (step % config.probe_every == 0 or step == stop):
                t_probe = time.perf_counter()
                log.write({"event": "probe", "step": step, **probe.run(model),
                           "time": time.time()})
                began += time.perf_counter() - t_probe  # a measurement: off the time budget
            if step % config.checkpoint_every == 0 or step == end:
                if not budget:
                    elapsed = elapsed_seconds(began, carried, False, device)
                _checkpoint(model, optimizer, loader, gen, device, ctx, step, n_total, elapsed,
                            last, scaler)
            if ctx.fault and ctx.rank == int(ctx.fault["rank"]) and step == int(ctx.fault["step"]):
                marker = Path(ctx.fault["marker"])
                if not marker.exists():
                    marker.write_text(f"killed rank {ctx.rank} after step {step}\n")
                    os.kill(os.getpid(), signal.SIGKILL)
    finally:
        loader.close()
        if bar is not None:
            bar.close()
        log.close()
    elapsed = elapsed_seconds(began, carried, False, device)
    log.write({"event": "end", "step": step, "complete": step == end,
               "elapsed_s": round(elapsed, 3), "time": time.time()})
    return {
        **last,
        "step": step,
        "complete": step == end,
        "elapsed_s": elapsed,
        "total_steps": n_total,
        "steps_per_epoch": sampler.steps_per_epoch,
        "landmarks": sampler.landmarks.tolist(),
        "queue_bytes": queue_bytes(model.memory_bank),
    }


def _checkpoint(
    model: DrasCLR,
    optimizer: torch.optim.Optimizer,
    loader: PatchLoader,
    gen: torch.Generator,
    device: torch.device,
    ctx: WorkerContext,
    step: int,
    n_total: int,
    elapsed: float,
    metrics: dict[str, Any],
    scaler: StepScaler,
) -> None:
    """Write this rank's files into a fresh directory and publish it."""
    if ctx.publish is None:
        return
    directory = Path(tempfile.mkdtemp(prefix=f"drasclr-ckpt-{step}-r{ctx.rank}-"))
    try:
        save_rank_state(directory, ctx.rank, {
            "memory_bank": _bank_state(model),
            "loader": loader.state_dict(),
            "rng": _rng_state(gen, device),
            "queue_bytes": queue_bytes(model.memory_bank),
        })
        if ctx.rank == 0:
            save_model_state(
                directory,
                {
                    "model": _model_state(model),
                    "optimizer": optimizer.state_dict(),
                    "schedule": {"step": step, "total_steps": n_total,
                                 "elapsed_s": elapsed, "scaler": scaler.state_dict()},
                },
                {"step": step, "epoch": loader.state_dict()["epoch"],
                 "world_size": ctx.world_size, "metrics": metrics},
            )
        ctx.publish(directory, step, {**metrics, "step": step})
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class _Window:
    """Running sums of one logging window, kept on the training device (no per-step sync)."""

    #: per-step values summed: loss, local, neighbour, top1, negatives, between-subject cosine
    N_VALUES = 6

    def __init__(self) -> None:
        self.n = 0
        self.sums: Tensor | None = None
        self.nonfinite: Tensor | None = None
        self.samples = 0
        self.seconds = 0.0
        self.wait = 0.0

    def add(self, out: dict[str, Tensor], batch_size: int, seconds: float, wait: float) -> None:
        q = out["q"]
        b = q.shape[0]
        gram = q @ q.t()
        between = (gram.sum() - gram.diagonal().sum()) / max(b * (b - 1), 1)
        vals = torch.stack([v.detach().double() for v in (  # mixed precision: mixed dtypes
            out["loss"], out["local_loss"], out["neighbour_loss"], out["top1"], out["negatives"],
            between)])
        bad = (~torch.isfinite(out["loss"].detach())).double()
        self.sums = vals if self.sums is None else self.sums + vals
        self.nonfinite = bad if self.nonfinite is None else self.nonfinite + bad
        self.n += 1
        self.samples += batch_size
        self.seconds += seconds
        self.wait += wait

    def finite(self, device: torch.device) -> Tensor:
        """1.0 when every loss of the window so far was finite, else 0.0 (a device scalar)."""
        if self.nonfinite is None:
            return torch.ones((), dtype=torch.float32, device=device)
        return (self.nonfinite == 0).to(torch.float32)

    def summary(
        self, distributed: bool, world_size: int, device: torch.device
    ) -> dict[str, Any]:
        # [6 means, samples, seconds, wait]; seconds is the max over ranks (the slowest sets pace)
        sums = (self.sums.cpu() if self.sums is not None
                else torch.zeros(self.N_VALUES, dtype=torch.float64))
        t = torch.cat([sums / max(self.n, 1),
                       torch.tensor([self.samples, self.seconds, self.wait], dtype=torch.float64)])
        k = self.N_VALUES
        if distributed:  # NCCL reduces device tensors only
            means = t[: k + 1].clone().to(device)
            dist.all_reduce(means)
            times = t[k + 1:].clone().to(device)
            dist.all_reduce(times, op=dist.ReduceOp.MAX)
            t = torch.cat([means[:k] / world_size, means[k:k + 1], times]).cpu()
        loss, local, ngb, top1, negs, between, samples, seconds, wait = t.tolist()
        return {
            "loss": loss,
            "local_loss": local,
            "neighbour_loss": ngb,
            "top1": top1,
            "negatives": negs,
            "top1_chance": 1.0 / (1.0 + negs) if negs >= 0 else float("nan"),
            "between_subject_cosine": between,
            "samples_per_s": samples / seconds if seconds > 0 else 0.0,
            "data_wait_fraction": wait / seconds if seconds > 0 else 0.0,
            "window_steps": self.n,
        }
