"""Synthetic chest-CT phantom: a pure function from a :class:`PhantomSpec` to HU arrays and truth.

Conventions (ITK / LPS, as SimpleITK):

* World coordinates are LPS millimetres: +x patient left, +y posterior, +z superior.
* Arrays are indexed ``[z, y, x]`` (``sitk.GetArrayFromImage`` order); voxel index ``(i, j, k)``
  along (x, y, z) sits at ``origin + spacing * (i, j, k)`` (identity direction). The origin is
  chosen so that the volume is centred on world (0, 0, 0).
* Canonical coordinates are adult-sized anatomical millimetres of :mod:`drasclr.synth.shapes`
  (same LPS axes, carina at :data:`CANONICAL_LANDMARKS` ``['carina']``). ``canonical_to_world``
  (4x4) scales them by ``anatomy_scale * body_scale`` (and the inspiration stretch), rotates by
  the pose and translates; the same canonical point is the same anatomical point in every subject.

The anatomy is computed in canonical space by mapping voxel centres through the inverse of
``canonical_to_world``: smooth fields (body, lungs, soft tissue, texture, disease fields) on a
coarse grid (about 2.4 mm * sqrt(anatomy_scale)), linearly upsampled; thin structures (bones,
airways, vessels, emphysema holes) rasterised at full resolution on small bounding boxes.

Lesions are mutually exclusive and placed in the order PSE, CLE, PLE, consolidation, GGO; each
mask holds exactly the parenchyma voxels whose intensity the disease changed (never vessel or
airway voxels), and each takes ``fraction * number of lung voxels`` while free parenchyma lasts.

Zones (``Phantom.zone_stats``): for each lung separately, upper / middle / lower are thirds of the
lung's slice range (world z index k; upper = the most superior third); *rind* is the part of the
lung within :data:`RIND_MM` canonical mm of the lung surface (pleura, including the mediastinal
and diaphragmatic surfaces), i.e. ``RIND_MM * s`` world mm with ``s`` the geometric mean scale of
``canonical_to_world`` (anatomy_scale x body_scale x inspiration stretch); *core* is the rest.
Distances come from a Euclidean distance transform of the coarse lung mask, upsampled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.ndimage as ndi

from drasclr.imaging.geometry import mm_to_voxel, voxel_to_mm
from drasclr.synth import shapes as sh
from drasclr.synth import texture as tx
from drasclr.synth.texture import F32, Grid

LESION_KEYS = ("cle", "pse", "ple", "ggo", "consolidation")
ZONES = ("upper", "middle", "lower")
RIND_MM = 15.0  # rind width, canonical (adult) mm from the lung surface
_SLAB = 16  # slices per slab for slab-wise full-resolution passes
_STREAMS = ("anatomy", "trees", "texture", "cle", "pse", "ple", "covid", "scanner")
CANONICAL_LANDMARKS: dict[str, tuple[float, float, float]] = {
    "carina": sh.CARINA,
    "right_main_bronchus_end": sh.MAIN_BRONCHUS_END[1],
    "left_main_bronchus_end": sh.MAIN_BRONCHUS_END[2],
    "pulmonary_bifurcation": sh.PA_BIFURCATION,
}
_APEX = np.array([0.0, 12.0, 112.0])  # inspiration stretches the anatomy about this height
_CENTRE = np.array([0.0, 12.0, -9.0])  # canonical point placed at translation_mm
_RANGES = {  # field: (low, high) inclusive
    "inspiration": (0.0, 1.0), "noise_hu": (0.0, 500.0), "blur_mm": (0.0, 10.0),
    "texture_hu": (0.0, 200.0), "cle": (0.0, 0.35), "cle_zone": (0.0, 1.0), "cle_core": (0.0, 1.0),
    "pse": (0.0, 0.08), "ple": (0.0, 0.25), "airway_wall": (0.0, 1.0), "ggo": (0.0, 0.8),
    "consolidation": (0.0, 0.4), "anatomy_scale": (0.05, 5.0),
}


# ------------------------------------------------------------------------------- contract
@dataclass(frozen=True)
class PhantomSpec:
    """Everything that defines one synthetic subject (see the module docstring for frames).

    Attributes:
        shape: (nx, ny, nz) voxels.
        spacing: (sx, sy, sz) mm.
        anatomy_scale: 1.0 = adult thorax; < 1 renders a miniature (all anatomy scaled).
        body_scale: per-subject size factors (lr, ap, si), about 0.88-1.12.
        inspiration: 0..1; higher = taller, larger, darker lungs.
        rotation_deg: pose rotation about world x, y, z (degrees, applied x then y then z).
        translation_mm: world position of the chest centre.
        noise_hu: scanner noise standard deviation (HU), correlated over the PSF.
        blur_mm: scanner PSF gaussian sigma (mm).
        texture_hu: amplitude (sd) of the correlated parenchymal texture (HU).
        cle: centrilobular emphysema, fraction of lung volume (0..0.35).
        cle_zone: cranio-caudal centre of CLE (0 apex .. 1 base).
        cle_core: 1 = central predominant, 0 = peripheral.
        pse: paraseptal emphysema fraction (0..0.08).
        ple: panlobular emphysema fraction (0..0.25), lower zones.
        airway_wall: airway-wall thickening 0..1 (wall up to 2x).
        ggo: ground-glass fraction (0..0.8), peripheral / posterior.
        consolidation: consolidation fraction (0..0.4), inside the GGO pattern.
        seed: random seed (>= 0).
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    anatomy_scale: float
    body_scale: tuple[float, float, float]
    inspiration: float
    rotation_deg: tuple[float, float, float]
    translation_mm: tuple[float, float, float]
    noise_hu: float
    blur_mm: float
    texture_hu: float
    cle: float
    cle_zone: float
    cle_core: float
    pse: float
    ple: float
    airway_wall: float
    ggo: float
    consolidation: float
    seed: int

    def __post_init__(self) -> None:
        _validate(self)


