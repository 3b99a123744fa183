"""Landmark-sharded batches over the patch store, read ahead by a background thread.

Worker ``w`` of ``N`` owns the landmarks ``w, w + N, w + 2N, ...`` (:func:`landmark_shard`): it
trains only on batches of those landmarks and holds only their queues (DESIGN.md §5). A batch is
one landmark ``j`` x ``B`` subjects plus the same subjects' patches at the ``k`` nearest landmarks
of ``j``; a subject is eligible for landmark ``j`` when its patch is valid at ``j`` and at all ``k``
neighbours.

The batch sequence is a pure function of ``(seed, epoch, rank, world_size)``: epoch ``e`` shuffles
each owned landmark's eligible subjects, cuts them into full batches (the remainder is dropped, so
every rank feeds shuffle-BN the same batch size), and shuffles the order of all the rank's batches.
Every rank runs the same number of steps per epoch (the largest rank's batch count; smaller ranks
cycle through their shuffled batches again), so DDP collectives line up. The loader's position is therefore just
``(epoch, step)`` plus that seed — :meth:`PatchLoader.state_dict` — and a restored loader continues
the same stream regardless of how far its prefetch thread had read.

Plain MoCo trains on mixed batches instead (:class:`MixedBatchSampler`): B random (landmark,
subject) patches from the whole lung, as random crops would give, so its contrast pairs no
anatomy. Its position is the same ``(epoch, step)`` plus seed.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from drasclr.store.reader import PatchStore


class LoaderError(RuntimeError):
    """The store cannot feed the requested sharding or batch size."""


def landmark_shard(num_landmarks: int, world_size: int, rank: int) -> npt.NDArray[np.int64]:
    """Global ids of the landmarks worker ``rank`` of ``world_size`` owns (strided, disjoint).

    Raises:
        LoaderError: more workers than landmarks, or a bad rank.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise LoaderError(f"rank {rank} is not in [0, {world_size})")
    if num_landmarks < world_size:
        raise LoaderError(
            f"{world_size} workers but only {num_landmarks} landmarks: every worker needs at "
            "least one landmark; use fewer workers"
        )
    return np.arange(rank, num_landmarks, world_size, dtype=np.int64)


@dataclass(frozen=True)
class BatchSpec:
    """Which patches one step reads.

    Attributes:
        step: global 0-based step index.
        epoch: epoch of the step.
        landmark: global landmark id ``j`` (-1 for a mixed batch).
        neighbours: (k,) global ids of ``j``'s nearest landmarks, nearest first.
        store_indices: (B,) store indices of the batch's subjects, ascending (a mixed batch: in
            the order drawn).
        row_landmarks: (B,) landmark of each row of a mixed batch (:class:`MixedBatchSampler`);
            None for a one-landmark batch.
    """

    step: int
    epoch: int
    landmark: int
    neighbours: npt.NDArray[np.int64]
    store_indices: npt.NDArray[np.int64]
    row_landmarks: npt.NDArray[np.int64] | None = None


@dataclass(frozen=True)
class LandmarkBatch:
    """One step's data.

    Attributes:
        spec: what was read.
        patches: (1 + k, B, P, P, P) int16 HU tensor; row 0 is the landmark, rows 1.. its
            neighbours in ``spec.neighbours`` order; column b is subject ``spec.store_indices[b]``
            (of a mixed batch: at landmark ``spec.row_landmarks[b]``, and k = 0).
    """

    spec: BatchSpec
    patches: torch.Tensor


