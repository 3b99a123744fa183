"""Model-input intensity scaling (DESIGN.md §3.1): clipped HU -> [-1, 1]."""

from __future__ import annotations

import torch
from torch import Tensor

#: HU window kept by the store and seen by the model.
HU_MIN: float = -1024.0
HU_MAX: float = 240.0
#: Half the window width: 1 unit of model input = 632 HU.
HU_HALF_RANGE: float = (HU_MAX - HU_MIN) / 2.0


def hu_to_input(x: Tensor) -> Tensor:
    """Scale HU patches to the encoder's input range.

    Args:
        x: patches in Hounsfield units, any shape, any dtype (int16 from the store).

    Returns:
        float32 tensor of the same shape: HU clipped to [-1024, 240], then ``(x + 1024) / 632 - 1``
        so -1024 HU -> -1 and 240 HU -> 1.
    """
    x = x.to(torch.float32).clamp(HU_MIN, HU_MAX)
    return (x - HU_MIN) / HU_HALF_RANGE - 1.0


def hu_to_input_scale(hu: float) -> float:
    """A HU difference (e.g. a noise sigma) in model-input units: ``hu / 632``."""
    return hu / HU_HALF_RANGE
