"""CT-like synthetic patches: realistic bytes for store tests, benchmarks and synthetic training.

:func:`ct_like_patches` makes ``(num, P, P, P)`` int16 HU patches indexed [z, y, x], the same for
the same seed: parenchyma at -850 HU with smooth texture (about ±15 HU), Gaussian noise
(``noise_hu``) and one to three bright tubes (vessels, airway walls) with partial-volume edges,
clipped to :data:`~drasclr.imaging.intensity.HU_WINDOW`. They compress like real lung CT, so
store layout, compression ratio and read throughput are measured on realistic data
(:mod:`drasclr.bench.store`, ``tests/test_store.py``, :mod:`drasclr.train.synthetic`). They hold
no anatomy or disease; phantoms with ground truth come from :mod:`drasclr.synth.cohort`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from drasclr.imaging.intensity import HU_WINDOW

__all__ = [
    "ct_like_patches",
]


# ----------------------------------------------------------------------------- synthetic data
def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    x = np.linspace(0, n_in - 1, n_out)
    i0 = np.minimum(np.floor(x).astype(int), n_in - 2)
    f = (x - i0).astype(np.float32)
    m = np.zeros((n_out, n_in), dtype=np.float32)
    m[np.arange(n_out), i0] = 1 - f
    m[np.arange(n_out), i0 + 1] += f
    return m


def ct_like_patches(
    num: int,
    patch_size: int = 32,
    seed: int = 0,
    noise_hu: float = 25.0,
    num_tube_patterns: int = 32,
) -> npt.NDArray[np.int16]:
    """Noisy lung-CT-like patches for tests and benchmarks (fixed seed -> same data).

    Parenchyma at -850 HU + smooth texture (about +-15 HU) + Gaussian noise (``noise_hu``) + one to
    three bright tubes (vessels/airway walls, about -850 + 850 HU, partial-volume edges), clipped to
    the HU window.

    Returns:
        (num, P, P, P) int16 HU.
    """
    rng = np.random.default_rng(seed)
    P = patch_size
    grid = np.stack(np.meshgrid(*[np.arange(P, dtype=np.float32)] * 3, indexing="ij"), -1).reshape(
        -1, 3
    )
    bank = np.zeros((num_tube_patterns, P**3), dtype=np.float32)
    for t in range(num_tube_patterns):
        for _ in range(int(rng.integers(1, 4))):
            p = rng.uniform(0, P, 3).astype(np.float32)
            d = rng.standard_normal(3).astype(np.float32)
            d /= np.linalg.norm(d)
            v = grid - p
            dist = np.linalg.norm(v - (v @ d)[:, None] * d, axis=1)
            edge = np.clip(rng.uniform(0.8, 3.0) + 0.5 - dist, 0.0, 1.0) * rng.uniform(0.6, 1.0)
            bank[t] = np.maximum(bank[t], edge)
    bank = bank.reshape(num_tube_patterns, P, P, P)
    up = _interp_matrix(P, 5)
    out = np.empty((num, P, P, P), dtype=np.int16)
    noise = np.empty((min(num, 128), P, P, P), dtype=np.float32)
    for start in range(0, num, 128):
        m = min(128, num - start)
        low = rng.standard_normal((m, 5, 5, 5), dtype=np.float32) * 9.0
        x = np.einsum("ai,bj,ck,nijk->nabc", up, up, up, low, optimize=True)
        rng.standard_normal(out=noise[:m], dtype=np.float32)
        x += noise[:m] * np.float32(noise_hu) - 850.0
        x += (
            bank[rng.integers(0, num_tube_patterns, m)]
            * rng.uniform(800, 900, m).astype(np.float32)[:, None, None, None]
        )
        np.rint(x, out=x)
        np.clip(x, *HU_WINDOW, out=x)
        out[start : start + m] = x
    return out
