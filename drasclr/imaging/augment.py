"""Batched patch augmentation on the training device (DESIGN.md §4, "Augmentation (official)").

Reproduces the official MONAI pipeline ``RandAffine -> RandGaussianNoise -> RandAdjustContrast``
without a per-patch Python loop: every patch of a (B, 1, P, P, P) batch draws its own parameters
from one ``torch.Generator``, and each step is a single batched tensor operation. Query, key and
neighbour views are augmented independently by calling :func:`augment` once per view. Four
additions are off by default (not in the official recipe): mirroring, a cube shuffle, a lung
density scaling about air and a whole-patch intensity offset (:class:`AugmentParams`).

Intensities are in model-input units ([-1, 1], 1 unit = 632 HU, see
:func:`drasclr.imaging.intensity.hu_to_input`). The gamma contrast rescales each patch by its own
min and max, so applying it in input units is the same as applying it in the official
``HU + 1024`` units.

Spatial convention: the affine acts on voxel coordinates centred on the patch centre (as MONAI),
in ``grid_sample`` axis order (x = last array axis W, y = H, z = D). It maps output voxels to the
input positions sampled: ``p_in = R S p_out + t`` with ``R = R_x R_y R_z``, trilinear
interpolation, border padding.

Relation to MONAI (checked in ``tests/test_augment_monai.py``): noise and contrast match
``RandGaussianNoise`` / ``AdjustContrast`` exactly. The affine equals MONAI's ``Affine`` with
``rotate_params = (-a_W, -a_H, -a_D)``, ``rotate_order="ZYX"`` and
``translate_params = R^T t``: MONAI's x is array axis 0 (D) and it rotates the translation, ours
composes the rotation over (W, H, D) and shifts unrotated. The distributions of angles, scales and
shifts per axis are the official ones (axes D and W swapped, shifts filling the cube [-t, t]^3
instead of a rotated cube), second-order differences at 10 degrees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from drasclr.imaging.intensity import hu_to_input, hu_to_input_scale


@dataclass(frozen=True)
class AugmentParams:
    """Ranges and probabilities of the augmentation (defaults: the official ones).

    Attributes:
        rotate_deg: rotation angle about each axis drawn from U(-r, r), degrees.
        translate_vox: shift along each axis drawn from U(-t, t), voxels.
        scale: per-axis scale factor drawn from 1 + U(-s, s).
        affine_prob: probability of the affine per patch (official: 1).
        noise_std_hu: Gaussian noise sigma, HU (official: 50).
        noise_prob: probability of noise per patch (0.25).
        noise_sample_std: draw sigma from U(0, noise_std_hu) per patch (newer MONAI default);
            off: fixed sigma as the issue states.
        gamma_range: contrast gamma drawn from U(lo, hi); MONAI's default (0.5, 4.5), which the
            official ``RandAdjustContrast(prob=0.25)`` used.
        contrast_prob: probability of the contrast change per patch (0.25).
        shift_hu: a whole-patch intensity offset drawn from U(-s, s) HU for every patch (not in
            the official recipe, default 0): a stand-in for inspiration and calibration, which
            move all lung HU of a scan together.
        density_scale: lung density scaled about air by a factor 1 + U(-s, s) per patch (not
            in the official recipe, default 0): ``HU' = -1000 + (HU + 1000)(1 + e)`` below
            -600 HU, fading to no change at -300 HU and above. A breath-hold changes how much
            air the parenchyma holds, not the density of air, so healthy lung (-850 HU) moves by
            up to 150 s HU while air-filled (emphysematous) voxels stay near -1000 HU.
        flip_prob: probability of mirroring a patch along each axis, independently (not in the
            official recipe, default 0). Views then differ in orientation, so matching the
            layout of vessels and walls gets harder while intensity statistics are unchanged.
        shuffle_block: edge of the cubes a patch is cut into and put back in a random order of
            its own, voxels (not in the official recipe; default 0: off). Two views then share
            no layout of vessels and walls, only what lies inside a cube: the intensity
            histogram and local texture (:func:`random_block_shuffle`).
    """

    rotate_deg: float = 10.0
    translate_vox: float = 12.0
    scale: float = 0.1
    affine_prob: float = 1.0
    noise_std_hu: float = 50.0
    noise_prob: float = 0.25
    noise_sample_std: bool = False
    gamma_range: tuple[float, float] = (0.5, 4.5)
    contrast_prob: float = 0.25
    shift_hu: float = 0.0
    density_scale: float = 0.0
    flip_prob: float = 0.0
    shuffle_block: int = 0

    def __post_init__(self) -> None:
        for name in ("affine_prob", "noise_prob", "contrast_prob", "flip_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        for name in ("rotate_deg", "translate_vox", "scale", "noise_std_hu", "shift_hu",
                     "shuffle_block"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.density_scale < 0.5:
            raise ValueError(f"density_scale must be in [0, 0.5), got {self.density_scale}")
        if self.scale >= 1.0:
            raise ValueError(f"scale must be < 1 (factor 1 +- scale), got {self.scale}")
        lo, hi = self.gamma_range
        if not 0.0 < lo <= hi:
            raise ValueError(f"gamma_range must satisfy 0 < lo <= hi, got {self.gamma_range}")


NO_AUGMENTATION = AugmentParams(
    rotate_deg=0.0, translate_vox=0.0, scale=0.0, noise_std_hu=0.0, noise_prob=0.0,
    gamma_range=(1.0, 1.0), contrast_prob=0.0,
)


def _uniform(n: int, k: int, generator: torch.Generator | None, like: Tensor) -> Tensor:
    """(n, k) U(0, 1) draws from ``generator`` (on its device), returned on ``like``'s device."""
    device = generator.device if generator is not None else like.device
    u = torch.rand(n, k, generator=generator, device=device, dtype=torch.float64)
    return u.to(device=like.device, dtype=like.dtype)


