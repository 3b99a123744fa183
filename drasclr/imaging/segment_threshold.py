"""Threshold lung segmentation backend: pure numpy/scipy, made for aerated lungs.

Works in a canonical [S, P, L] view of the array (any storage orientation, found from the LPS
direction cosines; labels are mapped back to the input's [z, y, x] order): air below
``threshold_hu`` enclosed by the body in each axial slice, minus the trachea and main bronchi
(tracked slice by slice from a round central blob near the top with the strict ``airway_hu``
threshold and leak control, down to ``bronchi_mm`` below the carina), then the two lungs as the
largest laterally paired components (a merged component is split by erosion, else at the
thinnest sagittal plane); each lung is closed (``closing_mm``) and its small in-plane holes
filled so that vessels count as lung. Heavy work runs on a grid of about 2 mm
(``work_spacing_mm``, block means); the boundary is then refined at full resolution with the
threshold. Morphology sizes shrink for bodies narrower than an adult's (miniature phantoms).

It is made for aerated lungs (normal, emphysema); dense disease (consolidation, heavy ground
glass) touching the pleura is partly missed: use the lungmask backend there. Labels follow
:mod:`drasclr.imaging.segment` (1 right, 2 left); no lung found raises
:class:`~drasclr.imaging.segment.SegmentationError`.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import numpy as np
from scipy import ndimage

from drasclr.imaging.geometry import Geometry, Volume
from drasclr.imaging.resample import block_mean
from drasclr.imaging.segment import LEFT_LUNG, RIGHT_LUNG, SegmentationError, SegmentConfig

log = logging.getLogger(__name__)



#: Typical adult chest width (mm); morphology is scaled down for narrower bodies.
_ADULT_BODY_WIDTH_MM = 340.0


#: Rim grown through air around the tracked airway lumen where it touches lung, as a fraction of
#: the trachea lumen diameter.
_AIRWAY_RIM = 0.25


# =============================================================================== orientation
def _canonical_axes(geometry: Geometry) -> tuple[tuple[int, int, int], tuple[bool, bool, bool]]:
    """Axis permutation and flips bringing a [z, y, x] array to canonical [S, P, L] order.

    Returns:
        (order, flips): ``canonical = np.transpose(array, order)`` then flip canonical axis ``a``
        where ``flips[a]``; canonical axes are (0: +z superior, 1: +y posterior, 2: +x left).
    """
    d = np.abs(geometry.direction_matrix)  # d[lps_axis, index_axis]
    best = max(itertools.permutations(range(3)), key=lambda p: sum(d[p[k], k] for k in range(3)))
    # index axis k (x=0, y=1, z=2) runs along LPS axis best[k]; array axis of index axis k is 2-k.
    order = [0, 0, 0]
    flips = [False, False, False]
    for k in range(3):
        lps = best[k]
        order[2 - lps] = 2 - k
        flips[2 - lps] = bool(geometry.direction_matrix[lps, k] < 0)
    return (order[0], order[1], order[2]), (flips[0], flips[1], flips[2])


def _to_canonical(array: np.ndarray, geometry: Geometry) -> tuple[np.ndarray, np.ndarray, Any]:
    """View of ``array`` in canonical [S, P, L] order, its spacing (mm, same order), and an undo."""
    order, flips = _canonical_axes(geometry)
    spacing_zyx = np.asarray(geometry.spacing[::-1])
    canon = np.transpose(array, order)
    spacing = spacing_zyx[list(order)]
    flip_axes = tuple(a for a in range(3) if flips[a])
    if flip_axes:
        canon = np.flip(canon, axis=flip_axes)
    inverse = np.argsort(order)

    def undo(labels: np.ndarray) -> np.ndarray:
        out = np.flip(labels, axis=flip_axes) if flip_axes else labels
        return np.ascontiguousarray(np.transpose(out, inverse))

    return canon, spacing, undo


# =============================================================================== helpers
_INPLANE4 = np.zeros((3, 3, 3), bool)


_INPLANE4[1] = ndimage.generate_binary_structure(2, 1)


_INPLANE8 = np.zeros((3, 3, 3), bool)


_INPLANE8[1] = True


_BALL6 = ndimage.generate_binary_structure(3, 1)


def _upsample(labels: np.ndarray, f: tuple[int, int, int], shape: tuple[int, ...]) -> np.ndarray:
    """Nearest-neighbour block upsampling of a working-grid array to ``shape``."""
    out = labels
    for axis, k in enumerate(f):
        if k > 1:
            out = np.repeat(out, k, axis=axis)
    return out[: shape[0], : shape[1], : shape[2]]


def _bbox(mask: np.ndarray, margin: int = 0) -> tuple[slice, slice, slice] | None:
    """Bounding box of a mask as slices (with margin), or None if empty."""
    out = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        nz = np.flatnonzero(mask.any(axis=other))
        if nz.size == 0:
            return None
        out.append(slice(max(0, nz[0] - margin), min(mask.shape[axis], nz[-1] + 1 + margin)))
    return (out[0], out[1], out[2])


def _not_touching_inplane_border(mask: np.ndarray, structure: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` whose component within their axial slice avoids the slice border."""
    lab, n = ndimage.label(mask, structure=structure)
    if n == 0:
        return np.zeros_like(mask)
    border = np.zeros(n + 1, bool)
    for face in (lab[:, 0, :], lab[:, -1, :], lab[:, :, 0], lab[:, :, -1]):
        border[face] = True
    border[0] = True
    return ~border[lab]


