"""Overlap of binary masks: the one Dice of the project, computed by MONAI.

:func:`dice` is used for registration QC (:func:`drasclr.imaging.register.registration_qc`, the
preprocessing benchmarks) and for dense detection maps against voxel truth
(:mod:`drasclr.evaluate.detection`, ``bench.science``).

Empty-mask rule (explicit, the ``empty`` argument): Dice ``2|A n B| / (|A| + |B|)`` is 0/0 only
when *both* masks are empty; :func:`dice` then returns ``empty`` (default NaN: undefined, e.g. a
lesion subtype absent from both the prediction and the truth, which NaN-aware means skip).
Registration QC uses ``empty=1.0`` (two empty masks agree): ``drasclr.imaging.register.dice``
is this function with that rule bound. When exactly one mask is empty the formula applies and
gives 0. MONAI's
``ignore_empty=True`` default differs (NaN whenever the ground truth is empty, even against a
non-empty prediction), so it is called with ``ignore_empty=False`` and the both-empty case is
decided here.

Importing this module imports neither torch nor MONAI (they are imported on the first call).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike


def dice(a: ArrayLike, b: ArrayLike, *, empty: float = float("nan")) -> float:
    """Dice overlap ``2|A n B| / (|A| + |B|)`` of the non-zero voxels of two same-shape masks.

    Computed by :func:`monai.metrics.compute_dice`. Voxels outside both masks add nothing to any
    term, so only the voxels of ``A u B`` are handed to MONAI (a 300^3 volume costs a numpy pass,
    not a 27 M-voxel MONAI call). They go in MONAI's one-hot layout ``(1, 2, N)`` (background,
    foreground) with the background channel excluded, and the truth as float64 so MONAI counts
    and divides in float64: the value is bit-identical to the numpy formula (bool inputs would
    make MONAI return float32).

    Args:
        a: mask (any dtype; non-zero = inside), e.g. a prediction or a warped mask.
        b: mask of the same shape, e.g. the truth or the atlas mask.
        empty: value returned when both masks are empty (0/0). Default NaN; registration QC
            uses 1.0.

    Returns:
        Dice in [0, 1] as a Python float; 0.0 when exactly one mask is empty; ``empty`` when both
        are.

    Raises:
        ValueError: if the shapes differ.
    """
    a_ = np.asarray(a) != 0
    b_ = np.asarray(b) != 0
    if a_.shape != b_.shape:
        raise ValueError(f"masks differ in shape: {a_.shape} vs {b_.shape}")
    union = a_ | b_
    if not union.any():
        return float(empty)
    return _monai_dice(a_[union], b_[union])


def _monai_dice(pred: np.ndarray[Any, np.dtype[np.bool_]],
                truth: np.ndarray[Any, np.dtype[np.bool_]]) -> float:
    """MONAI's Dice of two 1-D boolean voxel lists (not both empty), float64."""
    import torch
    from monai.metrics import compute_dice

    p = torch.from_numpy(pred)
    t = torch.from_numpy(truth).to(torch.float64)
    y_pred = torch.stack([~p, p]).unsqueeze(0)  # (1, 2, N) one-hot
    y = torch.stack([1.0 - t, t]).unsqueeze(0)
    score = compute_dice(y_pred, y, include_background=False, ignore_empty=False)
    return float(score[0, 0])