@dataclass
class Phantom:
    """A rendered subject: image, truth masks and geometry (arrays are [z, y, x]).

    Attributes:
        ct: int16 HU in [-1024, 3071].
        lungs: uint8, 0 background, 1 right lung, 2 left lung (trachea and main bronchi excluded).
        lesions: bool masks 'cle', 'pse', 'ple', 'ggo', 'consolidation' (mutually exclusive,
            inside the lungs; exactly the voxels whose intensity the disease changed).
        airway: bool airway lumen.
        vessels: bool vessel (blood) voxels.
        spacing, origin: (x, y, z) mm; direction: 9 values, row-major, identity.
        canonical_to_world: 4x4 affine, canonical mm -> world LPS mm.
        lesion_centres: ('cle' | 'pse', world (x, y, z) mm) of each CLE cluster / PSE cyst group.
        zone_stats: '<upper|middle|lower>_<core|rind>' -> voxel counts of 'lung' and each lesion.
    """

    ct: np.ndarray
    lungs: np.ndarray
    lesions: dict[str, np.ndarray]
    airway: np.ndarray
    vessels: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]
    canonical_to_world: np.ndarray
    lesion_centres: list[tuple[str, tuple[float, float, float]]] = field(default_factory=list)
    zone_stats: dict[str, dict[str, int]] = field(default_factory=dict)


