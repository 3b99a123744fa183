"""The atlas: one healthy lung mask (+ optional CT), its landmark grid and neighbour table.

Landmarks are the centres of 32^3 patches laid on a regular lattice over the atlas lung mask
(DESIGN.md 3.2). They are stored in atlas physical coordinates (LPS mm) and normalised to [-1, 1]
per axis over the grid's bounding box, the encoder's conditioning input.

Grid rule (:func:`build_landmark_grid`): candidate patch corners are the voxel indices
``0, step, 2*step, ...`` on each axis, counted from voxel 0 of the atlas image, for every corner
whose patch fits wholly inside the image; a candidate is kept when *more than* ``min_lung`` of its
voxels are lung. On the published atlas this lattice is exactly the one of the published grid
(every published corner is a multiple of 26) and yields its 575 patches. A published grid
(corner voxel indices, (x, y, z) order) is loaded instead with :func:`load_published_grid`.

Neighbours (:func:`neighbour_table`): the k_max nearest other landmarks of each landmark by
Euclidean distance in atlas mm, an (L, k_max) table. :func:`save_atlas` / :func:`load_atlas` keep
an atlas (mask, optional CT, landmarks, neighbours) in a folder.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from numpy.typing import ArrayLike, NDArray

from drasclr.fsutil import atomic_path
from drasclr.imaging.geometry import geometry_arrays, transform_points, voxel_to_mm
from drasclr.imaging.patches import patch_corners

__all__ = [
    "LandmarkBounds",
    "landmark_bounds",
    "voxel_locations",
    "ATLAS_FORMAT_VERSION",
    "Atlas",
    "build_landmark_grid",
    "grid_centres_mm",
    "load_published_grid",
    "normalise_landmarks",
    "neighbour_table",
    "build_atlas",
    "save_atlas",
    "load_atlas",
    "atlas_from_files",
]


ATLAS_FORMAT_VERSION = 1


_MASK_FILE = "atlas_mask.nii.gz"


_CT_FILE = "atlas_ct.nii.gz"


_LANDMARKS_FILE = "landmarks_mm.npy"


_NEIGHBOURS_FILE = "neighbour_table.npy"


_META_FILE = "atlas.json"


@dataclass(frozen=True, eq=False)
class Atlas:
    """Atlas image(s), geometry, landmarks and neighbour table.

    The atlas is geometry-like (``spacing``, ``origin``, ``direction``), so it can be passed
    wherever a geometry is expected (e.g. :func:`drasclr.imaging.patches.cut_patches`).

    Attributes:
        mask: lung mask ``[z, y, x]`` uint8; labels kept as given (0/1/2 or 0/50/100), non-zero =
            lung.
        spacing: (3,) voxel size in mm, (x, y, z).
        origin: (3,) LPS mm of voxel (0, 0, 0).
        direction: (3, 3) direction cosines (columns = voxel axes in LPS).
        landmarks_mm: (L, 3) float64 landmark (patch-centre) positions, atlas LPS mm.
        landmarks_norm: (L, 3) float32 landmarks scaled to [-1, 1] per axis over the grid's
            bounding box.
        neighbour_table: (L, k_max) int64, the k_max nearest other landmarks of each landmark.
        atlas_id: short name of the atlas (stored with every patch store).
        ct: optional atlas CT ``[z, y, x]`` int16 HU on the mask's grid.
        patch_size: patch edge in voxels the grid was built for.
    """

    mask: NDArray[np.uint8]
    spacing: NDArray[np.float64]
    origin: NDArray[np.float64]
    direction: NDArray[np.float64]
    landmarks_mm: NDArray[np.float64]
    landmarks_norm: NDArray[np.float32]
    neighbour_table: NDArray[np.int64]
    atlas_id: str
    ct: NDArray[np.int16] | None = field(default=None)
    patch_size: int = 32

    @property
    def n_landmarks(self) -> int:
        """Number of landmarks L."""
        return int(self.landmarks_mm.shape[0])

    @property
    def geometry(self) -> dict[str, list[float]]:
        """Plain geometry dict (spacing, origin, direction as 9 row-major values)."""
        return {
            "spacing": self.spacing.tolist(),
            "origin": self.origin.tolist(),
            "direction": self.direction.ravel().tolist(),
        }

    def patch_corners(self) -> NDArray[np.int64]:
        """(L, 3) voxel corner ``(x, y, z)`` of each landmark's patch in the atlas image."""
        return patch_corners(self.landmarks_mm, self, self.patch_size)