def _fill_holes_inplane(mask: np.ndarray, max_area_px: float) -> np.ndarray:
    """Fill holes of at most ``max_area_px`` pixels in each axial slice of a 3D mask.

    The limit keeps the diaphragm dome (a large hole ringed by the costophrenic recesses in
    axial slices near the lung base) out of the lung while vessels are filled.
    """
    box = _bbox(mask, margin=1)
    if box is None:
        return mask
    sub = mask[box]
    lab, n = ndimage.label(~sub, structure=_INPLANE4)
    if n == 0:
        return mask
    fill = np.bincount(lab.reshape(-1)) <= max_area_px
    for face in (lab[:, 0, :], lab[:, -1, :], lab[:, :, 0], lab[:, :, -1]):
        fill[face] = False
    fill[0] = False
    out = mask.copy()
    out[box] = sub | fill[lab]
    return out


# =============================================================================== airway
def _trachea_candidates(
    strict: np.ndarray, body: np.ndarray, spacing: np.ndarray, z_lo: int
) -> list[tuple[int, np.ndarray]]:
    """Round, central, trachea-sized air blobs in the slices from the top down to ``z_lo``.

    Returns:
        (z, 2D mask) candidates, top-most first (at most one per slice: the best).
    """
    px_mm2 = spacing[1] * spacing[2]
    out: list[tuple[int, np.ndarray]] = []
    for z in range(strict.shape[0] - 1, z_lo - 1, -1):
        if not strict[z].any():
            continue
        cols = np.flatnonzero(body[z].any(axis=0))
        if cols.size < 3:
            continue
        width_mm = (cols[-1] - cols[0] + 1) * spacing[2]
        centre_x = 0.5 * (cols[0] + cols[-1])
        d_min, d_max = 0.025 * width_mm, 0.14 * width_mm
        a_min, a_max = np.pi / 4 * d_min**2, np.pi / 4 * d_max**2
        lab, n = ndimage.label(strict[z], structure=np.ones((3, 3), bool))
        best: tuple[float, int] | None = None
        for i, sl in enumerate(ndimage.find_objects(lab), start=1):
            if sl is None:
                continue
            comp = lab[sl] == i
            area = comp.sum() * px_mm2
            if not a_min <= area <= a_max:
                continue
            fill = comp.mean()  # area / bounding-box area (a disc gives 0.79)
            if fill < 0.45:
                continue
            cx = (sl[1].start + sl[1].stop - 1) / 2
            off = abs(cx - centre_x) * spacing[2]
            if off > 0.12 * width_mm:
                continue
            score = off
            if best is None or score < best[0]:
                best = (score, i)
        if best is not None:
            out.append((z, lab == best[1]))
    return out


def _track_airway(
    strict: np.ndarray,
    z0: int,
    seed: np.ndarray,
    spacing: np.ndarray,
    bronchi_mm: float,
    step: int = -1,
) -> tuple[np.ndarray, int | None]:
    """Track the airway lumen slice by slice from a trachea seed blob, with leak control.

    A blob of the next slice joins the airway when it overlaps the (dilated) current airway and is
    not much larger than the trachea seed; larger blobs are lung (a leak) and end that branch.
    Downwards (``step=-1``) the track runs through the carina and stops ``bronchi_mm`` below it;
    upwards (``step=+1``) it follows the trachea to the top of the volume or the larynx.

    Returns:
        (airway mask on the working grid, carina slice index or None).
    """
    airway = np.zeros(strict.shape, bool)
    airway[z0] = seed
    max_area = 2.0 * int(seed.sum()) + 4
    cur = seed
    carina: int | None = None
    struct = np.ones((3, 3), bool)
    z = z0 + step
    while 0 <= z < strict.shape[0]:
        lab, n = ndimage.label(strict[z], structure=struct)
        if n == 0:
            break
        ids = np.unique(lab[ndimage.binary_dilation(cur, struct)])
        ids = ids[ids > 0]
        areas = np.bincount(lab.reshape(-1), minlength=n + 1)
        keep = ids[areas[ids] <= max_area]
        if keep.size == 0:
            break
        cur = np.isin(lab, keep)
        airway[z] = cur
        if step < 0:
            if carina is None and keep.size >= 2:
                carina = z
            if carina is not None and (carina - z) * spacing[0] > bronchi_mm:
                break
        z += step
    return airway, carina


