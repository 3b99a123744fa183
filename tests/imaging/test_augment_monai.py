"""Parity of the batched augmentation (drasclr.imaging.augment) with MONAI, sample by sample.

Each test replays the random draws :func:`augment` takes from its ``torch.Generator`` (same seed,
same order and shapes as the module draws them), builds the MONAI transform of every sample with
exactly those values, and compares the batched output with MONAI's per-sample output. The
``Rand*`` transforms get the draws through :class:`_Replay`, a stand-in for their numpy
``RandomState`` ``R``, so MONAI's own code turns the values into parameters.

Conventions found (the augmentation itself is unchanged; these tests pin the relation):

* Array axes. MONAI's affine acts on array index space, (D, H, W) order, centred on the image
  centre; augment's matrices are in (x, y, z) = (W, H, D) order. Both map output positions to
  the input positions sampled, positive translation samples from +t, scale > 1 zooms out.
* Rotation order. augment's ``R = R_x R_y R_z`` with x = W is ``R_W R_H R_D``, while MONAI's
  (and the official ``RandAffine``'s) default ``rotate_order="XYZ"`` composes ``R_D R_H R_W``
  (its x is array axis 0). For the same per-axis angles, augment's rotation is the *transpose*
  (inverse) of MONAI's: same rotation axis and angle, opposite sense. Exactly, augment equals
  ``monai.transforms.Affine(rotate_params=(-a_W, -a_H, -a_D), rotate_order="ZYX")`` (MONAI >=
  1.6; MONAI's z axis is array axis 2 = W). ``RandAffine`` has no ``rotate_order``.
  Equivalently, augment's matrix in (x, y, z) order has the entries MONAI's default-order matrix
  has in (D, H, W) order for the same values: augment is MONAI's default ``Affine`` applied to
  the patch with its array axes reversed (W, H, D), angles / shifts / scales given in augment's
  (x, y, z) order (up to the translation, next point).
* Translation. MONAI builds ``R T S`` (translation applied before the rotation, so the shift is
  ``R t``); augment uses ``R S p + t`` (the shift is not rotated; the module docstring's
  "``T R S``" is not MONAI's order). Exactly, augment's shift ``t`` is MONAI's
  ``translate_params = R^T t``.
* ``RandAffine.__call__`` draws its affine parameters twice (``RandAffine.randomize`` and again
  in ``RandAffineGrid.__call__``) and keeps the second set; harmless, but the replay below calls
  ``randomize()`` once and then the transform with ``randomize=False``.
* Draws. Angles, shifts and scale factors are U(-r, r), U(-t, t) and 1 + U(-s, s) per axis in
  both. Hence, in distribution, augment's rotations are MONAI's with the D and W axes swapped
  (equal rotation-angle distribution, slightly different axis distribution) and its shifts
  fill the cube [-t, t]^3 instead of a rotated cube; both differences are second order for
  rotations of 10 degrees.
* Noise and contrast follow ``RandGaussianNoise`` (``x + mean + std * z``, ``std ~ U(0, std)``
  with ``sample_std``) and ``AdjustContrast`` (min / max over the whole sample, epsilon 1e-7,
  ``retain_stats=False``, ``invert_image=False``) exactly, with the same probability rule
  (``u < prob`` per sample).

Tolerances: MONAI computes its affine with float32 ``sin`` / ``cos`` and resamples and returns
float32, so positions differ by float32 rounding (~1e-6 voxel); the test patches are random HU, so
neighbouring voxels differ by up to ~2 input units and a 0.01-voxel convention error would show
as ~1e-2. ``AFFINE_ATOL`` = 5e-5 is ~10x the observed float32 difference (~4e-6) and far below
any geometric error. Noise and contrast are elementwise float32 formulas; MONAI rounds ``std * z``
in float64 before casting and raises to a Python-float gamma, so they agree to a few ulp
(``INTENSITY_ATOL`` = 1e-5 for values of order 1: input units, [-1, 1] before the noise).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np
import pytest
import torch
from monai.transforms import (
    AdjustContrast,
    Affine,
    RandAdjustContrast,
    RandAffine,
    RandGaussianNoise,
)
from monai.transforms.utils import create_rotate

from drasclr.imaging.augment import (
    AugmentParams,
    affine_matrices,
    apply_affine,
    augment,
    random_affine,
    random_contrast,
    random_gaussian_noise,
)
from drasclr.imaging.intensity import hu_to_input, hu_to_input_scale

B, P = 6, 16
AFFINE_ATOL = 5e-5
INTENSITY_ATOL = 1e-5
ROT_DEG, SHIFT_VOX, SCALE = 10.0, 12.0, 0.1  # the official ranges (AugmentParams defaults)


def _patches(b: int = B, seed: int = 0) -> torch.Tensor:
    """(b, 1, P, P, P) float32 random-HU patches in input units (neighbours differ a lot)."""
    g = torch.Generator().manual_seed(seed)
    return hu_to_input(torch.randint(-1100, 300, (b, 1, P, P, P), generator=g, dtype=torch.int16))


def _uniform(g: torch.Generator, n: int, k: int, like: torch.Tensor) -> torch.Tensor:
    """(n, k) U(0, 1) as augment draws them: float64 from the generator, cast to ``like``."""
    return torch.rand(n, k, generator=g, dtype=torch.float64).to(like.dtype)


class _Replay:
    """Stand-in for a MONAI transform's numpy ``RandomState``, returning given U(0, 1) draws
    (``rand``, mapped by ``uniform(low, high)`` with numpy's formula) and standard normals."""

    def __init__(self, rand: Iterable[float] = (), uniform: Iterable[float] = (),
                 normal: Iterable[np.ndarray] = ()) -> None:
        self._rand: Iterator[float] = iter(rand)
        self._uniform: Iterator[float] = iter(uniform)
        self._normal: Iterator[np.ndarray] = iter(normal)

    def rand(self) -> float:
        return next(self._rand)

    def uniform(self, low: float = 0.0, high: float = 1.0, size: None = None) -> float:
        assert size is None
        return low + (high - low) * next(self._uniform)

    def normal(self, loc: float = 0.0, scale: float = 1.0, size: tuple[int, ...] = ()) -> np.ndarray:
        z = next(self._normal)
        assert z.shape == tuple(size)
        return loc + scale * z

    def exhausted(self) -> bool:
        return all(next(it, None) is None for it in (self._rand, self._uniform, self._normal))


def _affine_draws(seed: int, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per-sample angles (rad), shifts (voxels) and scale factors, (x, y, z) order, as
    ``random_affine`` / ``affine_matrices`` draw them, in float64."""
    u = _uniform(torch.Generator().manual_seed(seed), like.shape[0], 9, like).double() * 2 - 1
    return u[:, 0:3] * math.radians(ROT_DEG), u[:, 3:6] * SHIFT_VOX, 1 + u[:, 6:9] * SCALE


def _dhw(v: torch.Tensor) -> list[float]:
    """An (x, y, z) vector as MONAI's (D, H, W) list."""
    return v.flip(0).tolist()


def _monai_rotation_xyz(radians: list[float]) -> torch.Tensor:
    """MONAI's default (legacy "XYZ") rotation matrix for angles about its array axes 0, 1, 2,
    float64, in that axis order."""
    return torch.as_tensor(np.asarray(create_rotate(3, radians))[:3, :3], dtype=torch.float64)


def _ours_as_monai_affine(angles: torch.Tensor, shift: torch.Tensor,
                          factors: torch.Tensor) -> Affine:
    """The MONAI ``Affine`` that equals augment's transform for one sample's draws."""
    ax, ay, az = angles.tolist()
    rot = torch.as_tensor(
        np.asarray(create_rotate(3, (-ax, -ay, -az), rotate_order="ZYX"))[:3, :3],
        dtype=torch.float64,
    )
    return Affine(
        rotate_params=(-ax, -ay, -az), rotate_order="ZYX",
        translate_params=(rot.T @ shift.flip(0)).tolist(), scale_params=_dhw(factors),
        mode="bilinear", padding_mode="border", image_only=True,
    )


def _to_dhw(a_xyz: torch.Tensor) -> torch.Tensor:
    """A (3, 4) [A | t] in (x, y, z) order as (D, H, W) order."""
    return torch.cat([a_xyz[:, :3].flip(0).flip(1), a_xyz[:, 3:].flip(0)], dim=1)


def _to_xyz(a_dhw: torch.Tensor) -> torch.Tensor:
    return _to_dhw(a_dhw)  # reversing the axes is its own inverse


def test_random_affine_equals_monai_affine_per_sample() -> None:
    """Batched random_affine == per-sample MONAI Affine (rotate_order ZYX, negated angles,
    translate R^T t, axes reversed), bilinear, border padding; and == MONAI's default order on
    the axis-reversed patch."""
    x = _patches()
    seed = 3
    ours = random_affine(x, torch.Generator().manual_seed(seed), ROT_DEG, SHIFT_VOX, SCALE)
    angles, shift, factors = _affine_draws(seed, x)
    worst = 0.0
    for b in range(B):
        want = torch.as_tensor(_ours_as_monai_affine(angles[b], shift[b], factors[b])(x[b]))
        assert want.shape == ours[b].shape and want.dtype == torch.float32
        torch.testing.assert_close(ours[b], want, atol=AFFINE_ATOL, rtol=0)
        worst = max(worst, (ours[b] - want).abs().max().item())
        # the same, as MONAI's default order on the (W, H, D)-transposed patch
        rot = _monai_rotation_xyz(angles[b].tolist())
        transposed = Affine(rotate_params=angles[b].tolist(),
                            translate_params=(rot.T @ shift[b]).tolist(),
                            scale_params=factors[b].tolist(), mode="bilinear",
                            padding_mode="border", image_only=True)(x[b].permute(0, 3, 2, 1))
        torch.testing.assert_close(ours[b], torch.as_tensor(transposed).permute(0, 3, 2, 1),
                                   atol=AFFINE_ATOL, rtol=0)
    assert (ours - x).abs().amax(dim=(1, 2, 3, 4)).min() > 0.5  # really moved every sample
    print(f"random_affine vs MONAI Affine: max |diff| {worst:.2e}")


def test_affine_matrix_is_the_official_one_with_rotation_transposed_and_shift_unrotated() -> None:
    """Exact relation with the official ``RandAffine`` (legacy XYZ order, ``R T S``) for the same
    draws: augment's matrix is ``[R^T S | t]`` where MONAI's is ``[R S | R t]``."""
    like = torch.zeros(1, dtype=torch.float64)
    seed, n = 5, 64
    ours = affine_matrices(n, torch.Generator().manual_seed(seed), like, ROT_DEG, SHIFT_VOX, SCALE)
    angles, shift, factors = _affine_draws(seed, like.expand(n))
    for b in range(n):
        rot = _monai_rotation_xyz(_dhw(angles[b]))  # MONAI's rotation, angles about D, H, W
        scale = torch.diag(torch.tensor(_dhw(factors[b]), dtype=torch.float64))
        t = shift[b].flip(0)
        want = torch.cat([rot.T @ scale, t[:, None]], dim=1)
        torch.testing.assert_close(_to_dhw(ours[b]), want, atol=1e-12, rtol=0)
        # same rotation angle as MONAI's (trace), opposite sense unless ~0
        torch.testing.assert_close(torch.trace(rot.T), torch.trace(rot))
    # the naive mapping (same angles, MONAI's order) is NOT augment's: first-order different
    rot0 = _monai_rotation_xyz(_dhw(angles[0]))
    assert (rot0 - rot0.T).abs().max() > 1e-2


def test_official_rand_affine_fed_our_draws_is_apply_affine_of_its_matrix() -> None:
    """MONAI ``RandAffine`` (official settings, our draws) == ``apply_affine`` of MONAI's matrix
    ``[R S | R t]``: the resampling (centre, axes, bilinear, border) agrees; only the matrix
    construction differs (previous test)."""
    x = _patches(seed=1)
    angles, shift, factors = _affine_draws(11, x)
    rad = math.radians(ROT_DEG)
    mats, got = [], []
    for b in range(B):
        t = RandAffine(prob=1.0, rotate_range=(rad,) * 3, translate_range=(SHIFT_VOX,) * 3,
                       scale_range=(SCALE,) * 3, mode="bilinear", padding_mode="border")
        u = [*_dhw(angles[b] / rad), *_dhw(shift[b] / SHIFT_VOX), *_dhw((factors[b] - 1) / SCALE)]
        replay = _Replay(rand=[0.0], uniform=[(v + 1) / 2 for v in u])  # U(-f, f) from U(0, 1)
        t.R = t.rand_affine_grid.R = replay
        t.randomize()  # a plain call would draw the parameters twice (MONAI keeps the second)
        got.append(torch.as_tensor(t(x[b], randomize=False)))
        assert replay.exhausted()
        rot = _monai_rotation_xyz(_dhw(angles[b]))
        scale = torch.diag(torch.tensor(_dhw(factors[b]), dtype=torch.float64))
        mats.append(_to_xyz(torch.cat([rot @ scale, (rot @ shift[b].flip(0))[:, None]], dim=1)))
    want = apply_affine(x, torch.stack(mats))
    torch.testing.assert_close(torch.stack(got), want, atol=AFFINE_ATOL, rtol=0)


@pytest.mark.parametrize("sample_std", [False, True])
def test_gaussian_noise_equals_monai_rand_gaussian_noise(sample_std: bool) -> None:
    """Same per-sample coin, sigma and standard-normal field -> MONAI's ``x + std * z``."""
    x = _patches(b=8, seed=2)
    std, prob, seed = hu_to_input_scale(50.0), 0.5, 4
    ours = random_gaussian_noise(x, torch.Generator().manual_seed(seed), std, prob, sample_std)
    g = torch.Generator().manual_seed(seed)
    u = _uniform(g, x.shape[0], 2, x)
    z = torch.randn(x.shape, generator=g, dtype=x.dtype)
    chosen = (u[:, 0] < prob).tolist()
    assert 0 < sum(chosen) < len(chosen)  # both branches are exercised
    for b in range(x.shape[0]):
        t = RandGaussianNoise(prob=prob, mean=0.0, std=std, sample_std=sample_std)
        t.R = _Replay(rand=[u[b, 0].item()], uniform=[u[b, 1].item()],
                      normal=[z[b].double().numpy()])
        want = torch.as_tensor(t(x[b]))
        torch.testing.assert_close(ours[b], want, atol=INTENSITY_ATOL, rtol=0)
        if not chosen[b]:
            assert torch.equal(ours[b], x[b])


def test_contrast_equals_monai_rand_adjust_contrast() -> None:
    """Same coin and gamma -> MONAI ``AdjustContrast`` (epsilon 1e-7, no retain_stats), also on
    a constant patch (range 0: unchanged) and a two-valued patch (range kept)."""
    x = _patches(b=8, seed=3)
    x[1] = 0.3  # constant
    x[2] = torch.where(x[2] > 0, 0.5, -0.5)
    lo, hi, prob, seed = 0.5, 4.5, 0.5, 6
    ours = random_contrast(x, torch.Generator().manual_seed(seed), (lo, hi), prob)
    u = _uniform(torch.Generator().manual_seed(seed), x.shape[0], 2, x)
    chosen = (u[:, 0] < prob).tolist()
    assert 0 < sum(chosen) < len(chosen)
    for b in range(x.shape[0]):
        t = RandAdjustContrast(prob=prob, gamma=(lo, hi))
        t.R = _Replay(rand=[u[b, 0].item()], uniform=[u[b, 1].item()])
        want = torch.as_tensor(t(x[b]))
        torch.testing.assert_close(ours[b], want, atol=INTENSITY_ATOL, rtol=0)
        gamma = float(lo + (hi - lo) * u[b, 1])
        torch.testing.assert_close(
            ours[b], torch.as_tensor(AdjustContrast(gamma)(x[b])) if chosen[b] else x[b],
            atol=INTENSITY_ATOL, rtol=0,
        )
    all_on = random_contrast(x, torch.Generator().manual_seed(seed), (lo, hi), prob=1.0)
    assert torch.equal(all_on[1], x[1])


def test_augment_equals_monai_pipeline_per_sample() -> None:
    """The whole official recipe (affine -> noise -> contrast) == MONAI's chain per sample, with
    the draws of one generator replayed in augment's order."""
    x = _patches(b=8, seed=4)
    params = AugmentParams(noise_prob=0.5, contrast_prob=0.5, noise_sample_std=True)
    seed = 9
    ours = augment(x, torch.Generator().manual_seed(seed), params)
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    u_aff = _uniform(g, n, 9, x).double() * 2 - 1
    u_noise = _uniform(g, n, 2, x)
    z = torch.randn(x.shape, generator=g, dtype=x.dtype)
    u_con = _uniform(g, n, 2, x)
    std = hu_to_input_scale(params.noise_std_hu)
    for b in range(n):
        angles = u_aff[b, 0:3] * math.radians(params.rotate_deg)
        y = _ours_as_monai_affine(angles, u_aff[b, 3:6] * params.translate_vox,
                                  1 + u_aff[b, 6:9] * params.scale)(x[b])
        noise = RandGaussianNoise(prob=params.noise_prob, std=std, sample_std=True)
        noise.R = _Replay(rand=[u_noise[b, 0].item()], uniform=[u_noise[b, 1].item()],
                          normal=[z[b].double().numpy()])
        y = noise(y)
        contrast = RandAdjustContrast(prob=params.contrast_prob, gamma=params.gamma_range)
        contrast.R = _Replay(rand=[u_con[b, 0].item()], uniform=[u_con[b, 1].item()])
        y = torch.as_tensor(contrast(y))
        # gamma up to 4.5 can amplify the affine's float32 differences near the patch maximum
        torch.testing.assert_close(ours[b], y, atol=4 * AFFINE_ATOL, rtol=0)
