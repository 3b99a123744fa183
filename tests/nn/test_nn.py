"""Loc-CondConv paths against the per-sample definition; encoder variants; input scaling."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from drasclr.nn import (
    CONDITIONINGS,
    DrasEncoder,
    HyperConv3d,
    LocCondConv3d,
    ProjectionHead,
    condconv,
    plan_locations,
)

MIXED_PATHS = ("grouped", "experts", "batched", "split", "loop", "auto")


def reference_loccondconv(
    x: torch.Tensor, loc: torch.Tensor, experts: torch.Tensor, routing: torch.Tensor,
    stride: int, padding: int = 1,
) -> torch.Tensor:
    """The definition, per sample: alpha_e = sigmoid(sum_d R_ed l_d), W = sum_e alpha_e W_e."""
    outs = []
    for b in range(x.shape[0]):
        kernel = torch.zeros_like(experts[0])
        for e in range(experts.shape[0]):
            logit = sum(routing[e, d] * loc[b, d] for d in range(loc.shape[1]))
            alpha = 1.0 / (1.0 + torch.exp(-logit))
            kernel = kernel + alpha * experts[e]
        outs.append(F.conv3d(x[b : b + 1], kernel, None, stride, padding))
    return torch.cat(outs, dim=0)


def reference_hyperconv(x: torch.Tensor, loc: torch.Tensor, conv: HyperConv3d) -> torch.Tensor:
    """W(l) = W_0 + sum_h tanh(A l + a)_h W_h, sample by sample."""
    outs = []
    for b in range(x.shape[0]):
        hidden = torch.tanh(conv.embed.weight @ loc[b] + conv.embed.bias)
        kernel = conv.static_weight + sum(
            hidden[h] * conv.hyper_weight[h] for h in range(conv.hidden)
        )
        outs.append(F.conv3d(x[b : b + 1], kernel, None, conv.stride, conv.padding))
    return torch.cat(outs, dim=0)


def _locations(kind: str, b: int, dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    table = torch.rand(3, 3, generator=g, dtype=dtype) * 2 - 1
    if kind == "shared":
        return table[0].expand(b, 3).clone()
    if kind == "grouped_rows":  # repeated, non-contiguous rows: exercises sort / unsort
        return table[torch.tensor([2, 0, 2, 1, 0])[:b]]
    return torch.rand(b, 3, generator=g, dtype=dtype) * 2 - 1  # all distinct


def _grads(out: torch.Tensor, tensors: list[torch.Tensor], seed: int = 3) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out.shape, generator=g, dtype=out.dtype)
    return list(torch.autograd.grad((out * w).sum(), tensors))


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("loc_kind", ["shared", "grouped_rows", "distinct"])
def test_loccondconv_paths_match_definition_float64(stride: int, loc_kind: str) -> None:
    torch.manual_seed(0)
    conv = LocCondConv3d(3, 4, stride=stride, experts=4).double()
    x = torch.randn(5, 3, 7, 6, 5, dtype=torch.float64, requires_grad=True)
    loc = _locations(loc_kind, 5, torch.float64)
    params = [x, conv.experts_weight, conv.routing.weight]
    ref = reference_loccondconv(x, loc, conv.experts_weight, conv.routing.weight, stride)
    ref_grads = _grads(ref, params)
    paths = MIXED_PATHS + (("shared",) if loc_kind == "shared" else ())
    for path in paths:
        arg = loc[0] if path == "shared" else loc
        out = conv(x, arg, path)
        assert out.shape == ref.shape
        torch.testing.assert_close(out, ref, atol=1e-9, rtol=1e-9, msg=f"output, path={path}")
        for name, got, want in zip(("input", "experts", "routing"), _grads(out, params), ref_grads):
            torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-9, msg=f"d{name}, path={path}")
    if loc_kind == "shared":  # one location given as (3,) is the shared path too
        torch.testing.assert_close(conv(x, loc[0]), ref, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("path", ["shared", "grouped", "experts", "split", "auto"])
def test_loccondconv_float32_close_to_float64(path: str) -> None:
    torch.manual_seed(0)
    conv = LocCondConv3d(4, 8, stride=2)
    x = torch.randn(6, 4, 8, 8, 8)
    loc = _locations("shared" if path == "shared" else "distinct", 6, torch.float32)
    arg = loc[0] if path == "shared" else loc
    ref = reference_loccondconv(
        x.double(), loc.double(), conv.experts_weight.double(), conv.routing.weight.double(), 2
    )
    torch.testing.assert_close(conv(x, arg, path).double(), ref, atol=1e-5, rtol=1e-5)


def test_hyperconv_paths_match_definition() -> None:
    torch.manual_seed(0)
    conv = HyperConv3d(2, 3, stride=2, hidden=4).double()
    x = torch.randn(5, 2, 6, 6, 6, dtype=torch.float64, requires_grad=True)
    loc = _locations("grouped_rows", 5, torch.float64)
    params = [x, conv.static_weight, conv.hyper_weight, conv.embed.weight]
    ref = reference_hyperconv(x, loc, conv)
    ref_grads = _grads(ref, params)
    for path in MIXED_PATHS:
        out = conv(x, loc, path)
        torch.testing.assert_close(out, ref, atol=1e-9, rtol=1e-9)
        for got, want in zip(_grads(out, params), ref_grads):
            torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-9)


def test_plan_locations_resolution() -> None:
    loc = _locations("grouped_rows", 5, torch.float32)
    plan = plan_locations(loc, 5)
    assert plan.path == "batched"  # 3 unique of 5 > SPLIT_MAX_UNIQUE_FRACTION
    assert sorted(plan.counts) == [1, 2, 2]
    assert torch.equal(plan.unique[plan.inverse], loc)
    many = loc[torch.tensor([0, 1] * 3 + [0] * 14)]  # 2 unique of 20, interleaved
    split = plan_locations(many, 20)
    assert split.path == "split" and split.order is not None
    sorted_plan = split.grouped_contiguously()
    assert torch.equal(sorted_plan.locations, many[split.order])
    assert torch.equal(sorted_plan.locations[split.restore()], many)
    assert plan_locations(loc[0], 5).path == "shared"
    assert plan_locations(loc[:1].expand(5, 3), 5).path == "shared"
    with pytest.raises(ValueError):
        plan_locations(loc, 5, "shared")
    with pytest.raises(ValueError):
        plan_locations(loc, 4)
    with pytest.raises(ValueError):
        plan_locations(loc, 5, "nope")  # type: ignore[arg-type]


def test_loccondconv_routing_and_shapes() -> None:
    conv = LocCondConv3d(3, 5, experts=8)
    assert conv.experts_weight.shape == (8, 5, 3, 3, 3, 3)
    assert conv.routing.weight.shape == (8, 3) and conv.routing.bias is None
    assert conv.bias is None
    loc = torch.tensor([[0.1, -0.5, 0.9]])
    alpha = conv.routing_weights(loc)
    expected = torch.sigmoid(loc @ conv.routing.weight.t())
    torch.testing.assert_close(alpha, expected)
    # Experts are initialised like ordinary conv kernels (bound 1/sqrt(fan_in), fan_in = 3*27).
    assert conv.experts_weight.abs().max() <= 1 / math.sqrt(3 * 27) + 1e-6


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_encoder_shapes(conditioning: str) -> None:
    torch.manual_seed(0)
    enc = DrasEncoder(conditioning)  # type: ignore[arg-type]
    head = ProjectionHead()
    x = torch.randn(3, 1, 32, 32, 32)
    loc = torch.rand(3, 3) * 2 - 1
    h = enc(x, loc)
    assert h.shape == (3, 128) and torch.isfinite(h).all()
    assert enc(x, loc[0]).shape == (3, 128)
    assert head(h).shape == (3, 128)
    n_convs = sum(1 for m in enc.modules() if isinstance(m, torch.nn.BatchNorm3d))
    assert n_convs == 13


def test_encoder_location_dependence() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 1, 8, 8, 8)
    a, b = torch.tensor([0.5, -0.5, 0.0]), torch.tensor([-0.9, 0.2, 0.7])
    for cond in ("loccondconv", "concat", "hypernet"):
        enc = DrasEncoder(cond).eval()  # type: ignore[arg-type]
        assert not torch.allclose(enc(x, a), enc(x, b)), cond
    static = DrasEncoder("none").eval()
    assert torch.equal(static(x, a), static(x, b))


@pytest.mark.parametrize("conditioning", ["loccondconv", "hypernet"])
def test_encoder_mixed_paths_agree_float64(
    conditioning: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Encoder-level sort/unsort: auto and forced paths equal the per-sample loop (train mode)."""
    monkeypatch.setattr(condconv, "SPLIT_MAX_UNIQUE_FRACTION", 0.5)
    torch.manual_seed(0)
    enc = DrasEncoder(conditioning).double()  # type: ignore[arg-type]
    x = torch.randn(6, 1, 8, 8, 8, dtype=torch.float64)
    table = torch.rand(2, 3, dtype=torch.float64) * 2 - 1
    loc = table[torch.tensor([1, 0, 1, 0, 0, 1])]  # 2 unique of 6 -> auto = split, unsorted
    assert plan_locations(loc, 6).path == "split"
    ref = enc(x, loc, "loop")
    for path in ("auto", "grouped", "batched", "split"):
        torch.testing.assert_close(enc(x, loc, path), ref, atol=1e-9, rtol=1e-9)


