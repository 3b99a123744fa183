"""Random fields, grid resampling and lesion placement for the chest-CT phantom.

Pure numpy/scipy helpers used by :mod:`drasclr.synth.phantom`. Arrays are indexed ``[z, y, x]``;
points and vectors are ``(x, y, z)`` in millimetres. "World" means LPS millimetres of the rendered
image (voxel ``(i, j, k)`` sits at ``origin + spacing * (i, j, k)``); "canonical" means the adult
anatomical frame of :mod:`drasclr.synth.shapes`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import scipy.ndimage as ndi

F32 = np.float32


# ------------------------------------------------------------------------------------ grids
@dataclass(frozen=True)
class Grid:
    """A regular world-aligned voxel grid (identity direction).

    Attributes:
        shape: (nx, ny, nz) voxels; arrays on the grid have shape (nz, ny, nx).
        origin: world LPS mm of voxel (0, 0, 0), (x, y, z).
        spacing: voxel size in mm, (x, y, z).
    """

    shape: tuple[int, int, int]
    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]

    @property
    def zyx(self) -> tuple[int, int, int]:
        """Array shape (nz, ny, nx)."""
        return (self.shape[2], self.shape[1], self.shape[0])

    @cached_property
    def _axes_all(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World coordinates of all voxel centres along x, y, z (float32)."""
        return tuple(
            (self.origin[a] + self.spacing[a] * np.arange(self.shape[a], dtype=float)).astype(F32)
            for a in range(3)
        )  # type: ignore[return-value]

    def axes(self, sl: tuple[slice, slice, slice] | None = None) -> tuple[np.ndarray, ...]:
        """World coordinates (x, y, z) of the voxel centres along each axis, float32.

        Args:
            sl: optional [z, y, x] slices restricting the axes to a block.
        """
        ax = self._axes_all
        if sl is None:
            return ax
        return (ax[0][sl[2]], ax[1][sl[1]], ax[2][sl[0]])

    def block(self, lo: np.ndarray, hi: np.ndarray) -> tuple[slice, slice, slice] | None:
        """[z, y, x] slices of the voxels whose centres lie in the world box [lo, hi] (x, y, z).

        Returns:
            The slices, or None where the box misses the grid.
        """
        out = []
        for a in (2, 1, 0):
            i0 = max(math.ceil((lo[a] - self.origin[a]) / self.spacing[a]), 0)
            i1 = min(math.floor((hi[a] - self.origin[a]) / self.spacing[a]) + 1, self.shape[a])
            if i1 <= i0:
                return None
            out.append(slice(i0, i1))
        return tuple(out)  # type: ignore[return-value]


def coarse_factors(spacing: tuple[float, float, float], target_mm: float) -> tuple[int, int, int]:
    """Integer subsampling factors (x, y, z) so that the coarse spacing is near ``target_mm``."""
    return tuple(max(1, int(round(target_mm / s))) for s in spacing)  # type: ignore[return-value]