def _symmetric(n: int, half: float, generator: torch.Generator | None, like: Tensor) -> Tensor:
    """(n, 1, 1, 1, 1) draws from U(-half, half), broadcastable over (n, C, D, H, W) patches."""
    return ((_uniform(n, 1, generator, like)[:, 0] * 2 - 1) * half).view(n, 1, 1, 1, 1)


def _check_batch(x: Tensor) -> None:
    if x.dim() != 5 or not x.is_floating_point():
        raise ValueError(f"expected a float (B, C, D, H, W) batch, got {x.dtype} {tuple(x.shape)}")


def affine_matrices(
    n: int,
    generator: torch.Generator | None,
    like: Tensor,
    rotate_deg: float = 10.0,
    translate_vox: float = 12.0,
    scale: float = 0.1,
) -> Tensor:
    """Random affines in centred voxel coordinates, (x, y, z) order.

    Args:
        n: number of patches.
        generator: RNG; the global one on ``like``'s device when None.
        like: tensor giving the output device and dtype.
        rotate_deg: rotation range per axis (degrees).
        translate_vox: translation range per axis (voxels).
        scale: scale range per axis (fraction).

    Returns:
        (n, 3, 4) matrices ``[R S | t]`` mapping output voxel positions to input positions.
    """
    u = _uniform(n, 9, generator, like) * 2 - 1  # U(-1, 1)
    angles = u[:, 0:3] * math.radians(rotate_deg)
    shift = u[:, 3:6] * translate_vox
    factors = 1 + u[:, 6:9] * scale
    c, s = torch.cos(angles), torch.sin(angles)
    one, zero = torch.ones_like(c[:, 0]), torch.zeros_like(c[:, 0])

    def mat(rows: list[list[Tensor]]) -> Tensor:
        return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)

    rx = mat([[one, zero, zero], [zero, c[:, 0], -s[:, 0]], [zero, s[:, 0], c[:, 0]]])
    ry = mat([[c[:, 1], zero, s[:, 1]], [zero, one, zero], [-s[:, 1], zero, c[:, 1]]])
    rz = mat([[c[:, 2], -s[:, 2], zero], [s[:, 2], c[:, 2], zero], [zero, zero, one]])
    linear = rx @ ry @ rz @ torch.diag_embed(factors)
    return torch.cat([linear, shift.unsqueeze(-1)], dim=-1)


@torch.no_grad()
def random_affine(
    x: Tensor,
    generator: torch.Generator | None = None,
    rotate_deg: float = 10.0,
    translate_vox: float = 12.0,
    scale: float = 0.1,
    prob: float = 1.0,
) -> Tensor:
    """Random rotation, translation and scaling of every patch (trilinear, border padding).

    Args:
        x: (B, C, D, H, W) float patches.
        generator: RNG (same device as ``x`` for speed); global RNG when None.
        rotate_deg: rotation range per axis, degrees (±).
        translate_vox: translation range per axis, voxels (±).
        scale: scale range per axis (factor 1 ± scale).
        prob: probability that a patch is transformed (the rest are bit-identical to the input).

    Returns:
        (B, C, D, H, W) transformed patches; ``x`` itself when all ranges (or ``prob``) are zero.
    """
    _check_batch(x)
    if prob == 0.0 or (rotate_deg == 0.0 and translate_vox == 0.0 and scale == 0.0):
        return x
    b = x.shape[0]
    affine = affine_matrices(b, generator, x, rotate_deg, translate_vox, scale)
    warped = apply_affine(x, affine)
    if prob < 1.0:
        keep = (_uniform(b, 1, generator, x)[:, 0] >= prob).view(b, 1, 1, 1, 1)
        warped = torch.where(keep, x, warped)
    return warped


