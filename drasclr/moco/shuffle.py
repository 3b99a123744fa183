"""Shuffle-BN for the key encoder, with every collective behind one ``distributed`` switch.

With ``distributed=False`` (one process) the same code runs with world size 1: the "gather" is the
local batch and the permutation is local (a no-op for BatchNorm statistics, kept so that one CPU
process runs exactly the code 8 GPUs run). With ``distributed=True`` the key batch **and its
locations** are all-gathered, permuted with a permutation drawn on rank 0 and broadcast, and each
rank encodes one slice; :func:`batch_unshuffle` brings each rank its own samples back. Under
landmark sharding the ranks hold different landmarks, so a shuffled slice mixes locations and the
Loc-CondConv layers take their mixed-location path.

All ranks must pass the same batch size (use ``drop_last``).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def world(distributed: bool) -> tuple[int, int]:
    """(rank, world size); (0, 1) when ``distributed`` is off."""
    if not distributed:
        return 0, 1
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("distributed=True needs an initialised torch.distributed process group")
    return dist.get_rank(), dist.get_world_size()


@torch.no_grad()
def concat_all_gather(x: Tensor, distributed: bool) -> Tensor:
    """Concatenate ``x`` (B, ...) from all ranks in rank order (no gradient); ``x`` when off."""
    if not distributed:
        return x
    _, size = world(True)
    x = x.contiguous()
    parts = [torch.empty_like(x) for _ in range(size)]
    dist.all_gather(parts, x)
    return torch.cat(parts, dim=0)


@torch.no_grad()
def batch_shuffle(
    x: Tensor,
    loc: Tensor,
    distributed: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Shuffle a key batch (and its locations) across all ranks.

    Args:
        x: (B, ...) this rank's key patches.
        loc: (B, 3) their normalised locations.
        distributed: use torch.distributed collectives.
        generator: RNG for the permutation (on rank 0); the global RNG when None.

    Returns:
        (this rank's shuffled patches (B, ...), their locations (B, 3), the global unshuffle index
        (world*B,) to pass to :func:`batch_unshuffle`).
    """
    rank, size = world(distributed)
    b = x.shape[0]
    if loc.shape != (b, 3):
        raise ValueError(f"loc must be (B, 3) = ({b}, 3), got {tuple(loc.shape)}")
    x_all = concat_all_gather(x, distributed)
    loc_all = concat_all_gather(loc, distributed)
    if x_all.shape[0] != size * b:
        raise ValueError("all ranks must use the same key batch size for shuffle-BN")
    gen_device = generator.device if generator is not None else x.device
    perm = torch.randperm(size * b, generator=generator, device=gen_device).to(x.device)
    if distributed:
        dist.broadcast(perm, src=0)
    this = perm.view(size, b)[rank]
    return x_all.index_select(0, this), loc_all.index_select(0, this), torch.argsort(perm)


@torch.no_grad()
def batch_unshuffle(y: Tensor, unshuffle: Tensor, distributed: bool = False) -> Tensor:
    """Undo :func:`batch_shuffle` on the outputs ``y`` (B, ...) of the shuffled slice.

    Returns:
        (B, ...) outputs in this rank's original sample order.
    """
    rank, size = world(distributed)
    y_all = concat_all_gather(y, distributed)
    this = unshuffle.view(size, -1)[rank]
    return y_all.index_select(0, this)
