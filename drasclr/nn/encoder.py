"""The DrasCLR 3D CNN encoder ``e`` and projection head ``g`` (DESIGN.md §4.4).

Widths and strides follow the official implementation: 1->8 (s1), 8->8 (s2), three blocks
[c->2c s1, 2c->2c s1, 2c->2c s2] for 8->16, 16->32, 32->64, then 64->128 (s1), 128->128 (s2),
adaptive average pooling to 1x1x1 -> 128-d representation ``h``. Every convolution is 3x3x3 with
zero padding 1, followed by BatchNorm3d and ELU. The convolutions have no bias (BatchNorm follows;
the official layers carry a redundant one).

Conditioning variants (``conditioning``), all with ``encoder(x, loc) -> h (B, 128)``:

- ``"loccondconv"``: every convolution is a :class:`LocCondConv3d` (the paper).
- ``"none"``: static ``Conv3d``; the location is ignored (plain MoCo baseline).
- ``"concat"``: static CNN; the location is appended to ``h`` and an MLP fuses it back to 128
  (the Context-SSL style ablation).
- ``"hypernet"``: every convolution is a :class:`HyperConv3d` (an MLP from location to kernel).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from drasclr.imaging.intensity import INPUT_MAPS, map_input
from drasclr.nn.condconv import (
    ConvPath,
    HyperConv3d,
    LocationPlan,
    LocCondConv3d,
    StaticConv3d,
    plan_locations,
)

Conditioning = Literal["loccondconv", "none", "concat", "hypernet"]
CONDITIONINGS: tuple[str, ...] = ("loccondconv", "none", "concat", "hypernet")

#: (in, out, stride) of the 13 convolutions of the official encoder.
ENCODER_LAYERS: tuple[tuple[int, int, int], ...] = (
    (1, 8, 1),
    (8, 8, 2),
    *(
        spec
        for c in (8, 16, 32)
        for spec in ((c, 2 * c, 1), (2 * c, 2 * c, 1), (2 * c, 2 * c, 2))
    ),
    (64, 128, 1),
    (128, 128, 2),
)
REPRESENTATION_DIM: int = 128


def make_conv(
    conditioning: Conditioning,
    in_ch: int,
    out_ch: int,
    stride: int,
    experts: int = 8,
    hyper_hidden: int = 8,
) -> nn.Module:
    """One bias-free 3x3x3, padding-1 convolution of the given conditioning kind."""
    if conditioning == "loccondconv":
        return LocCondConv3d(in_ch, out_ch, 3, stride, 1, experts=experts)
    if conditioning == "hypernet":
        return HyperConv3d(in_ch, out_ch, 3, stride, 1, hidden=hyper_hidden)
    if conditioning in ("none", "concat"):
        return StaticConv3d(in_ch, out_ch, 3, stride, 1, bias=False)
    raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {conditioning!r}")


class ConvBNAct(nn.Module):
    """Convolution (location-conditioned or static) -> BatchNorm3d -> ELU."""

    def __init__(self, conv: nn.Module, out_ch: int) -> None:
        super().__init__()
        self.conv = conv
        self.bn = nn.BatchNorm3d(out_ch)
        self.act = nn.ELU(inplace=True)

    def forward(self, x: Tensor, loc: LocationPlan) -> Tensor:
        """Apply to (B, C, D, H, W) ``x`` with the batch's location plan."""
        return self.act(self.bn(self.conv(x, loc)))


class DrasEncoder(nn.Module):
    """Patch encoder ``e``: (B, 1, P, P, P) patches in [-1, 1] + locations -> (B, 128) ``h``.

    Args:
        conditioning: how the landmark location enters (module docstring).
        experts: experts per Loc-CondConv layer.
        hyper_hidden: hidden units of each hypernetwork layer (``"hypernet"`` only).
        loc_dim: location dimension (3).
        input_map: fixed map applied to the [-1, 1] input first (``linear`` = none;
            ``parenchyma``: :func:`drasclr.imaging.intensity.map_input`).
    """

    def __init__(
        self,
        conditioning: Conditioning = "loccondconv",
        experts: int = 8,
        hyper_hidden: int = 8,
        loc_dim: int = 3,
        input_map: str = "linear",
    ) -> None:
        super().__init__()
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {conditioning!r}")
        if input_map not in INPUT_MAPS:
            raise ValueError(f"input_map must be one of {INPUT_MAPS}, got {input_map!r}")
        self.conditioning = conditioning
        self.input_map = input_map
        self.layers = nn.ModuleList(
            ConvBNAct(make_conv(conditioning, i, o, s, experts, hyper_hidden), o)
            for i, o, s in ENCODER_LAYERS
        )
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fuse: nn.Module | None = None
        if conditioning == "concat":
            d = REPRESENTATION_DIM
            self.fuse = nn.Sequential(
                nn.Linear(d + loc_dim, d), nn.ReLU(inplace=True), nn.Linear(d, d)
            )
        self.out_dim = REPRESENTATION_DIM

    @property
    def location_conditioned_convs(self) -> bool:
        """True when the convolution kernels depend on the location."""
        return self.conditioning in ("loccondconv", "hypernet")

    def forward(self, x: Tensor, loc: Tensor, path: ConvPath = "auto") -> Tensor:
        """Encode patches.

        Args:
            x: (B, 1, P, P, P) patches scaled to [-1, 1] (see :func:`hu_to_input`).
            loc: (3,) one normalised landmark for the whole batch or (B, 3) one per sample,
                atlas space, each axis in [-1, 1].
            path: Loc-CondConv execution path; ``"auto"`` chooses (see :mod:`drasclr.nn.condconv`).

        Returns:
            (B, 128) representation ``h``.
        """
        b = x.shape[0]
        x = map_input(x, self.input_map)
        loc = loc.to(device=x.device, dtype=x.dtype)
        restore: Tensor | None = None
        if self.location_conditioned_convs:
            plan = plan_locations(loc, b, path)
            if plan.order is not None:
                # Sort the batch by location once; every layer then splits contiguous chunks.
                # BatchNorm statistics do not depend on the order of the batch.
                restore = plan.restore()
                x = x.index_select(0, plan.order)
                plan = plan.grouped_contiguously()
        else:
            plan = plan_locations(loc[0] if loc.dim() == 2 else loc, b, "shared")
        for layer in self.layers:
            x = layer(x, plan)
        h = self.pool(x).flatten(1)
        if restore is not None:
            h = h.index_select(0, restore)
        if self.fuse is not None:
            full = loc.unsqueeze(0).expand(b, -1) if loc.dim() == 1 else loc
            h = self.fuse(torch.cat([h, full], dim=1))
        return h


class ProjectionHead(nn.Module):
    """Projection head ``g``: Linear(128, 128) -> ReLU -> Linear(128, 128)."""

    def __init__(self, in_dim: int = 128, hidden_dim: int = 128, out_dim: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)
        )

    def forward(self, h: Tensor) -> Tensor:
        """Map (B, in_dim) representations to (B, out_dim) (unnormalised) embeddings."""
        return self.net(h)