def _validate(spec: PhantomSpec) -> None:
    """Normalise tuple fields and check ranges; errors name the field."""
    def vec(name: str, kind: type, positive: bool) -> None:
        v = getattr(spec, name)
        try:
            t = tuple(kind(x) for x in v)
        except (TypeError, ValueError) as err:
            raise ValueError(f"PhantomSpec.{name}: expected 3 numbers, got {v!r}") from err
        if len(t) != 3 or not all(math.isfinite(x) for x in t):
            raise ValueError(f"PhantomSpec.{name}: expected 3 finite numbers, got {v!r}")
        if positive and min(t) <= 0:
            raise ValueError(f"PhantomSpec.{name}: must be positive, got {v!r}")
        object.__setattr__(spec, name, t)

    vec("shape", int, True)
    if min(spec.shape) < 8:
        raise ValueError(f"PhantomSpec.shape: each side must be >= 8 voxels, got {spec.shape}")
    vec("spacing", float, True)
    vec("body_scale", float, True)
    if not all(0.5 <= b <= 2.0 for b in spec.body_scale):
        raise ValueError(
            f"PhantomSpec.body_scale: each factor must be in [0.5, 2], got {spec.body_scale}")
    vec("rotation_deg", float, False)
    if max(abs(r) for r in spec.rotation_deg) > 45:
        raise ValueError(
            f"PhantomSpec.rotation_deg: must be within +-45 degrees, got {spec.rotation_deg}")
    vec("translation_mm", float, False)
    for name, (lo, hi) in _RANGES.items():
        v = getattr(spec, name)
        if not isinstance(v, (int, float, np.number)) or not (lo <= float(v) <= hi):
            raise ValueError(f"PhantomSpec.{name}: must be a number in [{lo}, {hi}], got {v!r}")
        object.__setattr__(spec, name, float(v))
    if not isinstance(spec.seed, (int, np.integer)) or isinstance(spec.seed, bool) or spec.seed < 0:
        raise ValueError(f"PhantomSpec.seed: must be a non-negative integer, got {spec.seed!r}")
    object.__setattr__(spec, "seed", int(spec.seed))


# ------------------------------------------------------------------------------- geometry
def image_origin(spec: PhantomSpec) -> tuple[float, float, float]:
    """World LPS mm (x, y, z) of voxel (0, 0, 0): the volume is centred on world (0, 0, 0)."""
    x, y, z = (-0.5 * (n - 1) * s for n, s in zip(spec.shape, spec.spacing))
    return (x, y, z)