# ----------------------------------------------------------------------------- speed timing
def test_best_seconds_brackets_every_timed_call_with_cuda_synchronisation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Queued CUDA work is waited for before and after each timed call (not only launched)."""
    from drasclr.nn import speed

    calls: list[str] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: calls.append("sync"))
    speed.best_seconds(lambda: calls.append("fn"), repeats=2, warmup=1)
    assert calls == ["fn", "sync"] + ["sync", "fn", "sync"] * 2


def test_every_encoder_path_is_timed_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-sample loop gets the same warm-up and best-of-N as the batched paths."""
    from collections import Counter

    from drasclr.nn import speed
    from drasclr.nn.encoder import DrasEncoder

    counts: Counter[str] = Counter()
    forward = DrasEncoder.forward

    def counting(self: DrasEncoder, x: torch.Tensor, loc: torch.Tensor,
                 path: str = "auto") -> torch.Tensor:
        counts[path] += 1
        return forward(self, x, loc, path)

    monkeypatch.setattr(DrasEncoder, "forward", counting)
    res = speed.encoder_forward_speed(batch_size=2, paths=("batched", "loop"), repeats=2,
                                      threads=1)
    assert counts["loop"] == counts["batched"] == 3  # one warm-up + two timed calls each
    assert set(res["samples_per_s"]) == {"batched", "loop"}
