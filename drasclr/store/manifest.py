"""The store manifest (``manifest.parquet``): one row per subject, the record of what is stored.

Schema ``manifest`` (``schemas/manifest.json``, validated on every read and write): subject id,
input path and content hash, status (``ok`` / ``failed`` / ``skipped``), error text, store index,
input geometry (ITK/LPS), forward and inverse transforms (row-major 4x4, LPS mm), QC figures,
stage timings (seconds), code version and config fingerprint. On top of the schema every read
checks the cross-column rules: a row is ``ok`` exactly when its ``store_index`` is >= 0 (other
rows hold -1), and ``ok`` indices are unique and below the store capacity.

The manifest is the only record of what the store holds: readers see a subject only when its row
is ``ok``, so arrays written without a committed row are invisible. This module holds the file
name (:data:`MANIFEST_FILE`), the schema name and the validating reader; rows are written by
:meth:`drasclr.store.writer.StoreWriter.commit_rows`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from drasclr.tables import SchemaError, read_table

__all__ = [
    "MANIFEST_FILE",
]


MANIFEST_FILE = "manifest.parquet"


MANIFEST_SCHEMA = "manifest"


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