def rotation_matrix(angles_deg: tuple[float, float, float]) -> np.ndarray:
    """Rotation Rz @ Ry @ Rx for angles (degrees) about the world x, y, z axes."""
    ax, ay, az = np.radians(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def canonical_to_world(spec: PhantomSpec) -> np.ndarray:
    """4x4 affine from canonical anatomical mm to world LPS mm for this subject.

    world = R (S (c - apex) + S0 (apex - centre)) + translation, where S holds anatomy_scale *
    body_scale and the inspiration stretch (about the lung apex: the diaphragm moves), S0 the same
    at mid inspiration, and R the pose rotation.
    """
    a = spec.anatomy_scale
    bx, by, bz = spec.body_scale
    lat = 0.98 + 0.04 * spec.inspiration
    si = 0.94 + 0.12 * spec.inspiration
    s = np.diag([a * bx * lat, a * by * lat, a * bz * si])
    s0 = np.diag([a * bx, a * by, a * bz])
    r = rotation_matrix(spec.rotation_deg)
    m = np.eye(4)
    m[:3, :3] = r @ s
    m[:3, 3] = r @ (-s @ _APEX + s0 @ (_APEX - _CENTRE)) + np.asarray(spec.translation_mm)
    return m


def apply_affine(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 affine to (N, 3) or (3,) points."""
    p = np.asarray(points, float)
    return p @ m[:3, :3].T + m[:3, 3]


def world_to_index(points: np.ndarray, origin: tuple[float, float, float],
                   spacing: tuple[float, float, float]) -> np.ndarray:
    """World LPS mm (x, y, z) -> continuous voxel index (i, j, k) along (x, y, z).

    The array element is ``arr[k, j, i]``; identity direction assumed.
    """
    return mm_to_voxel(points, (spacing, origin, np.eye(3)))


def index_to_world(index: np.ndarray, origin: tuple[float, float, float],
                   spacing: tuple[float, float, float]) -> np.ndarray:
    """Voxel index (i, j, k) along (x, y, z) -> world LPS mm (x, y, z); identity direction."""
    return voxel_to_mm(index, (spacing, origin, np.eye(3)))


# ------------------------------------------------------------------------------- pipeline
@dataclass
class _Ctx:
    """Geometry shared by the rendering stages."""

    spec: PhantomSpec
    grid: Grid
    cgrid: Grid
    factors: tuple[int, int, int]
    m: np.ndarray
    minv: np.ndarray
    scale: float  # geometric mean canonical -> world scale

    def rng(self, stream: str) -> np.random.Generator:
        """Independent random stream per stage (stable when other stages change)."""
        code = _STREAMS.index(stream)
        return np.random.default_rng([self.spec.seed, code])

    def canonical(self, grid: Grid, rows: tuple[int, ...] = (0, 1, 2)) -> tuple[np.ndarray, ...]:
        """Canonical coordinates (rows of x, y, z) of a grid's voxel centres, float32 [z, y, x]."""
        xs, ys, zs = grid.axes()
        a, b = self.minv[:3, :3].astype(F32), self.minv[:3, 3]
        out = []
        for r in rows:
            c = (zs * a[r, 2] + F32(b[r]))[:, None, None] + (ys * a[r, 1])[None, :, None]
            out.append(c + (xs * a[r, 0])[None, None, :])
        return tuple(out)

    def to_world(self, points: np.ndarray) -> np.ndarray:
        """Canonical points -> world mm."""
        return apply_affine(self.m, points)


@dataclass
class _Coarse:
    """Smooth fields on the coarse grid and the coarse lung sample."""

    body: np.ndarray  # canonical mm signed distance to the skin
    soft: np.ndarray  # HU of non-lung tissue (lungs filled with the nearest tissue)
    lung: np.ndarray  # canonical mm signed distance to either lung
    mask: np.ndarray  # bool coarse lung voxels
    dist: np.ndarray  # world mm distance to the lung surface (0 outside)
    zn: np.ndarray  # cranio-caudal position 0 apex .. 1 base, per lung (0 outside)
    y: np.ndarray  # canonical y (for gravity / posterior weighting)
    side: np.ndarray  # uint8 1 right, 2 left at lung voxels


def _context(spec: PhantomSpec) -> _Ctx:
    """Grids and transforms of a spec."""
    grid = Grid(spec.shape, image_origin(spec), spec.spacing)
    factors = tx.coarse_factors(spec.spacing, 2.4 * math.sqrt(spec.anatomy_scale))
    m = canonical_to_world(spec)
    scale = abs(np.linalg.det(m[:3, :3])) ** (1 / 3)
    return _Ctx(spec, grid, tx.coarse_grid(grid, factors), factors, m, np.linalg.inv(m), scale)


def _tube_fields(ctx: _Ctx, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance (canonical mm) to the mediastinal tubes on a grid, and their HU."""
    sd = np.full(grid.zyx, 1e3, F32)
    hu = np.zeros(grid.zyx, F32)
    for pts, r, val in sh.MEDIASTINAL_TUBES:
        w = ctx.to_world(np.array(pts, float))
        for a, b in zip(w[:-1], w[1:]):
            got = tx.segment_sd(grid, a, b, r * ctx.scale, r * ctx.scale)
            if got is None:
                continue
            sl, d = got
            d /= F32(ctx.scale)
            closer = d < sd[sl]
            sd[sl][closer] = d[closer]
            hu[sl][closer] = val
    return sd, hu


def _coarse_fields(ctx: _Ctx, an: sh.Anatomy) -> _Coarse:
    """Body, lungs, soft tissue and lung distances on the coarse grid."""
    x, y, z = ctx.canonical(ctx.cgrid)
    tubes, tube_hu = _tube_fields(ctx, ctx.cgrid)
    body = sh.body_sd(x, y, z, an)
    right, left = (_largest_component(f) for f in sh.lung_fields(x, y, z, an, tubes))
    soft = sh.soft_tissue_hu(x, y, z, an, body, tubes, tube_hu)
    lung = np.maximum(right, left)
    mask = lung > 0
    sp = ctx.cgrid.spacing[::-1]
    dist, ind = ndi.distance_transform_edt(mask, sampling=sp, return_indices=True)
    soft[mask] = soft[tuple(i[mask] for i in ind)]
    del ind
    dist = np.maximum(dist - 0.5 * min(sp), 0).astype(F32)
    side = np.where(mask, np.where(right > left, 1, 2), 0).astype(np.uint8)
    zn = np.zeros(mask.shape, F32)
    for s in (1, 2):
        sel = side == s
        if sel.any():
            top, bot = float(z[sel].max()), float(z[sel].min())
            zn[sel] = (top - z[sel]) / max(top - bot, 1e-3)
    return _Coarse(body, soft, lung, mask, dist, zn, y, side)


def _largest_component(field_: np.ndarray) -> np.ndarray:
    """The field with all but its largest positive (26-connected) component pushed below 0."""
    lab, n = ndi.label(field_ > 0, structure=np.ones((3, 3, 3), bool))
    if n > 1:
        keep = np.argmax(np.bincount(lab.ravel())[1:]) + 1
        field_[(lab > 0) & (lab != keep)] = -1.0
    return field_


def _chest_block(ctx: _Ctx, co: _Coarse) -> tuple[slice, slice, slice]:
    """Full-resolution [z, y, x] block holding both lungs and the trachea above them."""
    nz, ny, nx = ctx.grid.zyx
    if not co.mask.any():
        return tuple(slice(n // 2, n // 2 + 1) for n in (nz, ny, nx))  # type: ignore[return-value]
    out = []
    for axis, (f, n) in enumerate(zip(ctx.factors[::-1], (nz, ny, nx))):
        other = tuple(a for a in range(3) if a != axis)
        nzi = np.nonzero(co.mask.any(axis=other))[0]
        lo = max((nzi[0] - 1) * f, 0)
        hi = n if axis == 0 else min((nzi[-1] + 1) * f + 1, n)
        out.append(slice(lo, hi))
    return tuple(out)  # type: ignore[return-value]


def _body_image(ctx: _Ctx, co: _Coarse) -> np.ndarray:
    """Full-resolution float32 HU of air, skin, fat, muscle and organs (no lungs yet)."""
    nz, ny, nx = ctx.grid.zyx
    ct = np.empty((nz, ny, nx), F32)
    skin = F32(1.6)
    for k0 in range(0, nz, _SLAB):
        sl = (slice(k0, min(k0 + _SLAB, nz)), slice(0, ny), slice(0, nx))
        soft = tx.upsample(co.soft, ctx.factors, sl)
        body = tx.upsample(co.body, ctx.factors, sl)
        soft[(body > 0) & (body < skin)] = 25.0
        soft[body <= 0] = sh.HU_AIR
        ct[sl[0]] = soft
    return ct


def _render_bones(ctx: _Ctx, an: sh.Anatomy, ct: np.ndarray) -> None:
    """Rasterise spine, ribs, sternum and clavicles into ``ct`` (cortex brighter)."""
    sd = np.full(ctx.grid.zyx, 1e3, F32)
    kind = np.zeros(ctx.grid.zyx, np.uint8)
    for bone in sh.spine_bones() + sh.rib_bones(an) + sh.sternum_clavicle_bones(an):
        w = ctx.to_world(bone.points)
        r = bone.radius * ctx.scale
        for a, b in zip(w[:-1], w[1:]):
            got = tx.segment_sd(ctx.grid, a, b, r, r, flat=bone.flat)
            if got is None:
                continue
            sl, d = got
            closer = d < sd[sl]
            sd[sl][closer] = d[closer]
            kind[sl][closer] = bone.kind
    cortex = F32(max(1.2 * ctx.scale, 0.6 * min(ctx.spec.spacing)))
    inner = {1: 230.0, 2: 380.0, 3: 120.0}
    outer = {1: 750.0, 2: 950.0, 3: 160.0}
    bone_vox = sd < 0
    for k in (1, 2, 3):
        sel = bone_vox & (kind == k)
        ct[sel] = np.where(sd[sel] > -cortex, F32(outer[k]), F32(inner[k]))


@dataclass
class _Tubes:
    """Full-resolution signed distances (world mm) of the trees on the chest block."""

    vessel: np.ndarray
    lumen: np.ndarray
    wall: np.ndarray  # outer airway wall surface
    centres: np.ndarray  # (T, 3) world points along terminal arteries (centrilobular sites)


def _lung_points(ctx: _Ctx, co: _Coarse, rng: np.random.Generator) -> dict[int, np.ndarray]:
    """Up to 12000 canonical points filling each lung (jittered coarse lung voxels)."""
    idx = np.argwhere(co.mask)  # (N, 3) z, y, x
    out = {}
    for s in (1, 2):
        sel = idx[co.side[co.mask] == s]
        if len(sel) > 12000:
            sel = sel[np.sort(rng.choice(len(sel), 12000, replace=False))]
        ijk = sel[:, ::-1] + rng.uniform(-0.5, 0.5, sel.shape)
        world = np.asarray(ctx.cgrid.origin) + ijk * np.asarray(ctx.cgrid.spacing)
        out[s] = apply_affine(ctx.minv, world)
    return out


def _render_trees(ctx: _Ctx, co: _Coarse, blk: tuple[slice, slice, slice],
                  lung: np.ndarray) -> _Tubes:
    """Grow and rasterise airways, arteries and veins into the chest block."""
    spec = ctx.spec
    rng = ctx.rng("trees")
    bgrid = _block_grid(ctx, blk)
    r_vessel = max(0.3 * max(spec.spacing), 0.45 * ctx.scale) / ctx.scale
    r_airway = max(0.6 * min(spec.spacing), 0.8 * ctx.scale) / ctx.scale
    aw, art, vein = sh.bronchovascular_trees(_lung_points(ctx, co, rng), r_vessel, rng)
    shape = lung.shape
    vessel = np.full(shape, 1e3, F32)
    lumen = np.full(shape, 1e3, F32)
    wall = np.full(shape, 1e3, F32)
    for tree in (art, vein):
        _rasterise(ctx, bgrid, tree, tree.r, [vessel], [0.0], lung)
    keep = aw.r >= r_airway
    sel = sh.Tree(aw.a[keep], aw.b[keep], aw.r[keep], aw.gen[keep], aw.terminal[keep],
                  aw.side[keep])
    thick = 0.35 * (1.0 + spec.airway_wall)
    _rasterise(ctx, bgrid, sel, sel.r, [lumen, wall], [0.0, thick], lung)
    tips = art.b[art.terminal]
    mids = 0.5 * (art.a[art.terminal] + art.b[art.terminal])
    return _Tubes(vessel, lumen, wall, ctx.to_world(np.vstack([tips, mids])))


def _rasterise(ctx: _Ctx, bgrid: Grid, tree: sh.Tree, radius: np.ndarray, fields_: list[np.ndarray],
               extra: list[float], lung: np.ndarray) -> None:
    """Min-accumulate tube signed distances into ``fields_`` (radius * (1 + extra) each).

    Branches from generation 4 on are clipped to the lungs.
    """
    a_w, b_w = ctx.to_world(tree.a), ctx.to_world(tree.b)
    r_w = radius * ctx.scale
    big = max(extra)
    for a, b, r, g in zip(a_w, b_w, r_w, tree.gen):
        got = tx.segment_sd(bgrid, a, b, r * (1 + big), r * (1 + big))
        if got is None:
            continue
        sl, d = got
        if g >= 4:
            d[~lung[sl]] = 1e3
        for f, e in zip(fields_, extra):
            dd = d + F32(r * (big - e)) if e != big else d
            np.minimum(f[sl], dd, out=f[sl])


def _block_grid(ctx: _Ctx, blk: tuple[slice, slice, slice]) -> Grid:
    """The sub-grid of a full-resolution block."""
    start = [blk[2].start, blk[1].start, blk[0].start]
    o = index_to_world(start, ctx.grid.origin, ctx.grid.spacing)
    shape = (blk[2].stop - blk[2].start, blk[1].stop - blk[1].start, blk[0].stop - blk[0].start)
    return Grid(shape, tuple(o), ctx.grid.spacing)  # type: ignore[arg-type]


def _lungs_label(ctx: _Ctx, co: _Coarse, blk: tuple[slice, slice, slice]) -> np.ndarray:
    """uint8 lungs label on the block: 1 right (canonical x < 0), 2 left."""
    lf = tx.upsample(co.lung, ctx.factors, blk)
    inside = lf > 0
    del lf
    cx = ctx.canonical(_block_grid(ctx, blk), rows=(0,))[0]
    label = (cx >= 0).view(np.uint8) + np.uint8(1)
    del cx
    label *= inside
    return label


def _keep_main_components(label: np.ndarray) -> None:
    """Keep only the largest face-connected component of each lung label (in place)."""
    for side in (1, 2):
        mask = label == side
        if not mask.any():
            continue
        box = ndi.find_objects(mask.view(np.uint8))[0]
        lab, n = ndi.label(mask[box])
        if n > 1:
            keep = np.argmax(np.bincount(lab.ravel())[1:]) + 1
            sub = label[box]
            sub[(lab > 0) & (lab != keep)] = 0


def _central_airways(ctx: _Ctx, bgrid: Grid, label: np.ndarray, airway_wall: float) -> None:
    """Remove trachea and main bronchi (with their walls) from the lungs label."""
    ends = [(sh.TRACHEA_TOP, sh.CARINA, sh.R_TRACHEA)]
    ends += [(sh.CARINA, sh.MAIN_BRONCHUS_END[s], sh.R_MAIN[s]) for s in (1, 2)]
    for a, b, r in ends:
        rw = r * (1.0 + 0.35 * (1.0 + airway_wall)) * ctx.scale
        got = tx.segment_sd(bgrid, ctx.to_world(np.array(a)), ctx.to_world(np.array(b)), rw, rw)
        if got is not None:
            sl, d = got
            label[sl][d < 0] = 0


def render_phantom(spec: PhantomSpec) -> Phantom:
    """Render one synthetic chest CT with its truth (pure function of the spec).

    Args:
        spec: the subject; validated on construction.

    Returns:
        The :class:`Phantom`.
    """
    _validate(spec)
    ctx = _context(spec)
    an = sh.sample_anatomy(ctx.rng("anatomy"))
    co = _coarse_fields(ctx, an)
    blk = _chest_block(ctx, co)
    bgrid = _block_grid(ctx, blk)
    ct = _body_image(ctx, co)
    _render_bones(ctx, an, ct)
    label = _lungs_label(ctx, co, blk)
    _central_airways(ctx, bgrid, label, spec.airway_wall)
    _keep_main_components(label)
    lung = label > 0
    tubes = _render_trees(ctx, co, blk, lung)
    eligible = lung & (tubes.vessel >= 0) & (tubes.wall >= 0)
    paren = tx.upsample(_parenchyma_coarse(ctx, co), ctx.factors, blk)
    les = tx.place_lesions(_lesion_inputs(ctx, co, blk, bgrid, lung, eligible, tubes.centres,
                                          paren))
    sub = ct[blk]
    sub[lung] = paren[lung]
    del paren
    _blend_tubes(sub, tubes, min(spec.spacing))
    tx.scanner(ct, spec.spacing, spec.blur_mm, spec.noise_hu, ctx.rng("scanner"))
    np.clip(ct, -1024, 3071, out=ct)
    return _assemble(ctx, ct, label, blk, les, tubes, co)


def _parenchyma_coarse(ctx: _Ctx, co: _Coarse) -> np.ndarray:
    """Healthy parenchyma HU on the coarse grid: inspiration level, gravity gradient, texture."""
    spec = ctx.spec
    base = -800.0 - 70.0 * spec.inspiration
    grav = 15.0 + 15.0 * (1.0 - spec.inspiration)
    sig = [3.0 * ctx.scale / s for s in ctx.cgrid.spacing[::-1]]
    tex = tx.smooth_noise(ctx.rng("texture"), co.y.shape, sig)
    out = F32(base) + F32(grav / 80.0) * (co.y - F32(5.0))
    out += tex * F32(spec.texture_hu)
    return out


def _lesion_inputs(ctx: _Ctx, co: _Coarse, blk: tuple[slice, slice, slice], bgrid: Grid,
                   lung: np.ndarray, eligible: np.ndarray, sites: np.ndarray,
                   paren: np.ndarray) -> tx.LesionInputs:
    """Bundle what lesion placement needs."""
    idx = np.argwhere(co.mask)
    world = np.asarray(ctx.cgrid.origin) + idx[:, ::-1] * np.asarray(ctx.cgrid.spacing)
    return tx.LesionInputs(
        spec=ctx.spec, block=bgrid, blk=blk, factors=ctx.factors, cgrid=ctx.cgrid,
        eligible=eligible, paren=paren, scale=ctx.scale,
        n_lung=int(np.count_nonzero(lung)), sites=sites,
        coarse_world=world, coarse_dist=co.dist[co.mask] / ctx.scale, coarse_zn=co.zn[co.mask],
        dist=co.dist, zn=co.zn, y=co.y, mask=co.mask,
        rngs={k: ctx.rng(k) for k in ("cle", "pse", "ple", "covid")},
    )


def _blend_tubes(sub: np.ndarray, tubes: _Tubes, h: float) -> None:
    """Partial-volume blend of vessels (blood), airway walls and lumen (air) into the block."""
    layers = ((tubes.vessel, sh.HU_BLOOD), (tubes.wall, sh.HU_MUSCLE), (tubes.lumen, sh.HU_AIR))
    for sd, hu in layers:
        near = sd < F32(0.5 * h)
        cov = np.clip(F32(0.5) - sd[near] / F32(h), 0, 1)
        v = sub[near]
        sub[near] = v + (F32(hu) - v) * cov


def _assemble(ctx: _Ctx, ct: np.ndarray, label: np.ndarray, blk: tuple[slice, slice, slice],
              les: tx.Lesions, tubes: _Tubes, co: _Coarse) -> Phantom:
    """Embed block arrays into full volumes and compute zone statistics."""
    shape = ctx.grid.zyx
    spec = ctx.spec

    def full(block: np.ndarray, dtype: type) -> np.ndarray:
        out = np.zeros(shape, dtype)
        out[blk] = block
        return out

    airway_b = tubes.lumen < 0
    lungs = full(label, np.uint8)
    lesions = {k: full(les.masks[k], bool) for k in LESION_KEYS}
    stats = _zone_stats(ctx, co, blk, label, les.masks)
    return Phantom(
        ct=np.rint(ct).astype(np.int16), lungs=lungs, lesions=lesions,
        airway=full(airway_b, bool), vessels=full((tubes.vessel < 0) & ~airway_b, bool),
        spacing=tuple(float(s) for s in spec.spacing),
        origin=tuple(float(o) for o in ctx.grid.origin),
        direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
        canonical_to_world=ctx.m.copy(), lesion_centres=les.centres, zone_stats=stats,
    )


def _zone_stats(ctx: _Ctx, co: _Coarse, blk: tuple[slice, slice, slice], label: np.ndarray,
                masks: dict[str, np.ndarray]) -> dict[str, dict[str, int]]:
    """Voxel counts per zone (thirds of each lung's slice range x core/rind)."""
    dist = tx.upsample(co.dist, ctx.factors, blk)
    rind = (dist < F32(RIND_MM * ctx.scale)).view(np.uint8)
    del dist
    nz = label.shape[0]
    third = np.full((3, nz), 6, np.uint8)  # 2 * (0 upper, 1 middle, 2 lower); 6 = not lung
    for s in (1, 2):
        ks = np.nonzero((label == s).any(axis=(1, 2)))[0]
        if len(ks):
            k0, k1 = ks[0], ks[-1] + 1
            third[s, k0:k1] = (2 - (np.arange(k1 - k0) * 3 // (k1 - k0))) * 2
    zone = third[label, np.arange(nz)[:, None, None]]
    zone += rind * (zone < 6)
    del rind
    lung_zone = zone[zone < 6]
    out: dict[str, dict[str, int]] = {}
    counts = {"lung": np.bincount(lung_zone, minlength=6)}
    for k in LESION_KEYS:
        counts[k] = np.bincount(zone[masks[k]], minlength=6)
    for zi, zname in enumerate(ZONES):
        for ri, rname in enumerate(("core", "rind")):
            out[f"{zname}_{rname}"] = {k: int(c[zi * 2 + ri]) for k, c in counts.items()}
    return out


__all__ = [
    "CANONICAL_LANDMARKS", "LESION_KEYS", "Phantom", "PhantomSpec", "RIND_MM", "apply_affine",
    "canonical_to_world", "image_origin", "index_to_world", "render_phantom", "world_to_index",
]

