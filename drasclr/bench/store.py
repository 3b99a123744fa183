"""Store layout benchmark: size, write and read throughput of the patch store against baselines.

:func:`bench_store` writes CT-like patches (:func:`drasclr.synth.patches.ct_like_patches`) of L
landmarks x S subjects through the real writer and times the two access patterns of DESIGN.md
3.4: (a) a training batch, many random subjects at one landmark and its 2 nearest neighbours, and
(b) all L landmarks of one subject. It compares the store's layout and fast reader
(:mod:`drasclr.store.layout`, :mod:`drasclr.store.reader`) with the same files read through
zarr's own API and with unsharded zarr layouts (one uncompressed chunk per patch; chunks of 64 or
4 subjects per landmark), and reports bytes, compression ratio, file count, write MB/s and read
patches/s (reads from the page cache). These measurements chose the store layout
(schema_version 1).
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from drasclr.store.layout import _PATCH_CODEC, DEFAULT_BLOCK_SIZE, StoreError
from drasclr.store.reader import PatchStore, SubjectPatches
from drasclr.store.writer import open_store
from drasclr.synth.patches import ct_like_patches

__all__ = [
    "bench_store",
]


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
