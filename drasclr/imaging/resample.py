"""Resampling to isotropic voxels, block means, and the clipped CT that patches are cut from.

* :func:`resample_isotropic`: a Volume onto an isotropic grid of ``spacing_mm`` with the same
  direction, centre and physical extent (to within one output voxel) in LPS mm; linear or
  B-spline for CT, nearest neighbour for masks (DESIGN.md 3.1); the dtype is kept (integers
  rounded, not truncated).
* :func:`block_mean`: float32 mean over non-overlapping blocks of a 3D array (the coarse grids
  of segmentation and registration; partial-volume fractions of a mask).
* :func:`clipped_ct`: the pipeline's CT: resampled linearly to ``spacing_mm`` (1 mm by default,
  -1024 HU outside the scan) and clipped to :data:`~drasclr.imaging.intensity.HU_WINDOW` as
  int16, the values the patch store keeps.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import SimpleITK as sitk

from drasclr.imaging.geometry import Geometry, Volume, to_sitk
from drasclr.imaging.intensity import HU_WINDOW

__all__ = [
    "resample_isotropic",
]


# ----------------------------------------------------------------------------------- resampling
def resample_isotropic(
    volume: Volume, spacing_mm: float = 1.0, order: int = 1, fill: float = -1024
) -> Volume:
    """Resample to isotropic voxels keeping direction, physical extent and centre.

    The new grid has ``round(n * spacing / spacing_mm)`` voxels per axis and the same centre (and
    direction) as the input, so it covers the same LPS box to within one output voxel.

    Args:
        volume: input (CT in HU or a label mask).
        spacing_mm: output voxel size in mm.
        order: 0 nearest neighbour (masks), 1 linear (CT), 3 B-spline.
        fill: value for output voxels outside the input (use 0 for masks).

    Returns:
        Resampled volume with the input's dtype (interpolated integers are rounded and clipped).
    """
    if spacing_mm <= 0:
        raise ValueError(f"spacing_mm must be positive, got {spacing_mm}")
    interpolators = {0: sitk.sitkNearestNeighbor, 1: sitk.sitkLinear, 3: sitk.sitkBSpline}
    if order not in interpolators:
        raise ValueError(f"order must be 0, 1 or 3, got {order}")
    geo = volume.geometry
    old_size = np.asarray(geo.shape, dtype=float)
    old_spacing = np.asarray(geo.spacing)
    new_size = np.maximum(1, np.rint(old_size * old_spacing / spacing_mm)).astype(int)
    d = geo.direction_matrix
    centre = np.asarray(geo.origin) + d @ (old_spacing * (old_size - 1) / 2)
    new_origin = centre - d @ (spacing_mm * (new_size - 1) / 2)
    new_geo = Geometry(
        spacing=(spacing_mm,) * 3,
        origin=tuple(new_origin),
        direction=geo.direction,
        shape=tuple(int(s) for s in new_size),
    )

    dtype = volume.array.dtype
    if order == 0 and np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        if not info.min <= fill <= info.max:
            raise ValueError(f"fill {fill} does not fit {dtype}; use fill=0 for masks")
    src = volume.array.astype(np.uint8) if dtype == bool else volume.array
    image = to_sitk(src, geo)
    out_type = image.GetPixelID() if order == 0 else sitk.sitkFloat32
    f = sitk.ResampleImageFilter()
    f.SetSize([int(s) for s in new_size])
    f.SetOutputSpacing(new_geo.spacing)
    f.SetOutputOrigin(new_geo.origin)
    f.SetOutputDirection(new_geo.direction)
    f.SetInterpolator(interpolators[order])
    f.SetDefaultPixelValue(float(fill))
    f.SetOutputPixelType(out_type)
    out = sitk.GetArrayFromImage(f.Execute(image))
    if out.dtype != dtype:
        if np.issubdtype(dtype, np.integer):
            np.rint(out, out=out)  # ITK would truncate towards zero
            if order == 3:  # B-spline can overshoot the input range
                info = np.iinfo(dtype)
                np.clip(out, info.min, info.max, out=out)
        out = out.astype(dtype)
    return Volume(out, new_geo)


def block_mean(
    a: np.ndarray, factors: tuple[int, int, int], partial: Literal["pad", "drop"] = "pad"
) -> np.ndarray:
    """Mean over non-overlapping ``factors``-sized blocks of a 3D array, float32.

    Sums are taken in float64 and the quotient rounded once to float32, so integer-valued
    inputs (HU, mask codes) give the correctly rounded block mean.

    Args:
        a: 3D array, any numeric dtype.
        factors: block size per array axis (same order as ``a.shape``).
        partial: trailing blocks that do not fill a whole block are edge-padded (``"pad"``) or
            dropped (``"drop"``).

    Returns:
        float32 array of shape ``ceil(n / f)`` (pad) or ``floor(n / f)`` (drop) per axis.
    """
    f = tuple(int(k) for k in factors)
    if f == (1, 1, 1):
        return a.astype(np.float32)
    if partial == "pad":
        pad = [(0, (-n) % k) for n, k in zip(a.shape, f)]
        if any(p[1] for p in pad):
            a = np.pad(a, pad, mode="edge")
    z, y, x = (n // k for n, k in zip(a.shape, f))
    v = a[: z * f[0], : y * f[1], : x * f[2]].reshape(z, f[0], y, f[1], x, f[2])
    sums = v.sum(axis=(1, 3, 5), dtype=np.float64)
    return (sums / float(f[0] * f[1] * f[2])).astype(np.float32)


# ----------------------------------------------------------------------------------- subject
def clipped_ct(volume: Volume, spacing_mm: float = 1.0) -> Volume:
    """The CT resampled to ``spacing_mm`` isotropic (linear, -1024 HU outside) and clipped to
    the store's HU window as int16: what patches are cut from (DESIGN.md 3.1)."""
    iso = resample_isotropic(volume, spacing_mm, order=1, fill=HU_WINDOW[0])
    return Volume(np.clip(iso.array, *HU_WINDOW).astype(np.int16), iso.geometry)
