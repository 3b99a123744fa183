"""Feature extraction as a stage: store + encoder -> Parquet tables, in-process or on Ray Data.

:func:`extract_features_ray` is the distributed form (Ray Data batch inference): the work units of
:func:`drasclr.features.patch.plan_units` become rows of a dataset, an actor pool
(``ActorPoolStrategy``) holds one encoder and one store reader per actor and encodes the units it
is handed, and the driver gathers the features and writes the tables. :func:`extract_features`
runs the same units in this process. Both skip when the output folder already holds results with
the same fingerprint (encoder content, stored subjects, result-relevant config), and refuse to
replace results of another fingerprint unless ``overwrite``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from torch import nn

from drasclr import __version__
from drasclr.features.config import FeaturesConfig
from drasclr.features.encoding import (
    EncoderSource,
    FeaturesError,
    check_store_matches,
    encoder_fingerprint,
    export_config,
    inference,
    pick_device,
    resolve_encoder,
)
from drasclr.features.output import (
    FEATURE_DIM,
    IMAGE_FILE,
    PATCH_FILE,
    is_done,
    read_info,
    write_features,
)
from drasclr.features.patch import (
    PatchFeatures,
    Unit,
    empty_features,
    encode_unit,
    extract_patch_features,
    location_table,
)
from drasclr.store.reader import PatchStore


@dataclass(frozen=True)
class ExtractResult:
    """What an extraction run produced.

    Attributes:
        out_dir: the output folder.
        patch_path: patch-features Parquet.
        image_path: image-features Parquet.
        fingerprint: fingerprint of the outputs.
        skipped: True when finished outputs with the same fingerprint were already there.
        n_subjects: subjects in the tables.
        n_patches: patches encoded (0 when skipped).
        seconds: wall time of this call.
    """

    out_dir: Path
    patch_path: Path
    image_path: Path
    fingerprint: str
    skipped: bool
    n_subjects: int
    n_patches: int
    seconds: float


def store_fingerprint(store: PatchStore, store_indices: npt.ArrayLike) -> str:
    """Hash of what a store holds for the given subjects (ids, inputs, preprocessing, landmarks)."""
    m = store.manifest
    m = (
        m[m["status"] == "ok"]
        .set_index("store_index")
        .loc[np.asarray(store_indices, dtype=np.int64)]
    )
    h = hashlib.sha256()
    h.update(json.dumps([store.info.atlas_id, store.patch_size]).encode())
    h.update(np.ascontiguousarray(store.landmarks_norm, dtype=np.float64).tobytes())
    for sid, idx, ih, cf in zip(
        m["subject_id"], m.index, m["input_hash"], m["config_fingerprint"], strict=True
    ):
        h.update(f"{sid}\0{idx}\0{ih}\0{cf}\n".encode())
    return h.hexdigest()[:16]


def _prepare(
    encoder: EncoderSource,
    store_path: str | Path | PatchStore,
    out_dir: str | Path,
    config: FeaturesConfig,
    subject_ids: Sequence[str] | None,
    overwrite: bool,
) -> tuple[PatchStore, str, dict[str, Any], ExtractResult | None]:
    """Open the store, compute the fingerprint, and return a result when the work is done."""
    t0 = time.perf_counter()
    store = store_path if isinstance(store_path, PatchStore) else PatchStore(store_path)
    if not isinstance(encoder, nn.Module):
        check_store_matches(export_config(encoder), store, str(encoder))
    ids = store.subject_ids if subject_ids is None else list(subject_ids)
    idx = np.sort(np.array([store.index_of(s) for s in ids], dtype=np.int64))
    parts = {
        "encoder": encoder_fingerprint(encoder),
        "store": store_fingerprint(store, idx),
        "config": config.result_key(),
        "schema_version": 1,
    }
    fp = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    out = Path(out_dir)
    done: ExtractResult | None = None
    if is_done(out, fp) and not overwrite:
        info = read_info(out) or {}
        done = ExtractResult(
            out,
            out / PATCH_FILE,
            out / IMAGE_FILE,
            fp,
            True,
            int(info.get("n_subjects", len(ids))),
            0,
            time.perf_counter() - t0,
        )
    elif (old := read_info(out)) is not None and old.get("fingerprint") != fp and not overwrite:
        raise FeaturesError(
            f"{out}: holds features of another run (fingerprint {old.get('fingerprint')}, this run "
            f"{fp}); pass overwrite=True (--overwrite) or choose another output folder"
        )
    info = {
        "fingerprint": fp,
        "parts": parts,
        "store_path": str(store.path),
        "n_subjects": len(ids),
        "n_landmarks": store.num_landmarks,
        "code_version": __version__,
    }
    return store, fp, info, done


def _finish(
    result: PatchFeatures,
    out_dir: str | Path,
    config: FeaturesConfig,
    info: dict[str, Any],
    fp: str,
    t0: float,
    extra: dict[str, Any],
) -> ExtractResult:
    n = int(result.valid.sum())
    seconds = time.perf_counter() - t0
    info = {
        **info,
        **extra,
        "n_patches": n,
        "seconds": seconds,
        "patches_per_s": n / max(seconds, 1e-9),
    }
    paths = write_features(result, out_dir, config, info)
    return ExtractResult(
        Path(out_dir),
        paths["patch"],
        paths["image"],
        fp,
        False,
        len(result.subject_ids),
        n,
        time.perf_counter() - t0,
    )


def extract_features(
    encoder: EncoderSource,
    store_path: str | Path | PatchStore,
    out_dir: str | Path,
    config: FeaturesConfig | None = None,
    *,
    subject_ids: Sequence[str] | None = None,
    overwrite: bool = False,
) -> ExtractResult:
    """In-process extraction to the output folder (same files as :func:`extract_features_ray`)."""
    t0 = time.perf_counter()
    config = config or FeaturesConfig()
    store, fp, info, done = _prepare(encoder, store_path, out_dir, config, subject_ids, overwrite)
    if done is not None:
        return done
    module, meta = resolve_encoder(encoder)
    result = extract_patch_features(module, store, config, subject_ids=subject_ids)
    return _finish(result, out_dir, config, info, fp, t0, {"encoder_meta": meta, "engine": "local"})


class _UnitEncoder:
    """Ray Data actor: one encoder and one store reader, encodes the work units it is handed."""

    def __init__(
        self,
        encoder: list[Any],
        store_path: str,
        config: FeaturesConfig,
        units: list[Unit],
    ) -> None:
        import ray
        import torch

        torch.set_num_threads(max(1, int(config.cpus_per_actor)))
        source = encoder[0]
        if isinstance(source, ray.ObjectRef):
            source = ray.get(source)
        self.encoder, _ = resolve_encoder(source)
        self.device = pick_device(config.device)
        self.encoder.to(self.device).eval()
        self.store = PatchStore(store_path)
        self.locations = location_table(self.store, config)
        self.units = units
        self.config = config

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Encode the units named in ``batch["unit"]``; one output row per patch."""
        idx, lms, feats = [], [], []
        with inference(self.encoder):
            for u in batch["unit"].tolist():
                unit = self.units[int(u)]
                feats.append(
                    encode_unit(self.encoder, self.store, unit, self.locations, self.device,
                                self.config.bn_stats, self.config.batch_size)
                )
                lms.append(np.repeat(unit.landmarks, unit.store_indices.size))
                idx.append(np.tile(unit.store_indices, unit.landmarks.size))
        return {
            "store_index": np.concatenate(idx).astype(np.int64),
            "landmark": np.concatenate(lms).astype(np.int64),
            "features": np.concatenate(feats).astype(np.float32),
        }


