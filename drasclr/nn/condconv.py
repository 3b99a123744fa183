"""Location-conditioned 3D convolutions: Loc-CondConv (DESIGN.md §4.3-4.4) and a hypernetwork.

A location-conditioned convolution computes, for each sample ``b`` with normalised landmark
``l_b`` (atlas space, each axis in [-1, 1]), a kernel ``W(l_b)`` and convolves that sample with it.
Four numerically equivalent ways of running a batch are implemented (``path`` argument):

- ``"shared"``: every sample has the same location (a training batch is many subjects at one
  landmark): mix the kernel once and call one ``conv3d``.
- ``"grouped"``: mixed locations: one kernel per sample, the batch folded into channels and run as
  one grouped ``conv3d`` (``groups = B``).
- ``"split"``: mixed locations: ``torch.unique`` over the location rows, one ``conv3d`` per unique
  location on the samples that share it (the cheap form when few locations are mixed, e.g.
  shuffle-BN across workers or a batch of neighbour patches).
- ``"experts"``: mixed locations: the kernel is linear in a small basis (the experts), so
  ``conv(x, sum_e a_e W_e) = sum_e a_e conv(x, W_e)``: one dense ``conv3d`` against all basis
  kernels, then a per-sample weighted sum. E times the arithmetic of a static convolution but no
  per-sample kernels; the fast form for the deep layers, whose outputs have few voxels.
- ``"batched"``: per layer, ``experts`` when the layer's output has at most
  ``EXPERTS_MAX_OUT_VOXELS`` voxels per sample, else ``grouped``.
- ``"loop"``: the reference per-sample loop of the published code; for tests and benchmarks only.

``"auto"`` picks ``shared`` when all rows are equal, otherwise ``split`` when the number of
unique locations is at most ``SPLIT_MAX_UNIQUE_FRACTION`` of the batch, else ``batched``
(the thresholds come from the measurements in :mod:`drasclr.nn.speed`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ConvPath = Literal["auto", "shared", "grouped", "experts", "batched", "split", "loop"]
PATHS: tuple[str, ...] = ("auto", "shared", "grouped", "experts", "batched", "split", "loop")

#: ``auto`` uses the per-unique-location split while ``U <= fraction * B`` (U unique locations in
#: a batch of B) and ``batched`` above it. Measured on 2 CPU cores (torch 2.13, encoder forward,
#: B=64, samples/s split vs batched): U=2 409 vs 341, U=16 503 vs 343, U=32 409 vs 319,
#: U=48 206 vs 314, U=64 158 vs 322. See ``drasclr.nn.speed.mixed_path_sweep``.
SPLIT_MAX_UNIQUE_FRACTION: float = 0.5
#: ``batched`` uses the ``experts`` form in layers whose output has at most this many voxels per
#: sample (for 32^3 patches the last three layers: 2^3, 2^3 and 1^3 outputs, which hold 70 % of
#: the weights), grouped convolution elsewhere. Measured (B=64, ms per layer, grouped vs
#: experts): 4^3 outputs 3.0-9.5 vs 4.3-9.7 (grouped wins or ties), 2^3 outputs 17-42 vs 2.9-3.2,
#: 1^3 output 81 vs 2.5; see ``drasclr.nn.speed.layer_path_speed``.
EXPERTS_MAX_OUT_VOXELS: int = 8


@dataclass(frozen=True)
class LocationPlan:
    """How the samples of one batch group by location; computed once, reused by every layer.

    Attributes:
        locations: (B, 3) normalised landmark of each sample, in batch order.
        unique: (U, 3) distinct rows of ``locations``.
        inverse: (B,) int64, row of ``unique`` for each sample.
        counts: samples per unique row (length U, sums to B).
        order: (B,) int64 stable permutation that sorts the batch by ``inverse``, or None when the
            batch is already grouped contiguously in ``unique`` order.
        path: the resolved path (any of :data:`PATHS` except ``auto``).
    """

    locations: Tensor
    unique: Tensor
    inverse: Tensor
    counts: tuple[int, ...]
    order: Tensor | None
    path: str

    @property
    def batch_size(self) -> int:
        """Number of samples B."""
        return int(self.locations.shape[0])

    def restore(self) -> Tensor:
        """(B,) permutation undoing :attr:`order` (``sorted[restore] == original``)."""
        if self.order is None:
            return torch.arange(self.batch_size, device=self.locations.device)
        return torch.argsort(self.order)

    def grouped_contiguously(self) -> LocationPlan:
        """The plan of the same batch after it was permuted by :attr:`order` (order None)."""
        if self.order is None:
            return self
        return LocationPlan(
            locations=self.locations.index_select(0, self.order),
            unique=self.unique,
            inverse=self.inverse.index_select(0, self.order),
            counts=self.counts,
            order=None,
            path=self.path,
        )


def plan_locations(loc: Tensor, batch_size: int, path: ConvPath = "auto") -> LocationPlan:
    """Group a batch by location and resolve the execution path.

    Args:
        loc: (3,) one location for the whole batch, or (B, 3) one per sample; normalised [-1, 1].
        batch_size: B, the number of samples the plan is for.
        path: requested path; ``"auto"`` chooses from the grouping (see module docstring).

    Returns:
        The :class:`LocationPlan`.

    Raises:
        ValueError: on a bad shape, an unknown path, or ``"shared"`` with mixed locations.
    """
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")
    if loc.dim() == 1:
        if loc.shape[0] != 3:
            raise ValueError(f"a single location must have 3 values, got shape {tuple(loc.shape)}")
        loc = loc.unsqueeze(0).expand(batch_size, 3)
        all_equal = True
    else:
        if loc.dim() != 2 or loc.shape != (batch_size, 3):
            raise ValueError(
                f"locations must be (3,) or (B, 3) with B={batch_size}, got {tuple(loc.shape)}"
            )
        all_equal = bool((loc == loc[:1]).all()) if batch_size > 0 else True
    device = loc.device
    if all_equal:
        if path not in ("auto", "shared"):
            # Forced mixed paths still run (tests use them on shared locations).
            unique, inverse, counts = _unique_rows(loc)
            return LocationPlan(loc, unique, inverse, counts, None, path)
        return LocationPlan(
            locations=loc,
            unique=loc[:1],
            inverse=torch.zeros(batch_size, dtype=torch.long, device=device),
            counts=(batch_size,),
            order=None,
            path="shared",
        )
    if path == "shared":
        raise ValueError("path='shared' needs one location for the whole batch")
    unique, inverse, counts = _unique_rows(loc)
    if path == "auto":
        path = "split" if len(counts) <= SPLIT_MAX_UNIQUE_FRACTION * batch_size else "batched"
    order: Tensor | None = None
    if path == "split":
        order = torch.argsort(inverse, stable=True)
        if bool((order == torch.arange(batch_size, device=device)).all()):
            order = None
    return LocationPlan(loc, unique, inverse, counts, order, path)


def _unique_rows(loc: Tensor) -> tuple[Tensor, Tensor, tuple[int, ...]]:
    """Distinct rows of ``loc`` (sorted), the row index of each sample, and the counts."""
    unique, inverse, counts = torch.unique(loc, dim=0, return_inverse=True, return_counts=True)
    return unique, inverse, tuple(int(c) for c in counts.tolist())


class LocationConv3d(nn.Module):
    """Base of convolutions whose kernel is a function of the sample's location.

    Subclasses implement :meth:`kernels`. The execution paths live here, so every conditioning
    scheme gets the same shared / grouped / split / loop forms.

    Args:
        in_ch: input channels.
        out_ch: output channels.
        kernel_size: cubic kernel edge (voxels).
        stride: convolution stride (voxels).
        padding: zero padding on each side (voxels).
        bias: add a learnable, location-independent bias per output channel. The encoder turns it
            off because every convolution is followed by BatchNorm, which cancels a bias.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.in_ch = in_ch
        self.out_ch = out_ch
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None

    @property
    def kernel_shape(self) -> tuple[int, int, int, int, int]:
        """Shape of one kernel: (out_ch, in_ch, k, k, k)."""
        k = self.kernel_size
        return (self.out_ch, self.in_ch, k, k, k)

    def basis(self) -> Tensor:
        """(N, out_ch, in_ch, k, k, k) kernels whose location-weighted sum is the kernel."""
        raise NotImplementedError

    def coefficients(self, loc: Tensor) -> Tensor:
        """(M, N) weights of the :meth:`basis` kernels for (M, 3) normalised locations."""
        raise NotImplementedError

    def kernels(self, loc: Tensor) -> Tensor:
        """Kernels for a set of locations.

        Args:
            loc: (M, 3) normalised locations.

        Returns:
            (M, out_ch, in_ch, k, k, k) kernels ``sum_n c_n(l) B_n``.
        """
        basis = self.basis()
        mixed = self.coefficients(loc) @ basis.reshape(basis.shape[0], -1)
        return mixed.view(loc.shape[0], *self.kernel_shape)

    def output_voxels(self, x: Tensor) -> int:
        """Voxels per sample and channel of this layer's output for input ``x``."""
        k, s, p = self.kernel_size, self.stride, self.padding
        return math.prod((n + 2 * p - k) // s + 1 for n in x.shape[2:])

    def _conv(self, x: Tensor, weight: Tensor, groups: int = 1) -> Tensor:
        return F.conv3d(x, weight, None, self.stride, self.padding, 1, groups)

    def forward(self, x: Tensor, loc: Tensor | LocationPlan, path: ConvPath = "auto") -> Tensor:
        """Convolve each sample with the kernel of its location.

        Args:
            x: (B, in_ch, D, H, W) input.
            loc: (3,) one normalised location for the batch, (B, 3) one per sample, or a
                :class:`LocationPlan` made by :func:`plan_locations` (then ``path`` is ignored).
            path: execution path (see module docstring).

        Returns:
            (B, out_ch, D', H', W') output.
        """
        plan = loc if isinstance(loc, LocationPlan) else plan_locations(loc, x.shape[0], path)
        if plan.batch_size != x.shape[0]:
            raise ValueError(f"plan is for {plan.batch_size} samples, input has {x.shape[0]}")
        if plan.path == "shared":
            out = self._conv(x, self.kernels(plan.unique[:1])[0])
        elif plan.path == "grouped":
            out = self._forward_grouped(x, plan.locations)
        elif plan.path == "experts":
            out = self._forward_experts(x, plan.locations)
        elif plan.path == "batched":
            if self.output_voxels(x) <= EXPERTS_MAX_OUT_VOXELS:
                out = self._forward_experts(x, plan.locations)
            else:
                out = self._forward_grouped(x, plan.locations)
        elif plan.path == "split":
            out = self._forward_split(x, plan)
        elif plan.path == "loop":
            out = torch.cat(
                [self._conv(x[i : i + 1], self.kernels(plan.locations[i : i + 1])[0])
                 for i in range(x.shape[0])],
                dim=0,
            )
        else:  # pragma: no cover - plan_locations validates
            raise ValueError(f"unknown path {plan.path!r}")
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1, 1)
        return out

    def _forward_grouped(self, x: Tensor, loc: Tensor) -> Tensor:
        b, c, d, h, w = x.shape
        weight = self.kernels(loc)  # (B, O, I, k, k, k)
        weight = weight.reshape(b * self.out_ch, self.in_ch, *weight.shape[3:])
        out = self._conv(x.reshape(1, b * c, d, h, w), weight, groups=b)
        return out.view(b, self.out_ch, *out.shape[2:])

    def _forward_experts(self, x: Tensor, loc: Tensor) -> Tensor:
        basis = self.basis()  # (N, O, I, k, k, k)
        n = basis.shape[0]
        y = self._conv(x, basis.reshape(n * self.out_ch, *basis.shape[2:]))  # (B, N*O, ...)
        b, spatial = y.shape[0], y.shape[2:]
        coef = self.coefficients(loc).unsqueeze(1)  # (B, 1, N)
        out = torch.bmm(coef, y.reshape(b, n, -1))  # (B, 1, O*S)
        return out.view(b, self.out_ch, *spatial)

    def _forward_split(self, x: Tensor, plan: LocationPlan) -> Tensor:
        if len(plan.counts) <= 16:
            # One (1, N) x (N, O*I*k^3) product per location: BLAS runs these ~10x faster
            # than a single (U, N) product with 2 <= U << O*I*k^3 (measured, MKL on CPU).
            weight = [self.kernels(plan.unique[u : u + 1])[0] for u in range(len(plan.counts))]
        else:
            weight = list(self.kernels(plan.unique))  # U x (O, I, k, k, k)
        xs = x if plan.order is None else x.index_select(0, plan.order)
        chunks = torch.split(xs, list(plan.counts), dim=0)
        out = torch.cat([self._conv(chunk, weight[u]) for u, chunk in enumerate(chunks)], dim=0)
        if plan.order is not None:
            out = out.index_select(0, plan.restore())
        return out

    def extra_repr(self) -> str:
        return (
            f"{self.in_ch}, {self.out_ch}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, bias={self.bias is not None}"
        )


