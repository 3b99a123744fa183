"""Starting transforms of the affine mask registration: principal axes and a coarse rotation search.

Both return a 4x4 affine in LPS mm mapping FIXED (atlas) points to MOVING (subject) points, the
direction of :attr:`drasclr.imaging.register.Registration.matrix`, computed from the two lung
masks alone (numpy, no ANTs). :func:`drasclr.imaging.register.register_affine` hands them to
``antsRegistration`` as its initial moving transform when
:func:`~drasclr.imaging.register.register_with_retries` retries after the centre-of-mass start
failed QC.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from drasclr.imaging.geometry import geometry_arrays

__all__ = [
    "mask_points",
    "principal_axes_start",
    "rotation_search_start",
]


_SEARCH_POINTS = 8_000


_COARSE_DEG = (-24.0, -12.0, 0.0, 12.0, 24.0)


_FINE_DEG = (-4.0, 0.0, 4.0)


def mask_points(
    mask_zyx: ArrayLike, geom: Any, max_points: int | None = None
) -> tuple[NDArray[np.float64], float]:
    """LPS mm positions of a mask's non-zero voxels and the mask's volume.

    Args:
        mask_zyx: label mask ``[z, y, x]`` (any non-zero value is inside).
        geom: its geometry (see :func:`drasclr.imaging.geometry.geometry_arrays`).
        max_points: keep about this many voxels (an even stride over the raster order).

    Returns:
        ``(N, 3)`` positions in mm and the volume of all non-zero voxels in mm^3.
    """
    spacing, origin, direction = geometry_arrays(geom)
    flat = np.flatnonzero(np.asarray(mask_zyx))
    volume = float(flat.size * np.prod(spacing))
    if max_points is not None and flat.size > max_points:
        flat = flat[:: flat.size // max_points]
    z, y, x = np.unravel_index(flat, np.shape(mask_zyx))
    ijk = np.stack([x, y, z], axis=1).astype(np.float64)
    return origin + (ijk * spacing) @ direction.T, volume


def _affine(linear: NDArray[np.float64], c_fixed: NDArray[np.float64],
            c_moving: NDArray[np.float64]) -> NDArray[np.float64]:
    """4x4 matrix ``p -> c_moving + linear @ (p - c_fixed)``."""
    m = np.eye(4)
    m[:3, :3] = linear
    m[:3, 3] = c_moving - linear @ c_fixed
    return m


def principal_axes_start(
    fixed_mask_zyx: ArrayLike, fixed_geom: Any, moving_mask_zyx: ArrayLike, moving_geom: Any
) -> NDArray[np.float64]:
    """Align centroids and principal axes, scaling each axis by the ratio of the spreads.

    The pairing and signs of the axes are those of the proper rotation closest to the identity
    (scans are roughly aligned; only the lungs' shape decides which axis is which).

    Returns:
        (4, 4) fixed -> moving affine, LPS mm.
    """
    pf, _ = mask_points(fixed_mask_zyx, fixed_geom, 200_000)
    pm, _ = mask_points(moving_mask_zyx, moving_geom, 200_000)
    cf, cm = pf.mean(axis=0), pm.mean(axis=0)
    ef, vf = np.linalg.eigh(np.cov((pf - cf).T))
    em, vm = np.linalg.eigh(np.cov((pm - cm).T))
    best: tuple[float, NDArray[np.float64]] | None = None
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            axes = vm[:, perm] * np.asarray(signs)  # moving axis paired with fixed axis k
            rot = axes @ vf.T
            if np.linalg.det(rot) < 0:
                continue
            if best is None or np.trace(rot) > best[0]:
                scale = np.sqrt(np.maximum(em[list(perm)], 1e-9) / np.maximum(ef, 1e-9))
                best = (float(np.trace(rot)), axes @ np.diag(scale) @ vf.T)
    assert best is not None
    return _affine(best[1], cf, cm)


def _inside(points: NDArray[np.float64], mask: NDArray[np.bool_], geom: Any) -> NDArray[np.bool_]:
    """Whether LPS mm points (..., 3) fall on a non-zero voxel of ``mask`` (nearest voxel)."""
    spacing, origin, direction = geometry_arrays(geom)
    ijk = np.rint(((points - origin) @ np.linalg.inv(direction).T) / spacing).astype(np.int64)
    shape_xyz = np.asarray(mask.shape[::-1])
    ok = np.all((ijk >= 0) & (ijk < shape_xyz), axis=-1)
    ijk = np.where(ok[..., None], ijk, 0)
    return ok & mask[ijk[..., 2], ijk[..., 1], ijk[..., 0]]


def _rotations(degrees: tuple[float, ...], about: NDArray[np.float64]) -> NDArray[np.float64]:
    """(K, 3, 3) rotations ``about @ Rz @ Ry @ Rx`` for every angle triple of the grid."""
    a = np.deg2rad(np.asarray(list(itertools.product(degrees, repeat=3))))
    cx, cy, cz = np.cos(a).T
    sx, sy, sz = np.sin(a).T
    one, zero = np.ones_like(cx), np.zeros_like(cx)
    rx = np.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], 1).reshape(-1, 3, 3)
    ry = np.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], 1).reshape(-1, 3, 3)
    rz = np.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], 1).reshape(-1, 3, 3)
    return about @ rz @ ry @ rx


def rotation_search_start(
    fixed_mask_zyx: ArrayLike, fixed_geom: Any, moving_mask_zyx: ArrayLike, moving_geom: Any
) -> NDArray[np.float64]:
    """Best rotation about the centroids on a coarse grid, then a finer grid around it.

    Centroids are aligned and the scale is the cube root of the volume ratio. Each candidate
    rotation (every x/y/z angle triple of +-24 degrees in 12 degree steps, then +-4 degrees around
    the best) is scored by the symmetric overlap of sampled lung voxels: the fraction of fixed lung
    points that land in the moving lung plus the fraction of moving lung points that land back in
    the fixed lung (a proxy of the Dice QC metric).

    Returns:
        (4, 4) fixed -> moving affine, LPS mm.
    """
    fixed = np.asarray(fixed_mask_zyx) != 0
    moving = np.asarray(moving_mask_zyx) != 0
    pf, vol_f = mask_points(fixed, fixed_geom, _SEARCH_POINTS)
    pm, vol_m = mask_points(moving, moving_geom, _SEARCH_POINTS)
    cf, cm = pf.mean(axis=0), pm.mean(axis=0)
    scale = float(np.cbrt(vol_m / vol_f))

    def best_of(rotations: NDArray[np.float64]) -> NDArray[np.float64]:
        to_moving = cm + scale * np.einsum("kij,nj->kni", rotations, pf - cf)
        to_fixed = cf + np.einsum("kji,nj->kni", rotations, pm - cm) / scale
        score = (_inside(to_moving, moving, moving_geom).mean(axis=1)
                 + _inside(to_fixed, fixed, fixed_geom).mean(axis=1))
        return rotations[int(np.argmax(score))]

    coarse = best_of(_rotations(_COARSE_DEG, np.eye(3)))
    fine = best_of(_rotations(_FINE_DEG, coarse))
    return _affine(scale * fine, cf, cm)
