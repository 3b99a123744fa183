"""Batched augmentation: reproducibility, identity, geometry convention, probabilities."""

from __future__ import annotations

import math

import pytest
import torch

from drasclr.imaging.augment import (
    NO_AUGMENTATION,
    AugmentParams,
    affine_matrices,
    apply_affine,
    augment,
    random_affine,
    random_contrast,
    random_gaussian_noise,
    random_intensity_shift,
)
from drasclr.imaging.intensity import hu_to_input, hu_to_input_scale


def _patches(b: int = 6, p: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    hu = torch.randint(-1100, 300, (b, 1, p, p, p), generator=g, dtype=torch.int16)
    return hu_to_input(hu)


def test_shapes_dtype_finite() -> None:
    x = _patches()
    y = augment(x, torch.Generator().manual_seed(1))
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()
    assert not torch.equal(y, x)
    assert torch.isfinite(augment(x)).all()  # global RNG when no generator is given
    y64 = augment(x.double(), torch.Generator().manual_seed(1))
    assert y64.dtype == torch.float64


def test_reproducible_for_a_seed() -> None:
    x = _patches()
    a = augment(x, torch.Generator().manual_seed(7))
    b = augment(x, torch.Generator().manual_seed(7))
    c = augment(x, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_identity_when_ranges_are_zero() -> None:
    x = _patches()
    assert torch.equal(augment(x, torch.Generator().manual_seed(0), NO_AUGMENTATION), x)
    tiny = AugmentParams(rotate_deg=1e-9, translate_vox=1e-9, scale=1e-9, noise_prob=0.0,
                         contrast_prob=0.0)
    torch.testing.assert_close(augment(x, torch.Generator().manual_seed(0), tiny), x,
                               atol=1e-5, rtol=0)


def test_apply_affine_translation_and_axes() -> None:
    x = torch.arange(5 * 6 * 7, dtype=torch.float64).view(1, 1, 5, 6, 7)  # D=5, H=6, W=7
    shift_x = torch.tensor([[[1.0, 0, 0, 1.0], [0, 1, 0, 0], [0, 0, 1, 0]]], dtype=torch.float64)
    y = apply_affine(x, shift_x)  # output(w) samples input(w + 1) along W
    torch.testing.assert_close(y[..., :-1], x[..., 1:])
    torch.testing.assert_close(y[..., -1], x[..., -1])  # border padding
    shift_z = torch.tensor([[[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, -2.0]]], dtype=torch.float64)
    torch.testing.assert_close(apply_affine(x, shift_z)[:, :, 2:], x[:, :, :-2])


def test_affine_parameter_ranges() -> None:
    like = torch.zeros(1)
    a = affine_matrices(2000, torch.Generator().manual_seed(0), like, 10.0, 12.0, 0.1)
    assert a.shape == (2000, 3, 4)
    assert a[:, :, 3].abs().max() <= 12.0 and a[:, :, 3].abs().max() > 11.0
    # singular values of R S are the scale factors, within 1 +- 0.1
    sv = torch.linalg.svdvals(a[:, :, :3])
    assert sv.min() >= 0.9 - 1e-6 and sv.max() <= 1.1 + 1e-6
    rotation = a[:, :, :3] / torch.linalg.norm(a[:, :, :3], dim=1, keepdim=True)
    angle_x = torch.rad2deg(torch.atan2(rotation[:, 2, 1], rotation[:, 2, 2])).abs()
    assert angle_x.max() < 25.0  # small rotations only (coupled through R_x R_y R_z)
    rot_only = affine_matrices(500, torch.Generator().manual_seed(1), like, 10.0, 0.0, 0.0)
    eye = torch.eye(3).expand(500, 3, 3)
    torch.testing.assert_close(rot_only[:, :, :3] @ rot_only[:, :, :3].transpose(1, 2), eye,
                               atol=1e-5, rtol=0)
    cos_max = math.cos(math.radians(10.0)) ** 3
    assert torch.diagonal(rot_only[:, :, :3], dim1=1, dim2=2).min() >= cos_max - 1e-2


def test_probabilities_respected() -> None:
    x = _patches(b=4000, p=4, seed=3)
    g = torch.Generator().manual_seed(0)
    noisy = random_gaussian_noise(x, g, std=50 / 632, prob=0.25)
    changed = (noisy != x).flatten(1).any(dim=1).float().mean().item()
    assert abs(changed - 0.25) < 0.03
    diff = (noisy - x)[(noisy != x).flatten(1).any(dim=1)]
    assert abs(diff.std().item() - 50 / 632) < 0.005
    contrast = random_contrast(x, g, (0.5, 4.5), prob=0.25)
    changed = (contrast != x).flatten(1).any(dim=1).float().mean().item()
    assert abs(changed - 0.25) < 0.03
    affine = random_affine(x, g, prob=0.5)
    changed = (affine != x).flatten(1).any(dim=1).float().mean().item()
    assert abs(changed - 0.5) < 0.04


def test_contrast_keeps_patch_range() -> None:
    x = _patches(b=8, p=8)
    y = random_contrast(x, torch.Generator().manual_seed(0), (0.5, 4.5), prob=1.0)
    torch.testing.assert_close(y.amin(dim=(1, 2, 3, 4)), x.amin(dim=(1, 2, 3, 4)))
    torch.testing.assert_close(y.amax(dim=(1, 2, 3, 4)), x.amax(dim=(1, 2, 3, 4)),
                               atol=1e-6, rtol=0)
    flat = torch.full((1, 1, 4, 4, 4), 0.3)
    assert torch.equal(random_contrast(flat, torch.Generator().manual_seed(0), prob=1.0), flat)


def test_invalid_params() -> None:
    with pytest.raises(ValueError):
        AugmentParams(noise_prob=1.5)
    with pytest.raises(ValueError):
        AugmentParams(gamma_range=(0.0, 2.0))
    with pytest.raises(ValueError):
        augment(torch.zeros(2, 4, 4, 4))


def test_intensity_shift_moves_each_patch_by_one_offset_in_range() -> None:
    """Every voxel of a patch moves by the same offset, drawn within +-shift; 0 is the identity."""
    x = _patches(b=64)
    shift = hu_to_input_scale(30.0)
    y = random_intensity_shift(x, torch.Generator().manual_seed(3), shift)
    d = (y - x).flatten(1)
    torch.testing.assert_close(d.amax(1), d.amin(1), atol=1e-6, rtol=0)
    assert d[:, 0].abs().max() <= shift and d[:, 0].std() > shift / 3
    assert random_intensity_shift(x, None, 0.0) is x
    params = AugmentParams(rotate_deg=0, translate_vox=0, scale=0, noise_prob=0, contrast_prob=0,
                           shift_hu=30.0)
    torch.testing.assert_close(augment(x, torch.Generator().manual_seed(3), params), y)
    with pytest.raises(ValueError, match="shift_hu"):
        AugmentParams(shift_hu=-1.0)


def test_pretrain_config_passes_its_augmentation_through() -> None:
    from drasclr.config import ConfigError
    from drasclr.train.config import PretrainConfig

    p = PretrainConfig(noise_prob=1.0, noise_sample_std=True, shift_hu=20.0,
                       translate_vox=4.0, shuffle_block_vox=8).augment_params
    assert (p.noise_prob, p.noise_sample_std, p.shift_hu, p.translate_vox, p.shuffle_block) == (
        1.0, True, 20.0, 4.0, 8)
    assert PretrainConfig().augment_params.shuffle_block == 0  # off unless asked for
    assert PretrainConfig(augment=False).augment_params == NO_AUGMENTATION
    with pytest.raises(ConfigError, match="noise_prob"):
        PretrainConfig(noise_prob=1.5)
    with pytest.raises(ConfigError, match="shuffle_block_vox"):
        PretrainConfig(shuffle_block_vox=-8)


def test_pretraining_translates_less_than_the_official_augmentation() -> None:
    """Pretraining's default translation is +-4 voxels (official +-12; docs/results.md round 3):
    no drawn shift exceeds 4 voxels."""
    from drasclr.train.config import PretrainConfig

    p = PretrainConfig().augment_params
    assert p.translate_vox == 4.0 and AugmentParams().translate_vox == 12.0
    shifts = affine_matrices(2000, torch.Generator().manual_seed(0), torch.zeros(1),
                             p.rotate_deg, p.translate_vox, p.scale)[:, :, 3]
    assert shifts.abs().max() <= 4.0 and shifts.abs().max() > 3.9


def test_density_scale_moves_lung_not_air_or_tissue() -> None:
    """Healthy lung is scaled about air (-1000 HU); air-like and soft-tissue voxels stay put."""
    from drasclr.imaging.augment import random_density_scale
    from drasclr.imaging.intensity import HU_HALF_RANGE, hu_to_input

    levels = torch.linspace(-1024, 240, 128)
    hu = levels.view(1, 1, 1, 1, -1).repeat(64, 1, 1, 1, 1)
    x = hu_to_input(hu)
    g = torch.Generator().manual_seed(3)
    y = random_density_scale(x, g, 0.25)
    back = (y + 1) * HU_HALF_RANGE - 1024
    assert random_density_scale(x, g, 0.0) is x
    torch.testing.assert_close(back[..., levels >= -300], hu[..., levels >= -300],
                               atol=1e-3, rtol=0)
    factor = (back + 1000) / (hu + 1000)  # per patch, on healthy lung (-900 .. -700 HU)
    lung = (levels > -900) & (levels < -700)
    f = factor[..., lung].reshape(64, -1)
    torch.testing.assert_close(f, f[:, :1].expand_as(f), atol=1e-3, rtol=0)  # one factor/patch
    assert f[:, 0].min() >= 0.75 - 1e-4 and f[:, 0].max() <= 1.25 + 1e-4
    assert f[:, 0].std() > 0.05  # factors differ between patches
    near_air = back[..., (levels > -1000) & (levels < -980)] + 1000
    assert near_air.min() >= 0 and near_air.max() <= 25  # air-filled voxels stay air-like
    assert torch.all(back[..., 1:] >= back[..., :-1] - 1e-4)  # monotone in HU
    assert back.min() >= -1024 - 1e-3


def test_block_shuffle_moves_whole_cubes_and_keeps_every_voxel() -> None:
    from drasclr.imaging.augment import AugmentParams, random_block_shuffle

    b, k = 64, 4
    x = torch.randn(b, 2, 8, 12, 8, generator=torch.Generator().manual_seed(0))
    y = random_block_shuffle(x, torch.Generator().manual_seed(1), k)
    assert y.shape == x.shape
    assert random_block_shuffle(x, None, 0) is x
    again = random_block_shuffle(x, torch.Generator().manual_seed(1), k)
    assert torch.equal(y, again)  # seeded

    def cubes(t: torch.Tensor) -> list[list[torch.Tensor]]:  # per patch: its 2*3*2 cubes
        return [[t[i, :, d:d + k, h:h + k, w:w + k] for d in range(0, 8, k)
                 for h in range(0, 12, k) for w in range(0, 8, k)] for i in range(len(t))]

    moved = 0
    for before, after in zip(cubes(x), cubes(y)):
        # every output cube is one input cube (channels together), each used exactly once
        src = [next(j for j, c in enumerate(before) if torch.equal(c, a)) for a in after]
        assert sorted(src) == list(range(len(before)))
        moved += src != list(range(len(before)))
    assert moved >= b - 2  # 12! orders: nearly every patch changes
    with pytest.raises(ValueError, match="does not divide"):
        random_block_shuffle(x, None, 5)
    with pytest.raises(ValueError, match="shuffle_block"):
        AugmentParams(shuffle_block=-1)


def test_flip_mirrors_whole_patches_per_axis() -> None:
    from drasclr.imaging.augment import random_flip

    x = torch.randn(256, 1, 4, 5, 6, generator=torch.Generator().manual_seed(0))
    y = random_flip(x, torch.Generator().manual_seed(1), 0.5)
    assert random_flip(x, None, 0.0) is x
    seen = set()
    for b in range(len(x)):  # every patch is x mirrored along some subset of the axes
        match = [dims for dims in ((), (2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4))
                 if torch.equal(y[b : b + 1], x[b : b + 1].flip(dims) if dims else x[b : b + 1])]
        assert len(match) == 1
        seen.add(match[0])
    assert len(seen) == 8  # all 8 combinations occur with p = 0.5
