"""Mixed precision for the training step (``PretrainConfig.amp``).

The encoders' forward passes and the losses run under ``torch.autocast``: float16 on CUDA, with a
gradient scaler so that small gradients survive the half-precision backward, and bfloat16 on
CPU, whose exponent range needs no scaler. Weights, optimizer state and the memory bank stay in
float32 (keys are cast on enqueue). With ``enabled=False`` every helper is a no-op, so one loop
serves both precisions.

On CPU, bfloat16 is for running the same code path, not for speed on CPUs without bfloat16
instructions. One kernel limit measured with torch 2.13.0: the CPU bfloat16 ``conv3d`` gives a
wrong weight gradient (inf, different run to run) when its input is 1 x 1 x 1 at stride 2, which
is the encoder's last layer on 16^3 patches; 32^3 patches (the method's size) are unaffected.
A run that meets it stops with the loop's non-finite-loss diagnostic.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import Tensor


def autocast_dtype(device: torch.device) -> torch.dtype:
    """Half-precision type of ``device``: float16 on CUDA, bfloat16 elsewhere."""
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    """Context of the mixed-precision forward pass (a null context when not ``enabled``)."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=autocast_dtype(device))


class StepScaler:
    """Backward and optimizer step, with loss scaling where the precision needs it.

    A thin wrapper of ``torch.amp.GradScaler`` that is active only for float16 (CUDA) autocast.
    ``unscale`` may be called before reading gradients (e.g. their norm) and at most once a step.
    """

    def __init__(self, device: torch.device, amp: bool) -> None:
        """Args: device: the training device; amp: mixed precision on."""
        self.active = amp and autocast_dtype(device) == torch.float16
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.active)

    def backward(self, loss: Tensor) -> None:
        """Backward of the (scaled) loss."""
        self.scaler.scale(loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Divide this step's gradients by the scale, so they read as true gradients."""
        if self.active:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Optimizer step (skipped by the scaler when a gradient is not finite), scale update."""
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        """The scaler's state for a checkpoint (empty when inactive)."""
        return self.scaler.state_dict() if self.active else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (ignored when empty or inactive)."""
        if self.active and state:
            self.scaler.load_state_dict(state)
