"""Small synthetic patch stores for tests, benchmarks and smoke runs of pretraining."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from drasclr.store.reader import SubjectPatches
from drasclr.store.writer import open_store
from drasclr.synth.patches import ct_like_patches


def grid_landmarks(num: int, step_mm: float = 26.0, k_max: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """``num`` landmarks on a cubic grid (atlas mm) and their ``k_max`` nearest-neighbour table."""
    side = math.ceil(num ** (1 / 3))
    pts = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)[:num]
    lm = pts.astype(np.float64) * step_mm
    d = np.linalg.norm(lm[:, None] - lm[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    return lm, np.argsort(d, axis=1, kind="stable")[:, : min(k_max, num - 1)]


def make_synthetic_store(
    path: str | Path,
    num_landmarks: int = 8,
    num_subjects: int = 16,
    patch_size: int = 32,
    invalid_fraction: float = 0.0,
    subject_offset_hu: float = 0.0,
    block_size: int = 8,
    seed: int = 0,
) -> Path:
    """Write a store of CT-like patches (:func:`drasclr.synth.patches.ct_like_patches`).

    Each landmark gets its own mean-intensity offset so that landmarks differ; subjects get
    offsets spread evenly over ``[-subject_offset_hu, subject_offset_hu]`` (like differing
    disease severity, which makes subjects easy to tell apart); a fraction of (landmark, subject)
    patches is marked invalid at random.

    Returns:
        The store path.
    """
    path = Path(path)
    lm, nb = grid_landmarks(num_landmarks)
    L, S, P = num_landmarks, num_subjects, patch_size
    rng = np.random.default_rng(seed)
    data = ct_like_patches(L * S, P, seed).reshape(S, L, P, P, P).astype(np.int32)
    data += (np.arange(L) * 15)[None, :, None, None, None]
    offsets = np.rint(np.linspace(-subject_offset_hu, subject_offset_hu, S)).astype(np.int32)
    data += rng.permutation(offsets)[:, None, None, None, None]
    valid = rng.random((S, L)) >= invalid_fraction
    writer = open_store(
        path, landmarks_mm=lm, neighbours=nb, atlas_id="synthetic", patch_size=P,
        block_size=block_size, overwrite=True,
    )
    plan = writer.plan([(f"s{i:04d}", f"/synthetic/s{i:04d}", f"h{i}") for i in range(S)])
    for b, items in plan.blocks.items():
        subs = [
            SubjectPatches(
                it, data[i], valid[i], np.full(L, 0.5, np.float32), np.zeros((L, 3), np.float32)
            )
            for it in items
            for i in [int(it.subject_id[1:])]
        ]
        writer.commit_rows(writer.write_block(b, subs))
    return path
