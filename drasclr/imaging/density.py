"""Lung density descriptors: LAA-950, the clinical emphysema measure the paper compares against.

LAA-950 (low-attenuation area) is the share of lung voxels strictly below -950 HU
(:data:`LAA_THRESHOLD_HU`), a fraction in [0, 1]. :func:`laa950` gives it for a whole scan
(image level, one number per subject, Table 2); :func:`patch_laa950` for patches (patch level,
one number per landmark patch or annotated box, Table 5), within per-patch lung masks when given
and NaN for patches with too little lung. Pure numpy on HU arrays of any shape, no geometry.

Preprocessing records the image-level value in the manifest from its own lung mask, the atlas
choice picks the scan with the lowest, and :mod:`drasclr.evaluate.baselines` turns both levels
into feature frames the readouts take like learned features.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

LAA_THRESHOLD_HU = -950.0


def laa950(
    ct_hu: NDArray[Any], lung_mask: NDArray[Any], threshold_hu: float = LAA_THRESHOLD_HU
) -> float:
    """Share of lung voxels with attenuation strictly below ``threshold_hu``.

    Args:
        ct_hu: CT in Hounsfield units, any shape.
        lung_mask: same shape; non-zero = lung.
        threshold_hu: LAA threshold (-950 HU).

    Raises:
        ValueError: shapes differ or the lung mask is empty.
    """
    ct = np.asarray(ct_hu)
    lung = np.asarray(lung_mask) != 0
    if ct.shape != lung.shape:
        raise ValueError(f"CT {ct.shape} and lung mask {lung.shape} differ in shape")
    n = int(lung.sum())
    if n == 0:
        raise ValueError("lung mask is empty; LAA-950 is undefined")
    return float(np.count_nonzero((ct < threshold_hu) & lung) / n)


def patch_laa950(
    patches_hu: NDArray[Any],
    lung_masks: NDArray[Any] | None = None,
    threshold_hu: float = LAA_THRESHOLD_HU,
    lung_fraction: NDArray[Any] | None = None,
    min_lung_fraction: float = 0.0,
) -> NDArray[np.float64]:
    """Patch-level LAA-950: share of (lung) voxels below ``threshold_hu`` in each patch.

    Args:
        patches_hu: (..., P, P, P) patches in HU (e.g. (S, L, P, P, P) for S subjects, L landmarks).
        lung_masks: optional (..., P, P, P) lung masks of the same patches. Without them every
            voxel of the patch counts, so air outside the lungs (trachea, outside the body) counts
            as low attenuation; landmark patches are mostly lung, so this is a fair
            approximation. Large inputs: pass a chunk of subjects at a time.
        threshold_hu: LAA threshold.
        lung_fraction: optional (...) lung fraction of each patch (the store's per-patch value);
            patches below ``min_lung_fraction`` get NaN.
        min_lung_fraction: see ``lung_fraction``.

    Returns:
        (...) float64 LAA fractions (NaN for patches without lung).
    """
    p = np.asarray(patches_hu)
    if p.ndim < 3:
        raise ValueError(f"patches must end in three spatial axes, got shape {p.shape}")
    low = (p < threshold_hu).reshape(*p.shape[:-3], -1)
    if lung_masks is None:
        out = low.mean(axis=-1, dtype=np.float64)
    else:
        m = np.asarray(lung_masks)
        if m.shape != p.shape:
            raise ValueError(f"lung masks {m.shape} and patches {p.shape} differ in shape")
        lung = (m != 0).reshape(low.shape)
        n = lung.sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(n > 0, (low & lung).sum(axis=-1) / np.maximum(n, 1), np.nan)
    if lung_fraction is not None:
        lf = np.asarray(lung_fraction, np.float64)
        if lf.shape != out.shape:
            raise ValueError(f"lung_fraction {lf.shape} does not match patches {out.shape}")
        out = np.where(lf >= min_lung_fraction, out, np.nan)
    return out
