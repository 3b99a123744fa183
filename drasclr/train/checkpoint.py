"""Training checkpoints: one directory per checkpoint, one file per rank's own state.

Layout of a checkpoint directory (Ray Train merges the files every rank reports into one
directory, so the names never collide)::

    meta.json              step, epoch, world size, config fingerprint, format version (rank 0)
    model.pt               rank 0: query/key encoders + heads (no memory bank), optimizer,
                           learning-rate schedule position
    rank_{r:03d}.pt        rank r: its memory-bank shard (queues, pointers, landmark ids),
                           loader position, RNG states (torch CPU/CUDA, augmentation generator)
    <file>.sha256          content hash of each file above, checked on load

Files are written atomically (temporary name + rename). Loading checks presence, hashes and the
expected keys and raises :class:`CheckpointError` naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path
from typing import Any

import torch

from drasclr import __version__
from drasclr.fsutil import atomic_write_bytes, atomic_write_text

FORMAT_VERSION = 1
META_FILE = "meta.json"
MODEL_FILE = "model.pt"
MODEL_KEYS = ("model", "optimizer", "schedule")
RANK_KEYS = ("memory_bank", "loader", "rng")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete, corrupt or from an incompatible run."""


def rank_file(rank: int) -> str:
    """File name of one rank's state."""
    return f"rank_{rank:03d}.pt"


def _save(obj: Any, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    atomic_write_text(path.with_name(path.name + ".sha256"), hashlib.sha256(data).hexdigest())


def _load(path: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing checkpoint file")
    data = path.read_bytes()
    digest_file = path.with_name(path.name + ".sha256")
    if digest_file.is_file():
        want = digest_file.read_text().strip()
        if hashlib.sha256(data).hexdigest() != want:
            raise CheckpointError(
                f"{path}: corrupt checkpoint file (content hash differs from {digest_file.name}; "
                "truncated or overwritten?)"
            )
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds on garbage
        raise CheckpointError(f"{path}: corrupt checkpoint file, cannot unpickle: {err}") from err
    missing = [k for k in keys if not isinstance(obj, dict) or k not in obj]
    if missing:
        raise CheckpointError(f"{path}: checkpoint file lacks {missing}")
    return obj


def save_model_state(directory: str | Path, state: dict[str, Any], meta: dict[str, Any]) -> None:
    """Write rank 0's shared state (``model``, ``optimizer``, ``schedule``) and ``meta.json``."""
    directory = Path(directory)
    missing = [k for k in MODEL_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"model state lacks {missing}")
    _save(state, directory / MODEL_FILE)
    full = {"format_version": FORMAT_VERSION, "drasclr": __version__, **meta}
    atomic_write_text(directory / META_FILE, json.dumps(full, indent=1, sort_keys=True))


def save_rank_state(directory: str | Path, rank: int, state: dict[str, Any]) -> None:
    """Write one rank's own state (``memory_bank``, ``loader``, ``rng``)."""
    missing = [k for k in RANK_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"rank state lacks {missing}")
    _save(state, Path(directory) / rank_file(rank))


def read_meta(directory: str | Path) -> dict[str, Any]:
    """The checkpoint's ``meta.json``.

    Raises:
        CheckpointError: no such directory, no or unreadable meta, another format version.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: checkpoint directory does not exist")
    path = directory / META_FILE
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing; not a complete drasclr checkpoint") from None
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: corrupt checkpoint metadata: {err}") from err
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {meta.get('format_version') if isinstance(meta, dict) else '?'}"
            f", this drasclr reads format {FORMAT_VERSION}"
        )
    return meta


def load_model_state(directory: str | Path) -> dict[str, Any]:
    """Rank 0's shared state: ``model``, ``optimizer``, ``schedule``."""
    read_meta(directory)
    return _load(Path(directory) / MODEL_FILE, MODEL_KEYS)


def load_rank_state(directory: str | Path, rank: int, world_size: int) -> dict[str, Any]:
    """One rank's own state; checks the checkpoint was made by ``world_size`` workers.

    Raises:
        CheckpointError: another world size, or the rank's file missing or corrupt.
    """
    meta = read_meta(directory)
    saved = int(meta.get("world_size", -1))
    if saved != world_size:
        raise CheckpointError(
            f"{directory}: checkpoint was written by {saved} workers, this run has {world_size}; "
            "the memory bank is sharded by worker, resume with the same number of workers"
        )
    return _load(Path(directory) / rank_file(rank), RANK_KEYS)


def checkpoint_step(directory: str | Path) -> int:
    """Global step (number of optimizer steps done) stored in a checkpoint."""
    return int(read_meta(directory)["step"])


def latest_checkpoint(root: str | Path) -> Path | None:
    """The ``step_*`` directory with the highest step under ``root`` that has ``meta.json``."""
    root = Path(root)
    if not root.is_dir():
        return None
    found = [
        (int(m.group(1)), p)
        for p in root.iterdir()
        if (m := re.fullmatch(r"step_(\d+)", p.name)) and (p / META_FILE).is_file()
    ]
    return max(found)[1] if found else None