def _find_airway(
    strict: np.ndarray,
    inside: np.ndarray,
    body: np.ndarray,
    spacing: np.ndarray,
    config: SegmentConfig,
) -> np.ndarray:
    """Trachea and main bronchi on the working grid (empty when no trachea is found).

    The strict-threshold lumen is tracked from the best trachea seed up and down. In every tracked
    slice the whole air blob (below ``threshold_hu``) around the lumen is taken when it is no larger
    than twice the trachea's blob in the seed slice; a larger blob (the lumen touches lung) only
    gives a rim of ``_AIRWAY_RIM`` trachea diameters around the lumen. One voxel (the wall) is
    added at the end.
    """
    lab_all, _ = ndimage.label(inside, structure=_BALL6)
    sizes_all = np.bincount(lab_all.reshape(-1))
    sizes_all[0] = 0
    zs_big = np.nonzero((lab_all == int(np.argmax(sizes_all))).any(axis=(1, 2)))[0]
    z_lo = int(zs_big[0] + 0.4 * (zs_big[-1] - zs_big[0]))  # search the upper 60 % of the lungs
    min_len = max(3, int(round(20.0 / spacing[0])))
    core = np.zeros(strict.shape, bool)
    z_seed, seed_area = -1, 0
    for z0, seed in _trachea_candidates(strict, body, spacing, z_lo)[:8]:
        down, carina = _track_airway(strict, z0, seed, spacing, config.bronchi_mm, step=-1)
        length = int(down.any(axis=(1, 2)).sum())
        if carina is not None or length >= min_len:
            up, _ = _track_airway(strict, z0, seed, spacing, config.bronchi_mm, step=+1)
            core = down | up
            z_seed, seed_area = z0, int(seed.sum())
            log.debug("trachea seed at slice %d, %d slices down, carina %s", z0, length, carina)
            break
    if z_seed < 0:
        log.debug("no trachea found")
        return core

    struct = np.ones((3, 3), bool)
    diameter_px = 2.0 * np.sqrt(seed_area / np.pi)
    margin = max(1, int(round(_AIRWAY_RIM * diameter_px)))
    lab0, _ = ndimage.label(inside[z_seed], structure=struct)
    ids0 = np.unique(lab0[core[z_seed]])
    ids0 = ids0[ids0 > 0]
    blob0 = int(np.isin(lab0, ids0).sum())
    max_blob = 2.0 * (blob0 if blob0 <= 9 * seed_area else 4 * seed_area)
    airway = core.copy()
    for z in np.flatnonzero(core.any(axis=(1, 2))):
        lab, n = ndimage.label(inside[z], structure=struct)
        areas = np.bincount(lab.reshape(-1), minlength=n + 1)
        ids = np.unique(lab[core[z]])
        for i in ids[ids > 0]:
            blob = lab == i
            if areas[i] <= max_blob:
                airway[z] |= blob
            else:
                airway[z] |= ndimage.binary_dilation(core[z], struct, iterations=margin, mask=blob)
    return ndimage.binary_dilation(airway, _BALL6)


