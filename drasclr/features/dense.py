"""Dense voxel features and predictions (DESIGN.md §4 item 9).

``h(v) = e(P^3 box centred at voxel v, normalise(T_i^-1(v)))`` for voxels ``v`` of a subject's
1 mm volume: the box is cut like the store's patches (``drasclr.imaging.patches`` convention: centre
``c`` spans ``c - P/2 .. c + P/2 - 1``, -1024 HU outside the volume), the voxel's physical LPS
position is carried into atlas space with the subject's inverse transform and normalised with the
landmark grid's bounding box (the rule of :func:`drasclr.imaging.atlas.normalise_landmarks`, not clipped:
voxels outside the landmarks' box get locations slightly beyond [-1, 1]).

With ``stride`` s > 1 only the voxels of the grid ``s * Z^3`` that are corners of a mask voxel's
grid cell are encoded; every mask voxel then gets the trilinear interpolation of its cell's
corners (exact at grid voxels; stride 1 encodes every mask voxel). An optional linear ``head``
maps features to a few channels first, so dense predictions cost (N, C) memory, not (N, 128).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

from drasclr.features.encoding import encode_patches, inference, on_device, pick_device
from drasclr.imaging.atlas import LandmarkBounds, landmark_bounds
from drasclr.imaging.geometry import geometry_arrays, transform_points, voxel_to_mm
from drasclr.imaging.patches import cut_patches
from drasclr.store.reader import PatchStore

Head = Callable[[Tensor], Tensor]
"""Maps (N, 128) representations to (N, C) outputs on the encoder's device (e.g. nn.Linear)."""


def store_bounds(store: PatchStore, atol: float = 1e-4) -> LandmarkBounds:
    """The bounds of a store's landmarks, checked to reproduce its stored normalised landmarks.

    Raises:
        ValueError: the store was created with another normalisation.
    """
    bounds = landmark_bounds(store.landmarks)
    if not np.allclose(bounds.normalise(store.landmarks), store.landmarks_norm, atol=atol):
        raise ValueError(
            f"{store.path}: landmarks_norm is not the bounding-box normalisation of landmarks_mm; "
            "pass the bounds used to make it"
        )
    return bounds


@dataclass(frozen=True, eq=False)
class DenseFeatures:
    """Features (or head outputs) at every mask voxel of a volume.

    Attributes:
        shape: volume shape (Z, Y, X).
        voxels: (N, 3) int64 ``[z, y, x]`` indices of the mask voxels (C order).
        values: (N, C) features / predictions at those voxels.
        stride: grid stride used (1 = every voxel encoded).
        num_encoded: boxes actually encoded.
    """

    shape: tuple[int, int, int]
    voxels: npt.NDArray[np.int64]
    values: npt.NDArray[np.floating]
    stride: int
    num_encoded: int

    def to_volume(self, fill: float = float("nan")) -> npt.NDArray[np.floating]:
        """(C, Z, Y, X) volume, ``fill`` outside the mask (mind the memory for C = 128)."""
        out = np.full((self.values.shape[1], *self.shape), fill, dtype=self.values.dtype)
        z, y, x = self.voxels.T
        out[:, z, y, x] = self.values.T
        return out


