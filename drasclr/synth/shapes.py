"""Canonical chest anatomy of the phantom: smooth tissue fields, airway/vessel trees and bones.

Everything here lives in the *canonical* frame: adult millimetres, LPS axes (x = patient right ->
left, y = anterior -> posterior, z = inferior -> superior), origin near the centre of the chest
(the carina is at :data:`CARINA`). A subject is this anatomy, mildly varied by
:func:`sample_anatomy`, mapped to world coordinates by the affine ``canonical_to_world`` of
:mod:`drasclr.synth.phantom`.

Field functions take broadcastable canonical coordinate arrays and return float32 "signed
distances" in mm (positive inside; approximate away from the surface) or HU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drasclr.synth.texture import F32, FourierNoise, fourier_noise

# Canonical landmarks (identical in every subject; adult mm).
CARINA = (0.0, 6.0, 30.0)
TRACHEA_TOP = (0.0, -6.0, 200.0)
MAIN_BRONCHUS_END = {1: (-25.0, 14.0, 10.0), 2: (38.0, 17.0, 3.0)}  # 1 right, 2 left
PA_BIFURCATION = (6.0, -8.0, 22.0)
R_TRACHEA, R_MAIN = 8.0, {1: 6.5, 2: 5.8}
R_ARTERY_ROOT, R_VEIN_ROOT = 9.0, 8.0
SPINE_Y = 55.0

# Tissue HU (unenhanced CT).
HU_AIR, HU_FAT, HU_MUSCLE, HU_BLOOD, HU_LIVER = -1000.0, -100.0, 45.0, 40.0, 60.0


@dataclass(frozen=True)
class Anatomy:
    """Per-subject canonical anatomy parameters (adult mm); see :func:`sample_anatomy`."""

    cav_a: float  # thoracic cavity half-width at the shoulder level
    cav_b: float  # half-depth
    cav_yc: float  # centre (y)
    cav_p: float  # superellipse exponent of the cross-section
    widen: float  # relative widening per mm below the shoulder level
    wall: tuple[float, float, float]  # chest-wall muscle thickness (anterior, lateral, posterior)
    fat: tuple[float, float, float]  # subcutaneous fat thickness (anterior, lateral, posterior)
    dome: tuple[tuple[float, float, float], tuple[float, float, float]]  # (right, left) dome tops
    dome_depth: float
    heart_c: tuple[float, float, float]
    heart_r: tuple[float, float, float]
    heart_axes: np.ndarray  # (3, 3) rows = unit axes
    med_w: tuple[float, float]  # mediastinal half-width (anterior junction, middle)
    lung_noise: FourierNoise
    body_noise: FourierNoise
    fat_noise: FourierNoise


SHOULDER_Z, TOP_Z = 0.0, 117.0


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    """Draw one subject's canonical anatomy (mild variation around an adult template)."""
    u = rng.uniform
    heart_u = np.array([0.6, -0.5, -0.55]) + rng.normal(0, 0.05, 3)
    heart_u /= np.linalg.norm(heart_u)
    v = np.cross(heart_u, [0.0, 0.0, 1.0])
    v /= np.linalg.norm(v)
    habitus = float(np.clip(rng.lognormal(0.0, 0.3), 0.5, 2.2))
    hs = u(0.9, 1.1)
    return Anatomy(
        cav_a=128.0 * u(0.96, 1.04), cav_b=90.0 * u(0.95, 1.05), cav_yc=5.0, cav_p=2.5,
        widen=0.0008 * u(0.6, 1.4),
        wall=(16.0 * u(0.85, 1.2), 18.0 * u(0.85, 1.2), 28.0 * u(0.85, 1.2)),
        fat=(14.0 * habitus, 12.0 * habitus, 10.0 * habitus),
        dome=((-55.0 + rng.normal(0, 3), -5.0, -53.0 + rng.normal(0, 3)),
              (58.0 + rng.normal(0, 3), 0.0, -61.0 + rng.normal(0, 3))),
        dome_depth=58.0 * u(0.88, 1.12),
        heart_c=(33.0 + rng.normal(0, 2), -26.0 + rng.normal(0, 2), -42.0 + rng.normal(0, 3)),
        heart_r=(66.0 * hs, 50.0 * hs, 42.0 * hs),
        heart_axes=np.stack([heart_u, v, np.cross(heart_u, v)]),
        med_w=(5.0 * u(0.7, 1.4), 28.0 * u(0.9, 1.1)),
        lung_noise=fourier_noise(rng, 10, (70.0, 160.0), 3.0),
        body_noise=fourier_noise(rng, 8, (80.0, 200.0), 4.0),
        fat_noise=fourier_noise(rng, 8, (60.0, 160.0), 0.35),
    )


