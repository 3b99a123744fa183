"""Conditional memory bank: one FIFO queue of negative keys per landmark (DESIGN.md §4.5, §5).

A worker holds only the queues of the landmarks it trains on (landmark sharding): a tensor
``(L_local, K, D)`` plus int64 write pointers and the global landmark id of each row. Plain MoCo
uses the same class with a single queue (``MemoryBank((0,), ...)``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

#: Per-landmark initial queues are drawn from ``Generator(seed * INIT_STRIDE + landmark)`` so that
#: a landmark's starting queue does not depend on how landmarks are sharded across workers.
INIT_STRIDE: int = 1_000_003
#: Subject id of a queue slot that holds no real key yet.
EMPTY: int = -1
#: Subject id of a real key whose subject was not given.
UNKNOWN: int = -2


class MemoryBank(nn.Module):
    """Per-landmark queues of L2-normalised keys.

    Args:
        landmarks: global ids of the landmarks this worker owns (row order of the bank).
        size: keys per queue K (paper: 4096).
        dim: key dimension D (128).
        seed: seed of the random unit vectors that fill the queues initially.

    Buffers (saved in ``state_dict``):
        keys: (L_local, K, D) float32 queued keys.
        subjects: (L_local, K) int64 subject (store index) of each key; ``EMPTY`` (-1) for a slot
            that no real key has been written to yet. Losses mask empty slots and the query's own
            subject, so the random initial vectors are never used as negatives and a subject is
            never its own negative (DESIGN.md departure noted in docs/results.md).
        pointers: (L_local,) int64 index of the next slot to overwrite in each queue.
        landmark_ids: (L_local,) int64 global landmark id of each row.
    """

    keys: Tensor
    subjects: Tensor
    pointers: Tensor
    landmark_ids: Tensor

    def __init__(self, landmarks: Iterable[int], size: int = 4096, dim: int = 128, seed: int = 0):
        super().__init__()
        ids = [int(i) for i in landmarks]
        if not ids:
            raise ValueError("a memory bank needs at least one landmark")
        if len(set(ids)) != len(ids):
            raise ValueError("landmark ids must be unique")
        if size < 1 or dim < 1:
            raise ValueError(f"size and dim must be positive, got size={size}, dim={dim}")
        self.size = size
        self.dim = dim
        self.seed = seed
        keys = torch.empty(len(ids), size, dim)
        for row, landmark in enumerate(ids):
            # drawn and normalised in place: no (K, D) temporaries, so the process grows by the
            # bank's own size (bench train measures this as RSS)
            g = torch.Generator().manual_seed(seed * INIT_STRIDE + landmark)
            torch.randn(size, dim, generator=g, out=keys[row])
            keys[row].div_(keys[row].norm(dim=1, keepdim=True).clamp_min_(1e-12))
        self.register_buffer("keys", keys)
        self.register_buffer("subjects", torch.full((len(ids), size), EMPTY, dtype=torch.long))
        self.register_buffer("pointers", torch.zeros(len(ids), dtype=torch.long))
        self.register_buffer("landmark_ids", torch.tensor(ids, dtype=torch.long))
        self._rows = {landmark: row for row, landmark in enumerate(ids)}

    @property
    def landmarks(self) -> tuple[int, ...]:
        """Global landmark ids in row order."""
        return tuple(self._rows)

    def owns(self, landmark: int) -> bool:
        """Whether this bank holds a queue for the global landmark id."""
        return int(landmark) in self._rows

    def row(self, landmark: int) -> int:
        """Local row of a global landmark id; KeyError naming the owned ids if not owned."""
        try:
            return self._rows[int(landmark)]
        except KeyError:
            owned = self.landmarks
            shown = f"{list(owned[:8])}{'...' if len(owned) > 8 else ''}"
            raise KeyError(
                f"landmark {landmark} has no queue on this worker (owns {len(owned)}: {shown})"
            ) from None

    def negatives(self, landmark: int) -> Tensor:
        """(K, D) detached copy of the landmark's queue (safe to enqueue before backward)."""
        return self.keys[self.row(landmark)].detach().clone()

    def negative_subjects(self, landmark: int) -> Tensor:
        """(K,) copy of the subject id of each queued key (``EMPTY`` where none was written)."""
        return self.subjects[self.row(landmark)].clone()

    def ages(self, landmark: int) -> Tensor:
        """(K,) age of each slot of the landmark's queue: 0 for the key written last."""
        row = self.row(landmark)
        slots = torch.arange(self.size, device=self.pointers.device)
        return (self.pointers[row] - 1 - slots) % self.size

    def filled_fraction(self) -> float:
        """Share of all slots that hold a real key (0 right after construction)."""
        return float((self.subjects != EMPTY).float().mean())

    @torch.no_grad()
    def enqueue(self, landmark: int, keys: Tensor, subjects: Tensor | None = None) -> None:
        """Write a batch of keys into the landmark's queue, first in first out.

        Keys are written at the pointer, wrapping around the end of the queue; the pointer moves
        by the batch size modulo K. With more than K keys only the last K stay (as if written one
        by one).

        Args:
            landmark: global landmark id.
            keys: (n, D) keys (normalised by the caller); detached and cast to the bank's dtype.
            subjects: (n,) subject ids of the keys; None records them as unknown (``EMPTY`` is
                not used for them: unknown subjects are stored as -2 and never masked as "own").
        """
        if keys.dim() != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"keys must be (n, {self.dim}), got {tuple(keys.shape)}")
        row = self.row(landmark)
        n = keys.shape[0]
        if n == 0:
            return
        skip = max(0, n - self.size)
        new = keys.detach()[skip:].to(device=self.keys.device, dtype=self.keys.dtype)
        ptr = self.pointers[row]
        positions = (ptr + skip + torch.arange(new.shape[0], device=ptr.device)) % self.size
        self.keys[row].index_copy_(0, positions.to(self.keys.device), new)
        ids = (torch.full((n,), UNKNOWN, dtype=torch.long) if subjects is None
               else torch.as_tensor(subjects, dtype=torch.long).reshape(-1))
        if ids.numel() != n:
            raise ValueError(f"subjects must have {n} entries, got {ids.numel()}")
        self.subjects[row].index_copy_(
            0, positions.to(self.subjects.device), ids[skip:].to(self.subjects.device)
        )
        self.pointers[row] = (ptr + n) % self.size

    def queue(self, landmark: int) -> tuple[Tensor, int]:
        """(K, D) copy of one queue and its pointer, e.g. to move it to another worker."""
        row = self.row(landmark)
        return self.keys[row].clone(), int(self.pointers[row])

    @torch.no_grad()
    def set_queue(
        self, landmark: int, keys: Tensor, pointer: int, subjects: Tensor | None = None
    ) -> None:
        """Overwrite one queue and its pointer (inverse of :meth:`queue`); ``subjects`` (K,)
        sets the slots' subject ids (None: every slot holds a real key of unknown subject)."""
        row = self.row(landmark)
        if keys.shape != (self.size, self.dim):
            raise ValueError(f"queue must be ({self.size}, {self.dim}), got {tuple(keys.shape)}")
        self.keys[row].copy_(keys)
        ids = (torch.full((self.size,), UNKNOWN, dtype=torch.long) if subjects is None
               else torch.as_tensor(subjects, dtype=torch.long))
        self.subjects[row].copy_(ids)
        self.pointers[row] = int(pointer) % self.size

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        ids = state_dict.get(prefix + "landmark_ids")
        if ids is not None and not torch.equal(ids.cpu(), self.landmark_ids.cpu()):
            error_msgs.append(
                f"{prefix}landmark_ids: the saved bank holds landmarks "
                f"{ids.tolist()[:8]}... ({ids.numel()}), this bank owns "
                f"{self.landmark_ids.tolist()[:8]}... ({self.landmark_ids.numel()}); "
                "move queues with queue()/set_queue() when re-sharding"
            )
            return
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def extra_repr(self) -> str:
        return f"landmarks={len(self._rows)}, size={self.size}, dim={self.dim}"