def coarse_grid(grid: Grid, factors: tuple[int, int, int]) -> Grid:
    """The grid of every ``factors``-th voxel of ``grid``, extended to cover its last voxel."""
    shape = tuple(-(-(n - 1) // f) + 1 for n, f in zip(grid.shape, factors))
    spacing = tuple(s * f for s, f in zip(grid.spacing, factors))
    return Grid(shape, grid.origin, spacing)  # type: ignore[arg-type]


def upsample(coarse: np.ndarray, factors: tuple[int, int, int],
             sl: tuple[slice, slice, slice]) -> np.ndarray:
    """Trilinear upsampling of a coarse-grid field onto a block of the fine grid.

    The coarse node ``c`` sits on fine voxel ``c * factor`` along each axis (see
    :func:`coarse_grid`), so the result equals the field at the fine voxel centres.

    Args:
        coarse: field on the coarse grid, [z, y, x].
        factors: (x, y, z) subsampling factors.
        sl: [z, y, x] slices of the fine grid to produce.

    Returns:
        float32 array of the block's shape.
    """
    out = np.asarray(coarse, F32)
    crop = []
    for axis in range(3):  # only the coarse nodes the block needs
        f, s = factors[2 - axis], sl[axis]
        c0 = s.start // f
        c1 = min((s.stop - 1) // f + 2, out.shape[axis])
        crop.append(slice(c0, c1))
    out = out[tuple(crop)]
    for axis in (2, 1, 0):  # x first: the last pass creates the full-size block
        f, s, c = factors[2 - axis], sl[axis], crop[axis]
        out = _upsample_axis(out, f, slice(s.start - c.start * f, s.stop - c.start * f), axis)
    return out


def _upsample_axis(a: np.ndarray, f: int, s: slice, axis: int) -> np.ndarray:
    """Linear upsampling by an integer factor along one axis, fine indices ``s``.

    Works phase by phase (fine index = f * c + r) with plain slices, no gathers.
    """
    def at(arr: np.ndarray, sl: slice) -> tuple[slice, ...]:
        idx = [slice(None)] * arr.ndim
        idx[axis] = sl
        return tuple(idx)

    start, stop = s.start, s.stop
    if f == 1:
        return np.ascontiguousarray(a[at(a, slice(start, stop))])
    shape = list(a.shape)
    shape[axis] = stop - start
    out = np.empty(shape, F32)
    for r in range(f):
        i0 = start + (r - start) % f
        if i0 >= stop:
            continue
        m = (stop - 1 - i0) // f + 1
        c0 = (i0 - r) // f
        dst = out[at(out, slice(i0 - start, i0 - start + f * (m - 1) + 1, f))]
        lo = a[at(a, slice(c0, c0 + m))]
        if r == 0:
            dst[...] = lo
            continue
        w = F32(r / f)
        np.multiply(lo, 1 - w, out=dst)
        dst += a[at(a, slice(c0 + 1, c0 + m + 1))] * w
    return out


# ------------------------------------------------------------------------------ random fields
@dataclass(frozen=True)
class FourierNoise:
    """Smooth random field: a sum of random plane waves, unit variance times ``amplitude``.

    Resolution- and pose-independent: it is evaluated at canonical coordinates.
    """

    k: np.ndarray  # (K, 3) wave vectors, rad/mm
    phase: np.ndarray  # (K,)
    amplitude: float

    def __call__(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Field value at canonical points (broadcastable arrays, mm)."""
        out = np.zeros(np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z)), F32)
        gain = F32(self.amplitude * np.sqrt(2.0 / len(self.phase)))
        for (kx, ky, kz), ph in zip(self.k.astype(F32), self.phase.astype(F32)):
            arg = x * kx + y * ky
            arg += z * kz + ph
            out += np.cos(arg)
        out *= gain
        return out


def fourier_noise(rng: np.random.Generator, n_modes: int, wavelength_mm: tuple[float, float],
                  amplitude: float) -> FourierNoise:
    """A :class:`FourierNoise` with isotropic random directions and wavelengths in a range."""
    d = rng.normal(size=(n_modes, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    lam = rng.uniform(*wavelength_mm, n_modes)
    phase = rng.uniform(0, 2 * np.pi, n_modes)
    return FourierNoise(d * (2 * np.pi / lam)[:, None], phase, amplitude)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...],
                 sigma_vox: tuple[float, float, float]) -> np.ndarray:
    """Gaussian-smoothed white noise rescaled to unit standard deviation, float32.

    Args:
        rng: random generator.
        shape: array shape [z, y, x].
        sigma_vox: smoothing sigma in voxels per array axis (z, y, x).
    """
    a = rng.standard_normal(shape, dtype=F32)
    ndi.gaussian_filter(a, sigma_vox, output=a, mode="wrap", truncate=2.5)
    sd = float(a.std())
    a /= sd if sd > 0 else 1.0
    return a


def scanner(ct: np.ndarray, spacing: tuple[float, float, float], blur_mm: float, noise_hu: float,
            rng: np.random.Generator) -> np.ndarray:
    """Scanner model, in place: add white noise, then blur with the gaussian PSF.

    Noise added before the PSF comes out correlated over the PSF width (at least ~0.25 voxel), as
    in a reconstructed image; its level is set so that the *output* noise has standard deviation
    ``noise_hu``.

    Args:
        ct: float32 HU image [z, y, x], modified in place.
        spacing: (x, y, z) mm.
        blur_mm: PSF gaussian sigma in mm.
        noise_hu: output noise standard deviation in HU.
        rng: random generator.
    """
    # PSF plus a 0.25-voxel reconstruction blur, so the noise is always a little correlated
    sigma = [math.hypot(blur_mm / s, 0.25) for s in spacing[::-1]]
    gain = 1.0
    for s in sigma:
        if s > 0:
            w = _gauss_kernel(s)
            gain *= float(np.sum(w * w))
    if noise_hu > 0:
        g = F32(noise_hu / np.sqrt(gain))
        step = 16
        for k in range(0, ct.shape[0], step):
            noise = rng.standard_normal((min(step, ct.shape[0] - k),) + ct.shape[1:], dtype=F32)
            noise *= g
            ct[k:k + step] += noise
    for axis, s in enumerate(sigma):
        if s > 0:
            ndi.correlate1d(ct, _gauss_kernel(s), axis=axis, output=ct, mode="nearest")
    return ct


def _gauss_kernel(sigma: float) -> np.ndarray:
    """Normalised discrete gaussian kernel, radius ceil(2.5 sigma)."""
    r = max(1, int(np.ceil(2.5 * sigma)))
    x = np.arange(-r, r + 1)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return (w / w.sum()).astype(np.float64)


# ------------------------------------------------------------------------------ rasterising
def segment_sd(grid: Grid, a: np.ndarray, b: np.ndarray, ra: float, rb: float,
               flat: bool = False) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    """Signed distance (mm, negative inside) to a tapered tube around segment a-b, on a block.

    Args:
        grid: the voxel grid.
        a, b: world end points (x, y, z) mm.
        ra, rb: radii at a and b in mm.
        flat: flat end caps (a cylinder) instead of round ones (a capsule).

    Returns:
        ([z, y, x] slices of the block, float32 distances on it), or None if off the grid.
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    pad = max(ra, rb) + 1.5 * max(grid.spacing)
    sl = grid.block(np.minimum(a, b) - pad, np.maximum(a, b) + pad)
    if sl is None:
        return None
    xs, ys, zs = grid.axes(sl)
    ab = (b - a).astype(F32)
    l2 = F32(max(float(ab @ ab), 1e-9))
    px, py, pz = xs - F32(a[0]), ys - F32(a[1]), zs - F32(a[2])
    traw = (pz * (ab[2] / l2))[:, None, None] + (py * (ab[1] / l2))[None, :, None]
    traw = traw + (px * (ab[0] / l2))[None, None, :]
    p2 = (pz * pz)[:, None, None] + (py * py)[None, :, None]
    p2 = p2 + (px * px)[None, None, :]
    t = np.clip(traw, 0, 1)
    # |p - a - t ab|^2 = |p - a|^2 - 2 t traw l2 + t^2 l2
    d2 = p2 - l2 * t * (2 * traw - t)
    np.maximum(d2, 0, out=d2)
    sd = np.sqrt(d2)
    if rb != ra:
        sd -= F32(ra) + F32(rb - ra) * t
    else:
        sd -= F32(ra)
    if flat:
        ln = F32(np.sqrt(l2))
        sd = np.maximum(sd, np.maximum(-traw, traw - 1) * ln)
    return sl, sd


def splat_min_rank(block: Grid, centres: np.ndarray, radii: np.ndarray, ranks: np.ndarray,
                   out: np.ndarray) -> None:
    """Rasterise balls and keep, per voxel, the smallest rank of the balls covering it.

    Vectorised over balls: loops over the voxel offsets of a stencil, in radius classes.

    Args:
        block: grid of ``out`` (world geometry of the block).
        centres: (N, 3) world ball centres (x, y, z) mm.
        radii: (N,) world radii mm.
        ranks: (N,) int ranks.
        out: int32 [z, y, x] array updated in place with ``minimum``.
    """
    if len(radii) == 0:
        return
    sp = np.asarray(block.spacing)
    o = np.asarray(block.origin)
    cont = (centres - o) / sp  # continuous voxel index (x, y, z)
    base = np.rint(cont).astype(np.int64)
    frac_mm = ((cont - base) * sp).astype(F32)
    n = np.asarray(block.shape)
    flat = out.reshape(-1)
    lo_r, hi_r = float(radii.min()), float(radii.max()) * 1.0001
    edges = np.geomspace(lo_r, hi_r, 4) if hi_r > 1.5 * lo_r else np.array([lo_r, hi_r])
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (radii >= lo) & (radii < hi) if hi < edges[-1] else (radii >= lo)
        if not sel.any():
            continue
        _splat_class(base[sel], frac_mm[sel], radii[sel].astype(F32), ranks[sel].astype(np.int32),
                     sp, n, flat, float(radii[sel].max()))


def _splat_class(base: np.ndarray, frac_mm: np.ndarray, r: np.ndarray, rank: np.ndarray,
                 sp: np.ndarray, n: np.ndarray, flat: np.ndarray, rmax: float) -> None:
    """One radius class of :func:`splat_min_rank`."""
    ext = np.ceil(rmax / sp + 0.5).astype(int)
    r2 = r * r
    ox = np.arange(-ext[0], ext[0] + 1)
    oy = np.arange(-ext[1], ext[1] + 1)
    oz = np.arange(-ext[2], ext[2] + 1)
    for dz in oz:
        ez = (F32(dz * sp[2]) - frac_mm[:, 2]) ** 2
        kz = base[:, 2] + dz
        okz = (kz >= 0) & (kz < n[2]) & (ez < r2)
        if not okz.any():
            continue
        for dy in oy:
            ey = ez + (F32(dy * sp[1]) - frac_mm[:, 1]) ** 2
            ky = base[:, 1] + dy
            oky = okz & (ky >= 0) & (ky < n[1]) & (ey < r2)
            if not oky.any():
                continue
            idx = np.nonzero(oky)[0]
            eyi, r2i = ey[idx], r2[idx]
            lin_zy = (kz[idx] * n[1] + ky[idx]) * n[0]
            for dx in ox:
                kx = base[idx, 0] + dx
                ex = eyi + (F32(dx * sp[0]) - frac_mm[idx, 0]) ** 2
                ok = (kx >= 0) & (kx < n[0]) & (ex < r2i)
                if ok.any():
                    np.minimum.at(flat, lin_zy[ok] + kx[ok], rank[idx[ok]])


NO_RANK = np.iinfo(np.int32).max  # "not covered" in min-rank fields


def take_ranks(rank: np.ndarray, eligible: np.ndarray, target: int) -> tuple[int, np.ndarray]:
    """Smallest rank cut-off whose covered eligible voxels reach ``target``.

    Args:
        rank: int32 min-rank field (``NO_RANK`` where uncovered).
        eligible: bool mask of voxels that may be altered.
        target: wanted number of voxels.

    Returns:
        (cut-off k, per-rank voxel counts): voxels with ``rank < k`` form the lesion.
    """
    r = rank[eligible]
    r = r[r < NO_RANK]
    if r.size == 0:
        return 0, np.zeros(0, np.int64)
    counts = np.bincount(r)
    cum = np.cumsum(counts)
    k = int(np.searchsorted(cum, target)) + 1
    return min(k, len(counts)), counts


def top_fraction_threshold(values: np.ndarray, count: int) -> float:
    """The threshold t such that about ``count`` of ``values`` are > t (+inf if count <= 0)."""
    if count <= 0 or values.size == 0:
        return float("inf")
    if count >= values.size:
        return float("-inf")
    k = values.size - count
    return float(np.partition(values, k - 1)[k - 1])


# --------------------------------------------------------------------------------- lesions
@dataclass
class LesionInputs:
    """What lesion placement needs (block arrays are the chest block of the full grid).

    Attributes:
        spec: the PhantomSpec (fractions, seed-derived streams in ``rngs``).
        block: grid of the chest block; blk: its [z, y, x] slices in the full grid.
        factors: coarse subsampling factors (x, y, z); cgrid: the coarse grid.
        eligible: bool block, parenchyma that may be altered (lungs minus vessels and airways).
        paren: float32 block, parenchyma HU, modified in place at lesion voxels.
        scale: canonical -> world scale (mm per canonical mm).
        n_lung: lung voxel count (fractions refer to it).
        sites: (T, 3) world points on terminal arteries (centrilobular sites).
        coarse_world, coarse_dist, coarse_zn: per coarse lung voxel: world centre, distance to
            the pleura (canonical mm), cranio-caudal position (0 apex .. 1 base).
        dist, zn, y, mask: the same as coarse-grid fields (dist in world mm, y canonical mm).
        rngs: random streams 'cle', 'pse', 'ple', 'covid'.
    """

    spec: Any
    block: Grid
    blk: tuple[slice, slice, slice]
    factors: tuple[int, int, int]
    cgrid: Grid
    eligible: np.ndarray
    paren: np.ndarray
    scale: float
    n_lung: int
    sites: np.ndarray
    coarse_world: np.ndarray
    coarse_dist: np.ndarray
    coarse_zn: np.ndarray
    dist: np.ndarray
    zn: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    rngs: dict[str, np.random.Generator]


@dataclass
class Lesions:
    """Placed lesions: bool masks on the chest block and the CLE / PSE group centres."""

    masks: dict[str, np.ndarray]
    centres: list[tuple[str, tuple[float, float, float]]]


def place_lesions(li: LesionInputs) -> Lesions:
    """Place PSE, CLE, PLE, consolidation and GGO (in that order, mutually exclusive).

    Each disease takes ``fraction * n_lung`` voxels from the parenchyma still free (so when the
    fractions add up to more than the free parenchyma the later ones get less) and writes its HU
    into ``li.paren``.
    """
    free = li.eligible.copy()
    # emphysema keeps one voxel off the pleura, vessels and airway walls, so that the PSF does not
    # blend it with soft tissue (the lesion stays dark at coarse resolution)
    inner = erode6(li.eligible)
    spec = li.spec
    p_mean = float(li.paren[free].mean()) if free.any() else -850.0
    masks: dict[str, np.ndarray] = {}
    centres: list[tuple[str, tuple[float, float, float]]] = []
    for name, fn in (("pse", _pse), ("cle", _cle), ("ple", _ple)):
        target = int(round(getattr(spec, name) * li.n_lung))
        if target > 0 and free.any():
            region = free & inner
            if np.count_nonzero(region) < 1.2 * target:  # severe disease: use all free parenchyma
                region = free
            m, c = fn(li, region, target, p_mean)
        else:
            m, c = np.zeros_like(free), []
        masks[name] = m
        centres += c
        free &= ~m
    masks["consolidation"], masks["ggo"] = _covid(li, free, p_mean)
    return Lesions(masks, centres)


def _sample_coarse(li: LesionInputs, rng: np.random.Generator, weights: np.ndarray,
                   n: int) -> np.ndarray:
    """n world points drawn from coarse lung voxels with probability ~ weights, jittered."""
    p = weights / weights.sum()
    idx = rng.choice(len(p), n, p=p)
    sp = np.asarray(li.cgrid.spacing)
    return li.coarse_world[idx] + rng.uniform(-0.5, 0.5, (n, 3)) * sp


def _ranked_mask(li: LesionInputs, rank: np.ndarray, free: np.ndarray, target: int,
                 seeds: np.ndarray, kind: str) -> tuple[np.ndarray, list, int]:
    """Mask of the lowest-ranked groups reaching ``target`` voxels, with their centres."""
    k, counts = take_ranks(rank, free, target)
    mask = free & (rank < k)
    used = [j for j in range(min(k, len(counts))) if counts[j] > 0]
    cen = [(kind, (float(seeds[j][0]), float(seeds[j][1]), float(seeds[j][2]))) for j in used]
    return mask, cen, k


def _cle(li: LesionInputs, free: np.ndarray, target: int, p_mean: float) -> tuple[np.ndarray, list]:
    """Centrilobular emphysema: clusters of small holes around centrilobular arteries."""
    spec, s, rng = li.spec, li.scale, li.rngs["cle"]
    core = np.clip(li.coarse_dist / 25.0, 0, 1)
    w = np.exp(-0.5 * ((li.coarse_zn - spec.cle_zone) / 0.2) ** 2)
    w = w * (spec.cle_core * core + (1 - spec.cle_core) * (1 - core) + 0.05) + 1e-6
    sp = np.asarray(li.block.spacing)
    r_min = _visible_radius(li, 1.0)
    grow = 1.0 + 1.5 * spec.cle
    r_mean = max(2.0 * grow * s, r_min)
    per = 4.0 + 8.0 * spec.cle
    vox = per * 4.0 / 3.0 * np.pi * r_mean**3 * 0.5 / float(np.prod(sp))
    rank = np.full(free.shape, NO_RANK, np.int32)
    seeds = np.zeros((0, 3))
    tree = _site_tree(li.sites)
    for _ in range(6):
        n = int(np.ceil(1.3 * target / max(vox, 1.0))) + 4
        c = _sample_coarse(li, rng, w, n)
        if tree is not None:
            d, j = tree.query(c, distance_upper_bound=6.0 * s)
            hit = np.isfinite(d)
            c[hit] = li.sites[j[hit]] + rng.normal(0, 0.8 * s, (int(hit.sum()), 3))
        k_holes = 2 + rng.poisson(per - 2.0, n)
        owner = np.repeat(np.arange(n), k_holes)
        holes = c[owner] + rng.normal(0, 3.0 * s, (len(owner), 3))
        radii = np.maximum(rng.uniform(1.0, 3.0, len(owner)) * grow * s, r_min)
        splat_min_rank(li.block, holes, radii, owner + len(seeds), rank)
        seeds = np.vstack([seeds, c])
        _, counts = take_ranks(rank, free, target)
        if counts.sum() >= target:
            break
    mask, cen, _ = _ranked_mask(li, rank, free, target, seeds, "cle")
    li.paren[mask] = F32(-1000.0) + F32(0.1) * (li.paren[mask] - F32(p_mean))
    return mask, cen


def _visible_radius(li: LesionInputs, voxels: float) -> float:
    """Smallest hole radius (world mm) that stays dark through the voxel size and the PSF."""
    psf = math.hypot(li.spec.blur_mm, 0.25 * max(li.block.spacing))  # as in :func:`scanner`
    return max(voxels * max(li.block.spacing), 2.5 * psf)


def _site_tree(sites: np.ndarray):  # noqa: ANN202 - scipy type
    """KD-tree of centrilobular sites, or None."""
    if len(sites) == 0:
        return None
    from scipy.spatial import cKDTree

    return cKDTree(sites)


def _pse(li: LesionInputs, free: np.ndarray, target: int, p_mean: float) -> tuple[np.ndarray, list]:
    """Paraseptal emphysema: groups of subpleural cysts in one layer along the pleura.

    Each cyst (5-15 mm adult) is centred at a depth about equal to its radius, so it touches the
    pleura; walls are drawn where the voxel size can show them.
    """
    s, rng = li.scale, li.rngs["pse"]
    sp = np.asarray(li.block.spacing)
    r_min = _visible_radius(li, 1.2)
    tol = 0.75 * max(li.cgrid.spacing)
    depth_all = li.coarse_dist * s  # world mm
    band = depth_all <= max(7.5 * s, r_min) + tol
    if not band.any():
        return np.zeros_like(free), []
    cand, depth = li.coarse_world[band], depth_all[band]
    w = 1.0 - 0.6 * li.coarse_zn[band] + 1e-6
    from scipy.spatial import cKDTree

    tree = cKDTree(cand)
    r_mean = max(4.5 * s, r_min)
    vox = 5.0 * 4.0 / 3.0 * np.pi * r_mean**3 * 0.6 / float(np.prod(sp))
    n = int(np.ceil(1.4 * target / max(vox, 1.0))) + 3
    seeds = cand[rng.choice(len(cand), n, p=w / w.sum())]
    cen, rad, own = [], [], []
    for g, c in enumerate(seeds):
        near = np.asarray(tree.query_ball_point(c, max(18.0 * s, 3 * r_min)))
        r = np.maximum(rng.uniform(2.5, 7.5, 2 + rng.poisson(4)) * s, r_min)
        miss = np.abs(depth[near][None, :] - r[:, None])
        score = np.where(miss < tol, rng.random(miss.shape), 2.0 + miss)
        pick = near[np.argmin(score, axis=1)]
        cen.append(cand[pick] + rng.uniform(-0.3, 0.3, (len(pick), 3)) * sp)
        rad.append(r)
        own.append(np.full(len(pick), g))
    cen_a, rad_a, own_a = np.vstack(cen), np.concatenate(rad), np.concatenate(own)
    wall = 0.8 * s  # a thin soft-tissue wall, drawn only when a voxel can show it
    if wall < 0.5 * float(sp.min()):
        wall = 0.0
    wall_hu = -990.0 + 690.0 * min(1.0, wall / float(sp.mean()))
    outer = np.full(free.shape, NO_RANK, np.int32)
    splat_min_rank(li.block, cen_a, rad_a + wall, own_a, outer)
    mask, centres, k = _ranked_mask(li, outer, free, target, seeds, "pse")
    del outer
    lum = mask
    if wall > 0:
        lumen = np.full(free.shape, NO_RANK, np.int32)
        splat_min_rank(li.block, cen_a, rad_a, own_a, lumen)
        lum = mask & (lumen < k)
        li.paren[mask] = wall_hu
    li.paren[lum] = -1000.0
    return mask, centres


def erode6(mask: np.ndarray) -> np.ndarray:
    """Binary erosion by the 6-neighbourhood (voxels on the array border are kept)."""
    out = mask.copy()
    for axis in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(1, None), slice(None, -1)
        out[tuple(lo)] &= mask[tuple(hi)]
        out[tuple(hi)] &= mask[tuple(lo)]
    return out


def _coarse_noise(li: LesionInputs, rng: np.random.Generator, corr_mm: float) -> np.ndarray:
    """Unit smooth noise on the coarse grid, correlation ~ corr_mm canonical."""
    sig = [corr_mm * li.scale / sp for sp in li.cgrid.spacing[::-1]]
    return smooth_noise(rng, li.mask.shape, sig)


def _ple(li: LesionInputs, free: np.ndarray, target: int, p_mean: float) -> tuple[np.ndarray, list]:
    """Panlobular emphysema: smooth lower-zone regions pushed to about -985 HU."""
    f = _coarse_noise(li, li.rngs["ple"], 12.0) + F32(2.2) * li.zn
    up = upsample(f, li.factors, li.blk)
    thr = top_fraction_threshold(up[free], target)
    mask = free & (up > thr)
    li.paren[mask] = F32(-985.0) + F32(0.2) * (li.paren[mask] - F32(p_mean))
    return mask, []


def _covid(li: LesionInputs, free: np.ndarray, p_mean: float) -> tuple[np.ndarray, np.ndarray]:
    """Consolidation and ground glass from one patchy peripheral / posterior / basal field."""
    spec = li.spec
    n_c = int(round(spec.consolidation * li.n_lung))
    n_g = int(round(spec.ggo * li.n_lung))
    if n_c + n_g == 0 or not free.any():
        return np.zeros_like(free), np.zeros_like(free)
    periph = 1 - np.clip(li.dist / F32(25.0 * li.scale), 0, 1)
    f = _coarse_noise(li, li.rngs["covid"], 9.0) + F32(1.4) * periph
    f += F32(0.8) * np.clip((li.y - F32(5.0)) / F32(80.0), -1, 1) + F32(0.3) * li.zn
    up = upsample(f, li.factors, li.blk)
    vals = up[free]
    t_c = top_fraction_threshold(vals, n_c)
    t_g = top_fraction_threshold(vals, n_c + n_g)
    cons = free & (up > t_c)
    ggo = free & (up > t_g) & ~cons
    lo = t_g if np.isfinite(t_g) else float(vals.min())
    hi = t_c if np.isfinite(t_c) else lo + float(vals.std())
    ramp = np.clip((up[ggo] - F32(lo)) / F32(max(hi - lo, 1e-6)), 0, 1)
    li.paren[ggo] = F32(-700.0) + F32(200.0) * ramp + F32(0.6) * (li.paren[ggo] - F32(p_mean))
    li.paren[cons] = F32(-40.0) + F32(0.6) * (li.paren[cons] - F32(p_mean))
    return cons, ggo