# ----------------------------------------------------------------------------- grid
def _window_sums(
    a: NDArray[Any], axis: int, starts: NDArray[np.int64], width: int
) -> NDArray[np.int64]:
    """Sums of ``a`` over ``[s, s + width)`` along ``axis`` for each start (stacked on ``axis``)."""
    lead = (slice(None),) * axis
    parts = [
        np.add.reduce(a[lead + (slice(s, s + width),)], axis=axis, dtype=np.int64) for s in starts
    ]
    return np.stack(parts, axis=axis)


def build_landmark_grid(
    mask_zyx: NDArray[Any],
    patch: int = 32,
    step: int = 26,
    min_lung: float = 0.10,
    max_patches: int = 1000,
    threshold_increment: float = 0.1,
) -> NDArray[np.int64]:
    """Patch corners of the landmark grid on an atlas lung mask (DESIGN.md 3.2).

    Candidates: corners at voxel indices ``0, step, 2*step, ...`` on every axis (lattice anchored at
    voxel 0) whose ``patch``^3 block fits inside the image. A candidate is kept when more than
    ``min_lung`` of its voxels are lung; if ``max_patches`` or more are kept, the threshold is
    raised by ``threshold_increment`` and the selection repeated. Lung counts are separable box
    sums over the lattice (no loop over patches).

    Args:
        mask_zyx: atlas lung mask ``[z, y, x]``; any non-zero value is lung.
        patch: patch edge in voxels.
        step: lattice step in voxels (``patch - step`` voxels of overlap).
        min_lung: initial lung-fraction threshold (strict ``>``).
        max_patches: the grid must hold fewer patches than this.
        threshold_increment: threshold increase per retry.

    Returns:
        (L, 3) int64 corner voxel indices ``(x, y, z)``, sorted by x, then y, then z (the order of
        the published grid). Centres are ``corner + patch // 2``.
    """
    mask = np.asarray(mask_zyx) != 0
    if mask.ndim != 3:
        raise ValueError(f"mask must be 3D [z,y,x], got shape {mask.shape}")
    if patch <= 0 or step <= 0:
        raise ValueError(f"patch and step must be positive, got patch={patch}, step={step}")
    if not 0.0 <= min_lung < 1.0:
        raise ValueError(f"min_lung must lie in [0, 1), got {min_lung}")
    starts_zyx = [np.arange(0, n - patch + 1, step, dtype=np.int64) for n in mask.shape]
    if any(s.size == 0 for s in starts_zyx):
        raise ValueError(f"mask {mask.shape} is smaller than one {patch}^3 patch")
    counts = mask.view(np.uint8)
    for axis, starts in enumerate(starts_zyx):  # separable box sums, one small loop per axis
        counts = _window_sums(counts, axis, starts, patch)
    # counts[kz, ky, kx]: lung voxels of the patch at corner (sx[kx], sy[ky], sz[kz]);
    # transposed to [kx, ky, kz] so that C order is x-major like the published grid
    counts_xyz = counts.transpose(2, 1, 0)
    volume = float(patch**3)
    threshold = float(min_lung)
    while threshold < 1.0:
        keep = counts_xyz > threshold * volume
        n_keep = int(keep.sum())
        if n_keep < max_patches:
            if n_keep == 0:
                raise ValueError(
                    f"no patch holds more than {threshold:.2f} lung; is the mask empty?"
                )
            kx, ky, kz = np.nonzero(keep)  # C order over [kx, ky, kz] = sorted by x, y, z
            sx, sy, sz = starts_zyx[2], starts_zyx[1], starts_zyx[0]
            return np.stack([sx[kx], sy[ky], sz[kz]], axis=1).astype(np.int64)
        threshold = round(threshold + threshold_increment, 10)
    raise ValueError(f"cannot reduce the grid below {max_patches} patches")


