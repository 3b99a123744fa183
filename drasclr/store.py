"""Patch store (Zarr v3) + manifest (Parquet): where preprocessing writes and training reads.

One store per preprocessing run, a directory holding::

    zarr.json         group; attribute ``patch_store`` = landmark table (mm and normalised),
                      neighbour table, patch size, HU window, atlas id, schema_version,
                      block size, capacity, created_by
    patches/          int16 (L, S_cap, P, P, P) [landmark, subject, z, y, x], clipped HU
    valid/            bool (L, S_cap): the patch lies inside the subject's field of view
    lung_fraction/    float32 (L, S_cap): lung fraction of the patch, in [0, 1]
    centre_mm/        float32 (L, S_cap, 3): patch centre T_i(l_j), subject LPS mm
    manifest.parquet  one row per subject (``schemas/manifest.json``)

Layout (schema_version 1), chosen by measurement (``bench_store``; figures in the report of the
issue that introduced this module): every array is split along the subject axis into *blocks* of
``block_size`` consecutive store indices. ``patches`` has one shard per block spanning all L
landmarks, i.e. one file per block, with one inner chunk per patch ``(1, 1, P, P, P)`` compressed
with Blosc zstd-3 + byte shuffle (~0.45x raw on noisy CT). Per-patch inner chunks make both access
patterns read exactly the patches they need: a training batch (B subjects at a landmark and its
neighbours) and one subject's L landmarks. Zarr-python's own partial-shard reads cost ~0.3-3 ms per
patch (its orthogonal selection inside a shard even expands to per-voxel coordinates), so
:class:`PatchStore` reads the shard index (cached, CRC-checked) and the inner chunks with ``pread``
and decodes them with Blosc straight into the output: ~10-20k patches/s on one core. Writes go
through zarr.

Concurrency and atomicity: the unit a writer owns is a block. A block is written whole, once, by
one writer (:meth:`StoreWriter.write_block`), so no two writers ever touch one chunk or shard.
The manifest is the only record of what is stored: the driver commits a block's rows
(:meth:`StoreWriter.commit_rows`, atomic rename) after its arrays are written, and readers only
see subjects whose row is ``ok``. New and re-processed subjects always go to fresh blocks after the
last committed one, so a crash never damages committed data and leaves the crashed subjects
absent; the next :meth:`StoreWriter.plan` assigns them again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import threading
import time
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import google_crc32c
import numcodecs
import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import zarr
from numcodecs import blosc
from zarr.codecs import BloscCodec, BloscShuffle, ZstdCodec

from drasclr import __version__
from drasclr.fsutil import atomic_path, file_sha256
from drasclr.tables import SchemaError, conform, load_schema, read_table, write_table

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "HU_WINDOW",
    "MANIFEST_FILE",
    "SCHEMA_VERSION",
    "PatchStore",
    "Plan",
    "PlanItem",
    "StoreError",
    "StoreInfo",
    "StoreWriter",
    "SubjectPatches",
    "bench_store",
    "ct_like_patches",
    "open_store",
    "read_store_info",
    "store_digest",
]

SCHEMA_VERSION = 1
"""Version of the on-disk layout; a store with another version is refused."""
HU_WINDOW: tuple[int, int] = (-1024, 240)
"""HU are clipped to this window before storage (DESIGN 3.1)."""
MANIFEST_FILE = "manifest.parquet"
MANIFEST_SCHEMA = "manifest"
DEFAULT_BLOCK_SIZE = 8
"""Subjects per block: the write unit, and the shard extent along the subject axis."""

_ATTR = "patch_store"
_PATCH_CODEC = BloscCodec(cname="zstd", clevel=3, shuffle=BloscShuffle.shuffle, typesize=2)
_SMALL_CODEC = ZstdCodec(level=3)
_MAX_U64 = np.uint64(2**64 - 1)
# Manifest columns a SubjectPatches.record may set (the rest are set by the store).
_STORE_COLUMNS = frozenset(
    {
        "subject_id",
        "input_path",
        "input_hash",
        "status",
        "error",
        "store_index",
        "code_version",
        "config_fingerprint",
    }
)


class StoreError(RuntimeError):
    """A patch store is missing, of another layout version, or used against its rules."""


# ----------------------------------------------------------------------------- data classes
@dataclass(frozen=True, eq=False)
class StoreInfo:
    """Store attributes (the ``patch_store`` attribute of the root group).

    Attributes:
        schema_version: on-disk layout version.
        atlas_id: identifier of the atlas the landmarks belong to.
        patch_size: P, patch edge in voxels (1 mm).
        hu_window: (min, max) HU of the stored values.
        block_size: subjects per block (write unit, shard extent along S).
        capacity: allocated length of the subject axis (a multiple of block_size).
        landmarks_mm: (L, 3) float64 landmark centres, atlas LPS mm.
        landmarks_norm: (L, 3) float64 landmarks normalised to [-1, 1] per axis.
        neighbours: (L, k_max) int64 indices of each landmark's nearest other landmarks.
        created_by: ``drasclr <version>`` that created the store.
    """

    schema_version: int
    atlas_id: str
    patch_size: int
    hu_window: tuple[int, int]
    block_size: int
    capacity: int
    landmarks_mm: npt.NDArray[np.float64]
    landmarks_norm: npt.NDArray[np.float64]
    neighbours: npt.NDArray[np.int64]
    created_by: str

    @property
    def num_landmarks(self) -> int:
        """L, the number of landmarks."""
        return int(self.landmarks_mm.shape[0])

    def to_attrs(self) -> dict[str, Any]:
        """JSON-ready attribute dict (fixed key order, so metadata files are reproducible)."""
        return {
            "schema_version": self.schema_version,
            "atlas_id": self.atlas_id,
            "patch_size": self.patch_size,
            "hu_window": list(self.hu_window),
            "block_size": self.block_size,
            "capacity": self.capacity,
            "num_landmarks": self.num_landmarks,
            "k_max": int(self.neighbours.shape[1]),
            "landmarks_mm": self.landmarks_mm.tolist(),
            "landmarks_norm": self.landmarks_norm.tolist(),
            "neighbours": self.neighbours.tolist(),
            "layout": (
                "patches (landmark, subject, z, y, x) int16; shard = all landmarks x block_size "
                "subjects; inner chunk = one patch; blosc zstd clevel 3 byte-shuffle"
            ),
            "created_by": self.created_by,
        }


@dataclass(frozen=True)
class PlanItem:
    """One subject to process, with the store index it must be written at.

    Attributes:
        subject_id: subject identifier.
        input_path: input scan path or URI.
        input_hash: content hash of the input.
        store_index: slot along the subject axis (in block ``store_index // block_size``).
        reason: why it is processed: ``new``, ``input_changed``, ``config_changed`` or ``retry``.
    """

    subject_id: str
    input_path: str
    input_hash: str
    store_index: int
    reason: str


@dataclass(frozen=True)
class Plan:
    """What a run must do: subjects to process, grouped in blocks, and subjects skipped.

    Attributes:
        items: subjects to process, in store-index order.
        skipped: ids already ``ok`` with the same input hash and config fingerprint.
        block_size: subjects per block.
        capacity: store capacity after planning.
    """

    items: tuple[PlanItem, ...]
    skipped: tuple[str, ...]
    block_size: int
    capacity: int

    @property
    def blocks(self) -> dict[int, tuple[PlanItem, ...]]:
        """Block index -> its items; hand each block to exactly one writer."""
        out: dict[int, list[PlanItem]] = defaultdict(list)
        for item in self.items:
            out[item.store_index // self.block_size].append(item)
        return {b: tuple(v) for b, v in sorted(out.items())}

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True, eq=False)
class SubjectPatches:
    """The patches and per-subject record of one processed subject.

    Attributes:
        item: the plan item (id, input, store index).
        patches: (L, P, P, P) integer HU indexed [z, y, x] (as ``patches.cut_patches`` cuts
            them); clipped to the HU window and stored as int16.
        valid: (L,) bool, patch inside the field of view.
        lung_fraction: (L,) fraction of lung voxels per patch, in [0, 1].
        centre_mm: (L, 3) patch centres T_i(l_j), subject LPS mm.
        record: other manifest fields (geometry, transform, QC, stage timings) by column name.
    """

    item: PlanItem
    patches: npt.NDArray[np.integer]
    valid: npt.NDArray[np.bool_]
    lung_fraction: npt.NDArray[np.floating]
    centre_mm: npt.NDArray[np.floating]
    record: Mapping[str, Any] = field(default_factory=dict)

    @property
    def subject_id(self) -> str:
        """The subject's id."""
        return self.item.subject_id

    @property
    def store_index(self) -> int:
        """The slot it is written at."""
        return self.item.store_index


# ----------------------------------------------------------------------------- attributes
def read_store_info(path: str | Path) -> StoreInfo:
    """Read and check a store's attributes.

    Raises:
        StoreError: no store at ``path``, or a store of another schema_version.
    """
    path = Path(path)
    meta_file = path / "zarr.json"
    if not meta_file.is_file():
        raise StoreError(f"{path}: no patch store here (missing zarr.json)")
    try:
        attrs = json.loads(meta_file.read_text()).get("attributes", {})
    except (OSError, ValueError) as err:
        raise StoreError(f"{path}: unreadable store metadata: {err}") from err
    a = attrs.get(_ATTR)
    if not isinstance(a, dict):
        raise StoreError(
            f"{path}: a Zarr group but not a drasclr patch store (no '{_ATTR}' attribute)"
        )
    version = a.get("schema_version")
    if version != SCHEMA_VERSION:
        raise StoreError(
            f"{path}: patch store schema_version {version}, but this drasclr ({__version__}) reads "
            f"schema_version {SCHEMA_VERSION}; re-run preprocessing with overwrite=True or use a "
            "matching drasclr version"
        )
    k_max = int(a["k_max"])
    return StoreInfo(
        schema_version=int(version),
        atlas_id=str(a["atlas_id"]),
        patch_size=int(a["patch_size"]),
        hu_window=(int(a["hu_window"][0]), int(a["hu_window"][1])),
        block_size=int(a["block_size"]),
        capacity=int(a["capacity"]),
        landmarks_mm=np.asarray(a["landmarks_mm"], dtype=np.float64).reshape(-1, 3),
        landmarks_norm=np.asarray(a["landmarks_norm"], dtype=np.float64).reshape(-1, 3),
        neighbours=np.asarray(a["neighbours"], dtype=np.int64).reshape(-1, k_max),
        created_by=str(a["created_by"]),
    )


# ----------------------------------------------------------------------------- manifest
def _manifest_path(path: Path) -> Path:
    return path / MANIFEST_FILE


def _check_manifest(table: pa.Table, capacity: int, source: str) -> None:
    """Cross-column rules: ok <=> store_index >= 0; ok indices unique and inside the capacity."""
    status = table.column("status").to_numpy(zero_copy_only=False)
    index = table.column("store_index").to_numpy(zero_copy_only=False)
    ids = table.column("subject_id").to_numpy(zero_copy_only=False)
    ok = status == "ok"
    bad = np.flatnonzero((ok & (index < 0)) | (~ok & (index != -1)))
    if bad.size:
        r = int(bad[0])
        raise SchemaError(
            f"{source}: row {r} (subject '{ids[r]}') has status '{status[r]}' with store_index "
            f"{index[r]}; 'ok' rows need store_index >= 0, other rows -1"
        )
    stored = index[ok]
    over = stored[stored >= capacity]
    if over.size:
        raise SchemaError(
            f"{source}: store_index {int(over[0])} outside the store capacity {capacity}"
        )
    uniq, counts = np.unique(stored, return_counts=True)
    if (counts > 1).any():
        raise SchemaError(
            f"{source}: store_index {int(uniq[counts > 1][0])} used by several 'ok' rows"
        )


def _read_manifest(path: Path, capacity: int) -> pa.Table:
    """Read and validate the manifest (schema + cross-column rules); SchemaError names the file."""
    mpath = _manifest_path(path)
    table = read_table(mpath, MANIFEST_SCHEMA)
    _check_manifest(table, capacity, str(mpath))
    return table


def _plain(value: Any) -> Any:
    """Numpy arrays and scalars to plain Python (for Arrow conversion)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ----------------------------------------------------------------------------- creation
def _create_store(path: Path, info: StoreInfo) -> None:
    """Build an empty store in a temporary sibling and rename it onto ``path``."""
    L, P, B = info.num_landmarks, info.patch_size, info.block_size
    with atomic_path(path) as tmp:
        root = zarr.open_group(tmp, mode="w", attributes={_ATTR: info.to_attrs()})
        root.create_array(
            "patches",
            shape=(L, 0, P, P, P),
            dtype="int16",
            chunks=(1, 1, P, P, P),
            shards=(L, B, P, P, P),
            compressors=_PATCH_CODEC,
            fill_value=0,
            dimension_names=("landmark", "subject", "z", "y", "x"),
        )
        root.create_array(
            "valid",
            shape=(L, 0),
            dtype="bool",
            chunks=(L, B),
            compressors=_SMALL_CODEC,
            fill_value=False,
            dimension_names=("landmark", "subject"),
        )
        root.create_array(
            "lung_fraction",
            shape=(L, 0),
            dtype="float32",
            chunks=(L, B),
            compressors=_SMALL_CODEC,
            fill_value=0.0,
            dimension_names=("landmark", "subject"),
        )
        root.create_array(
            "centre_mm",
            shape=(L, 0, 3),
            dtype="float32",
            chunks=(L, B, 3),
            compressors=_SMALL_CODEC,
            fill_value=float("nan"),
            dimension_names=("landmark", "subject", "xyz"),
        )
        empty = pa.Table.from_pylist([], schema=load_schema(MANIFEST_SCHEMA).arrow)
        write_table(empty, _manifest_path(tmp), MANIFEST_SCHEMA)


def open_store(
    path: str | Path,
    *,
    landmarks_mm: npt.ArrayLike | None = None,
    neighbours: npt.ArrayLike | None = None,
    atlas_id: str | None = None,
    landmarks_norm: npt.ArrayLike | None = None,
    patch_size: int | None = None,
    block_size: int | None = None,
    config_fingerprint: str = "",
    code_version: str = __version__,
    overwrite: bool = False,
) -> StoreWriter:
    """Create a patch store, or open an existing one for writing.

    Args:
        path: store directory.
        landmarks_mm: (L, 3) landmark centres in atlas LPS mm (required to create).
        neighbours: (L, k_max) neighbour table (required to create).
        atlas_id: atlas identifier (required to create).
        landmarks_norm: (L, 3) normalised landmarks; default ``atlas.normalise_landmarks``.
        patch_size: P (default 32 on creation).
        block_size: subjects per block (default ``DEFAULT_BLOCK_SIZE`` on creation).
        config_fingerprint: fingerprint of the run's preprocessing config (recorded per subject;
            a change re-processes subjects).
        code_version: version recorded in the manifest rows.
        overwrite: wipe an existing store and create a fresh one.

    Returns:
        A :class:`StoreWriter` on the store.

    Raises:
        StoreError: an existing store of another schema_version or with another landmark table,
            atlas, patch size or block size; ``path`` is something else; arguments missing.
    """
    path = Path(path)
    exists = (path / "zarr.json").exists()
    if exists and not overwrite:
        info = read_store_info(path)
        given = {
            "landmarks_mm": (landmarks_mm, info.landmarks_mm, np.float64),
            "neighbours": (neighbours, info.neighbours, np.int64),
            "landmarks_norm": (landmarks_norm, info.landmarks_norm, np.float64),
        }
        differ = [
            k
            for k, (new, old, dt) in given.items()
            if new is not None and not np.array_equal(np.asarray(new, dtype=dt), old)
        ]
        for k, new, old in (
            ("atlas_id", atlas_id, info.atlas_id),
            ("patch_size", patch_size, info.patch_size),
            ("block_size", block_size, info.block_size),
        ):
            if new is not None and new != old:
                differ.append(k)
        if differ:
            raise StoreError(
                f"{path}: existing store differs in {differ}; use overwrite=True to replace it "
                "or write to another path"
            )
    else:
        if path.exists() and not exists and (not path.is_dir() or any(path.iterdir())):
            raise StoreError(f"{path}: exists and is not a patch store; refusing to replace it")
        if landmarks_mm is None or neighbours is None or atlas_id is None:
            raise StoreError(
                f"{path}: creating a store needs landmarks_mm, neighbours and atlas_id"
            )
        lm = np.asarray(landmarks_mm, dtype=np.float64)
        if lm.ndim != 2 or lm.shape[1] != 3 or lm.shape[0] == 0:
            raise StoreError(f"landmarks_mm must have shape (L, 3), got {lm.shape}")
        L = lm.shape[0]
        nb = np.asarray(neighbours, dtype=np.int64)
        if nb.ndim == 1 and nb.size == 0:
            nb = nb.reshape(L, 0)
        if nb.ndim != 2 or nb.shape[0] != L:
            raise StoreError(f"neighbours must have shape (L={L}, k_max), got {nb.shape}")
        if nb.size and (nb.min() < 0 or nb.max() >= L or (nb == np.arange(L)[:, None]).any()):
            raise StoreError("neighbours must index other landmarks in [0, L)")
        if landmarks_norm is None:
            from drasclr.atlas import normalise_landmarks  # the one normalisation rule

            landmarks_norm = normalise_landmarks(lm)
        norm = np.asarray(landmarks_norm, dtype=np.float64)
        if norm.shape != lm.shape:
            raise StoreError(f"landmarks_norm must have shape {lm.shape}, got {norm.shape}")
        P = 32 if patch_size is None else int(patch_size)
        B = DEFAULT_BLOCK_SIZE if block_size is None else int(block_size)
        if P <= 0 or B <= 0:
            raise StoreError(f"patch_size and block_size must be positive, got {P}, {B}")
        info = StoreInfo(
            SCHEMA_VERSION,
            str(atlas_id),
            P,
            HU_WINDOW,
            B,
            0,
            lm,
            norm,
            nb,
            f"drasclr {code_version}",
        )
        _create_store(path, info)
    return StoreWriter(path, config_fingerprint=config_fingerprint, code_version=code_version)


# ----------------------------------------------------------------------------- writer
def _write_region(array: zarr.Array, subjects: slice, data: np.ndarray) -> None:
    """Write ``data`` over a whole block of the subject axis (axis 1) of ``array``."""
    array[:, subjects] = data


class StoreWriter:
    """Write side of a patch store: plan, write blocks (any process), commit rows (driver).

    Picklable (it holds only the path and plain values), so a Ray task can receive it and call
    :meth:`write_block`. :meth:`plan` and :meth:`commit_rows` run on the driver only.
    """

    def __init__(
        self, path: str | Path, *, config_fingerprint: str = "", code_version: str = __version__
    ) -> None:
        """Open an existing store; see :func:`open_store` to create one."""
        self.path = Path(path)
        self.config_fingerprint = config_fingerprint
        self.code_version = code_version
        self.info = read_store_info(self.path)

    # -- manifest ------------------------------------------------------------------------
    def manifest_table(self) -> pa.Table:
        """The manifest as a validated Arrow table."""
        return _read_manifest(self.path, read_store_info(self.path).capacity)

    def manifest(self) -> pd.DataFrame:
        """The manifest as a validated DataFrame."""
        return self.manifest_table().to_pandas()

    # -- planning ------------------------------------------------------------------------
    def plan(self, subjects: Sequence[tuple[str, str, str]]) -> Plan:
        """Decide which subjects to process and where they go; grow the store to fit them.

        A subject is skipped when its manifest row is ``ok`` with the same input hash and config
        fingerprint; every other subject (new, changed, failed, skipped before) gets a fresh store
        index in a block after the last committed one, in input order. Driver only.

        Args:
            subjects: ``(subject_id, input_path, input_hash)`` per subject.

        Raises:
            StoreError: duplicate or empty subject ids.
        """
        entries = [(str(s), str(p), str(h)) for s, p, h in subjects]
        ids = pd.Series([e[0] for e in entries], dtype=object)
        dups = sorted(ids[ids.duplicated()].unique())
        if dups:
            raise StoreError(
                f"duplicate subject id(s) in the input: {dups[:10]}"
                + (f" and {len(dups) - 10} more" if len(dups) > 10 else "")
            )
        if any(not e[0] for e in entries):
            raise StoreError("empty subject id in the input")
        self.info = read_store_info(self.path)
        table = _read_manifest(self.path, self.info.capacity)
        rows = {
            r["subject_id"]: r
            for r in table.select(
                ["subject_id", "input_hash", "status", "store_index", "config_fingerprint"]
            ).to_pylist()
        }
        todo: list[tuple[str, str, str, str]] = []
        skipped: list[str] = []
        for sid, ipath, ihash in entries:
            row = rows.get(sid)
            if row is None:
                reason = "new"
            elif row["status"] != "ok":
                reason = "retry"
            elif row["input_hash"] != ihash:
                reason = "input_changed"
            elif row["config_fingerprint"] != self.config_fingerprint:
                reason = "config_changed"
            else:
                skipped.append(sid)
                continue
            todo.append((sid, ipath, ihash, reason))
        B = self.info.block_size
        stored = [r["store_index"] for r in rows.values() if r["status"] == "ok"]
        first = (max(stored) // B + 1) * B if stored else 0
        items = tuple(PlanItem(s, p, h, first + i, r) for i, (s, p, h, r) in enumerate(todo))
        if items:
            self._grow(first + math.ceil(len(items) / B) * B)
        return Plan(items, tuple(skipped), B, self.info.capacity)

    def _grow(self, capacity: int) -> None:
        """Resize every array along the subject axis to ``capacity`` (whole blocks; driver only)."""
        info = read_store_info(self.path)
        if capacity <= info.capacity:
            self.info = info
            return
        root = zarr.open_group(self.path, mode="r+")
        for name in ("patches", "valid", "lung_fraction", "centre_mm"):
            arr = root[name]
            arr.resize((arr.shape[0], capacity, *arr.shape[2:]))
        attrs = dict(root.attrs[_ATTR])
        attrs["capacity"] = capacity
        root.attrs[_ATTR] = attrs
        self.info = read_store_info(self.path)

    # -- writing -------------------------------------------------------------------------
    def write_block(
        self, block_index: int, subjects: Sequence[SubjectPatches]
    ) -> list[dict[str, Any]]:
        """Write all arrays of one block and return its manifest rows (not yet committed).

        The block is written whole, one shard file per array (about ``L * block_size * P**3 * 2``
        bytes of memory); slots without a subject are cleared. Call it once per block, from one
        writer; then pass the rows (plus rows of the block's failed subjects) to
        :meth:`commit_rows` on the driver. Until then the subjects are absent from the store.

        Args:
            block_index: block ``b``, store indices ``[b * block_size, (b + 1) * block_size)``.
            subjects: the block's processed subjects (any subset of its planned items).

        Returns:
            One ``ok`` manifest row per subject.

        Raises:
            StoreError: a subject outside the block, duplicated, or with arrays of the wrong shape.
        """
        t0 = time.perf_counter()
        info = read_store_info(self.path)
        L, P, B = info.num_landmarks, info.patch_size, info.block_size
        if not 0 <= block_index < info.capacity // B:
            raise StoreError(
                f"block {block_index} is outside the store capacity {info.capacity} "
                f"({info.capacity // B} blocks); plan() grows the store"
            )
        lo = block_index * B
        patches = np.zeros((L, B, P, P, P), dtype=np.int16)
        valid = np.zeros((L, B), dtype=bool)
        lung = np.zeros((L, B), dtype=np.float32)
        centre = np.full((L, B, 3), np.nan, dtype=np.float32)
        seen: set[int] = set()
        for sp in subjects:
            k = sp.store_index - lo
            where = f"subject '{sp.subject_id}' (store_index {sp.store_index})"
            if not 0 <= k < B:
                raise StoreError(f"{where} is not in block {block_index} [{lo}, {lo + B})")
            if k in seen:
                raise StoreError(f"{where}: store_index given twice in block {block_index}")
            seen.add(k)
            self._check_subject(sp, L, P, where)
            patches[:, k] = np.clip(sp.patches, *info.hu_window)
            valid[:, k] = sp.valid
            lung[:, k] = sp.lung_fraction
            centre[:, k] = sp.centre_mm
        root = zarr.open_group(self.path, mode="r+")
        region = slice(lo, lo + B)
        _write_region(root["patches"], region, patches)
        _write_region(root["lung_fraction"], region, lung)
        _write_region(root["centre_mm"], region, centre)
        _write_region(root["valid"], region, valid)
        t_write = (time.perf_counter() - t0) / max(len(subjects), 1)
        return [
            self._row(sp.item, "ok", None, sp.store_index, {**sp.record, "t_write": t_write})
            for sp in subjects
        ]

    @staticmethod
    def _check_subject(sp: SubjectPatches, L: int, P: int, where: str) -> None:
        shapes = {
            "patches": (np.shape(sp.patches), (L, P, P, P)),
            "valid": (np.shape(sp.valid), (L,)),
            "lung_fraction": (np.shape(sp.lung_fraction), (L,)),
            "centre_mm": (np.shape(sp.centre_mm), (L, 3)),
        }
        for name, (got, want) in shapes.items():
            if tuple(got) != want:
                raise StoreError(f"{where}: {name} has shape {tuple(got)}, expected {want}")
        if not np.issubdtype(np.asarray(sp.patches).dtype, np.integer):
            raise StoreError(
                f"{where}: patches must hold integer HU, got {np.asarray(sp.patches).dtype}"
            )
        lf = np.asarray(sp.lung_fraction, dtype=np.float64)
        if not (np.isfinite(lf).all() and (lf >= 0).all() and (lf <= 1).all()):
            raise StoreError(f"{where}: lung_fraction must lie in [0, 1]")

    def failed_row(
        self, item: PlanItem, error: str, *, status: str = "failed", **record: Any
    ) -> dict[str, Any]:
        """A manifest row for a subject that was not stored (status ``failed`` or ``skipped``)."""
        if status not in ("failed", "skipped"):
            raise StoreError(f"failed_row status must be 'failed' or 'skipped', got {status!r}")
        return self._row(item, status, error, -1, record)

    def _row(
        self,
        item: PlanItem,
        status: str,
        error: str | None,
        store_index: int,
        record: Mapping[str, Any],
    ) -> dict[str, Any]:
        names = load_schema(MANIFEST_SCHEMA).names
        unknown = sorted((set(record) - set(names)) | (set(record) & _STORE_COLUMNS))
        if unknown:
            raise StoreError(
                f"subject '{item.subject_id}': record key(s) {unknown} are not manifest "
                "columns a record may set"
            )
        row: dict[str, Any] = dict.fromkeys(names)
        row.update(record)
        row.update(
            subject_id=item.subject_id,
            input_path=item.input_path,
            input_hash=item.input_hash,
            status=status,
            error=error,
            store_index=store_index,
            code_version=self.code_version,
            config_fingerprint=self.config_fingerprint,
        )
        return row

    def commit_rows(self, rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
        """Upsert rows into the manifest (validated, atomic rename). Driver only.

        Call after the rows' block has been written. Rows replace existing rows of the same
        subject; the manifest is kept sorted by subject id.

        Returns:
            The new manifest.

        Raises:
            SchemaError: a row breaks the manifest schema (the manifest file is named).
            StoreError: a subject appears twice in ``rows``.
        """
        mpath = _manifest_path(self.path)
        schema = load_schema(MANIFEST_SCHEMA)
        plain = [{k: _plain(r.get(k)) for k in schema.names} for r in rows]
        ids = [r["subject_id"] for r in plain]
        twice = sorted(i for i, n in Counter(ids).items() if n > 1)
        if twice:
            raise StoreError(f"commit_rows: subject id(s) given twice: {twice}")
        try:
            new = pa.Table.from_pylist(plain, schema=schema.arrow)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as err:
            raise SchemaError(f"{mpath}: rows do not fit schema '{schema.name}': {err}") from err
        new = conform(new, schema, source=str(mpath))
        current = self.manifest_table()
        keep = current.filter(
            pc.invert(pc.is_in(current.column("subject_id"), value_set=pa.array(ids, pa.string())))
        )
        table = pa.concat_tables([keep, new]).sort_by("subject_id")
        _check_manifest(table, read_store_info(self.path).capacity, str(mpath))
        write_table(table, mpath, schema)
        return table.to_pandas()

    def reader(self) -> PatchStore:
        """A read-only view of the committed state."""
        return PatchStore(self.path)


# ----------------------------------------------------------------------------- fast reader
class _ShardReader:
    """Reads inner chunks of the sharded ``patches`` array with pread + Blosc.

    Supports exactly the layout written by this module (checked against the array metadata):
    inner chunk = one patch, codecs bytes(little) + blosc, index bytes(little) + crc32c at the end.
    Shard indices are cached (LRU, keyed by file size and mtime, so a rewritten shard is re-read).
    """

    def __init__(self, array_dir: Path, cache_bytes: int = 64 << 20) -> None:
        meta = json.loads((array_dir / "zarr.json").read_text())
        P = meta["shape"][2]
        try:
            (shard,) = meta["codecs"]
            cfg = shard["configuration"]
            ok = (
                meta["data_type"] == "int16"
                and shard["name"] == "sharding_indexed"
                and cfg["chunk_shape"] == [1, 1, P, P, P]
                and [c["name"] for c in cfg["codecs"]] == ["bytes", "blosc"]
                and cfg["codecs"][0]["configuration"]["endian"] == "little"
                and [c["name"] for c in cfg["index_codecs"]] == ["bytes", "crc32c"]
                and cfg["index_location"] == "end"
                and meta["chunk_key_encoding"]["configuration"]["separator"] == "/"
            )
        except (KeyError, ValueError, TypeError):
            ok = False
        if not ok:
            raise StoreError(
                f"{array_dir}: unsupported patches layout for schema_version {SCHEMA_VERSION}"
            )
        self.dir = array_dir
        self.patch_size = int(P)
        self.shard = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"][:2])
        self.fill = int(meta["fill_value"])
        self._cache: OrderedDict[tuple[int, int], tuple[tuple[int, int], np.ndarray]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()
        self._max_entries = max(1, cache_bytes // (self.shard[0] * self.shard[1] * 16 + 64))

    def _index(self, key: tuple[int, int], fd: int, file: Path) -> np.ndarray:
        st = os.fstat(fd)
        stamp = (st.st_size, st.st_mtime_ns)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] == stamp:
                self._cache.move_to_end(key)
                return hit[1]
        n = self.shard[0] * self.shard[1]
        nbytes = n * 16 + 4
        raw = os.pread(fd, nbytes, st.st_size - nbytes) if st.st_size >= nbytes else b""
        if len(raw) != nbytes or np.uint32(google_crc32c.value(raw[:-4])).tobytes() != raw[-4:]:
            raise StoreError(
                f"{file}: shard {key} is truncated or corrupt: its index (the last {nbytes} bytes "
                f"of a file of {st.st_size} bytes) fails its checksum"
            )
        index = np.frombuffer(raw[:-4], dtype="<u8").reshape(self.shard[0], self.shard[1], 2)
        used = index[..., 0] != _MAX_U64
        end = int((index[..., 0][used] + index[..., 1][used]).max()) if used.any() else 0
        if end > st.st_size - nbytes:
            raise StoreError(f"{file}: shard {key} is truncated: its chunks end at byte {end}, "
                             f"the file holds {st.st_size - nbytes} bytes before the index")
        with self._lock:
            self._cache[key] = (stamp, index)
            if len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)
        return index

    def read(self, landmarks: np.ndarray, subjects: np.ndarray) -> np.ndarray:
        """Patches at (landmarks x subjects) -> (len(landmarks), len(subjects), P, P, P) int16."""
        P = self.patch_size
        out = np.empty((len(landmarks), len(subjects), P, P, P), dtype=np.int16)
        ls, bs = self.shard
        groups: dict[tuple[int, int], list[tuple[int, int, int, int]]] = defaultdict(list)
        for j, s in enumerate(subjects.tolist()):
            for i, lm in enumerate(landmarks.tolist()):
                groups[(lm // ls, s // bs)].append((i, j, lm % ls, s % bs))
        expected = P * P * P * 2
        for key, cells in groups.items():
            file = self.dir / "c" / str(key[0]) / str(key[1]) / "0" / "0" / "0"
            try:
                fd = os.open(file, os.O_RDONLY)
            except FileNotFoundError:
                # a written block always has its shard; only the caller's committed subjects
                # are read, so a missing file is lost data, not an empty slot
                raise StoreError(f"{file}: shard {key} of committed subjects is missing") from None
            try:
                index = self._index(key, fd, file)
                for i, j, a, b in cells:
                    offset, nbytes = index[a, b]
                    if offset == _MAX_U64:
                        out[i, j] = self.fill
                        continue
                    buf = os.pread(fd, int(nbytes), int(offset))
                    if len(buf) != int(nbytes):
                        raise StoreError(f"{file}: truncated chunk for landmark-slot {a}, "
                                         f"subject-slot {b}")
                    if len(buf) < 16 or int.from_bytes(buf[4:8], "little") != expected:
                        raise StoreError(
                            f"{file}: corrupt chunk for landmark-slot {a}, subject-slot {b}"
                        )
                    blosc.decompress(buf, out[i, j])
            finally:
                os.close(fd)
        return out


def _bad_chunk(array_dir: Path) -> Path:
    """The first chunk file of a (Zstd-compressed, unsharded) array that does not decode."""
    zstd = numcodecs.Zstd()
    for file in sorted(p for p in (array_dir / "c").rglob("*") if p.is_file()):
        try:
            zstd.decode(file.read_bytes())
        except (RuntimeError, ValueError):
            return file
    return array_dir


# ----------------------------------------------------------------------------- reader
class PatchStore:
    """Read-only view of a patch store's committed subjects (those with an ``ok`` manifest row).

    Reads are served from the shard files directly (see the module docstring). A PatchStore is a
    snapshot of the manifest taken when it was opened; it pickles as that snapshot (small), so
    loader workers see exactly the subjects their parent saw. :meth:`refresh` re-reads the
    manifest after more blocks have been committed. Safe to read from several threads.
    """

    def __init__(self, path: str | Path, *, index_cache_mb: float = 64.0) -> None:
        """Open the store at ``path``.

        Raises:
            StoreError: no store, or another schema_version.
            SchemaError: the manifest breaks its schema (the file is named).
        """
        self.path = Path(path)
        self._cache_bytes = int(index_cache_mb * (1 << 20))
        self.refresh()

    def refresh(self) -> None:
        """Re-read attributes and manifest; drop cached arrays."""
        info = read_store_info(self.path)
        self._load(info, _read_manifest(self.path, info.capacity))

    def _load(self, info: StoreInfo, manifest: pa.Table) -> None:
        self.info = info
        self._manifest = manifest
        status = self._manifest.column("status").to_numpy(zero_copy_only=False)
        index = self._manifest.column("store_index").to_numpy(zero_copy_only=False)
        ids = self._manifest.column("subject_id").to_numpy(zero_copy_only=False)
        ok = status == "ok"
        order = np.argsort(index[ok], kind="stable")
        self._store_indices = index[ok][order].astype(np.int64)
        self._subject_ids = [str(s) for s in ids[ok][order]]
        self._by_id = dict(zip(self._subject_ids, self._store_indices.tolist(), strict=True))
        self._stored = np.zeros(self.info.capacity, dtype=bool)
        self._stored[self._store_indices] = True
        self._reader = _ShardReader(self.path / "patches", self._cache_bytes)
        self._arrays: dict[str, np.ndarray] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "cache_bytes": self._cache_bytes,
            "info": self.info,
            "manifest": self._manifest,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._cache_bytes = state["cache_bytes"]
        self._load(state["info"], state["manifest"])

    # -- metadata ------------------------------------------------------------------------
    @property
    def landmarks(self) -> npt.NDArray[np.float64]:
        """(L, 3) landmark centres, atlas LPS mm."""
        return self.info.landmarks_mm

    @property
    def landmarks_norm(self) -> npt.NDArray[np.float64]:
        """(L, 3) landmarks normalised to [-1, 1] (the encoder's conditioning input)."""
        return self.info.landmarks_norm

    @property
    def neighbours(self) -> npt.NDArray[np.int64]:
        """(L, k_max) nearest other landmarks of each landmark."""
        return self.info.neighbours

    @property
    def num_landmarks(self) -> int:
        """L."""
        return self.info.num_landmarks

    @property
    def patch_size(self) -> int:
        """P, patch edge in voxels."""
        return self.info.patch_size

    @property
    def capacity(self) -> int:
        """Length of the subject axis (store indices are < capacity)."""
        return self.info.capacity

    @property
    def num_subjects(self) -> int:
        """Number of committed (``ok``) subjects."""
        return len(self._subject_ids)

    @property
    def subject_ids(self) -> list[str]:
        """Ids of the committed subjects, in store-index order."""
        return list(self._subject_ids)

    @property
    def store_indices(self) -> npt.NDArray[np.int64]:
        """Store indices of the committed subjects, ascending (aligned with subject_ids)."""
        return self._store_indices.copy()

    @property
    def manifest(self) -> pd.DataFrame:
        """The validated manifest (all rows, any status)."""
        return self._manifest.to_pandas()

    def index_of(self, subject_id: str) -> int:
        """Store index of a committed subject."""
        try:
            return int(self._by_id[subject_id])
        except KeyError:
            raise StoreError(f"{self.path}: subject '{subject_id}' is not stored") from None

    def _array(self, name: str) -> np.ndarray:
        if name not in self._arrays:
            try:
                self._arrays[name] = zarr.open_array(self.path / name, mode="r")[:, : self.capacity]
            except (RuntimeError, ValueError) as err:  # a chunk that does not decode
                raise StoreError(f"{_bad_chunk(self.path / name)}: chunk of '{name}' cannot be "
                                 f"decoded, the file is truncated or corrupt ({err})") from err
        return self._arrays[name]

    @property
    def valid(self) -> npt.NDArray[np.bool_]:
        """(L, capacity) bool: patch inside the field of view of a committed subject."""
        return self._array("valid") & self._stored[None, :]

    @property
    def lung_fraction(self) -> npt.NDArray[np.float32]:
        """(L, capacity) lung fraction per patch (meaningful where ``valid``)."""
        return self._array("lung_fraction")

    @property
    def centre_mm(self) -> npt.NDArray[np.float32]:
        """(L, capacity, 3) patch centres, subject LPS mm (meaningful for committed subjects)."""
        return self._array("centre_mm")

    # -- patches -------------------------------------------------------------------------
    def _check(self, landmarks: np.ndarray, store_indices: np.ndarray) -> None:
        if landmarks.size and (landmarks.min() < 0 or landmarks.max() >= self.num_landmarks):
            raise IndexError(f"landmark index out of range [0, {self.num_landmarks})")
        if store_indices.size:
            if store_indices.min() < 0 or store_indices.max() >= self.capacity:
                raise IndexError(f"store index out of range [0, {self.capacity})")
            absent = store_indices[~self._stored[store_indices]]
            if absent.size:
                raise StoreError(
                    f"{self.path}: store index {int(absent[0])} holds no committed subject"
                )

    def read_landmarks_batch(
        self, landmarks: Sequence[int] | npt.ArrayLike, store_indices: Sequence[int] | npt.ArrayLike
    ) -> npt.NDArray[np.int16]:
        """Patches of several landmarks for a batch of subjects (e.g. a landmark + its neighbours).

        Returns:
            (len(landmarks), len(store_indices), P, P, P) int16 HU, in the given orders.
        """
        lms = np.asarray(landmarks, dtype=np.int64).reshape(-1)
        idx = np.asarray(store_indices, dtype=np.int64).reshape(-1)
        self._check(lms, idx)
        return self._reader.read(lms, idx)

    def read_landmark_batch(
        self, landmark: int, store_indices: Sequence[int] | npt.ArrayLike
    ) -> npt.NDArray[np.int16]:
        """Patches of one landmark for a batch of subjects -> (B, P, P, P) int16 HU."""
        return self.read_landmarks_batch([int(landmark)], store_indices)[0]

    def read_subject(self, store_index: int) -> npt.NDArray[np.int16]:
        """All landmarks of one subject -> (L, P, P, P) int16 HU."""
        return self.read_landmarks_batch(np.arange(self.num_landmarks), [int(store_index)])[:, 0]


# ----------------------------------------------------------------------------- digest
def store_digest(path: str | Path, exclude_attrs: Sequence[str] = ("created_by",)) -> str:
    """SHA-256 over every array file and the attributes of a store (the manifest is excluded).

    Run reports under ``reports/`` (timings) are excluded too; QC figures and configs are included.

    Zarr metadata files are hashed as canonical JSON without the ``exclude_attrs`` keys of the
    store attribute; temporary files of interrupted writes (``*.partial``, ``*.tmp``) are skipped.
    """
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        rel = f.relative_to(path).as_posix()
        if (rel == MANIFEST_FILE or rel.startswith("reports/")
                or f.name.endswith((".partial", ".tmp")) or f.name.startswith(".")):
            continue
        h.update(rel.encode() + b"\0")
        if f.name == "zarr.json":
            meta = json.loads(f.read_text())
            store_attrs = meta.get("attributes", {}).get(_ATTR)
            if isinstance(store_attrs, dict):
                for k in exclude_attrs:
                    store_attrs.pop(k, None)
            h.update(json.dumps(meta, sort_keys=True).encode())
        else:
            h.update(file_sha256(f).encode())
    return h.hexdigest()


# ----------------------------------------------------------------------------- synthetic data
def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    x = np.linspace(0, n_in - 1, n_out)
    i0 = np.minimum(np.floor(x).astype(int), n_in - 2)
    f = (x - i0).astype(np.float32)
    m = np.zeros((n_out, n_in), dtype=np.float32)
    m[np.arange(n_out), i0] = 1 - f
    m[np.arange(n_out), i0 + 1] += f
    return m


def ct_like_patches(
    num: int,
    patch_size: int = 32,
    seed: int = 0,
    noise_hu: float = 25.0,
    num_tube_patterns: int = 32,
) -> npt.NDArray[np.int16]:
    """Noisy lung-CT-like patches for tests and benchmarks (fixed seed -> same data).

    Parenchyma at -850 HU + smooth texture (about +-15 HU) + Gaussian noise (``noise_hu``) + one to
    three bright tubes (vessels/airway walls, about -850 + 850 HU, partial-volume edges), clipped to
    the HU window.

    Returns:
        (num, P, P, P) int16 HU.
    """
    rng = np.random.default_rng(seed)
    P = patch_size
    grid = np.stack(np.meshgrid(*[np.arange(P, dtype=np.float32)] * 3, indexing="ij"), -1).reshape(
        -1, 3
    )
    bank = np.zeros((num_tube_patterns, P**3), dtype=np.float32)
    for t in range(num_tube_patterns):
        for _ in range(int(rng.integers(1, 4))):
            p = rng.uniform(0, P, 3).astype(np.float32)
            d = rng.standard_normal(3).astype(np.float32)
            d /= np.linalg.norm(d)
            v = grid - p
            dist = np.linalg.norm(v - (v @ d)[:, None] * d, axis=1)
            edge = np.clip(rng.uniform(0.8, 3.0) + 0.5 - dist, 0.0, 1.0) * rng.uniform(0.6, 1.0)
            bank[t] = np.maximum(bank[t], edge)
    bank = bank.reshape(num_tube_patterns, P, P, P)
    up = _interp_matrix(P, 5)
    out = np.empty((num, P, P, P), dtype=np.int16)
    noise = np.empty((min(num, 128), P, P, P), dtype=np.float32)
    for start in range(0, num, 128):
        m = min(128, num - start)
        low = rng.standard_normal((m, 5, 5, 5), dtype=np.float32) * 9.0
        x = np.einsum("ai,bj,ck,nijk->nabc", up, up, up, low, optimize=True)
        rng.standard_normal(out=noise[:m], dtype=np.float32)
        x += noise[:m] * np.float32(noise_hu) - 850.0
        x += (
            bank[rng.integers(0, num_tube_patterns, m)]
            * rng.uniform(800, 900, m).astype(np.float32)[:, None, None, None]
        )
        np.rint(x, out=x)
        np.clip(x, *HU_WINDOW, out=x)
        out[start : start + m] = x
    return out


# ----------------------------------------------------------------------------- benchmark
def _grid_landmarks(num: int, step_mm: float = 26.0) -> tuple[np.ndarray, np.ndarray]:
    """A cubic grid of ``num`` landmarks (atlas mm) and its 3-nearest-neighbour table."""
    side = math.ceil(num ** (1 / 3))
    pts = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)[:num]
    lm = pts.astype(np.float64) * step_mm
    d = np.linalg.norm(lm[:, None] - lm[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    k = min(3, num - 1)
    return lm, np.argsort(d, axis=1, kind="stable")[:, :k]


def _dir_bytes(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def bench_store(
    root: str | Path,
    *,
    num_landmarks: int = 64,
    num_subjects: int = 256,
    patch_size: int = 32,
    block_size: int = DEFAULT_BLOCK_SIZE,
    batch_size: int = 128,
    num_batches: int = 8,
    num_subject_reads: int = 32,
    baselines: bool = True,
    seed: int = 0,
    keep: bool = False,
) -> dict[str, Any]:
    """Benchmark the store layout against baselines on CT-like noisy patches.

    Layouts: ``store`` (this module's layout and reader), ``store_zarr_api`` (same files read
    through zarr's ``get_orthogonal_selection`` / basic indexing) and, with ``baselines``, unsharded
    zarr arrays read through zarr: ``plain`` (chunk (1, 1, P, P, P), uncompressed, one file per
    patch), ``landmark_chunks`` (chunk (1, 64, P, P, P)) and ``small_chunks`` (chunk (1, 4, P, P,
    P)), both with the store's Blosc codec. Access patterns: (a) ``batch``: ``batch_size`` random
    subjects at a random landmark and its 2 nearest neighbours; (b) ``subject``: all L landmarks
    of one random subject. Reads are from the page cache (files were just written).

    Returns:
        Parameters plus, per layout: bytes, ratio vs raw int16, files, write MB/s (raw bytes),
        batch and subject read throughput in patches/s.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    L, S, P = num_landmarks, num_subjects, patch_size
    lm, nb = _grid_landmarks(L)
    data = ct_like_patches(L * S, P, seed).reshape(S, L, P, P, P).transpose(1, 0, 2, 3, 4)
    raw = data.nbytes
    rng = np.random.default_rng(seed + 1)
    batches = []
    for _ in range(num_batches):
        j = int(rng.integers(L))
        batches.append(
            (np.array([j, *nb[j, :2]]), np.sort(rng.choice(S, min(batch_size, S), replace=False)))
        )
    subj = rng.integers(0, S, num_subject_reads)
    result: dict[str, Any] = {
        "num_landmarks": L,
        "num_subjects": S,
        "patch_size": P,
        "block_size": block_size,
        "batch_size": batch_size,
        "raw_mb": raw / 1e6,
        "layouts": {},
    }

    def timed_reads(read_batch: Any, read_subject: Any, nbatch: int) -> tuple[float, float]:
        n, t = 0, time.perf_counter()
        for lms, idx in batches[:nbatch]:
            got = read_batch(lms, idx)
            n += got.shape[0] * got.shape[1]
        rate_a = n / (time.perf_counter() - t)
        if not np.array_equal(got, data[lms][:, idx]):
            raise StoreError("benchmark read-back mismatch (batch)")
        n, t = 0, time.perf_counter()
        for s in subj:
            got = read_subject(int(s))
            n += got.shape[0]
        rate_b = n / (time.perf_counter() - t)
        if not np.array_equal(got, data[:, int(subj[-1])]):
            raise StoreError("benchmark read-back mismatch (subject)")
        return rate_a, rate_b

    # this module's layout, written through the real API
    spath = root / "bench_store.zarr"
    writer = open_store(
        spath,
        landmarks_mm=lm,
        neighbours=nb,
        atlas_id="bench",
        patch_size=P,
        block_size=block_size,
        overwrite=True,
    )
    plan = writer.plan([(f"s{i:05d}", f"/in/s{i:05d}", f"h{i}") for i in range(S)])
    t_write = 0.0
    for b, items in plan.blocks.items():
        subs = [
            SubjectPatches(
                it,
                data[:, it.store_index],
                np.ones(L, bool),
                np.full(L, 0.5, np.float32),
                np.zeros((L, 3), np.float32),
            )
            for it in items
        ]
        t = time.perf_counter()
        rows = writer.write_block(b, subs)
        t_write += time.perf_counter() - t
        writer.commit_rows(rows)
    store = PatchStore(spath)
    nbytes, nfiles = _dir_bytes(spath / "patches")
    ra, rb = timed_reads(store.read_landmarks_batch, store.read_subject, num_batches)
    layouts = result["layouts"]
    layouts["store"] = {
        "layout": f"shard ({L}, {block_size}) = 1 file per block, inner chunk (1, 1, {P}, {P}, "
        f"{P}), blosc zstd-3 byte-shuffle; pread reader",
        "bytes": nbytes,
        "ratio": nbytes / raw,
        "files": nfiles,
        "write_mb_s": raw / t_write / 1e6,
        "batch_read_patches_s": ra,
        "subject_read_patches_s": rb,
    }
    arr = zarr.open_array(spath / "patches", mode="r")

    def zarr_batch(a: zarr.Array) -> Any:
        return lambda lms, idx: a.get_orthogonal_selection((lms, idx))

    ra, rb = timed_reads(zarr_batch(arr), lambda s: arr[:, s], max(1, num_batches // 4))
    layouts["store_zarr_api"] = {
        **layouts["store"],
        "layout": "same files, read through zarr's API",
        "batch_read_patches_s": ra,
        "subject_read_patches_s": rb,
    }
    if baselines:
        for name, chunks, comp in (
            ("plain", (1, 1, P, P, P), None),
            ("landmark_chunks", (1, min(64, S), P, P, P), _PATCH_CODEC),
            ("small_chunks", (1, min(4, S), P, P, P), _PATCH_CODEC),
        ):
            bpath = root / f"bench_{name}.zarr"
            shutil.rmtree(bpath, ignore_errors=True)
            a = zarr.create_array(
                bpath,
                shape=data.shape,
                dtype="int16",
                chunks=chunks,
                compressors=comp,
                fill_value=0,
            )
            step = math.lcm(chunks[1], block_size)  # whole chunks per write, like the store
            t = time.perf_counter()
            for s0 in range(0, S, step):
                a[:, s0 : s0 + step] = data[:, s0 : s0 + step]
            tw = time.perf_counter() - t
            nbytes, nfiles = _dir_bytes(bpath)
            a = zarr.open_array(bpath, mode="r")
            ra, rb = timed_reads(zarr_batch(a), lambda s, a=a: a[:, s], num_batches)
            layouts[name] = {
                "layout": f"chunk {chunks}, {'blosc zstd-3 shuffle' if comp else 'uncompressed'}, "
                "zarr API",
                "bytes": nbytes,
                "ratio": nbytes / raw,
                "files": nfiles,
                "write_mb_s": raw / tw / 1e6,
                "batch_read_patches_s": ra,
                "subject_read_patches_s": rb,
            }
            if not keep:
                shutil.rmtree(bpath, ignore_errors=True)
    if not keep:
        shutil.rmtree(spath, ignore_errors=True)
    return result
