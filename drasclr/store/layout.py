"""On-disk layout of the patch store (Zarr v3): its arrays, group attribute, codecs and version.

One store per preprocessing run, a directory holding::

    zarr.json         group; attribute ``patch_store`` (:class:`StoreInfo`): landmark table
                      (atlas LPS mm and normalised), neighbour table, patch size, HU window,
                      atlas id, schema_version, block size, capacity, created_by
    patches/          int16 (L, S_cap, P, P, P) [landmark, subject, z, y, x], clipped HU
    valid/            bool (L, S_cap): the patch lies inside the subject's field of view
    lung_fraction/    float32 (L, S_cap): lung fraction of the patch, in [0, 1]
    centre_mm/        float32 (L, S_cap, 3): patch centre T_i(l_j), subject LPS mm (x, y, z)
    manifest.parquet  one row per subject (:mod:`drasclr.store.manifest`)

L is the number of landmarks, P the patch edge in 1 mm voxels, S_cap the capacity (allocated
length of the subject axis, a whole number of blocks); a subject's slot is its ``store_index``.
``schemas/store.json`` is the machine-readable form of this contract; change it, and bump
:data:`SCHEMA_VERSION`, together with this module (``tests/test_store_schema.py`` checks both).

Layout (schema_version 1), chosen by measurement (:func:`drasclr.bench.store.bench_store`):
every array is split along the subject axis into *blocks* of ``block_size`` consecutive store
indices. ``patches`` has one shard per block spanning all L landmarks, i.e. one file per block,
with one inner chunk per patch ``(1, 1, P, P, P)`` compressed with Blosc zstd-3 + byte shuffle
(~0.45x raw on noisy CT); the small per-(landmark, subject) arrays have one Zstd-3 chunk per
block. Per-patch inner chunks make both access patterns read exactly the patches they need: a
training batch (B subjects at a landmark and its neighbours) and one subject's L landmarks (see
:mod:`drasclr.store.reader`). Slots without a committed subject hold fill values and mean nothing.

:func:`_create_store` builds an empty store in a temporary sibling and renames it into place
(:func:`drasclr.store.writer.open_store` calls it); :func:`read_store_info` refuses a directory
that is not a patch store or one of another schema_version (:class:`StoreError`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import zarr
from zarr.codecs import BloscCodec, BloscShuffle, ZstdCodec

from drasclr import __version__
from drasclr.fsutil import atomic_path
from drasclr.imaging.intensity import HU_WINDOW
from drasclr.store.manifest import MANIFEST_SCHEMA, _manifest_path
from drasclr.tables import load_schema, write_table

__all__ = [
    "SCHEMA_VERSION",
    "HU_WINDOW",
    "DEFAULT_BLOCK_SIZE",
    "StoreError",
    "StoreInfo",
    "read_store_info",
]


SCHEMA_VERSION = 1
"""Version of the on-disk layout; a store with another version is refused."""




DEFAULT_BLOCK_SIZE = 8
"""Subjects per block: the write unit, and the shard extent along the subject axis."""


_ATTR = "patch_store"


_PATCH_CODEC = BloscCodec(cname="zstd", clevel=3, shuffle=BloscShuffle.shuffle, typesize=2)


_SMALL_CODEC = ZstdCodec(level=3)


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