def grid_centres_mm(corners_xyz: ArrayLike, geom: Any, patch: int = 32) -> NDArray[np.float64]:
    """Landmark positions (LPS mm) of patch corners: voxel ``corner + patch // 2`` mapped to mm.

    Args:
        corners_xyz: (L, 3) voxel corner indices (x, y, z) in the atlas image.
        geom: atlas geometry.
        patch: patch edge in voxels.

    Returns:
        (L, 3) float64 landmark centres, atlas LPS mm.
    """
    corners = np.asarray(corners_xyz)
    if corners.ndim != 2 or corners.shape[1] != 3:
        raise ValueError(f"corners must be (L, 3), got {corners.shape}")
    return voxel_to_mm(corners.astype(np.float64) + patch // 2, geom)


def load_published_grid(path: str | Path, geometry: Any, patch: int = 32) -> NDArray[np.float64]:
    """Load a published grid of patch corners (``.npy``, int (L, 3), voxel (x, y, z)) as landmarks.

    Args:
        path: ``.npy`` file such as DrasCLR's ``atlas_patch_loc.npy``.
        geometry: geometry of the atlas image the corners index into.
        patch: patch edge in voxels (centre = corner + patch // 2).

    Returns:
        (L, 3) float64 landmark centres in atlas LPS mm.
    """
    corners = np.load(Path(path), allow_pickle=False)
    if corners.ndim != 2 or corners.shape[1] != 3 or not np.issubdtype(corners.dtype, np.integer):
        raise ValueError(f"{path}: expected an integer (L, 3) array of corners, got "
                         f"{corners.dtype} {corners.shape}")
    return grid_centres_mm(corners, geometry, patch)


@dataclass(frozen=True)
class LandmarkBounds:
    """Per-axis bounding box of the landmark grid, atlas LPS mm: the location normalisation.

    Attributes:
        lo: (3,) minimum landmark coordinate per axis (x, y, z).
        hi: (3,) maximum per axis.
    """

    lo: npt.NDArray[np.float64]
    hi: npt.NDArray[np.float64]

    def normalise(self, points_mm: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Map atlas mm points to normalised locations: ``2 (p - lo) / (hi - lo) - 1``.

        An axis on which all landmarks coincide maps to 0 (as in ``normalise_landmarks``).

        Returns:
            (N, 3) float32, in [-1, 1] inside the landmarks' box, unclipped outside.
        """
        p = np.atleast_2d(np.asarray(points_mm, dtype=np.float64))
        span = self.hi - self.lo
        safe = np.where(span > 0, span, 1.0)
        return np.where(span > 0, 2.0 * (p - self.lo) / safe - 1.0, 0.0).astype(np.float32)


def landmark_bounds(landmarks_mm: npt.ArrayLike) -> LandmarkBounds:
    """The normalisation bounds of a landmark grid ((L, 3) atlas LPS mm)."""
    lm = np.asarray(landmarks_mm, dtype=np.float64).reshape(-1, 3)
    return LandmarkBounds(lm.min(axis=0), lm.max(axis=0))


def normalise_landmarks(landmarks_mm: ArrayLike) -> NDArray[np.float32]:
    """Scale landmarks to [-1, 1] per axis over their bounding box (the encoder's input).

    An axis on which all landmarks coincide maps to 0.

    Args:
        landmarks_mm: (L, 3) positions, atlas LPS mm.

    Returns:
        (L, 3) float32 in [-1, 1].
    """
    lm = np.asarray(landmarks_mm, dtype=np.float64)
    return landmark_bounds(lm).normalise(lm)


def neighbour_table(
    landmarks_mm: ArrayLike, k_max: int = 3, min_distance_mm: float = 0.0
) -> NDArray[np.int64]:
    """The ``k_max`` nearest other landmarks of every landmark (Euclidean, atlas space).

    Distances are rounded to 1e-6 mm before a stable sort, so equidistant neighbours (common on a
    regular lattice) are ordered by landmark index.

    Args:
        landmarks_mm: (L, 3) positions, LPS mm.
        k_max: neighbours per landmark (paper default uses the first 2).
        min_distance_mm: landmarks closer than this are never neighbours (0: the nearest).

    Returns:
        (L, k_max) int64 landmark indices, nearest first, never the landmark itself.

    Raises:
        ValueError: ``k_max`` out of range, or a landmark with fewer than ``k_max`` others at
            ``min_distance_mm`` or more.
    """
    lm = np.asarray(landmarks_mm, dtype=np.float64)
    n = lm.shape[0]
    if k_max < 0 or k_max > n - 1:
        raise ValueError(f"k_max must lie in [0, {n - 1}] for {n} landmarks, got {k_max}")
    d = np.sqrt(((lm[:, None, :] - lm[None, :, :]) ** 2).sum(-1))
    d = np.round(d, 6)
    np.fill_diagonal(d, np.inf)
    d[d < min_distance_mm] = np.inf
    short = np.flatnonzero(np.isfinite(d).sum(axis=1) < k_max)
    if short.size:
        raise ValueError(f"landmark {int(short[0])} has fewer than {k_max} other landmarks at "
                         f"{min_distance_mm} mm or more")
    order = np.argsort(d, axis=1, kind="stable")
    return np.ascontiguousarray(order[:, :k_max]).astype(np.int64)


# ----------------------------------------------------------------------------- atlas
def _as_mask(mask_zyx: ArrayLike) -> NDArray[np.uint8]:
    """Validate a label mask and return it as uint8 (labels kept)."""
    mask = np.asarray(mask_zyx)
    if mask.ndim != 3:
        raise ValueError(f"mask must be 3D [z,y,x], got shape {mask.shape}")
    if mask.dtype == bool:
        return mask.astype(np.uint8)
    bad = mask.min() < 0 or mask.max() > 255 or not np.array_equal(mask, np.round(mask))
    if mask.size and bad:
        raise ValueError("mask labels must be integers in [0, 255] (e.g. 0/1/2 or 0/50/100)")
    return mask.astype(np.uint8)


def build_atlas(
    mask_zyx: ArrayLike,
    geometry: Any,
    ct: ArrayLike | None = None,
    atlas_id: str = "atlas",
    patch: int = 32,
    step: int = 26,
    min_lung: float = 0.10,
    max_patches: int = 1000,
    k_max: int = 3,
    grid_corners: ArrayLike | None = None,
) -> Atlas:
    """Build an :class:`Atlas` from a mask (+ CT): landmark grid, normalisation, neighbours.

    Args:
        mask_zyx: atlas lung mask ``[z, y, x]`` at 1 mm; any non-zero label is lung.
        geometry: its geometry (spacing, origin, direction).
        ct: optional atlas CT ``[z, y, x]`` in HU on the same grid.
        atlas_id: name stored with the atlas.
        patch, step, min_lung, max_patches: grid rule (see :func:`build_landmark_grid`).
        k_max: neighbours per landmark in the table.
        grid_corners: (L, 3) voxel corners (x, y, z) of a published grid to use instead of building
            one.

    Returns:
        The atlas.
    """
    mask = _as_mask(mask_zyx)
    spacing, origin, direction = geometry_arrays(geometry)
    if not np.allclose(spacing, 1.0, atol=1e-3):
        warnings.warn(f"atlas spacing {spacing.tolist()} is not 1 mm: patches of {patch} voxels "
                      f"will not be {patch} mm wide", stacklevel=2)
    if grid_corners is None:
        corners = build_landmark_grid(mask, patch=patch, step=step, min_lung=min_lung,
                                      max_patches=max_patches)
    else:
        corners = np.asarray(grid_corners, dtype=np.int64)
    geom = (spacing, origin, direction)
    landmarks = grid_centres_mm(corners, geom, patch)
    ct_arr = None
    if ct is not None:
        ct_arr = np.asarray(ct)
        if ct_arr.shape != mask.shape:
            raise ValueError(f"atlas CT shape {ct_arr.shape} differs from mask shape {mask.shape}")
        ct_arr = np.clip(np.round(ct_arr), -32768, 32767).astype(np.int16)
    return Atlas(
        mask=mask,
        spacing=spacing,
        origin=origin,
        direction=direction,
        landmarks_mm=landmarks,
        landmarks_norm=normalise_landmarks(landmarks),
        neighbour_table=neighbour_table(landmarks, k_max),
        atlas_id=str(atlas_id),
        ct=ct_arr,
        patch_size=int(patch),
    )


def _to_sitk(array: NDArray[Any], atlas: Atlas) -> sitk.Image:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(atlas.spacing.tolist())
    img.SetOrigin(atlas.origin.tolist())
    img.SetDirection(atlas.direction.ravel().tolist())
    return img


def save_atlas(atlas: Atlas, folder: str | Path) -> Path:
    """Write an atlas folder atomically (the folder appears complete or not at all).

    Layout: ``atlas_mask.nii.gz`` (+ ``atlas_ct.nii.gz``), ``landmarks_mm.npy``,
    ``neighbour_table.npy`` and ``atlas.json`` (id, exact float64 geometry, patch size, landmarks).
    An existing folder is replaced.

    Args:
        atlas: the atlas.
        folder: destination folder.

    Returns:
        The folder path.
    """
    folder = Path(folder)
    meta = {
        "format_version": ATLAS_FORMAT_VERSION,
        "atlas_id": atlas.atlas_id,
        "patch_size": atlas.patch_size,
        "n_landmarks": atlas.n_landmarks,
        "k_max": int(atlas.neighbour_table.shape[1]),
        "geometry": atlas.geometry,
        "coordinates": "LPS mm, (x, y, z); landmarks are patch centres",
        "landmarks_mm": atlas.landmarks_mm.tolist(),
        "has_ct": atlas.ct is not None,
    }
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        sitk.WriteImage(_to_sitk(atlas.mask, atlas), str(tmp / _MASK_FILE), True)
        if atlas.ct is not None:
            sitk.WriteImage(_to_sitk(atlas.ct, atlas), str(tmp / _CT_FILE), True)
        np.save(tmp / _LANDMARKS_FILE, atlas.landmarks_mm)
        np.save(tmp / _NEIGHBOURS_FILE, atlas.neighbour_table)
        (tmp / _META_FILE).write_text(json.dumps(meta, indent=1))
    return folder


def load_atlas(folder: str | Path) -> Atlas:
    """Read an atlas folder written by :func:`save_atlas`.

    The geometry comes from ``atlas.json`` (exact float64); the NIfTI header must agree with it.

    Args:
        folder: atlas folder.

    Returns:
        The atlas.
    """
    folder = Path(folder)
    meta_path = folder / _META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder}: not an atlas folder (no {_META_FILE})")
    meta = json.loads(meta_path.read_text())
    if meta.get("format_version") != ATLAS_FORMAT_VERSION:
        raise ValueError(f"{meta_path}: unsupported atlas format {meta.get('format_version')}")
    geom = geometry_arrays(meta["geometry"])
    img = sitk.ReadImage(str(folder / _MASK_FILE))
    disk = geometry_arrays(img)
    if not all(np.allclose(a, b, atol=1e-3) for a, b in zip(geom, disk)):
        raise ValueError(f"{folder}: mask geometry on disk differs from {_META_FILE}")
    mask = sitk.GetArrayFromImage(img)
    ct = None
    if meta.get("has_ct"):
        ct = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / _CT_FILE))).astype(np.int16)
    landmarks = np.load(folder / _LANDMARKS_FILE, allow_pickle=False).astype(np.float64)
    table = np.load(folder / _NEIGHBOURS_FILE, allow_pickle=False).astype(np.int64)
    if landmarks.shape != (meta["n_landmarks"], 3) or table.shape[0] != landmarks.shape[0]:
        raise ValueError(f"{folder}: landmark/neighbour arrays do not match {_META_FILE}")
    return Atlas(
        mask=_as_mask(mask),
        spacing=geom[0],
        origin=geom[1],
        direction=geom[2],
        landmarks_mm=landmarks,
        landmarks_norm=normalise_landmarks(landmarks),
        neighbour_table=table,
        atlas_id=str(meta["atlas_id"]),
        ct=ct,
        patch_size=int(meta["patch_size"]),
    )


def _resample_to_1mm(img: sitk.Image, interpolator: int) -> sitk.Image:
    """Resample an image to 1 mm isotropic on the same origin and direction (no-op if 1 mm)."""
    spacing = np.asarray(img.GetSpacing())
    if np.allclose(spacing, 1.0, atol=1e-3):
        return img
    size = np.maximum(1, np.round(np.asarray(img.GetSize()) * spacing)).astype(int)
    return sitk.Resample(img, [int(s) for s in size], sitk.Transform(), interpolator,
                         img.GetOrigin(), (1.0, 1.0, 1.0), img.GetDirection(), 0,
                         img.GetPixelID())


def atlas_from_files(
    mask_path: str | Path,
    ct_path: str | Path | None = None,
    grid_path: str | Path | None = None,
    atlas_id: str | None = None,
    **grid_kwargs: Any,
) -> Atlas:
    """Build an atlas from user files (any format SimpleITK reads: NIfTI, NRRD, MHA).

    Images not at 1 mm are resampled to 1 mm isotropic (nearest neighbour for the mask, linear for
    the CT). With ``grid_path`` the published corners are used instead of building a grid (they
    index the mask image as read, so it must already be at 1 mm).

    Args:
        mask_path: atlas lung-mask image (labels 0/1/2, 0/50/100, ...).
        ct_path: optional atlas CT (HU) on the mask's grid.
        grid_path: optional ``.npy`` of patch corners (x, y, z), e.g. ``atlas_patch_loc.npy``.
        atlas_id: name; defaults to the mask file name without extensions.
        **grid_kwargs: passed to :func:`build_atlas` (patch, step, min_lung, max_patches, k_max).

    Returns:
        The atlas.
    """
    mask_path = Path(mask_path)
    mask_img = sitk.ReadImage(str(mask_path))
    if grid_path is not None and not np.allclose(mask_img.GetSpacing(), 1.0, atol=1e-3):
        raise ValueError(f"{mask_path}: a published grid needs the mask at 1 mm, "
                         f"got spacing {mask_img.GetSpacing()}")
    mask_img = _resample_to_1mm(mask_img, sitk.sitkNearestNeighbor)
    ct = None
    if ct_path is not None:
        ct_img = sitk.ReadImage(str(ct_path))
        ct_img = sitk.Resample(ct_img, mask_img, sitk.Transform(), sitk.sitkLinear, -1024.0,
                               sitk.sitkFloat32)
        ct = sitk.GetArrayFromImage(ct_img)
    corners = None
    if grid_path is not None:
        corners = np.load(Path(grid_path), allow_pickle=False)
    name = atlas_id or mask_path.name.split(".")[0]
    return build_atlas(sitk.GetArrayFromImage(mask_img), mask_img, ct=ct, atlas_id=name,
                       grid_corners=corners, **grid_kwargs)


def voxel_locations(
    voxels_zyx: npt.ArrayLike,
    geometry: Any,
    inverse_transform: npt.ArrayLike,
    bounds: LandmarkBounds,
) -> npt.NDArray[np.float32]:
    """Normalised atlas location of voxels: ``normalise(T^-1(voxel_to_mm(v)))``.

    Args:
        voxels_zyx: (N, 3) voxel indices in ``[z, y, x]`` order.
        geometry: the volume's geometry (ITK/LPS).
        inverse_transform: subject LPS mm -> atlas LPS mm, 4x4 (or 16 values row-major).
        bounds: the landmark grid's normalisation bounds.

    Returns:
        (N, 3) float32.
    """
    xyz = np.asarray(voxels_zyx, dtype=np.float64).reshape(-1, 3)[:, ::-1]
    return bounds.normalise(transform_points(inverse_transform, voxel_to_mm(xyz, geometry)))
