"""Momentum (key) encoder helpers: ``xi <- m xi + (1 - m) theta`` (DESIGN.md §4.5)."""

from __future__ import annotations

import torch
from torch import nn

#: MoCo / DrasCLR momentum coefficient.
MOMENTUM: float = 0.999


def deactivate_requires_grad(module: nn.Module) -> None:
    """Freeze all parameters of ``module`` (the key encoder is updated by momentum only)."""
    for p in module.parameters():
        p.requires_grad_(False)


@torch.no_grad()
def update_momentum(model: nn.Module, model_ema: nn.Module, m: float = MOMENTUM) -> None:
    """In place ``xi <- m xi + (1 - m) theta`` over matching parameters (buffers untouched).

    Args:
        model: query network (parameters ``theta``).
        model_ema: key network (parameters ``xi``), same architecture.
        m: momentum in [0, 1].
    """
    ema = list(model_ema.parameters())
    src = list(model.parameters())
    if len(ema) != len(src):
        raise ValueError("query and key networks have different parameter lists")
    if not ema:
        return
    torch._foreach_mul_(ema, m)
    torch._foreach_add_(ema, [p.detach() for p in src], alpha=1.0 - m)
