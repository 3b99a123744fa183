"""World-space boxes on image arrays: voxel bounds, voxel counts and box patches.

Pure array math on an image and its geometry (no Ray, no stage config, no file I/O), used by the
evaluation's detection experiments (:mod:`drasclr.evaluate.detection`,
:mod:`drasclr.evaluate.boxes`).

Box geometry: a box is an axis-aligned cube of ``size_mm`` centred at a world LPS point; its voxels
are those whose index lies within the index-space bounding box of the cube's eight corners
(``ceil`` of the low corner to ``floor`` of the high one), clipped to the image: the same voxels
the cohort generator used to compute ``lesion_fraction``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from drasclr.imaging.geometry import Geometry, mm_to_voxel
from drasclr.imaging.intensity import HU_WINDOW
from drasclr.imaging.patches import cut_patches

SLICE_BOXES_MAX = 64
"""Up to this many boxes are counted by slicing; more use a summed-area table."""


def box_index_bounds(
    centres_mm: NDArray[Any], size_mm: NDArray[Any] | float, geom: Any, shape_zyx: Sequence[int]
) -> NDArray[np.int64]:
    """Voxel index bounds of world-space cubes, clipped to the image.

    Args:
        centres_mm: (B, 3) box centres, LPS mm.
        size_mm: cube edge(s) in mm, scalar or (B,).
        geom: geometry of the image (see :func:`drasclr.imaging.geometry.mm_to_voxel`).
        shape_zyx: array shape of the image.

    Returns:
        (B, 2, 3) int64: ``[b, 0]`` inclusive low and ``[b, 1]`` exclusive high index, (x, y, z).
    """
    centres = np.atleast_2d(np.asarray(centres_mm, np.float64))
    half = np.broadcast_to(np.asarray(size_mm, np.float64), (len(centres),))[:, None] / 2.0
    signs = np.array(
        [[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], np.float64
    )
    corners = centres[:, None, :] + signs[None] * half[:, None, :]  # (B, 8, 3)
    idx = mm_to_voxel(corners.reshape(-1, 3), geom).reshape(len(centres), 8, 3)
    lo = np.ceil(idx.min(axis=1) - 1e-6).astype(np.int64)
    hi = np.floor(idx.max(axis=1) + 1e-6).astype(np.int64) + 1
    size_xyz = np.array([shape_zyx[2], shape_zyx[1], shape_zyx[0]])
    lo, hi = np.clip(lo, 0, size_xyz), np.clip(hi, 0, size_xyz)
    return np.stack([lo, np.maximum(hi, lo)], axis=1)


def box_voxel_fraction(mask_zyx: NDArray[Any], bounds: NDArray[np.int64]) -> NDArray[np.float64]:
    """Fraction of True voxels of ``mask_zyx`` inside each box (NaN for an empty box).

    A few boxes (a subject's annotations) are counted by slicing; many boxes (a dense sweep) use a
    3D summed-area table, whose cost does not grow with the number of boxes.
    """
    m = np.asarray(mask_zyx, dtype=bool)
    (x0, y0, z0), (x1, y1, z1) = bounds[:, 0].T, bounds[:, 1].T
    volume = (x1 - x0) * (y1 - y0) * (z1 - z0)
    if len(bounds) <= SLICE_BOXES_MAX:
        total = np.array(
            [
                np.count_nonzero(m[a:b, c:d, e:f])
                for a, b, c, d, e, f in zip(z0, z1, y0, y1, x0, x1)
            ],
            np.int64,
        )
    else:
        total = summed_area_counts(m, bounds)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(volume > 0, total / np.maximum(volume, 1), np.nan)


def summed_area_counts(m: NDArray[np.bool_], bounds: NDArray[np.int64]) -> NDArray[np.int64]:
    """True-voxel counts in boxes from a summed-area table (int32 when it cannot overflow)."""
    dtype = np.int32 if m.size < 2**31 else np.int64
    sat = np.zeros(tuple(s + 1 for s in m.shape), dtype)
    sat[1:, 1:, 1:] = m.cumsum(0, dtype=dtype).cumsum(1, dtype=dtype).cumsum(2, dtype=dtype)
    (x0, y0, z0), (x1, y1, z1) = bounds[:, 0].T, bounds[:, 1].T
    total = (
        sat[z1, y1, x1]
        - sat[z0, y1, x1]
        - sat[z1, y0, x1]
        - sat[z1, y1, x0]
        + sat[z0, y0, x1]
        + sat[z0, y1, x0]
        + sat[z1, y0, x0]
        - sat[z0, y0, x0]
    )
    return total.astype(np.int64)


def cut_box_patches(
    hu_zyx: NDArray[Any],
    lungs_zyx: NDArray[np.bool_],
    geom: Geometry,
    centres_mm: ArrayLike,
    patch: int = 32,
) -> tuple[NDArray[np.int16], NDArray[np.bool_], NDArray[np.bool_]]:
    """The P^3 patch centred at each box centre, of a clipped-HU CT and of its lung mask.

    Cut like the store's landmark patches (:func:`drasclr.imaging.patches.cut_patches`): the CT
    is filled with the bottom of the HU window outside the scan, the mask with 0.

    Args:
        hu_zyx: (Z, Y, X) clipped HU on the grid of ``geom``.
        lungs_zyx: (Z, Y, X) bool lung mask on the same grid.
        geom: the grid's geometry (LPS).
        centres_mm: (B, 3) box centres, LPS mm.
        patch: patch edge P in voxels.

    Returns:
        ``(patches (B, P, P, P) int16, lungs (B, P, P, P) bool, in_view (B,) bool)``.
    """
    centres = np.asarray(centres_mm, np.float64)
    patches, in_view = cut_patches(hu_zyx, geom, centres, patch=patch, fill=HU_WINDOW[0])
    lungs, _ = cut_patches(lungs_zyx.view(np.uint8), geom, centres, patch=patch, fill=0)
    return patches.astype(np.int16), lungs != 0, in_view