# =============================================================================== lungs
def _split_merged(comp: np.ndarray, midline_x: float, spacing: np.ndarray) -> np.ndarray:
    """Split one component holding both lungs into labels (1: lower x, 2: higher x).

    Erodes until two large laterally placed parts appear, then gives every voxel to the nearest
    part; falls back to a cut at the thinnest sagittal plane near the midline.
    """
    box = _bbox(comp, margin=1)
    assert box is not None
    sub = comp[box]
    x0 = box[2].start
    total = sub.sum()
    eroded = sub
    max_iter = max(1, int(round(10.0 / float(np.min(spacing)))))
    for n_eroded in range(1, max_iter + 1):
        eroded = ndimage.binary_erosion(eroded, _BALL6)
        lab, n = ndimage.label(eroded, structure=_BALL6)
        if n < 2:
            if n == 0:
                break
            continue
        sizes = np.bincount(lab.reshape(-1))[1:]
        top = np.argsort(sizes)[::-1][:2] + 1
        if sizes[top[1] - 1] < 0.1 * sizes[top[0] - 1]:
            continue
        xs = [np.nonzero(lab == t)[2].mean() + x0 for t in top]
        if (xs[0] - midline_x) * (xs[1] - midline_x) >= 0:
            continue  # both on the same side: not the two lungs
        markers = np.zeros(sub.shape, np.uint8)
        right, left = (top[0], top[1]) if xs[0] < xs[1] else (top[1], top[0])
        markers[lab == right] = RIGHT_LUNG
        markers[lab == left] = LEFT_LUNG
        _, (iz, iy, ix) = ndimage.distance_transform_edt(
            markers == 0, sampling=spacing, return_indices=True
        )
        nearest = markers[iz, iy, ix]
        out = np.zeros(comp.shape, np.uint8)
        out[box] = np.where(sub, nearest, 0)
        log.debug("merged lungs split after %d erosion(s)", n_eroded)
        return out
    # Fallback: thinnest sagittal plane in the central 40 % of the component.
    profile = sub.sum(axis=(0, 1)).astype(float)
    nx = profile.size
    lo, hi = int(0.3 * nx), max(int(0.7 * nx), int(0.3 * nx) + 1)
    cut = lo + int(np.argmin(profile[lo:hi]))
    log.info("lungs merged; split at sagittal plane x=%d (%.0f voxels)", cut + x0, total)
    out = np.zeros(comp.shape, np.uint8)
    sub_lab = np.zeros(sub.shape, np.uint8)
    sub_lab[:, :, :cut][sub[:, :, :cut]] = RIGHT_LUNG
    sub_lab[:, :, cut:][sub[:, :, cut:]] = LEFT_LUNG
    out[box] = sub_lab
    return out


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 6-connected component of a mask."""
    lab, n = ndimage.label(mask, structure=_BALL6)
    if n <= 1:
        return mask
    sizes = np.bincount(lab.reshape(-1))
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def _pick_lungs(cand: np.ndarray, body: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Labels (1 right = lower canonical x, 2 left) of the two lungs among candidate air."""
    lab, n = ndimage.label(cand, structure=_BALL6)
    if n == 0:
        raise SegmentationError("no air region inside the body")
    sizes = np.bincount(lab.reshape(-1))
    sizes[0] = 0
    objects = ndimage.find_objects(lab)
    first = int(np.argmax(sizes))
    sl1 = objects[first - 1]
    assert sl1 is not None
    c1 = lab == first
    body_rows = body[sl1[0]]
    midline = float(np.nonzero(body_rows)[2].mean()) if body_rows.any() else cand.shape[2] / 2
    xs1 = np.nonzero(c1[sl1])[2] + sl1[2].start
    frac_right = float(np.mean(xs1 < midline))
    if min(frac_right, 1.0 - frac_right) > 0.15:  # straddles the midline: both lungs, merged
        return _split_merged(c1, midline, spacing)
    side1 = np.sign(xs1.mean() - midline)
    z1 = (sl1[0].start, sl1[0].stop)
    second = 0
    for i in np.argsort(sizes)[::-1]:
        i = int(i)
        if i == first or sizes[i] == 0:
            continue
        if sizes[i] < 0.1 * sizes[first]:
            break
        sl = objects[i - 1]
        assert sl is not None
        overlap = min(z1[1], sl[0].stop) - max(z1[0], sl[0].start)
        if overlap < 0.5 * (sl[0].stop - sl[0].start):
            continue
        xs = np.nonzero(lab[sl] == i)[2] + sl[2].start
        if np.sign(xs.mean() - midline) == side1:
            continue
        second = i
        break
    out = np.zeros(cand.shape, np.uint8)
    if second == 0:
        log.warning("only one lung found (%d voxels on the working grid)", sizes[first])
        out[c1] = RIGHT_LUNG if side1 < 0 else LEFT_LUNG
        return out
    c2 = lab == second
    right, left = (c1, c2) if side1 < 0 else (c2, c1)
    out[right] = RIGHT_LUNG
    out[left] = LEFT_LUNG
    return out


def _working_factors(
    shape: tuple[int, ...], spacing: np.ndarray, config: SegmentConfig
) -> tuple[int, int, int]:
    """Integer block sizes (z, y, x) giving a working grid of about ``work_spacing_mm``.

    Default: 2 mm, or finer when the in-plane field of view is under 260 mm (miniature phantoms),
    never finer than the input.
    """
    fov_mm = float(min(shape[1] * spacing[1], shape[2] * spacing[2]))
    target = config.work_spacing_mm or min(2.0, max(fov_mm / 130.0, float(spacing.min())))
    f = [max(1, int(round(target / float(s)))) for s in spacing]
    return (f[0], f[1], f[2])