class LocCondConv3d(LocationConv3d):
    """Loc-CondConv: ``W(l) = sum_e alpha_e(l) W_e`` with ``alpha(l) = sigmoid(R l)``.

    Args:
        in_ch: input channels.
        out_ch: output channels.
        kernel_size: cubic kernel edge (voxels).
        stride: convolution stride (voxels).
        padding: zero padding on each side (voxels).
        experts: number of expert kernels E (paper: 8).
        loc_dim: dimension of the location (3: normalised atlas x, y, z).
        bias: location-independent output bias (off by default; BatchNorm follows).

    Attributes:
        experts_weight: (E, out_ch, in_ch, k, k, k) expert kernels ``W_e``.
        routing: bias-free ``Linear(loc_dim, E)``, the matrix ``R``.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        experts: int = 8,
        loc_dim: int = 3,
        bias: bool = False,
    ) -> None:
        super().__init__(in_ch, out_ch, kernel_size, stride, padding, bias)
        self.experts = experts
        self.experts_weight = nn.Parameter(torch.empty(experts, *self.kernel_shape))
        self.routing = nn.Linear(loc_dim, experts, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Each expert initialised like an ordinary ``nn.Conv3d`` kernel (fan-in in*k^3)."""
        for e in range(self.experts):
            nn.init.kaiming_uniform_(self.experts_weight.data[e], a=math.sqrt(5))
        self.routing.reset_parameters()

    def routing_weights(self, loc: Tensor) -> Tensor:
        """(M, E) routing weights ``sigmoid(R l)`` for (M, 3) normalised locations."""
        return torch.sigmoid(self.routing(loc))

    def basis(self) -> Tensor:
        return self.experts_weight

    def coefficients(self, loc: Tensor) -> Tensor:
        return self.routing_weights(loc)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", experts={self.experts}"


