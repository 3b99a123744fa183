"""Patch cutting at landmarks: vectorised P^3 patches, field-of-view flags and lung fractions.

Patch convention (that of the published grid, centre = corner + 16 for P = 32):

* A patch of even size ``P`` "centred" at integer voxel index ``c`` spans indices
  ``c - P//2 .. c + P//2 - 1`` on every axis (for ``P = 32``: ``c-16 .. c+15``). A physical
  centre (LPS mm, in the space of the volume) is first converted to a continuous index ``u`` with
  :func:`~drasclr.imaging.geometry.mm_to_voxel` and rounded half-up, ``c = floor(u + 0.5)``
  (:func:`patch_corners`): the one place where landmark millimetres become voxel indices.
* Corners are ``(x, y, z)`` voxel indices; patches are arrays indexed ``[z, y, x]`` whose axes
  follow the voxel axes of the volume (no reorientation).
* A patch is in view when it lies wholly inside the volume (:func:`patch_in_view`); voxels
  outside are filled (-1024 HU for CT, 0 for masks).

:func:`cut_patches` cuts all L patches of a volume in one gather (no per-patch Python loop) and
flags those in view; :func:`lung_fraction` gives each patch's share of lung voxels, in [0, 1].
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike, NDArray

from drasclr.imaging.geometry import mm_to_voxel

__all__ = [
    "patch_corners",
    "patch_in_view",
    "cut_patches",
    "lung_fraction",
]


def patch_corners(centres_mm: ArrayLike, geom: Any, patch: int = 32) -> NDArray[np.int64]:
    """First voxel index ``(x, y, z)`` of the patch centred at each physical centre.

    ``corner = floor(mm_to_voxel(centre) + 0.5) - patch // 2``; the patch spans
    ``corner .. corner + patch - 1``.

    Args:
        centres_mm: (L, 3) patch centres, LPS mm, in the space of ``geom``.
        geom: geometry of the volume the patches are cut from.
        patch: patch edge length in voxels.

    Returns:
        (L, 3) int64 corner indices (may be negative or beyond the volume).
    """
    u = mm_to_voxel(np.atleast_2d(np.asarray(centres_mm, dtype=np.float64)), geom)
    return np.floor(u + 0.5).astype(np.int64) - patch // 2


def patch_in_view(
    corners_xyz: ArrayLike, shape_zyx: tuple[int, ...], patch: int = 32
) -> NDArray[np.bool_]:
    """True where the whole patch starting at ``corners_xyz`` lies inside a ``[z,y,x]`` volume.

    Args:
        corners_xyz: (L, 3) voxel corner indices in (x, y, z) order.
        shape_zyx: volume shape ``(Z, Y, X)``.
        patch: patch edge length in voxels.

    Returns:
        (L,) bool.
    """
    c = np.atleast_2d(np.asarray(corners_xyz, dtype=np.int64))
    size_xyz = np.asarray(shape_zyx[::-1], dtype=np.int64)
    return np.all((c >= 0) & (c + patch <= size_xyz), axis=1)


def _gather(
    volume: NDArray[Any], corners_xyz: NDArray[np.int64], patch: int, fill: Any
) -> NDArray[Any]:
    """Gather (L, P, P, P) ``[z,y,x]`` blocks starting at ``corners_xyz``, ``fill`` outside.

    Patches whose x-range lies inside the volume are read as contiguous x-runs of a sliding-window
    view (one fancy index over (L, P, P) rows); the others by a per-voxel gather with clipped
    indices. Out-of-volume planes are then overwritten with ``fill`` (vectorised over patches).
    """
    n = corners_xyz.shape[0]
    zdim, ydim, xdim = volume.shape
    out = np.empty((n, patch, patch, patch), dtype=volume.dtype)
    if n == 0:
        return out
    ramp = np.arange(patch, dtype=np.int64)
    ix = corners_xyz[:, 0, None] + ramp  # (L, P)
    iy = corners_xyz[:, 1, None] + ramp
    iz = corners_xyz[:, 2, None] + ramp
    vx, vy, vz = (ix >= 0) & (ix < xdim), (iy >= 0) & (iy < ydim), (iz >= 0) & (iz < zdim)
    cz, cy = np.clip(iz, 0, zdim - 1), np.clip(iy, 0, ydim - 1)
    x_inside = vx.all(axis=1)
    rows = np.flatnonzero(x_inside)
    if rows.size:  # fast path: copy whole x-runs
        windows = sliding_window_view(volume, patch, axis=2)  # (Z, Y, X-P+1, P) view
        out[rows] = windows[cz[rows][:, :, None], cy[rows][:, None, :], ix[rows, 0][:, None, None]]
    rest = np.flatnonzero(~x_inside)
    if rest.size:
        cx = np.clip(ix[rest], 0, xdim - 1)
        out[rest] = volume[
            cz[rest][:, :, None, None], cy[rest][:, None, :, None], cx[:, None, None, :]
        ]
    l, k = np.nonzero(~vz)
    out[l, k] = fill
    l, k = np.nonzero(~vy)
    out[l, :, k] = fill
    l, k = np.nonzero(~vx)
    out[l, :, :, k] = fill
    return out


def cut_patches(
    volume_zyx: NDArray[Any],
    geom: Any,
    centres_mm: ArrayLike,
    patch: int = 32,
    fill: int | float = -1024,
) -> tuple[NDArray[Any], NDArray[np.bool_]]:
    """Cut one ``patch``^3 block per centre from a volume, all at once (vectorised gather).

    The volume is expected at 1 mm isotropic (the pipeline resamples first); for any geometry the
    centres are converted with :func:`mm_to_voxel` and the patch axes follow the voxel axes.

    Args:
        volume_zyx: 3D array indexed ``[z, y, x]`` (clipped HU as int16 in the pipeline).
        geom: geometry of ``volume_zyx``.
        centres_mm: (L, 3) patch centres in LPS mm, in the volume's (subject) space.
        patch: patch edge length in voxels (even; spans ``c - P/2 .. c + P/2 - 1``).
        fill: value written where the patch leaves the volume (-1024 HU = air).

    Returns:
        ``(patches, in_view)``: (L, P, P, P) array of the volume's dtype indexed ``[z, y, x]``, and
        (L,) bool, True where the patch lies wholly inside the volume.
    """
    volume = np.asarray(volume_zyx)
    if volume.ndim != 3:
        raise ValueError(f"volume must be 3D [z,y,x], got shape {volume.shape}")
    if patch <= 0:
        raise ValueError(f"patch must be positive, got {patch}")
    centres = np.reshape(np.asarray(centres_mm, dtype=np.float64), (-1, 3))
    corners = patch_corners(centres, geom, patch)
    fill_value = np.asarray(fill).astype(volume.dtype)
    if fill_value != fill:
        raise ValueError(f"fill {fill} is not representable as {volume.dtype}")
    return _gather(volume, corners, patch, fill_value), patch_in_view(corners, volume.shape, patch)


def lung_fraction(
    mask_zyx: NDArray[Any], geom: Any, centres_mm: ArrayLike, patch: int = 32
) -> NDArray[np.float32]:
    """Fraction of lung (non-zero) voxels in each patch; voxels outside the volume count as 0.

    Args:
        mask_zyx: lung mask indexed ``[z, y, x]``, any non-zero label is lung.
        geom: geometry of ``mask_zyx``.
        centres_mm: (L, 3) patch centres, LPS mm.
        patch: patch edge length in voxels.

    Returns:
        (L,) float32 in [0, 1], fraction over ``patch**3`` voxels.
    """
    mask = np.asarray(mask_zyx) != 0
    blocks, _ = cut_patches(mask.view(np.uint8), geom, centres_mm, patch=patch, fill=0)
    counts = blocks.reshape(blocks.shape[0], -1).sum(axis=1, dtype=np.int64)
    return (counts / float(patch**3)).astype(np.float32)
