"""Content digest of a patch store: one SHA-256 over its array files and attributes.

:func:`store_digest` hashes every file of the store (relative path + SHA-256 of its bytes;
``zarr.json`` metadata as canonical JSON without volatile attribute keys such as ``created_by``)
and skips the manifest (timings, code version), run reports under ``reports/`` and temporary files
of interrupted writes. Two runs that stored the same patches, QC figures and config give the same
digest, which is how the tests show that a resumed or remote run equals an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from drasclr.fsutil import file_sha256
from drasclr.store.layout import _ATTR
from drasclr.store.manifest import MANIFEST_FILE

__all__ = [
    "store_digest",
]


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