# ------------------------------------------------------------------------------ smooth fields
def _superellipse_sd(u: np.ndarray, v: np.ndarray, a: np.ndarray, b: np.ndarray,
                     p: float) -> np.ndarray:
    """Radial signed distance to the superellipse |u/a|^p + |v/b|^p = 1 (positive inside)."""
    rho = np.sqrt(u * u + v * v)
    n = (np.abs(u / a) ** p + np.abs(v / b) ** p) ** F32(1.0 / p)
    return rho / np.maximum(n, F32(1e-6)) - rho


def cavity_axes(z: np.ndarray, an: Anatomy, taper: bool = True,
                floor: float = 0.055) -> tuple[np.ndarray, np.ndarray]:
    """Half-width and half-depth of the thoracic cavity at height z.

    Below the shoulder level it widens slowly downwards; above it narrows (a quarter ellipse) to
    close just over the lung apices, never below ``floor`` times the shoulder size.
    """
    below = np.maximum(F32(SHOULDER_Z) - z, 0)
    a = F32(an.cav_a) * (1 + F32(an.widen) * below)
    b = F32(an.cav_b) * (1 + F32(0.5 * an.widen) * below)
    if taper:
        t = np.clip((z - F32(SHOULDER_Z)) / F32(TOP_Z - SHOULDER_Z), 0, 1)
        f = np.maximum(np.sqrt(1 - t * t), F32(floor))
        a, b = a * f, b * f
    return a, b


def cavity_sd(x: np.ndarray, y: np.ndarray, z: np.ndarray, an: Anatomy) -> np.ndarray:
    """Signed distance to the inner surface of the chest wall (ribs), positive inside."""
    a, b = cavity_axes(z, an)
    return _superellipse_sd(x, y - F32(an.cav_yc), a, b, an.cav_p)


def body_outline(an: Anatomy) -> tuple[float, float, float]:
    """(centre y, half-depth, posterior table y) of the body cross-section at the shoulder."""
    ant = an.cav_yc - an.cav_b - an.wall[0] - an.fat[0]
    post = an.cav_yc + an.cav_b + an.wall[2] + an.fat[2]
    return 0.5 * (ant + post), 0.5 * (post - ant), post - 10.0


def body_sd(x: np.ndarray, y: np.ndarray, z: np.ndarray, an: Anatomy) -> np.ndarray:
    """Signed distance to the skin (mm, positive inside the body), flattened on the table."""
    a, _ = cavity_axes(np.minimum(z, F32(SHOULDER_Z)), an, taper=False)
    yb, hb, table = body_outline(an)
    grow = a - F32(an.cav_a)
    sd = _superellipse_sd(x, y - F32(yb), a + F32(an.wall[1] + an.fat[1]), hb + 0.5 * grow, 2.3)
    sd += an.body_noise(x, y, z)
    return np.minimum(sd, F32(table) - y)


def fat_thickness(x: np.ndarray, y: np.ndarray, z: np.ndarray, an: Anatomy) -> np.ndarray:
    """Subcutaneous fat thickness (mm) around the body, thicker anteriorly and lower down."""
    yb, _, _ = body_outline(an)
    r = np.sqrt(x * x + (y - F32(yb)) ** 2) + F32(1e-3)
    c = (F32(yb) - y) / r  # +1 anterior, -1 posterior
    ant, lat, post = an.fat
    t = F32(lat) + np.maximum(c, 0) * F32(ant - lat) + np.maximum(-c, 0) * F32(post - lat)
    t *= 1 + an.fat_noise(x, y, z) + F32(0.004) * np.maximum(-z, 0)
    return np.maximum(t, F32(2.0))


