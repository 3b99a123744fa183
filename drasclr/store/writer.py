"""Write side of the patch store: create or reopen, plan store indices, write blocks, commit rows.

:func:`open_store` creates a store (layout of :mod:`drasclr.store.layout`) or reopens one,
refusing another landmark table, atlas, patch size or block size; :class:`StoreWriter` then
runs the three steps of a preprocessing run:

1. :meth:`StoreWriter.plan` (driver): a subject already ``ok`` with the same input hash and
   config fingerprint is skipped; every other one (new, changed, failed before) gets a fresh
   store index in a block after the last committed one, in input order (:class:`Plan`,
   :class:`PlanItem`), and the arrays grow by whole blocks.
2. :meth:`StoreWriter.write_block` (any process; the writer pickles): all arrays of one block,
   written whole, patches clipped to the HU window as int16; returns the block's manifest rows
   without committing them.
3. :meth:`StoreWriter.commit_rows` (driver): upserts the rows into the manifest, validated, by
   atomic rename.

Concurrency and atomicity (DESIGN.md 3.4): the unit a writer owns is a block. A block is written
whole, once, by one writer, so no two writers ever touch one chunk or shard. The manifest is the
only record of what is stored: the driver commits a block's rows after its arrays are written,
and readers only see subjects whose row is ``ok``. New and re-processed subjects always go to
fresh blocks after the last committed one, so a crash never damages committed data and leaves
the crashed subjects absent; the next :meth:`StoreWriter.plan` assigns them again.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import zarr

from drasclr import __version__
from drasclr.store.layout import (
    _ATTR,
    DEFAULT_BLOCK_SIZE,
    HU_WINDOW,
    SCHEMA_VERSION,
    StoreError,
    StoreInfo,
    _create_store,
    _plain,
    read_store_info,
)
from drasclr.store.manifest import (
    _STORE_COLUMNS,
    MANIFEST_SCHEMA,
    _check_manifest,
    _manifest_path,
    _read_manifest,
)
from drasclr.store.reader import PatchStore, SubjectPatches
from drasclr.tables import SchemaError, conform, load_schema, write_table

__all__ = [
    "PlanItem",
    "Plan",
    "open_store",
    "StoreWriter",
]


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
            from drasclr.imaging.atlas import normalise_landmarks  # the one normalisation rule

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
