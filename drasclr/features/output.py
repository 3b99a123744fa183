"""Feature tables on disk: Parquet with schemas, the config and a fingerprint beside them.

An output folder holds::

    patch_features.parquet   one row per (subject, landmark)   schemas/patch_features.json
    image_features.parquet   one row per subject               schemas/features.json
    features_config.yaml     the FeaturesConfig used
    features_info.json       fingerprint (encoder, store, result-relevant config), counts, timing

``features_info.json`` is written last: a folder without it is unfinished. Invalid patches are
null features with ``valid = false`` (NaN in memory).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from drasclr.features.config import FeaturesConfig
from drasclr.features.patch import PatchFeatures
from drasclr.fsutil import atomic_write_text
from drasclr.tables import load_schema, read_frame, read_table, write_table

PATCH_FILE = "patch_features.parquet"
IMAGE_FILE = "image_features.parquet"
CONFIG_FILE = "features_config.yaml"
INFO_FILE = "features_info.json"
PATCH_SCHEMA = "patch_features"
IMAGE_SCHEMA = "features"
FEATURE_DIM = 128


def feature_columns(dim: int = FEATURE_DIM) -> list[str]:
    """Names of the feature columns: ``f000 .. f127``."""
    return [f"f{k:03d}" for k in range(dim)]


def _feature_arrays(values: npt.NDArray[np.floating]) -> list[pa.Array]:
    """(N, D) floats -> D float32 Arrow arrays, NaN as null."""
    values = np.asarray(values, dtype=np.float32)
    if values.shape[1] != FEATURE_DIM:
        raise ValueError(
            f"feature tables hold {FEATURE_DIM}-d representations, the encoder gave {values.shape[1]}"
        )
    nan = np.isnan(values)
    return [pa.array(values[:, k], mask=nan[:, k]) for k in range(values.shape[1])]


def patch_table(result: PatchFeatures) -> pa.Table:
    """The patch-features table (subject-major rows, landmarks ascending), schema-checked."""
    S, L, D = result.features.shape
    flat = result.features.reshape(S * L, D)
    loc = result.locations.reshape(S * L, 3)
    cols: dict[str, Any] = {
        "subject_id": pa.array(
            np.repeat(np.asarray(result.subject_ids, dtype=object), L), pa.string()
        ),
        "landmark": pa.array(np.tile(np.arange(L, dtype=np.int32), S)),
        "valid": pa.array(result.valid.reshape(-1)),
        "loc_x": pa.array(loc[:, 0]),
        "loc_y": pa.array(loc[:, 1]),
        "loc_z": pa.array(loc[:, 2]),
    }
    cols.update(zip(feature_columns(D), _feature_arrays(flat), strict=True))
    return pa.table(cols)


def image_table(result: PatchFeatures) -> pa.Table:
    """The image-features table (one row per subject)."""
    cols: dict[str, Any] = {
        "subject_id": pa.array(list(result.subject_ids), pa.string()),
        "n_valid": pa.array(result.n_valid.astype(np.int32)),
    }
    img = result.image_features
    cols.update(zip(feature_columns(img.shape[1]), _feature_arrays(img), strict=True))
    return pa.table(cols)


def read_info(out_dir: str | Path) -> dict[str, Any] | None:
    """``features_info.json`` of a finished output folder, or None."""
    path = Path(out_dir) / INFO_FILE
    if not path.is_file():
        return None
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def is_done(out_dir: str | Path, fingerprint: str) -> bool:
    """True when ``out_dir`` holds finished outputs with this fingerprint."""
    info = read_info(out_dir)
    out = Path(out_dir)
    return (
        info is not None
        and info.get("fingerprint") == fingerprint
        and (out / PATCH_FILE).is_file()
        and (out / IMAGE_FILE).is_file()
    )


def write_features(
    result: PatchFeatures, out_dir: str | Path, config: FeaturesConfig, info: dict[str, Any]
) -> dict[str, Path]:
    """Write both tables (validated, atomic), the config, then the info file.

    Returns:
        Paths by kind: ``patch``, ``image``, ``config``, ``info``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / INFO_FILE).unlink(missing_ok=True)  # unfinished until the info file is back
    paths = {
        "patch": write_table(patch_table(result), out / PATCH_FILE, PATCH_SCHEMA),
        "image": write_table(image_table(result), out / IMAGE_FILE, IMAGE_SCHEMA),
        "config": config.save(out / CONFIG_FILE),
        "info": out / INFO_FILE,
    }
    atomic_write_text(paths["info"], json.dumps(info, indent=1, sort_keys=True, default=str))
    return paths


def read_image_features(
    out_dir: str | Path,
) -> tuple[list[str], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Image features of an output folder (validated against ``schemas/features.json``).

    Returns:
        ``(subject_ids, features (S, 128) float32 with NaN rows for n_valid == 0, n_valid (S,))``.
    """
    table = read_table(Path(out_dir) / IMAGE_FILE, IMAGE_SCHEMA)
    return (
        [str(s) for s in table.column("subject_id").to_pylist()],
        _matrix(table),
        table.column("n_valid").to_numpy().astype(np.int64),
    )


def read_image_frame(out_dir: str | Path) -> pd.DataFrame:
    """Image features as a frame: ``subject_id``, ``n_valid``, ``f000`` .. ``f127`` (NaN = null)."""
    return read_frame(Path(out_dir) / IMAGE_FILE, IMAGE_SCHEMA)


def read_patch_features(out_dir: str | Path) -> PatchFeatures:
    """Patch features of an output folder back as :class:`PatchFeatures` (NaN where invalid).

    ``store_indices`` are not stored in the table; they are returned as ``0 .. S-1``.
    """
    table = read_table(Path(out_dir) / PATCH_FILE, PATCH_SCHEMA)
    ids = np.asarray(table.column("subject_id").to_pylist(), dtype=object)
    lm = table.column("landmark").to_numpy().astype(np.int64)
    L = int(lm.max()) + 1 if lm.size else 0
    S = len(ids) // max(L, 1)
    if S * L != len(ids) or not np.array_equal(lm, np.tile(np.arange(L), S)):
        raise ValueError(f"{out_dir}/{PATCH_FILE}: rows are not a full (subject, landmark) grid")
    feats = _matrix(table).reshape(S, L, -1)
    loc = np.stack([table.column(c).to_numpy() for c in ("loc_x", "loc_y", "loc_z")], axis=1)
    return PatchFeatures(
        subject_ids=tuple(str(s) for s in ids[::L]),
        store_indices=np.arange(S, dtype=np.int64),
        features=feats,
        valid=table.column("valid").to_numpy(zero_copy_only=False).reshape(S, L),
        locations=loc.reshape(S, L, 3).astype(np.float32),
    )


def _matrix(table: pa.Table) -> npt.NDArray[np.float32]:
    """The f000.. columns as an (N, D) float32 matrix, null -> NaN."""
    names = [n for n in load_schema(IMAGE_SCHEMA).names if n.startswith("f")]
    out = np.empty((table.num_rows, len(names)), dtype=np.float32)
    for k, n in enumerate(names):
        out[:, k] = table.column(n).to_numpy(zero_copy_only=False).astype(np.float32)
    return out