def _grid_corners(
    voxels: npt.NDArray[np.int64], stride: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """The 8 grid corners of each voxel's cell and their trilinear weights.

    Returns:
        ``(corners (8, N, 3) [z, y, x], weights (8, N))``; corners with weight 0 are not needed.
    """
    base = (voxels // stride) * stride
    frac = (voxels - base) / float(stride)
    offsets = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=np.int64)
    corners = base[None] + offsets[:, None, :] * stride
    w = np.where(offsets[:, None, :] == 1, frac[None], 1.0 - frac[None]).prod(axis=2)
    return corners, w


def dense_features(
    encoder: nn.Module,
    volume_hu: npt.ArrayLike,
    geometry: Any,
    inverse_transform: npt.ArrayLike,
    bounds: LandmarkBounds,
    mask: npt.ArrayLike | None = None,
    stride: int = 1,
    *,
    head: Head | None = None,
    patch_size: int = 32,
    batch_size: int = 64,
    device: str = "auto",
) -> DenseFeatures:
    """Dense voxel features / predictions inside a mask.

    Args:
        encoder: ``encoder(x, loc) -> (B, 128)``; used in eval mode (its mode restored after).
        volume_hu: (Z, Y, X) HU volume at 1 mm isotropic (``drasclr.imaging.resample.resample_isotropic``).
        geometry: its geometry (``io.Geometry``, a mapping, or (spacing, origin, direction)).
        inverse_transform: subject LPS mm -> atlas LPS mm (manifest ``inverse_transform``).
        bounds: landmark normalisation bounds (:func:`landmark_bounds` / :func:`store_bounds`).
        mask: (Z, Y, X) voxels to predict (non-zero); default every voxel.
        stride: encode on the stride grid and interpolate trilinearly (1 = exact).
        head: optional (N, 128) -> (N, C) map applied to encoded voxels before interpolation
            (e.g. a trained ``nn.Linear``; a module is moved to the device).
        patch_size: box edge P in voxels (the store's patch size).
        batch_size: boxes per encoder call.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Returns:
        :class:`DenseFeatures` with values at every mask voxel.
    """
    vol = np.asarray(volume_hu)
    if vol.ndim != 3:
        raise ValueError(f"volume must be 3D [z, y, x], got shape {vol.shape}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    spacing = geometry_arrays(geometry)[0]
    if not np.allclose(spacing, 1.0, atol=1e-3):
        raise ValueError(
            f"dense features need a 1 mm isotropic volume (spacing {spacing.tolist()}); "
            "resample with drasclr.imaging.resample.resample_isotropic first"
        )
    m = np.ones(vol.shape, dtype=bool) if mask is None else np.asarray(mask) != 0
    if m.shape != vol.shape:
        raise ValueError(f"mask shape {m.shape} differs from volume shape {vol.shape}")
    voxels = np.argwhere(m).astype(np.int64)
    corners, weights = _grid_corners(voxels, stride)
    # Unique grid nodes needed (corners with positive weight); keys on an extended grid, since a
    # node may lie up to stride-1 voxels beyond the volume (its box is filled with -1024 HU).
    ext = np.asarray(vol.shape, dtype=np.int64) + stride
    keys = (corners[..., 0] * ext[1] + corners[..., 1]) * ext[2] + corners[..., 2]
    used = weights > 0
    node_keys = np.unique(keys[used])
    nodes = np.stack(
        [node_keys // (ext[1] * ext[2]), (node_keys // ext[2]) % ext[1], node_keys % ext[2]], axis=1
    )
    node_values = _encode_nodes(
        encoder,
        vol,
        geometry,
        nodes,
        inverse_transform,
        bounds,
        head,
        patch_size,
        batch_size,
        device,
    )
    values = np.zeros((voxels.shape[0], node_values.shape[1]), dtype=node_values.dtype)
    for k in range(8):
        rows = np.flatnonzero(used[k])
        pos = np.searchsorted(node_keys, keys[k, rows])
        w = weights[k, rows].astype(node_values.dtype)[:, None]
        values[rows] += w * node_values[pos]
    shape = (int(vol.shape[0]), int(vol.shape[1]), int(vol.shape[2]))
    return DenseFeatures(shape, voxels, values, stride, int(nodes.shape[0]))


def _encode_nodes(
    encoder: nn.Module,
    vol: npt.NDArray[Any],
    geometry: Any,
    nodes_zyx: npt.NDArray[np.int64],
    inverse_transform: npt.ArrayLike,
    bounds: LandmarkBounds,
    head: Head | None,
    patch_size: int,
    batch_size: int,
    device_name: str,
) -> npt.NDArray[np.floating]:
    """Encode the boxes centred at ``nodes_zyx`` -> (U, C) features or head outputs."""
    xyz = nodes_zyx[:, ::-1].astype(np.float64)
    centres_mm = voxel_to_mm(xyz, geometry)
    locs = bounds.normalise(transform_points(inverse_transform, centres_mm))
    device = pick_device(device_name)
    out: list[np.ndarray] = []
    head_on = head.to(device) if isinstance(head, nn.Module) else head
    with on_device(encoder, device), inference(encoder):
        for start in range(0, nodes_zyx.shape[0], batch_size):
            sl = slice(start, start + batch_size)
            boxes, _ = cut_patches(vol, geometry, centres_mm[sl], patch=patch_size, fill=-1024)
            h = encode_patches(encoder, boxes, locs[sl], device)
            if head_on is not None:
                ht = torch.from_numpy(h).to(device)
                h = torch.as_tensor(head_on(ht)).detach().cpu().numpy()
            out.append(h)
    if not out:
        dim = 0
        if head is None:
            dim = int(getattr(encoder, "out_dim", 128))
        return np.zeros((0, dim), dtype=np.float32)
    return np.concatenate(out)
