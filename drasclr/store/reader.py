"""Read side of the patch store: fast patch reads of committed subjects, and what a writer takes.

:class:`SubjectPatches` is the hand-over from preprocessing to the writer: one processed
subject's (L, P, P, P) patches, validity, lung fractions, centres and manifest record.

:class:`PatchStore` serves the two access patterns of DESIGN.md 3.4: a batch of subjects at a
landmark and its neighbours (:meth:`~PatchStore.read_landmarks_batch`, training) and all L
landmarks of one subject (:meth:`~PatchStore.read_subject`, feature extraction); patches come
back as int16 clipped HU indexed [z, y, x]. It also exposes the landmark table (atlas LPS mm and
normalised to [-1, 1]), the neighbour table and the per-(landmark, subject) arrays ``valid``,
``lung_fraction`` and ``centre_mm`` (subject LPS mm). It is a snapshot of the manifest: only
subjects whose row was ``ok`` when it was opened (or :meth:`~PatchStore.refresh`-ed) are
visible, and it pickles as that snapshot, so loader workers see what their parent saw.

Fast shard reader: zarr-python's own partial-shard reads cost ~0.3-3 ms per patch (its orthogonal
selection inside a shard even expands to per-voxel coordinates), so ``_ShardReader`` reads the
shard index (cached, CRC-checked) and the inner chunks with ``pread`` and decodes them with Blosc
straight into the output: ~10-20k patches/s on one core. It supports exactly the layout of
:mod:`drasclr.store.layout` (checked against the array metadata); the small arrays are read
through zarr, and a chunk that does not decode raises :class:`~drasclr.store.layout.StoreError`
naming the file.

Both readers sit behind one interface (:class:`PatchReader`, chosen by :func:`make_reader`):
``PatchStore(reader="auto")`` takes the fast reader whenever the array has its layout and plain
zarr otherwise (a store re-chunked or re-compressed by another tool); ``"shard"`` and ``"zarr"``
force one. ``tests/store/test_reader.py`` checks that both return the same patches.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import google_crc32c
import numcodecs
import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import zarr
from numcodecs import blosc

from drasclr.store.layout import SCHEMA_VERSION, StoreError, StoreInfo, read_store_info
from drasclr.store.manifest import _read_manifest

if TYPE_CHECKING:
    from drasclr.store.writer import PlanItem

__all__ = [
    "SubjectPatches",
    "PatchStore",
]


_MAX_U64 = np.uint64(2**64 - 1)


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


class PatchReader(Protocol):
    """How a :class:`PatchStore` reads its ``patches`` array (the fast path or the fallback)."""

    def read(self, landmarks: np.ndarray, subjects: np.ndarray) -> np.ndarray:
        """Patches at (landmarks x subjects) -> (len(landmarks), len(subjects), P, P, P) int16."""
        ...


class _ZarrReader:
    """Plain zarr reads: any layout zarr can open, at zarr's speed (the fallback).

    Used when the ``patches`` array is not in the one layout :class:`_ShardReader` decodes itself
    (e.g. a store re-chunked or re-compressed by another zarr tool), or when asked for.
    """

    def __init__(self, array_dir: Path) -> None:
        self.dir = array_dir
        self._array = zarr.open_array(array_dir, mode="r")

    def read(self, landmarks: np.ndarray, subjects: np.ndarray) -> np.ndarray:
        """Patches at (landmarks x subjects) -> (len(landmarks), len(subjects), P, P, P) int16."""
        out = self._array.get_orthogonal_selection((landmarks, subjects))
        return np.asarray(out, dtype=np.int16)


READERS: tuple[str, ...] = ("auto", "shard", "zarr")
"""``PatchStore(reader=...)``: ``shard`` (fast pread + Blosc), ``zarr`` (plain zarr), ``auto``
(shard when the array has the layout it decodes, else zarr)."""


def make_reader(array_dir: Path, kind: str = "auto", cache_bytes: int = 64 << 20) -> PatchReader:
    """The reader of a ``patches`` array.

    Args:
        array_dir: the array's folder (``<store>/patches``).
        kind: one of :data:`READERS`.
        cache_bytes: shard-index cache of the fast reader.

    Raises:
        StoreError: ``kind="shard"`` on an array in another layout.
        ValueError: unknown ``kind``.
    """
    if kind not in READERS:
        raise ValueError(f"reader must be one of {READERS}, got {kind!r}")
    if kind == "zarr":
        return _ZarrReader(array_dir)
    try:
        return _ShardReader(array_dir, cache_bytes)
    except StoreError:
        if kind == "shard":
            raise
        return _ZarrReader(array_dir)


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

    def __init__(
        self, path: str | Path, *, index_cache_mb: float = 64.0, reader: str = "auto"
    ) -> None:
        """Open the store at ``path``.

        Args:
            path: the store folder.
            index_cache_mb: shard-index cache of the fast reader.
            reader: how patches are read (:data:`READERS`); ``auto`` takes the fast shard reader
                whenever the array has its layout, else plain zarr.

        Raises:
            StoreError: no store, or another schema_version.
            SchemaError: the manifest breaks its schema (the file is named).
        """
        self.path = Path(path)
        self._cache_bytes = int(index_cache_mb * (1 << 20))
        self._reader_kind = reader
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
        self._reader: PatchReader = make_reader(
            self.path / "patches", self._reader_kind, self._cache_bytes
        )
        self._arrays: dict[str, np.ndarray] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "cache_bytes": self._cache_bytes,
            "reader": self._reader_kind,
            "info": self.info,
            "manifest": self._manifest,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._cache_bytes = state["cache_bytes"]
        self._reader_kind = state.get("reader", "auto")
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

    def read_pairs(
        self, landmarks: Sequence[int] | npt.ArrayLike, store_indices: Sequence[int] | npt.ArrayLike
    ) -> npt.NDArray[np.int16]:
        """Patches of (landmark, subject) pairs, e.g. a batch of random patches.

        Reads each landmark's subjects together (one read per distinct landmark).

        Returns:
            (n, P, P, P) int16 HU; row i is landmark ``landmarks[i]`` of ``store_indices[i]``.
        """
        lms = np.asarray(landmarks, dtype=np.int64).reshape(-1)
        idx = np.asarray(store_indices, dtype=np.int64).reshape(-1)
        if lms.shape != idx.shape:
            raise ValueError(f"{len(lms)} landmarks but {len(idx)} store indices")
        P = self.patch_size
        out = np.empty((len(lms), P, P, P), dtype=np.int16)
        for j in np.unique(lms):
            rows = np.flatnonzero(lms == j)
            out[rows] = self.read_landmark_batch(int(j), idx[rows])
        return out

    def read_landmark_batch(
        self, landmark: int, store_indices: Sequence[int] | npt.ArrayLike
    ) -> npt.NDArray[np.int16]:
        """Patches of one landmark for a batch of subjects -> (B, P, P, P) int16 HU."""
        return self.read_landmarks_batch([int(landmark)], store_indices)[0]

    def read_subject(self, store_index: int) -> npt.NDArray[np.int16]:
        """All landmarks of one subject -> (L, P, P, P) int16 HU."""
        return self.read_landmarks_batch(np.arange(self.num_landmarks), [int(store_index)])[:, 0]
