"""Image geometry in LPS millimetres: Geometry, Volume, and the one voxel <-> mm conversion pair.

Conventions used everywhere in drasclr:

* Arrays are indexed ``[z, y, x]`` exactly like ``SimpleITK.GetArrayFromImage``.
* Voxel indices, sizes and spacings are given in ``(x, y, z)`` order like SimpleITK
  (``Geometry.shape == array.shape[::-1]``).
* Physical coordinates are ITK / DICOM **LPS** millimetres: +x towards the patient's left,
  +y towards posterior, +z towards superior. ``world = origin + direction @ (spacing * ijk)``
  with ``ijk`` the (continuous) voxel index in ``(x, y, z)`` and column k of ``direction`` the
  LPS unit vector along voxel axis k. :func:`voxel_to_mm` and :func:`mm_to_voxel` are the one
  conversion pair of the package; indices are rounded at the call site, at the last moment
  (for patches: :mod:`drasclr.imaging.patches`).
* CT intensities are Hounsfield units (air about -1000, water 0).

:class:`Geometry` (spacing, origin, direction cosines, grid shape) and :class:`Volume` (a
``[z, y, x]`` numpy array plus its Geometry) are what the image math passes around; wherever a
geometry is only read, anything with ``spacing`` / ``origin`` / ``direction`` will do
(:func:`geometry_arrays`: a Geometry, an Atlas, a mapping, a tuple or a SimpleITK image).
:func:`transform_points` applies a 4x4 homogeneous affine in LPS mm (the manifest's transform
columns) to points. :func:`to_sitk` / :func:`from_sitk` are the SimpleITK edge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import SimpleITK as sitk
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "GeometryArrays",
    "GeometryLike",
    "geometry_arrays",
    "voxel_to_mm",
    "mm_to_voxel",
    "transform_points",
    "IDENTITY_DIRECTION",
    "Geometry",
    "Volume",
    "to_sitk",
    "from_sitk",
]


GeometryArrays = tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]
"""``(spacing (3,), origin (3,), direction (3, 3))`` as float64 arrays."""


@runtime_checkable
class GeometryLike(Protocol):
    """Anything with ``spacing`` (x,y,z) mm, ``origin`` (x,y,z) LPS mm and ``direction`` (3x3)."""

    spacing: Any
    origin: Any
    direction: Any


def geometry_arrays(geom: Any) -> GeometryArrays:
    """Normalise a geometry to ``(spacing (3,), origin (3,), direction (3, 3))`` float64 arrays.

    Args:
        geom: an object with ``spacing``/``origin``/``direction`` attributes (e.g. ``io.Geometry``
            or :class:`drasclr.imaging.atlas.Atlas`), a mapping with those keys, a ``(spacing, origin,
            direction)`` tuple, or a ``SimpleITK.Image``. ``direction`` may be 3x3 or 9 values in
            row-major (ITK) order; its columns are the directions of the x, y, z voxel axes in LPS.

    Returns:
        spacing in mm, origin in LPS mm, direction cosine matrix.
    """
    if hasattr(geom, "GetSpacing") and hasattr(geom, "GetDirection"):  # SimpleITK image
        sp, org, dr = geom.GetSpacing(), geom.GetOrigin(), geom.GetDirection()
    elif isinstance(geom, Mapping):
        sp, org, dr = geom["spacing"], geom["origin"], geom["direction"]
    elif isinstance(geom, (tuple, list)) and len(geom) == 3:
        sp, org, dr = geom
    elif all(hasattr(geom, k) for k in ("spacing", "origin", "direction")):
        sp, org, dr = geom.spacing, geom.origin, geom.direction
    else:
        raise TypeError(f"not a geometry (need spacing, origin, direction): {type(geom).__name__}")
    spacing = np.asarray(sp, dtype=np.float64).reshape(3)
    origin = np.asarray(org, dtype=np.float64).reshape(3)
    direction = np.asarray(dr, dtype=np.float64).reshape(3, 3)
    if np.any(spacing <= 0):
        raise ValueError(f"spacing must be positive, got {spacing.tolist()}")
    if abs(np.linalg.det(direction)) < 1e-6:
        raise ValueError(f"direction matrix is singular: {direction.tolist()}")
    return spacing, origin, direction


def voxel_to_mm(index_xyz: ArrayLike, geom: Any) -> NDArray[np.float64]:
    """Map voxel indices ``(x, y, z)`` (integer or continuous) to LPS millimetres.

    Args:
        index_xyz: (N, 3) or (3,) voxel indices in (x, y, z) order.
        geom: geometry of the image (see :func:`geometry_arrays`).

    Returns:
        Physical points, same shape as the input, LPS mm.
    """
    spacing, origin, direction = geometry_arrays(geom)
    ijk = np.asarray(index_xyz, dtype=np.float64)
    return origin + (ijk * spacing) @ direction.T


def mm_to_voxel(points_mm: ArrayLike, geom: Any) -> NDArray[np.float64]:
    """Map LPS millimetre points to continuous voxel indices ``(x, y, z)`` (inverse of
    :func:`voxel_to_mm`; round as needed at the call site).

    Args:
        points_mm: (N, 3) or (3,) physical points, LPS mm.
        geom: geometry of the image.

    Returns:
        Continuous voxel indices, same shape as the input, (x, y, z) order.
    """
    spacing, origin, direction = geometry_arrays(geom)
    pts = np.asarray(points_mm, dtype=np.float64)
    return ((pts - origin) @ np.linalg.inv(direction).T) / spacing


def transform_points(matrix: ArrayLike, points_mm: ArrayLike) -> NDArray[np.float64]:
    """Apply a 4x4 homogeneous affine to points: ``p @ A.T + t``.

    Args:
        matrix: 4x4 matrix, or its 16 values row-major (the manifest's ``transform`` columns).
        points_mm: (N, 3) or (3,) points, LPS mm.

    Returns:
        The mapped points, same shape as ``points_mm``, LPS mm.
    """
    m = np.asarray(matrix, dtype=np.float64).reshape(4, 4)
    p = np.asarray(points_mm, dtype=np.float64)
    return p @ m[:3, :3].T + m[:3, 3]


#: Identity direction cosines (row-major): index axes x, y, z along LPS x, y, z.
IDENTITY_DIRECTION: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


# ----------------------------------------------------------------------------------- geometry
def _tuple3(values: Sequence[float], name: str) -> tuple[float, float, float]:
    arr = np.asarray(values, dtype=float).reshape(-1)
    if arr.size != 3 or not np.all(np.isfinite(arr)):
        raise ValueError(f"Geometry.{name} must be 3 finite numbers, got {values!r}")
    return (float(arr[0]), float(arr[1]), float(arr[2]))


@dataclass(frozen=True)
class Geometry:
    """Physical placement of a 3D voxel grid (ITK conventions, LPS millimetres).

    Attributes:
        spacing: voxel size in mm, (x, y, z) order.
        origin: LPS position in mm of the centre of voxel index (0, 0, 0).
        direction: 3x3 direction cosines, row-major (9 floats); column k is the LPS unit vector
            along voxel index axis k (x, y, z).
        shape: grid size (nx, ny, nz); the matching numpy array has shape (nz, ny, nx).
    """

    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]
    shape: tuple[int, int, int]

    def __post_init__(self) -> None:
        spacing = _tuple3(self.spacing, "spacing")
        if min(spacing) <= 0:
            raise ValueError(f"Geometry.spacing must be positive, got {spacing}")
        direction = np.asarray(self.direction, dtype=float).reshape(-1)
        if direction.size != 9 or not np.all(np.isfinite(direction)):
            raise ValueError(f"Geometry.direction must be 9 finite numbers, got {self.direction!r}")
        if abs(np.linalg.det(direction.reshape(3, 3))) < 1e-6:
            raise ValueError(f"Geometry.direction is singular: {self.direction!r}")
        shape = tuple(int(s) for s in self.shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"Geometry.shape must be 3 positive sizes (nx, ny, nz), got {shape!r}")
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", _tuple3(self.origin, "origin"))
        object.__setattr__(self, "direction", tuple(float(v) for v in direction))
        object.__setattr__(self, "shape", shape)

    # -------------------------------------------------------------------- constructors
    @classmethod
    def identity(
        cls,
        shape: tuple[int, int, int],
        spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
        origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
    ) -> Geometry:
        """Axis-aligned LPS grid (identity direction); ``shape`` is (nx, ny, nz)."""
        return cls(spacing, origin, IDENTITY_DIRECTION, shape)

    @classmethod
    def from_sitk(cls, image: sitk.Image) -> Geometry:
        """Geometry of a 3D SimpleITK image."""
        return cls(
            spacing=image.GetSpacing(),
            origin=image.GetOrigin(),
            direction=image.GetDirection(),
            shape=image.GetSize(),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Geometry:
        """Inverse of :meth:`to_dict`."""
        return cls(
            spacing=tuple(data["spacing"]),
            origin=tuple(data["origin"]),
            direction=tuple(data["direction"]),
            shape=tuple(data["shape"]),
        )

    def to_dict(self) -> dict[str, list[float] | list[int]]:
        """Plain lists (JSON / Parquet friendly)."""
        return {
            "spacing": list(self.spacing),
            "origin": list(self.origin),
            "direction": list(self.direction),
            "shape": list(self.shape),
        }

    # -------------------------------------------------------------------- properties
    @property
    def direction_matrix(self) -> np.ndarray:
        """3x3 direction cosine matrix (columns = index axes x, y, z in LPS)."""
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    @property
    def array_shape(self) -> tuple[int, int, int]:
        """Shape of the matching numpy array, (nz, ny, nx)."""
        return (self.shape[2], self.shape[1], self.shape[0])

    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres."""
        return float(np.prod(self.spacing)) / 1000.0

    # -------------------------------------------------------------------- mm <-> index
    def index_to_world(self, ijk: np.ndarray | Sequence[float]) -> np.ndarray:
        """Continuous voxel index (x, y, z order) -> LPS millimetres.

        Args:
            ijk: (N, 3) or (3,) voxel indices in (x, y, z) order (NOT the [z, y, x] array order).

        Returns:
            Same shape as ``ijk``: LPS positions in mm.
        """
        return voxel_to_mm(ijk, self)

    def world_to_index(self, xyz: np.ndarray | Sequence[float]) -> np.ndarray:
        """LPS millimetres -> continuous voxel index (x, y, z order).

        Args:
            xyz: (N, 3) or (3,) LPS positions in mm.

        Returns:
            Same shape as ``xyz``: continuous indices (x, y, z); round them to address voxels,
            and reverse the order to index a [z, y, x] array.
        """
        return mm_to_voxel(xyz, self)

    def is_close(self, other: Geometry, atol_mm: float = 1e-4) -> bool:
        """True when both grids have the same shape and agree to ``atol_mm`` (direction to 1e-6)."""
        return (
            self.shape == other.shape
            and np.allclose(self.spacing, other.spacing, atol=atol_mm, rtol=0)
            and np.allclose(self.origin, other.origin, atol=atol_mm, rtol=0)
            and np.allclose(self.direction, other.direction, atol=1e-6, rtol=0)
        )


@dataclass
class Volume:
    """A 3D image: numpy array indexed [z, y, x] plus its physical :class:`Geometry`.

    Attributes:
        array: voxel values, shape (nz, ny, nx); HU for CT, integer labels for masks.
        geometry: where the voxels are in LPS millimetres.
    """

    array: np.ndarray
    geometry: Geometry

    def __post_init__(self) -> None:
        if self.array.ndim != 3 or tuple(self.array.shape) != self.geometry.array_shape:
            raise ValueError(
                f"array shape {self.array.shape} (z, y, x) does not match geometry shape "
                f"{self.geometry.shape} (x, y, z)"
            )


# ----------------------------------------------------------------------------------- sitk edge
def to_sitk(array_zyx: np.ndarray, geometry: Geometry) -> sitk.Image:
    """SimpleITK image from a [z, y, x] array and its geometry (bool arrays become uint8)."""
    arr = np.asarray(array_zyx)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.ndim != 3 or tuple(arr.shape) != geometry.array_shape:
        raise ValueError(
            f"array shape {arr.shape} (z, y, x) does not match geometry shape "
            f"{geometry.shape} (x, y, z)"
        )
    image = sitk.GetImageFromArray(np.ascontiguousarray(arr))  # copies; sitk owns its buffer
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    return image


def from_sitk(image: sitk.Image) -> Volume:
    """Volume (array [z, y, x] + geometry) from a 3D single-component SimpleITK image."""
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(
            f"expected a 3D scalar image, got {image.GetDimension()}D with "
            f"{image.GetNumberOfComponentsPerPixel()} component(s)"
        )
    return Volume(sitk.GetArrayFromImage(image), Geometry.from_sitk(image))