def _air_inside_body(w: np.ndarray, threshold_hu: float) -> tuple[np.ndarray, np.ndarray]:
    """(air enclosed by the body, body incl. its cavities), per axial slice of a working-grid array.

    The tissue is closed by one voxel first so that a thin, noisy chest wall does not connect the
    lungs to the air outside.
    """
    air = w < threshold_hu
    closed = ndimage.binary_closing(~air, structure=_INPLANE8) | ~air
    body = closed | _not_touching_inplane_border(~closed, _INPLANE4)
    return air & body, body


def _tidy_lungs(
    lungs: np.ndarray, body: np.ndarray, spacing: np.ndarray, config: SegmentConfig
) -> None:
    """In place: keep each lung's largest piece, close it, fill small in-plane holes (vessels)."""
    body_width_mm = float(body.any(axis=(0, 1)).sum() * spacing[2])
    max_hole_px = np.pi / 4 * (0.08 * body_width_mm) ** 2 / (spacing[1] * spacing[2])
    close_mm = config.closing_mm * min(1.0, body_width_mm / _ADULT_BODY_WIDTH_MM)
    close_iter = int(round(close_mm / float(spacing.min())))
    for label in (RIGHT_LUNG, LEFT_LUNG):
        m = lungs == label
        if not m.any():
            continue
        m = _largest_component(m)
        if config.fill_holes:
            if close_iter > 0:
                box = _bbox(m, margin=close_iter + 1)
                assert box is not None
                m[box] |= ndimage.binary_closing(m[box], _BALL6, iterations=close_iter)
            m = _fill_holes_inplane(m, max_hole_px)
        lungs[(lungs == label) & ~m] = 0
        lungs[m & (lungs == 0)] = label


def _refine_full_resolution(
    coarse: np.ndarray,
    airway: np.ndarray,
    hu: np.ndarray,
    f: tuple[int, int, int],
    threshold_hu: float,
) -> np.ndarray:
    """Working-grid labels -> full-resolution labels.

    The interior is kept as is (vessels included); in a band of one working voxel on either side
    of the coarse boundary (airway excluded) a full-resolution voxel is lung where it is air.
    """
    inner = ndimage.binary_erosion(coarse > 0, _BALL6)
    grown = ndimage.grey_dilation(coarse, footprint=_BALL6)
    band = (grown > 0) & ~inner & ~airway
    out = _upsample(np.where(inner, coarse, 0).astype(np.uint8), f, hu.shape)
    band_labels = np.where(band, np.where(coarse > 0, coarse, grown), 0).astype(np.uint8)
    band_lab = _upsample(band_labels, f, hu.shape)
    box = _bbox(band_lab > 0)
    if box is not None:
        sub = band_lab[box]
        region = out[box]  # a view: written in place
        take = (sub > 0) & (region == 0) & (hu[box] < threshold_hu)
        region[take] = sub[take]
    return out


def _segment_canonical(hu: np.ndarray, spacing: np.ndarray, config: SegmentConfig) -> np.ndarray:
    """Threshold segmentation of a canonical [S, P, L] HU array; uint8 labels of the same shape."""
    f = _working_factors(hu.shape, spacing, config)
    w = block_mean(hu, f)
    ws = spacing * np.asarray(f)

    inside, body = _air_inside_body(w, config.threshold_hu)
    box = _bbox(inside, margin=2)
    if box is None:
        raise SegmentationError("no air inside the body (is this a chest CT in HU?)")
    inside_b, body_b = inside[box], body[box]
    strict = (w[box] < config.airway_hu) & inside_b
    airway_b = _find_airway(strict, inside_b, body_b, ws, config)
    lungs_b = _pick_lungs(inside_b & ~airway_b, body_b, ws)
    _tidy_lungs(lungs_b, body_b, ws, config)

    coarse = np.zeros(w.shape, np.uint8)
    coarse[box] = lungs_b
    if f == (1, 1, 1):
        return coarse
    airway = np.zeros(w.shape, bool)
    airway[box] = airway_b
    return _refine_full_resolution(coarse, airway, hu, f, config.threshold_hu)


def segment_threshold(volume: Volume, config: SegmentConfig) -> np.ndarray:
    """Threshold backend: reorient to canonical [S, P, L], segment, and map back."""
    canon, spacing, undo = _to_canonical(volume.array, volume.geometry)
    labels = _segment_canonical(canon, spacing, config)
    return undo(labels).astype(np.uint8, copy=False)
