"""The HU window and the model-input intensity scaling (DESIGN.md §3.1): clipped HU -> [-1, 1].

The one definition of the window, :data:`HU_WINDOW` = (-1024, 240) HU: preprocessing clips to it
before storage (int16), the store records it, and the encoder's input scaling
:func:`hu_to_input` maps it linearly to [-1, 1] (``(HU + 1024) / 632 - 1``, so one input unit is
632 HU, :data:`HU_HALF_RANGE`); :func:`hu_to_input_scale` converts HU differences (e.g. a noise
sigma) to input units. Importing this module does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

HU_WINDOW: tuple[int, int] = (-1024, 240)
"""HU are clipped to this window before storage and before the encoder (DESIGN 3.1)."""

#: Lower and upper end of :data:`HU_WINDOW` as floats.
HU_MIN: float = float(HU_WINDOW[0])
HU_MAX: float = float(HU_WINDOW[1])


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
    import torch

    x = x.to(torch.float32).clamp(HU_MIN, HU_MAX)
    return (x - HU_MIN) / HU_HALF_RANGE - 1.0


def hu_to_input_scale(hu: float) -> float:
    """A HU difference (e.g. a noise sigma) in model-input units: ``hu / 632``."""
    return hu / HU_HALF_RANGE