def diaphragm_z(x: np.ndarray, y: np.ndarray, an: Anatomy) -> np.ndarray:
    """Height of the diaphragm surface (two domes, right higher; deep posterior recesses)."""
    zs = []
    for (cx, cy, cz), rx in zip(an.dome, (88.0, 84.0)):
        dx = (x - F32(cx)) / F32(rx)
        dy = y - F32(cy)
        dy = np.where(dy < 0, dy / F32(120.0), dy / F32(85.0))
        zs.append(F32(cz) - F32(an.dome_depth) * (dx * dx + dy * dy))
    a, b = zs
    k = F32(10.0)
    h = np.clip(0.5 + 0.5 * (a - b) / k, 0, 1)
    out = b + (a - b) * h + k * h * (1 - h)
    return out - F32(0.15) * np.maximum(y - F32(30.0), 0)


def ellipsoid_sd(x: np.ndarray, y: np.ndarray, z: np.ndarray, c: tuple[float, float, float],
                 r: tuple[float, float, float], axes: np.ndarray | None = None) -> np.ndarray:
    """Approximate signed distance to an (optionally rotated) ellipsoid, positive inside."""
    dx, dy, dz = x - F32(c[0]), y - F32(c[1]), z - F32(c[2])
    if axes is None:
        u, v, w = dx, dy, dz
    else:
        ax = axes.astype(F32)
        u = dx * ax[0, 0] + dy * ax[0, 1] + dz * ax[0, 2]
        v = dx * ax[1, 0] + dy * ax[1, 1] + dz * ax[1, 2]
        w = dx * ax[2, 0] + dy * ax[2, 1] + dz * ax[2, 2]
    n = np.sqrt((u / F32(r[0])) ** 2 + (v / F32(r[1])) ** 2 + (w / F32(r[2])) ** 2)
    return (1 - n) * F32(min(r))


LEFT_ATRIUM = ((4.0, 20.0, -10.0), (26.0, 14.0, 20.0))


def heart_sd(x: np.ndarray, y: np.ndarray, z: np.ndarray, an: Anatomy) -> np.ndarray:
    """Signed distance to the heart (ventricles + left atrium), positive inside."""
    h = ellipsoid_sd(x, y, z, an.heart_c, an.heart_r, an.heart_axes)
    return np.maximum(h, ellipsoid_sd(x, y, z, *LEFT_ATRIUM))


def mediastinum_sd(x: np.ndarray, y: np.ndarray, an: Anatomy) -> np.ndarray:
    """Signed distance to the central mediastinal band (sternum to spine), positive inside."""
    t = np.clip((y + F32(65.0)) / F32(35.0), 0, 1)
    w = F32(an.med_w[0]) + F32(an.med_w[1] - an.med_w[0]) * t * t * (3 - 2 * t)
    sd = w - np.abs(x - F32(4.0))
    return np.minimum(sd, np.minimum(y + F32(110.0), F32(SPINE_Y + 5.0) - y))