def extract_features_ray(
    encoder: EncoderSource,
    store_path: str | Path,
    out_dir: str | Path,
    config: FeaturesConfig | None = None,
    *,
    subject_ids: Sequence[str] | None = None,
    overwrite: bool = False,
) -> ExtractResult:
    """Ray Data batch inference: an actor pool encodes (landmark, subject-chunk) units.

    Needs a running Ray (``ray.init`` or :func:`drasclr.raytools.ray_session`). The encoder is
    either a module (put in the object store once, fetched by each actor) or a run/export folder
    that every actor loads itself.

    Args:
        encoder: in-memory encoder or training run / export folder.
        store_path: the patch store.
        out_dir: output folder (see :mod:`drasclr.features.output`).
        config: batching, order, ablation, device and actor-pool settings.
        subject_ids: subjects to extract (default all committed ones).
        overwrite: replace outputs of another fingerprint (and recompute finished ones).

    Returns:
        The :class:`ExtractResult`.
    """
    import ray

    t0 = time.perf_counter()
    config = config or FeaturesConfig()
    store, fp, info, done = _prepare(encoder, store_path, out_dir, config, subject_ids, overwrite)
    if done is not None:
        return done
    result, units, _ = empty_features(store, config, subject_ids, FEATURE_DIM)
    meta: dict[str, Any] = {"source": "in-memory"}
    if isinstance(encoder, (str, Path)):
        source: Any = str(encoder)
        meta = {"source": str(encoder), **export_config(encoder).get("encoder", {})}
    else:
        source = ray.put(encoder)  # wrapped in a list below so Ray does not resolve it early
    if units:
        items = ray.data.from_items(
            [{"unit": i} for i in range(len(units))],
            override_num_blocks=max(1, min(len(units), 4 * config.num_actors)),
        )
        ds = items.map_batches(
            _UnitEncoder,
            fn_constructor_kwargs={
                "encoder": [source],
                "store_path": str(store.path),
                "config": config,
                "units": units,
            },
            batch_size=config.units_per_call,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=config.num_actors),
            num_cpus=config.cpus_per_actor,
            num_gpus=config.gpus_per_actor,
        )
        seen = 0
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            rows = np.searchsorted(result.store_indices, batch["store_index"])
            feats = batch["features"]
            if feats.shape[1] != FEATURE_DIM:
                raise FeaturesError(
                    f"encoder gives {feats.shape[1]}-d features, expected {FEATURE_DIM}"
                )
            result.features[rows, batch["landmark"]] = feats
            seen += len(rows)
        if seen != int(result.valid.sum()):
            raise FeaturesError(
                f"Ray extraction returned {seen} patches, expected {int(result.valid.sum())}"
            )
    extra = {
        "encoder_meta": meta,
        "engine": "ray_data",
        "num_actors": config.num_actors,
        "n_units": len(units),
    }
    return _finish(result, out_dir, config, info, fp, t0, extra)