class LandmarkBatchSampler:
    """The deterministic per-rank batch sequence (see the module docstring).

    Args:
        valid: (L, S_cap) bool, patch inside the field of view of a committed subject.
        neighbour_table: (L, k_max) nearest other landmarks of each landmark.
        batch_size: B, subjects per batch.
        neighbours: k, neighbours per batch (<= k_max).
        rank: this worker's rank.
        world_size: number of workers N.
        seed: run seed.

    Raises:
        LoaderError: k > k_max, too few landmarks, or a rank without a single full batch.
    """

    def __init__(
        self,
        valid: npt.NDArray[np.bool_],
        neighbour_table: npt.NDArray[np.int64],
        batch_size: int,
        neighbours: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
    ) -> None:
        valid = np.asarray(valid, dtype=bool)
        table = np.asarray(neighbour_table, dtype=np.int64)
        L = valid.shape[0]
        if neighbours > table.shape[1]:
            raise LoaderError(
                f"{neighbours} neighbours requested but the store's neighbour table has only "
                f"{table.shape[1]} per landmark"
            )
        self.batch_size = int(batch_size)
        self.k = int(neighbours)
        self.rank, self.world_size, self.seed = int(rank), int(world_size), int(seed)
        self.neighbour_table = table[:, : self.k]
        # eligible[j]: valid at j and at its k neighbours
        eligible = valid.copy()
        for c in range(self.k):
            eligible &= valid[self.neighbour_table[:, c]]
        self._eligible = [np.flatnonzero(eligible[j]).astype(np.int64) for j in range(L)]
        counts = [
            sum(len(self._eligible[j]) // self.batch_size for j in landmark_shard(L, world_size, r))
            for r in range(world_size)
        ]
        empty = [r for r, c in enumerate(counts) if c == 0]
        if empty:
            best = max(len(e) for e in self._eligible)
            raise LoaderError(
                f"worker(s) {empty} of {world_size} get no full batch of {batch_size} subjects "
                f"(at most {best} subjects are valid at a landmark and its {self.k} neighbours); "
                "lower the batch size, the number of workers or the number of neighbours"
            )
        self.landmarks = landmark_shard(L, world_size, rank)
        self.batches_per_rank = tuple(counts)
        self.steps_per_epoch = max(counts)
        self._cached: tuple[int, list[tuple[int, npt.NDArray[np.int64]]]] | None = None

    def eligible_subjects(self, landmark: int) -> npt.NDArray[np.int64]:
        """Store indices valid at ``landmark`` and at its k neighbours."""
        return self._eligible[int(landmark)].copy()

    def epoch_plan(self, epoch: int) -> list[tuple[int, npt.NDArray[np.int64]]]:
        """This rank's ``steps_per_epoch`` batches of an epoch as ``(landmark, store_indices)``."""
        if self._cached is not None and self._cached[0] == epoch:
            return self._cached[1]
        rng = np.random.default_rng([self.seed, epoch, self.rank, self.world_size])
        batches: list[tuple[int, npt.NDArray[np.int64]]] = []
        for j in self.landmarks:
            subjects = rng.permutation(self._eligible[j])
            n = len(subjects) // self.batch_size
            for b in range(n):
                chunk = subjects[b * self.batch_size : (b + 1) * self.batch_size]
                batches.append((int(j), np.sort(chunk)))
        order = rng.permutation(len(batches))
        # ranks with fewer batches cycle through their shuffled batches up to the common length
        plan = [batches[order[i % len(order)]] for i in range(self.steps_per_epoch)]
        self._cached = (epoch, plan)
        return plan

    def spec(self, step: int) -> BatchSpec:
        """The batch of global step ``step`` (0-based)."""
        epoch, within = divmod(int(step), self.steps_per_epoch)
        landmark, subjects = self.epoch_plan(epoch)[within]
        return BatchSpec(step, epoch, landmark, self.neighbour_table[landmark].copy(), subjects)


class MixedBatchSampler:
    """Batches of B random (landmark, subject) patches from the whole lung (plain MoCo's).

    The contrast of plain MoCo does not pair anatomy: a batch mixes locations and subjects, as
    random crops would. Epoch ``e`` shuffles every valid (landmark, subject) patch of the store
    with ``(seed, e, world_size)``, rank ``r`` takes every ``world_size``-th patch from ``r`` on,
    and cuts its share into full batches (the remainder is dropped). The interface is
    :class:`LandmarkBatchSampler`'s with k = 0; every rank sees every landmark.

    Args:
        valid: (L, S_cap) bool, patch inside the field of view of a committed subject.
        batch_size: B, patches per batch.
        rank: this worker's rank.
        world_size: number of workers N.
        seed: run seed.

    Raises:
        LoaderError: a rank without a single full batch.
    """

    def __init__(
        self,
        valid: npt.NDArray[np.bool_],
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
    ) -> None:
        valid = np.asarray(valid, dtype=bool)
        self.batch_size = int(batch_size)
        self.k = 0
        self.rank, self.world_size, self.seed = int(rank), int(world_size), int(seed)
        self.neighbour_table = np.zeros((valid.shape[0], 0), dtype=np.int64)
        self._valid = valid
        self._pairs = np.argwhere(valid).astype(np.int64)  # (n, 2): landmark, store index
        share = len(self._pairs) // max(self.world_size, 1)
        self.steps_per_epoch = share // self.batch_size
        if self.steps_per_epoch == 0:
            raise LoaderError(
                f"{len(self._pairs)} valid patches give worker(s) of {world_size} no full batch "
                f"of {batch_size}; lower the batch size or the number of workers")
        self.landmarks = np.flatnonzero(valid.any(axis=1)).astype(np.int64)
        self.batches_per_rank = (self.steps_per_epoch,) * self.world_size
        self._cached: tuple[int, npt.NDArray[np.int64]] | None = None

    def eligible_subjects(self, landmark: int) -> npt.NDArray[np.int64]:
        """Store indices valid at ``landmark``."""
        return np.flatnonzero(self._valid[int(landmark)]).astype(np.int64)

    def epoch_plan(self, epoch: int) -> npt.NDArray[np.int64]:
        """This rank's batches of an epoch: (steps_per_epoch, B, 2) (landmark, store index)."""
        if self._cached is not None and self._cached[0] == epoch:
            return self._cached[1]
        rng = np.random.default_rng([self.seed, epoch, self.world_size, 1])
        order = rng.permutation(len(self._pairs))[self.rank :: self.world_size]
        n = self.steps_per_epoch * self.batch_size
        plan = self._pairs[order[:n]].reshape(self.steps_per_epoch, self.batch_size, 2)
        self._cached = (epoch, plan)
        return plan

    def spec(self, step: int) -> BatchSpec:
        """The batch of global step ``step`` (0-based)."""
        epoch, within = divmod(int(step), self.steps_per_epoch)
        rows = self.epoch_plan(epoch)[within]
        return BatchSpec(step, epoch, -1, np.zeros(0, dtype=np.int64), rows[:, 1].copy(),
                         row_landmarks=rows[:, 0].copy())


class PatchLoader:
    """Iterates :class:`LandmarkBatch` es of one rank, reading ahead in a background thread.

    Args:
        store: the patch store (opened read-only).
        sampler: this rank's batch sequence.
        start_step: first global step to produce (from :meth:`state_dict` when resuming).
        prefetch: batches read ahead.
        pin_memory: pin the host tensors (faster copies to a GPU).

    Attributes:
        wait_seconds: total time :meth:`next_batch` blocked waiting for the reader thread.
    """

    def __init__(
        self,
        store: PatchStore,
        sampler: LandmarkBatchSampler | MixedBatchSampler,
        start_step: int = 0,
        prefetch: int = 4,
        pin_memory: bool = False,
    ) -> None:
        self.store = store
        self.sampler = sampler
        self.prefetch = max(1, int(prefetch))
        self.pin_memory = pin_memory
        self.wait_seconds = 0.0
        self._next = int(start_step)
        self._thread: threading.Thread | None = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=self.prefetch)
        self._stop = threading.Event()

    # -- position --------------------------------------------------------------------------
    @property
    def step(self) -> int:
        """Global step of the next batch :meth:`next_batch` returns."""
        return self._next

    def state_dict(self) -> dict[str, int]:
        """Serialisable position: the next step plus what the stream depends on."""
        epoch = self._next // self.sampler.steps_per_epoch
        return {
            "step": self._next,
            "epoch": epoch,
            "seed": self.sampler.seed,
            "rank": self.sampler.rank,
            "world_size": self.sampler.world_size,
            "steps_per_epoch": self.sampler.steps_per_epoch,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a saved position (stops the reader thread first).

        Raises:
            LoaderError: the state belongs to another seed, rank, world size or epoch length.
        """
        mine = self.state_dict()
        for key in ("seed", "rank", "world_size", "steps_per_epoch"):
            if int(state[key]) != mine[key]:
                raise LoaderError(
                    f"loader state has {key}={state[key]}, this loader {key}={mine[key]}: the "
                    "checkpoint comes from another run setup (seed, workers, batch size or store)"
                )
        self.close()
        self._next = int(state["step"])

    # -- reading ---------------------------------------------------------------------------
    def read(self, spec: BatchSpec) -> LandmarkBatch:
        """Read one batch synchronously."""
        if spec.row_landmarks is not None:  # a mixed batch
            hu = self.store.read_pairs(spec.row_landmarks, spec.store_indices)[None]
        else:
            lms = np.concatenate([[spec.landmark], spec.neighbours]).astype(np.int64)
            hu = self.store.read_landmarks_batch(lms, spec.store_indices)
        patches = torch.from_numpy(hu)
        if self.pin_memory:
            patches = patches.pin_memory()
        return LandmarkBatch(spec, patches)

    def _produce(self, start: int) -> None:
        step = start
        try:
            while not self._stop.is_set():
                item: Any = self.read(self.sampler.spec(step))
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                step += 1
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, re-raised there
            self._queue.put(err)

    def _start(self) -> None:
        self._stop.clear()
        self._queue = queue.Queue(maxsize=self.prefetch)
        self._thread = threading.Thread(
            target=self._produce, args=(self._next,), name="drasclr-loader", daemon=True
        )
        self._thread.start()

    def next_batch(self) -> LandmarkBatch:
        """The batch of step :attr:`step`; advances the position."""
        if self._thread is None:
            self._start()
        t0 = time.perf_counter()
        item = self._queue.get()
        self.wait_seconds += time.perf_counter() - t0
        if isinstance(item, BaseException):
            self.close()
            raise LoaderError(f"reading the batch of step {self._next} failed: {item}") from item
        if item.spec.step != self._next:  # cannot happen unless the thread logic is broken
            raise LoaderError(f"loader out of order: got step {item.spec.step}, want {self._next}")
        self._next += 1
        return item

    def __iter__(self) -> Iterator[LandmarkBatch]:
        while True:
            yield self.next_batch()

    def close(self) -> None:
        """Stop the reader thread (the position is kept)."""
        if self._thread is not None:
            self._stop.set()
            while self._thread.is_alive():
                try:
                    self._queue.get(timeout=0.05)
                except queue.Empty:
                    pass
            self._thread.join()
            self._thread = None

    def __enter__(self) -> PatchLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
