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


#: Input maps of the encoder (:func:`map_input`): ``linear`` keeps the window's linear scaling;
#: ``parenchyma`` gives the lung-parenchyma HU range most of the input range.
INPUT_MAPS: tuple[str, ...] = ("linear", "parenchyma")

#: The ``parenchyma`` map's knee: HU below it (air, emphysema, healthy and dense lung up to
#: ground glass; the LAA thresholds -950 / -910 / -856 all lie there) get
#: :data:`PARENCHYMA_SHARE` of the input range, HU above it (vessels, airway walls, soft tissue)
#: the rest. Fixed by that argument, not fitted to any result.
PARENCHYMA_KNEE_HU: float = -600.0
PARENCHYMA_SHARE: float = 0.8


def map_input(x: Tensor, kind: str = "linear") -> Tensor:
    """Apply the encoder's input map to inputs already scaled by :func:`hu_to_input`.

    ``parenchyma`` is monotonic and piecewise linear: [-1, knee] -> [-1, -1 + 2 s] and
    [knee, 1] -> [-1 + 2 s, 1] (knee = :data:`PARENCHYMA_KNEE_HU` in input units,
    s = :data:`PARENCHYMA_SHARE`), so a 100 HU change in the parenchyma moves the input about
    2.4x as far as under ``linear`` and a vessel edge about 2.7x less, and nothing is clipped.

    Args:
        x: inputs in [-1, 1] (after augmentation, so noise added in HU is mapped alike).
        kind: one of :data:`INPUT_MAPS`.

    Returns:
        Tensor of the same shape and dtype.
    """
    if kind == "linear":
        return x
    if kind != "parenchyma":
        raise ValueError(f"input map must be one of {INPUT_MAPS}, got {kind!r}")
    import torch

    knee = (PARENCHYMA_KNEE_HU - HU_MIN) / HU_HALF_RANGE - 1.0
    mid = -1.0 + 2.0 * PARENCHYMA_SHARE
    low = -1.0 + (x + 1.0) * ((mid + 1.0) / (knee + 1.0))
    high = mid + (x - knee) * ((1.0 - mid) / (1.0 - knee))
    return torch.where(x <= knee, low, high)


def hu_to_input_scale(hu: float) -> float:
    """A HU difference (e.g. a noise sigma) in model-input units: ``hu / 632``."""
    return hu / HU_HALF_RANGE
