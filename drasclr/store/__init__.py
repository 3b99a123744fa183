"""The patch store (Zarr v3) + manifest (Parquet): where preprocessing writes and training reads.

- :mod:`~drasclr.store.manifest`: the manifest file, its schema name and validating reader.
- :mod:`~drasclr.store.layout`: the on-disk layout, its attributes (:class:`StoreInfo`), codecs
  and :data:`SCHEMA_VERSION` (machine-readable contract: ``schemas/store.json``).
- :mod:`~drasclr.store.reader`: :class:`PatchStore`, fast reads of the committed subjects
  (fast shard reader, plain-zarr fallback).
- :mod:`~drasclr.store.writer`: :func:`open_store` and :class:`StoreWriter` (plan, write blocks,
  commit manifest rows).
- :mod:`~drasclr.store.digest`: :func:`store_digest`, one content hash of a store.

Import rule: ``store`` builds on ``imaging`` (the HU window, landmark normalisation) and the base
modules (``tables``, ``fsutil``); it never imports ``preprocess``, training or Ray. Inside the
package imports flow manifest -> layout -> reader -> writer, and digest. The names below are the
public API: import them from ``drasclr.store``.
"""

from drasclr.store.digest import store_digest
from drasclr.store.layout import SCHEMA_VERSION, StoreError, StoreInfo, read_store_info
from drasclr.store.manifest import MANIFEST_FILE
from drasclr.store.reader import PatchStore, SubjectPatches
from drasclr.store.writer import StoreWriter, open_store

__all__ = [
    "MANIFEST_FILE",
    "SCHEMA_VERSION",
    "PatchStore",
    "StoreError",
    "StoreInfo",
    "StoreWriter",
    "SubjectPatches",
    "open_store",
    "read_store_info",
    "store_digest",
]
