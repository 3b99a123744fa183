"""Patch and image features of a patch store (DESIGN.md §4 item 10), in one process.

Patch features are ``e(x_ij, l_j)`` for every stored patch; the image feature of subject i is
their mean over the subject's *valid* landmarks (patches inside the field of view). Invalid
patches are never encoded: in memory their features are NaN (so a (S, L, D) array keeps its
shape), in Parquet they are nulls with ``valid = false`` (see :mod:`drasclr.features.output`).

The work is split into *units*, each a set of (landmark, subject) pairs encoded as one batch:
landmark-major units are up to ``batch_size`` subjects at one landmark (one location per batch:
one shared Loc-CondConv kernel), subject-major units are up to ``batch_size`` landmarks of one
subject. The Ray Data path (:mod:`drasclr.features.extract`) hands the same units to an actor pool,
so both paths compute exactly the same batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from drasclr.features.config import FeaturesConfig, Order
from drasclr.features.encoding import (
    encode_patches,
    encode_patches_landmark_bn,
    inference,
    on_device,
    pick_device,
)
from drasclr.store.reader import PatchStore


class Unit(NamedTuple):
    """A batch of (landmark, subject) pairs: the product ``landmarks x store_indices``.

    :func:`plan_units` makes one side length 1 and includes only valid pairs.
    """

    landmarks: npt.NDArray[np.int64]
    store_indices: npt.NDArray[np.int64]

    @property
    def size(self) -> int:
        """Number of patches in the unit."""
        return int(self.landmarks.size * self.store_indices.size)


@dataclass(frozen=True, eq=False)
class PatchFeatures:
    """Patch features of S subjects at L landmarks.

    Attributes:
        subject_ids: the S subject ids, in store order.
        store_indices: (S,) their store indices.
        features: (S, L, D) float32 representations ``h``; NaN where ``valid`` is false.
        valid: (S, L) bool, patch inside the field of view (encoded).
        locations: (S, L, 3) float32 normalised location each patch was conditioned on (the
            landmark's, or the random one of the perturbation ablation).
    """

    subject_ids: tuple[str, ...]
    store_indices: npt.NDArray[np.int64]
    features: npt.NDArray[np.float32]
    valid: npt.NDArray[np.bool_]
    locations: npt.NDArray[np.float32]

    @property
    def n_valid(self) -> npt.NDArray[np.int64]:
        """(S,) number of valid landmarks per subject."""
        return self.valid.sum(axis=1).astype(np.int64)

    @property
    def image_features(self) -> npt.NDArray[np.float32]:
        """(S, D) mean over valid landmarks (NaN rows for subjects without any)."""
        return image_features(self.features, self.valid)


def image_features(
    features: npt.NDArray[np.floating], valid: npt.NDArray[np.bool_]
) -> npt.NDArray[np.float32]:
    """Image representation ``h_i = mean_j h_ij`` over the valid landmarks of each subject.

    Args:
        features: (S, L, D) patch features (values at invalid entries are ignored).
        valid: (S, L) bool.

    Returns:
        (S, D) float32, accumulated in float64; NaN rows where a subject has no valid patch.
    """
    w = valid.astype(np.float64)
    total = np.einsum("sl,sld->sd", w, np.where(valid[..., None], features, 0.0).astype(np.float64))
    count = w.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (total / count).astype(np.float32)


def random_locations(
    seed: int, store_indices: npt.ArrayLike, landmarks_norm: npt.ArrayLike
) -> npt.NDArray[np.float32]:
    """Random locations in the lung, one per (store index, landmark): the normalised location of
    a landmark drawn uniformly from the grid (the paper's "random coordinate sampled in the
    lung"; the grid's landmarks all lie in the atlas lung).

    The value of a pair depends only on ``seed``, the store index and the landmark, not on which
    other subjects are asked for: row ``s`` of one stream of ``(max_index + 1, L)`` draws.

    Args:
        seed: the draw's seed.
        store_indices: the subjects' store indices.
        landmarks_norm: (L, 3) normalised landmark locations (the grid the draws come from).

    Returns:
        (len(store_indices), L, 3) float32.
    """
    grid = np.asarray(landmarks_norm, dtype=np.float32)
    idx = np.asarray(store_indices, dtype=np.int64).reshape(-1)
    n = int(idx.max()) + 1 if idx.size else 0
    pick = np.random.default_rng(seed).integers(0, len(grid), size=(n, len(grid)))
    return grid[pick[idx]]


def location_table(store: PatchStore, config: FeaturesConfig) -> npt.NDArray[np.float32]:
    """(capacity, L, 3) location of every pair of the store under ``config``."""
    L = store.num_landmarks
    if config.random_locations:
        return random_locations(config.seed, np.arange(store.capacity), store.landmarks_norm)
    base = np.asarray(store.landmarks_norm, dtype=np.float32)
    return np.broadcast_to(base, (store.capacity, L, 3))


def plan_units(
    valid: npt.NDArray[np.bool_], store_indices: npt.ArrayLike, batch_size: int, order: Order
) -> list[Unit]:
    """Split the valid (landmark, subject) pairs into batches.

    Args:
        valid: (L, capacity) bool validity from the store.
        store_indices: the subjects to extract.
        batch_size: pairs per unit at most.
        order: ``"landmark"``: units of subjects at one landmark; ``"subject"``: units of
            landmarks of one subject.

    Returns:
        Units covering every valid pair exactly once.
    """
    idx = np.asarray(store_indices, dtype=np.int64)
    sub = valid[:, idx]  # (L, S)
    units: list[Unit] = []
    if order == "landmark":
        for j in range(sub.shape[0]):
            members = idx[sub[j]]
            for start in range(0, members.size, batch_size):
                units.append(Unit(np.array([j]), members[start : start + batch_size]))
    else:
        for k, s in enumerate(idx):
            members = np.flatnonzero(sub[:, k]).astype(np.int64)
            for start in range(0, members.size, batch_size):
                units.append(Unit(members[start : start + batch_size], np.array([s])))
    return units


def encode_unit(
    encoder: nn.Module,
    store: PatchStore,
    unit: Unit,
    locations: npt.NDArray[np.float32],
    device: torch.device,
    bn_stats: str = "running",
    chunk: int = 256,
) -> npt.NDArray[np.floating]:
    """Read and encode one unit (inside :func:`inference`).

    Args:
        locations: (capacity, L, 3) table from :func:`location_table`.
        bn_stats: ``"landmark"``: BatchNorm statistics of this unit's patches (a unit is one
            landmark's subjects, see :class:`FeaturesConfig`).
        chunk: patches per forward pass with ``bn_stats="landmark"``.

    Returns:
        (unit.size, D) features, pairs in landmark-outer, subject-inner order.
    """
    patches = store.read_landmarks_batch(unit.landmarks, unit.store_indices)
    P = patches.shape[-1]
    patches = patches.reshape(-1, P, P, P)
    loc = locations[unit.store_indices[None, :], unit.landmarks[:, None]].reshape(-1, 3)
    if loc.shape[0] and (loc == loc[:1]).all():
        loc = loc[0]  # one location for the batch: the shared-kernel path
    if bn_stats == "landmark":
        with torch.inference_mode(False):
            return encode_patches_landmark_bn(encoder, patches, loc, device, chunk)
    return encode_patches(encoder, patches, loc, device)


def _select(store: PatchStore, subject_ids: Sequence[str] | None) -> tuple[list[str], np.ndarray]:
    if subject_ids is None:
        return store.subject_ids, store.store_indices
    ids = list(subject_ids)
    idx = np.array([store.index_of(s) for s in ids], dtype=np.int64)
    order = np.argsort(idx, kind="stable")
    return [ids[i] for i in order], idx[order]


def empty_features(
    store: PatchStore,
    config: FeaturesConfig,
    subject_ids: Sequence[str] | None,
    dim: int,
) -> tuple[PatchFeatures, list[Unit], npt.NDArray[np.float32]]:
    """NaN-filled :class:`PatchFeatures`, the units that fill it, and the location table."""
    ids, idx = _select(store, subject_ids)
    valid = store.valid[:, idx].T.copy()  # (S, L)
    locs = location_table(store, config)
    feats = np.full((len(ids), store.num_landmarks, dim), np.nan, dtype=np.float32)
    result = PatchFeatures(
        tuple(ids), idx, feats, valid, np.ascontiguousarray(locs[idx], dtype=np.float32)
    )
    per_unit = store.capacity if config.bn_stats == "landmark" else config.batch_size
    return result, plan_units(store.valid, idx, per_unit, config.order), locs


def scatter_unit(result: PatchFeatures, unit: Unit, values: npt.NDArray[np.floating]) -> None:
    """Write one unit's (unit.size, D) features into ``result.features`` in place."""
    row = np.searchsorted(result.store_indices, unit.store_indices)
    values = values.reshape(unit.landmarks.size, unit.store_indices.size, -1)
    result.features[row[None, :], unit.landmarks[:, None]] = values


def extract_patch_features(
    encoder: nn.Module,
    store: PatchStore | str | Path,
    config: FeaturesConfig | None = None,
    *,
    subject_ids: Sequence[str] | None = None,
) -> PatchFeatures:
    """Patch features (and, through the result, image features) of a store, in this process.

    Args:
        encoder: ``encoder(x, loc) -> (B, D)``; put in eval mode for the call, its mode restored.
        store: a :class:`PatchStore` or its path.
        config: batching, order, random-location ablation, device.
        subject_ids: the subjects to extract (default all committed subjects).

    Returns:
        The :class:`PatchFeatures` (subjects in store order; NaN for invalid patches).
    """
    config = config or FeaturesConfig()
    store = store if isinstance(store, PatchStore) else PatchStore(store)
    dim = int(getattr(encoder, "out_dim", 128))
    result, units, locs = empty_features(store, config, subject_ids, dim)
    device = pick_device(config.device)
    with on_device(encoder, device), inference(encoder):
        for unit in units:
            scatter_unit(result, unit, encode_unit(encoder, store, unit, locs, device,
                                                   config.bn_stats, config.batch_size))
    return result