def spine_sd(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed distance to the spine and paravertebral region carved out of the lungs.

    A disc around the vertebral body smoothly joined to an ellipse over the neural arch.
    """
    dy = y - F32(SPINE_Y)
    disc = F32(27.0) - np.sqrt(x * x + dy * dy)
    n = np.sqrt((x / F32(36.0)) ** 2 + ((dy - F32(25.0)) / F32(38.0)) ** 2)
    arch = (1 - n) * F32(36.0)
    k = F32(6.0)
    h = np.clip(0.5 + 0.5 * (disc - arch) / k, 0, 1)
    return arch + (disc - arch) * h + k * h * (1 - h)


def _apex_sd(xs: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Rounded apex cap of one lung (xs = lateral coordinate, positive outward).

    Inactive (wider than the cavity) below z = 30; above it narrows to the apex at z = 112.
    """
    zz = np.maximum(z - F32(30.0), 0) / F32(82.0)
    n = np.sqrt(((xs - F32(60.0)) / F32(95.0)) ** 2 + ((y - F32(10.0)) / F32(100.0)) ** 2 + zz * zz)
    return (1 - n) * F32(85.0)


def lung_fields(x: np.ndarray, y: np.ndarray, z: np.ndarray, an: Anatomy,
                tubes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance (mm, positive inside) to the right and the left lung.

    Args:
        x, y, z: canonical coordinates.
        an: subject anatomy.
        tubes: signed distance to the mediastinal vessels/oesophagus (:data:`MEDIASTINAL_TUBES`),
            negative inside.

    Returns:
        (right, left); each lung is the thoracic cavity minus mediastinum, heart, great vessels and
        spine, above the diaphragm, under a rounded apex, deformed by smooth noise.
    """
    f = cavity_sd(x, y, z, an)
    np.minimum(f, -(mediastinum_sd(x, y, an) + F32(2.0)), out=f)
    np.minimum(f, -(heart_sd(x, y, z, an) + F32(3.0)), out=f)
    np.minimum(f, tubes - F32(3.0), out=f)
    np.minimum(f, -spine_sd(x, y), out=f)
    np.minimum(f, z - diaphragm_z(x, y, an) - F32(4.0), out=f)
    noise = an.lung_noise(x, y, z)
    out = []
    for side in (-1, 1):
        g = np.minimum(f, _apex_sd(x * F32(side), y, z))
        g += noise
        np.minimum(g, x * F32(side) - F32(1.5), out=g)
        out.append(g)
    return out[0], out[1]


# Mediastinal tubes: (polyline points, radius, HU) in canonical mm.
MEDIASTINAL_TUBES: tuple[tuple[tuple[tuple[float, float, float], ...], float, float], ...] = (
    (((-4, -20, -12), (-4, -12, 55)), 15.0, HU_BLOOD),  # ascending aorta
    (((-4, -12, 55), (6, 2, 68), (18, 20, 66), (26, 32, 52)), 13.0, HU_BLOOD),  # arch
    (((26, 32, 52), (24, 34, -200)), 12.0, HU_BLOOD),  # descending aorta
    (((-28, -12, 130), (-28, -8, 5)), 10.0, HU_BLOOD),  # superior vena cava
    (((8, -46, -22), PA_BIFURCATION), 14.0, HU_BLOOD),  # pulmonary trunk
    (((2, 24, 200), (8, 22, -110)), 7.0, 35.0),  # oesophagus
    (((2, -10, 66), (-10, -22, 160)), 8.0, HU_BLOOD),  # brachiocephalic trunk
    (((18, 6, 66), (26, 2, 160)), 6.5, HU_BLOOD),  # left carotid / subclavian
)


def soft_tissue_hu(x: np.ndarray, y: np.ndarray, z: np.ndarray, an: Anatomy, body: np.ndarray,
                   tubes: np.ndarray, tube_hu: np.ndarray) -> np.ndarray:
    """HU of everything but lungs, airways, lung vessels and bones (fat, muscle, organs).

    Args:
        x, y, z: canonical coordinates.
        an: subject anatomy.
        body: :func:`body_sd` at the points.
        tubes: signed distance to the mediastinal tubes (negative inside); tube_hu: their HU.

    Returns:
        float32 HU; outside the body it holds the fat value (the caller cuts the skin sharply).
    """
    cav = cavity_sd(x, y, z, an)
    hu = np.full(np.broadcast_shapes(x.shape, y.shape, z.shape), HU_FAT, F32)
    hu[(body > fat_thickness(x, y, z, an)) & (cav < 0)] = HU_MUSCLE
    inside = cav >= 0
    hu[inside] = -90.0  # mediastinal / abdominal fat
    dz = z - diaphragm_z(x, y, an)
    below = inside & (dz < 0)
    hu[below & (dz > -5)] = HU_MUSCLE
    deep = below & (dz <= -5)
    liver = deep & (x < F32(10.0) - F32(0.3) * y)
    hu[liver] = HU_LIVER
    hu[deep & ~liver & (x > 45) & (y > 15)] = 48.0  # spleen
    stomach = ellipsoid_sd(x, y, z, (50.0, -20.0, -115.0), (40.0, 35.0, 40.0)) > 0
    stomach &= deep & ~liver & (y <= 15)
    hu[stomach] = 30.0
    hu[spine_sd(x, y) > -8] = HU_MUSCLE
    hu[np.hypot(x, y - F32(SPINE_Y + 19.0)) < 8] = 15.0  # spinal canal
    hu[heart_sd(x, y, z, an) > 0] = HU_BLOOD
    sel = tubes < 0
    hu[sel] = tube_hu[sel]
    return hu


# ----------------------------------------------------------------------------------- trees
@dataclass(frozen=True)
class Tree:
    """Tubular tree segments in canonical mm.

    Attributes:
        a, b: (N, 3) start and end points.
        r: (N,) radius (lumen radius for airways).
        gen: (N,) generation (0 trachea, 1 main bronchi / hilar trunks, 2 lobar, ...).
        terminal: (N,) True for the last rendered branches.
        side: (N,) 1 right lung, 2 left lung, 0 midline.
    """

    a: np.ndarray
    b: np.ndarray
    r: np.ndarray
    gen: np.ndarray
    terminal: np.ndarray
    side: np.ndarray


def _tree(rows: list[tuple]) -> Tree:
    """Pack (a, b, r, gen, terminal, side) rows into a :class:`Tree`."""
    if not rows:
        z3 = np.zeros((0, 3))
        return Tree(z3, z3, np.zeros(0), np.zeros(0, int), np.zeros(0, bool), np.zeros(0, int))
    a, b, r, g, t, s = zip(*rows)
    return Tree(np.array(a, float), np.array(b, float), np.array(r, float), np.array(g, int),
                np.array(t, bool), np.array(s, int))


def _split_axis(sub: np.ndarray, mode: int) -> np.ndarray:
    """Axis of largest extent of a point set (mode 0), or of second largest when the two are
    within 30 % of each other (mode 1): regions stay compact, so branches stay short."""
    c = sub - sub.mean(0)
    w, v = np.linalg.eigh(c.T @ c)
    if mode == 1 and w[1] > 0.7 * w[2]:
        return v[:, 1]
    return v[:, 2]


def grow_tree(points: np.ndarray, start: np.ndarray, direction: np.ndarray, r_root: float,
              r_stop: float, rng: np.random.Generator, mode: int, first_frac: float,
              offset0: np.ndarray | None = None) -> list[tuple]:
    """Space-filling branching (Kitaoka-style) from ``start`` into a cloud of lung points.

    Each branch serves a set of points; it is split in two by a plane (first by height, then
    normal to the set's longest axis, see :func:`_split_axis`), and each child heads for its
    half's centroid. Radii follow Murray's law r = r_root (n/N)^(1/3).

    Args:
        points: (N, 3) canonical points filling the lung.
        start, direction: root node and its incoming direction.
        r_root: radius for the whole point set.
        r_stop: smallest radius grown.
        rng: random generator (split jitter).
        mode: split axis mode.
        first_frac: fraction of points below the first (height) split.
        offset0: optional unit vector carried along as a perpendicular offset direction.

    Returns:
        Rows (a, b, r, gen, terminal, offset_dir_at_b) in depth-first order.
    """
    n_tot = len(points)
    rows: list[tuple] = []
    off = offset0 if offset0 is not None else np.zeros(3)
    stack = [(np.asarray(start, float), np.asarray(direction, float), np.arange(n_tot), 2, off)]
    while stack:
        p, d, idx, gen, off = stack.pop()
        if len(idx) < 2:
            continue
        sub = points[idx]
        axis = np.array([0.0, 0.0, 1.0]) if gen == 2 else _split_axis(sub, mode)
        proj = sub @ axis
        frac = first_frac if gen == 2 else float(np.clip(0.5 + rng.normal(0, 0.07), 0.3, 0.7))
        k = int(np.clip(round(frac * len(idx)), 1, len(idx) - 1))
        order = np.argpartition(proj, k - 1)
        for half in (order[:k], order[k:]):
            child = idx[half]
            r_c = r_root * (len(child) / n_tot) ** (1 / 3)
            if r_c < r_stop:
                continue
            v = points[child].mean(0) - p
            length = float(np.linalg.norm(v))
            if length < 1e-3:
                continue
            v /= length
            terminal = r_root * (0.5 * len(child) / n_tot) ** (1 / 3) < r_stop or len(child) < 4
            e = p + v * length * (0.95 if terminal else 0.45)
            o = off - (off @ v) * v
            on = float(np.linalg.norm(o))
            o = o / on if on > 1e-6 else _any_perp(v)
            rows.append((p, e, r_c, gen, terminal, o))
            if not terminal:
                stack.append((e, v, child, gen + 1, o))
    return rows


def _any_perp(v: np.ndarray) -> np.ndarray:
    """A unit vector perpendicular to v."""
    t = np.array([1.0, 0.0, 0.0]) if abs(v[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    p = np.cross(v, t)
    return p / np.linalg.norm(p)


def bronchovascular_trees(lung_points: dict[int, np.ndarray], r_stop: float,
                          rng: np.random.Generator) -> tuple[Tree, Tree, Tree]:
    """Airway, pulmonary-artery and pulmonary-vein trees of both lungs (canonical mm).

    The arteries run beside the airways (same branching, offset sideways); the veins form a
    separate tree from the lower hila (inter-segmental).

    Args:
        lung_points: side (1 right, 2 left) -> (N, 3) canonical points inside that lung.
        r_stop: smallest vessel radius to grow (canonical mm).
        rng: random generator.

    Returns:
        (airways with lumen radii, arteries, veins).
    """
    aw: list[tuple] = [(TRACHEA_TOP, CARINA, R_TRACHEA, 0, False, 0)]
    art: list[tuple] = []
    vein: list[tuple] = []
    for side, pts in lung_points.items():
        s = -1.0 if side == 1 else 1.0
        end = np.array(MAIN_BRONCHUS_END[side])
        aw.append((CARINA, tuple(end), R_MAIN[side], 1, False, side))
        if len(pts) < 8:
            continue
        d = end - np.array(CARINA)
        d /= np.linalg.norm(d)
        r_aw_root = R_MAIN[side] * 1.05
        o0 = np.array([0.3 * s, -1.0, 0.2])
        o0 /= np.linalg.norm(o0)
        rows = grow_tree(pts, end, d, r_aw_root, r_stop / 1.3, rng, 0, 0.55, o0)
        root_off = _artery_offset(R_MAIN[side], o0)
        art.append((PA_BIFURCATION, tuple(end + root_off), R_ARTERY_ROOT, 1, False, side))
        offs = {}
        for a, b, r, g, t, o in rows:
            aw.append((a, b, r, g, t, side))
            oa = offs.get(tuple(np.round(a, 6)), root_off)
            ob = _artery_offset(r, o)
            offs[tuple(np.round(b, 6))] = ob
            art.append((a + oa, b + ob, 1.3 * r, g, t, side))
        la = np.array([s * 14.0, 20.0, -10.0])
        vroot = np.array([s * 36.0, 20.0, -4.0])
        vein.append((tuple(la), tuple(vroot), R_VEIN_ROOT, 1, False, side))
        vd = (vroot - la) / np.linalg.norm(vroot - la)
        for a, b, r, g, t, _ in grow_tree(pts, vroot, vd, R_VEIN_ROOT, r_stop, rng, 1, 0.5):
            vein.append((a, b, r, g, t, side))
    art = [row for row in art if row[2] >= r_stop]
    return _tree(aw), _tree(art), _tree(vein)


def _artery_offset(r_airway: float, direction: np.ndarray) -> np.ndarray:
    """Offset of an artery centre from its airway's centre (room for a thickened wall)."""
    return direction * (1.7 * r_airway + 1.3 * r_airway + 0.3)


# ------------------------------------------------------------------------------------ bones
@dataclass(frozen=True)
class Bone:
    """A bone piece: polyline in canonical mm, radius, kind (1 vertebra, 2 bone, 3 cartilage)."""

    points: np.ndarray
    radius: float
    kind: int
    flat: bool = False


def _vertebral_z(k: int) -> float:
    """Height of the k-th vertebral body (0 = T1)."""
    return 118.0 - 24.5 * k


def spine_bones() -> list[Bone]:
    """Vertebral bodies (flat cylinders) and neural arches, T1 to L4."""
    out = []
    y = SPINE_Y
    for k in range(16):
        z = _vertebral_z(k)
        h, r = 9.0 + 0.25 * k, 13.0 + 0.45 * k
        out.append(Bone(np.array([[0, y, z - h], [0, y, z + h]]), r, 1, flat=True))
        for s in (-1, 1):
            out.append(Bone(np.array([[9 * s, y + 10, z], [11 * s, y + 20, z]]), 4.0, 2))
            out.append(Bone(np.array([[11 * s, y + 20, z], [0, y + 30, z - 2]]), 3.5, 2))
            out.append(Bone(np.array([[11 * s, y + 20, z], [30 * s, y + 24, z + 2]]), 4.5, 2))
        out.append(Bone(np.array([[0, y + 30, z - 2], [0, y + 54, z - 20]]), 3.5, 2))
    return out


def _cavity_point(phi: np.ndarray, z: np.ndarray, an: Anatomy, extra: float,
                  side: float) -> np.ndarray:
    """Points at angle phi (0 = anterior, pi = posterior) just outside the cavity wall."""
    a, b = cavity_axes(z.astype(F32), an, floor=0.5)
    s, c = np.sin(phi), np.cos(phi)
    p = an.cav_p
    r = 1.0 / ((np.abs(s) / a) ** p + (np.abs(c) / b) ** p) ** (1.0 / p) + extra
    return np.stack([side * r * s, an.cav_yc - r * c, z], axis=1)


def rib_bones(an: Anatomy) -> list[Bone]:
    """Twelve pairs of ribs: head at the spine, arc around the cavity, costal cartilage in front."""
    out = []
    ends = [16, 17, 18, 20, 22, 24, 26, 30, 38, 48, 85, 110]
    for k in range(1, 13):
        z0 = _vertebral_z(k - 1) + 4.0
        phi_end = np.radians(ends[k - 1])
        phi0 = np.radians(158.0)
        n = 14
        s = np.linspace(0, 1, n)
        phi = phi0 + (phi_end - phi0) * s
        drop = (28.0 + 5.0 * k) * (phi0 - phi_end) / np.radians(142.0)
        z = z0 + 2.0 - drop * np.sin(0.5 * np.pi * s)
        r = min(4.5 + 0.1 * k, 5.5)
        for side in (-1.0, 1.0):
            arc = _cavity_point(phi, z, an, 12.0, side)
            head = np.array([[side * 18.0, SPINE_Y - 2, z0], [side * 31.0, SPINE_Y + 23, z0 + 2]])
            cut = n if k > 10 else int(round(0.8 * n))
            out.append(Bone(np.vstack([head, arc[:cut]]), r, 2))
            if cut < n:
                out.append(Bone(arc[cut - 1:], r * 0.9, 3))
    return out


def sternum_clavicle_bones(an: Anatomy) -> list[Bone]:
    """Sternum (manubrium to xiphoid, a flat bar) and the clavicles."""
    out = []
    z = np.linspace(100.0, -58.0, 8)
    _, b = cavity_axes(z.astype(F32), an, floor=0.85)
    y = an.cav_yc - b - 11.0
    for x in (-10.0, 0.0, 10.0):
        out.append(Bone(np.stack([np.full_like(z, x), y, z], 1), 6.0, 2))
    for x in (-17.0, 17.0):
        out.append(Bone(np.stack([np.full(3, x), y[:3], z[:3]], 1)[:2], 6.0, 2))
    for s in (-1.0, 1.0):
        pts = np.array([[16 * s, y[0] - 2, 104], [70 * s, -86, 114], [128 * s, -50, 128],
                        [150 * s, -20, 132]])
        out.append(Bone(pts, 7.0, 2))
    return out