class HyperConv3d(LocationConv3d):
    """Hypernetwork convolution: an MLP maps the location to the layer's kernel.

    ``W(l) = W_0 + sum_h tanh(A l + a)_h W_h``: a hidden layer of ``hidden`` tanh units and a
    linear output layer whose bias is the static kernel ``W_0`` and whose weight columns are the
    kernels ``W_h``. With ``hidden = E`` it has as many kernel-sized parameter blocks as
    Loc-CondConv (an ablation of the routing form: unbounded, with a static part).

    Args:
        in_ch: input channels.
        out_ch: output channels.
        kernel_size: cubic kernel edge (voxels).
        stride: convolution stride (voxels).
        padding: zero padding on each side (voxels).
        hidden: hidden units of the hypernetwork.
        loc_dim: dimension of the location.
        bias: location-independent output bias (off by default; BatchNorm follows).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        hidden: int = 8,
        loc_dim: int = 3,
        bias: bool = False,
    ) -> None:
        super().__init__(in_ch, out_ch, kernel_size, stride, padding, bias)
        self.hidden = hidden
        self.embed = nn.Linear(loc_dim, hidden)
        self.static_weight = nn.Parameter(torch.empty(self.kernel_shape))
        self.hyper_weight = nn.Parameter(torch.empty(hidden, *self.kernel_shape))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Static part like an ``nn.Conv3d`` kernel; the location part of comparable size."""
        self.embed.reset_parameters()
        nn.init.kaiming_uniform_(self.static_weight, a=math.sqrt(5))
        bound = 1.0 / math.sqrt(self.in_ch * self.kernel_size**3 * self.hidden)
        nn.init.uniform_(self.hyper_weight, -bound, bound)

    def basis(self) -> Tensor:
        return torch.cat([self.static_weight.unsqueeze(0), self.hyper_weight], dim=0)

    def coefficients(self, loc: Tensor) -> Tensor:
        hidden = torch.tanh(self.embed(loc))
        return torch.cat([torch.ones_like(hidden[:, :1]), hidden], dim=1)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", hidden={self.hidden}"


class StaticConv3d(nn.Conv3d):
    """An ordinary ``nn.Conv3d`` with the location-conditioned interface (location ignored)."""

    def forward(  # type: ignore[override]
        self, x: Tensor, loc: Tensor | LocationPlan | None = None, path: ConvPath = "auto"
    ) -> Tensor:
        """Convolve ``x`` (B, C, D, H, W); ``loc`` and ``path`` are accepted and ignored."""
        return super().forward(x)