@torch.no_grad()
def apply_affine(x: Tensor, affine: Tensor) -> Tensor:
    """Resample patches with given affines (trilinear, border padding).

    Args:
        x: (B, C, D, H, W) float patches.
        affine: (B, 3, 4) ``[A | t]`` in centred voxel coordinates, (x, y, z) = (W, H, D) order,
            mapping each output voxel position ``p`` to the input position ``A p + t`` sampled.

    Returns:
        (B, C, D, H, W) resampled patches.
    """
    _check_batch(x)
    affine = affine.to(device=x.device, dtype=x.dtype)
    # Centred voxel units -> align_corners=True normalised units, per axis (x=W, y=H, z=D).
    half = torch.tensor([(n - 1) / 2 for n in reversed(x.shape[2:])], dtype=x.dtype,
                        device=x.device).clamp_min(0.5)
    theta = torch.cat(
        [affine[:, :, :3] * half.view(1, 1, 3) / half.view(1, 3, 1),
         affine[:, :, 3:] / half.view(1, 3, 1)],
        dim=-1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


@torch.no_grad()
def random_gaussian_noise(
    x: Tensor,
    generator: torch.Generator | None = None,
    std: float = hu_to_input_scale(50.0),
    prob: float = 0.25,
    sample_std: bool = False,
) -> Tensor:
    """Add zero-mean Gaussian noise to a random subset of patches.

    Args:
        x: (B, C, D, H, W) float patches, input units.
        generator: RNG; global RNG when None.
        std: noise sigma in input units (50 HU = 50 / 632).
        prob: probability per patch.
        sample_std: draw each patch's sigma from U(0, std).

    Returns:
        Noisy patches (unselected patches are bit-identical to the input).
    """
    _check_batch(x)
    if prob == 0.0 or std == 0.0:
        return x
    b = x.shape[0]
    u = _uniform(b, 2, generator, x)
    chosen = (u[:, 0] < prob).view(b, 1, 1, 1, 1)
    sigma = (u[:, 1] * std if sample_std else torch.full_like(u[:, 1], std)).view(b, 1, 1, 1, 1)
    device = generator.device if generator is not None else x.device
    noise = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
    return torch.where(chosen, x + sigma * noise, x)


@torch.no_grad()
def random_contrast(
    x: Tensor,
    generator: torch.Generator | None = None,
    gamma_range: tuple[float, float] = (0.5, 4.5),
    prob: float = 0.25,
    eps: float = 1e-7,
) -> Tensor:
    """Random gamma contrast per patch, MONAI ``AdjustContrast`` formula.

    ``y = ((x - min) / (max - min + eps)) ** gamma * (max - min) + min`` with min / max over each
    patch and ``gamma ~ U(gamma_range)``.

    Args:
        x: (B, C, D, H, W) float patches.
        generator: RNG; global RNG when None.
        gamma_range: (lo, hi) of gamma, lo > 0.
        prob: probability per patch.
        eps: guards constant patches.

    Returns:
        Adjusted patches (unselected patches are bit-identical to the input).
    """
    _check_batch(x)
    if prob == 0.0 or tuple(gamma_range) == (1.0, 1.0):
        return x
    b = x.shape[0]
    u = _uniform(b, 2, generator, x)
    chosen = (u[:, 0] < prob).view(b, 1, 1, 1, 1)
    lo, hi = gamma_range
    gamma = (lo + (hi - lo) * u[:, 1]).view(b, 1, 1, 1, 1)
    flat = x.reshape(b, -1)
    x_min = flat.amin(dim=1).view(b, 1, 1, 1, 1)
    x_range = flat.amax(dim=1).view(b, 1, 1, 1, 1) - x_min
    y = ((x - x_min) / (x_range + eps)).pow(gamma) * x_range + x_min
    return torch.where(chosen, y, x)


@torch.no_grad()
def random_intensity_shift(
    x: Tensor,
    generator: torch.Generator | None = None,
    shift: float = 0.0,
) -> Tensor:
    """Add one offset drawn from U(-shift, shift) to each whole patch.

    Args:
        x: (B, C, D, H, W) float patches, input units.
        generator: RNG; global RNG when None.
        shift: half range of the offset, input units (``hu_to_input_scale(hu)``).

    Returns:
        Shifted patches; ``x`` itself when ``shift`` is 0.
    """
    _check_batch(x)
    if shift == 0.0:
        return x
    return x + _symmetric(x.shape[0], shift, generator, x)


@torch.no_grad()
def random_flip(x: Tensor, generator: torch.Generator | None = None, prob: float = 0.0) -> Tensor:
    """Mirror each patch along each spatial axis independently with probability ``prob``.

    Args:
        x: (B, C, D, H, W) float patches.
        generator: RNG; global RNG when None.
        prob: probability per patch and axis.

    Returns:
        Flipped patches; ``x`` itself when ``prob`` is 0.
    """
    _check_batch(x)
    if prob == 0.0:
        return x
    b = x.shape[0]
    flip = _uniform(b, 3, generator, x) < prob
    for axis in range(3):
        sel = flip[:, axis].view(b, 1, 1, 1, 1)
        x = torch.where(sel, x.flip(2 + axis), x)
    return x


@torch.no_grad()
def random_block_shuffle(x: Tensor, generator: torch.Generator | None = None,
                         block: int = 0) -> Tensor:
    """Cut each patch into ``block``-voxel cubes and put them back in a random order of its own.

    Every voxel value is kept (the histogram and the texture inside each cube are unchanged);
    only where the cubes sit changes, one uniform permutation per patch (all channels alike).

    Args:
        x: (B, C, D, H, W) float patches; D, H and W must be multiples of ``block``.
        generator: RNG; global RNG when None.
        block: cube edge, voxels (0: ``x`` itself, and no random numbers are drawn).

    Returns:
        Shuffled patches of the same shape.

    Raises:
        ValueError: a patch edge that ``block`` does not divide.
    """
    _check_batch(x)
    if block == 0:
        return x
    b, c, *edges = x.shape
    if any(e % block for e in edges):
        raise ValueError(f"shuffle block {block} does not divide the patch edges {tuple(edges)}")
    nd, nh, nw = (e // block for e in edges)
    n, v = nd * nh * nw, block ** 3
    cubes = (x.reshape(b, c, nd, block, nh, block, nw, block)
             .permute(0, 1, 2, 4, 6, 3, 5, 7).reshape(b, c, n, v))
    order = _uniform(b, n, generator, x).argsort(dim=1)
    cubes = cubes.gather(2, order.view(b, 1, n, 1).expand(b, c, n, v))
    return (cubes.reshape(b, c, nd, nh, nw, block, block, block)
            .permute(0, 1, 2, 5, 3, 6, 4, 7).reshape(x.shape))


#: HU of air, and where the density scaling starts to fade and ends (random_density_scale).
AIR_HU, DENSITY_FADE_HU = -1000.0, (-600.0, -300.0)


@torch.no_grad()
def random_density_scale(
    x: Tensor,
    generator: torch.Generator | None = None,
    scale: float = 0.0,
) -> Tensor:
    """Scale each patch's lung density about air by its own factor ``1 + e``, ``e ~ U(-s, s)``.

    ``y = a + (x - a)(1 + e w(x))`` with ``a`` the input value of -1000 HU and ``w`` = 1 below
    -600 HU, falling linearly to 0 at -300 HU (soft tissue and bone are not changed). The map is
    monotone for ``s < 0.5``.

    Args:
        x: (B, C, D, H, W) float patches, input units.
        generator: RNG; global RNG when None.
        scale: half range ``s`` of the factor.

    Returns:
        Scaled patches; ``x`` itself when ``scale`` is 0.
    """
    _check_batch(x)
    if scale == 0.0:
        return x
    e = _symmetric(x.shape[0], scale, generator, x)
    air, lo, hi = hu_to_input(torch.tensor([AIR_HU, *DENSITY_FADE_HU])).tolist()
    w = ((hi - x) / (hi - lo)).clamp(0.0, 1.0)
    return (air + (x - air) * (1.0 + e * w)).clamp_min(-1.0)  # -1: the window's -1024 HU


@torch.no_grad()
def augment(
    x: Tensor,
    generator: torch.Generator | None = None,
    params: AugmentParams = AugmentParams(),
) -> Tensor:
    """The official augmentation: affine, then Gaussian noise, then gamma contrast. Four
    additions are off in the official recipe: mirroring, a cube shuffle and a density scaling
    about air after the affine (``params.flip_prob``, ``params.shuffle_block``,
    ``params.density_scale`` > 0) and a final intensity offset (``params.shift_hu`` > 0).

    Args:
        x: (B, 1, P, P, P) float patches in input units ([-1, 1]).
        generator: RNG (same seed -> same result); global RNG on ``x``'s device when None.
        params: ranges and probabilities.

    Returns:
        (B, 1, P, P, P) augmented patches, same dtype and device.
    """
    x = random_affine(x, generator, params.rotate_deg, params.translate_vox, params.scale,
                      params.affine_prob)
    x = random_flip(x, generator, params.flip_prob)
    x = random_block_shuffle(x, generator, params.shuffle_block)
    x = random_density_scale(x, generator, params.density_scale)
    x = random_gaussian_noise(x, generator, hu_to_input_scale(params.noise_std_hu),
                              params.noise_prob, params.noise_sample_std)
    x = random_contrast(x, generator, params.gamma_range, params.contrast_prob)
    return random_intensity_shift(x, generator, hu_to_input_scale(params.shift_hu))
