"""Reading and writing CT images and masks; the one place that converts mm <-> voxel index.

Conventions used everywhere in drasclr:

* Arrays are indexed ``[z, y, x]`` exactly like ``SimpleITK.GetArrayFromImage``.
* Voxel indices, sizes and spacings are given in ``(x, y, z)`` order like SimpleITK
  (``Geometry.shape == array.shape[::-1]``).
* Physical coordinates are ITK / DICOM **LPS** millimetres: +x towards the patient's left,
  +y towards posterior, +z towards superior. ``world = origin + direction @ (spacing * ijk)``.
* CT intensities are Hounsfield units (air about -1000, water 0).

SimpleITK and pydicom stay inside this module: everything else works on ``Volume`` (a numpy array
plus a :class:`Geometry`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from drasclr.fsutil import atomic_path, file_sha256
from drasclr.patches import mm_to_voxel, voxel_to_mm
from drasclr.truncation import dicom_problem, image_file_problem

__all__ = [
    "IDENTITY_DIRECTION",
    "Geometry",
    "InputError",
    "Volume",
    "content_hash",
    "from_sitk",
    "read_ct",
    "read_mask",
    "resample_isotropic",
    "to_sitk",
    "write_dicom_series",
    "write_image",
]

#: File suffixes the image writer understands (longest first so ``.nii.gz`` wins over ``.gz``).
IMAGE_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
_WRITE_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".mha")

#: Namespace of the deterministic (UUID v5) DICOM UIDs written by drasclr.
_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/batmanlab/DrasCLR#drasclr")

#: Identity direction cosines (row-major): index axes x, y, z along LPS x, y, z.
IDENTITY_DIRECTION: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

#: CT Image Storage SOP class.
_CT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.2"


class InputError(ValueError):
    """An input image is missing, unreadable or not a usable CT in HU.

    Attributes:
        path: the offending file or folder.
        problem: what is wrong with it, in words.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across Ray workers
        return (type(self), (self.path, self.problem))


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


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


# ----------------------------------------------------------------------------------- writers
def write_image(path: str | os.PathLike[str], array_zyx: np.ndarray, geometry: Geometry) -> Path:
    """Write a 3D array as NIfTI (.nii/.nii.gz), NRRD (.nrrd) or MetaImage (.mha), atomically.

    Spacing, origin and direction (LPS) and the array dtype are preserved (bool -> uint8). The file
    is written under a temporary sibling name carrying the same suffix and renamed into place.

    Args:
        path: destination; the suffix picks the format.
        array_zyx: voxel values indexed [z, y, x].
        geometry: physical placement; ``geometry.shape`` must equal ``array_zyx.shape[::-1]``.

    Returns:
        The written path.
    """
    path = Path(path)
    suffix = _suffix(path)
    if suffix not in _WRITE_SUFFIXES:
        raise ValueError(
            f"{path}: cannot write '{suffix}' images; use one of {list(_WRITE_SUFFIXES)}"
        )
    image = to_sitk(array_zyx, geometry)
    with atomic_path(path) as tmp:
        # SimpleITK picks the format from the suffix: write '<tmp><suffix>', then move onto tmp.
        real_tmp = tmp.with_name(tmp.name + suffix)
        try:
            sitk.WriteImage(image, str(real_tmp), useCompression=suffix != ".nii")
            os.replace(real_tmp, tmp)
        finally:
            if real_tmp.exists():
                real_tmp.unlink()
    return path


def _uid(*parts: str) -> str:
    """Deterministic DICOM UID from text parts: ``2.25.<UUID v5 as an integer>`` (PS3.5 B.2)."""
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, chr(31).join(parts)).int}"


def _ds_number(value: float) -> str:
    """A DICOM DS string (at most 16 characters) for a float."""
    for digits in range(10, 0, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    return f"{value:.0f}"


def write_dicom_series(
    folder: str | os.PathLike[str],
    array_zyx_int16_hu: np.ndarray,
    geometry: Geometry,
    subject_id: str,
    series_description: str = "drasclr synthetic",
) -> Path:
    """Write a CT volume in HU as a DICOM series (one file per axial slice), atomically.

    Stored values are ``HU + 1024`` (uint16, or int16 when some HU < -1024) with RescaleSlope 1 and
    RescaleIntercept -1024, so any DICOM reader recovers HU. Study, series and frame-of-reference
    UIDs are derived deterministically from ``subject_id`` (and the series description), so
    re-writing the same subject gives the same UIDs. A left-handed geometry is stored with the slice
    order reversed (same physical image, right-handed direction). The series is written into a
    temporary sibling folder that is renamed onto ``folder`` (replacing an existing one).

    Args:
        folder: destination folder (created; replaced if present).
        array_zyx_int16_hu: integer HU values indexed [z, y, x].
        geometry: physical placement (LPS mm) of the array.
        subject_id: patient id; also seeds the UIDs.
        series_description: DICOM SeriesDescription.

    Returns:
        The folder path.
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    folder = Path(folder)
    arr = np.asarray(array_zyx_int16_hu)
    if arr.ndim != 3 or tuple(arr.shape) != geometry.array_shape:
        raise ValueError(
            f"array shape {arr.shape} (z, y, x) does not match geometry shape "
            f"{geometry.shape} (x, y, z)"
        )
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.rint(arr)):
            raise ValueError("write_dicom_series expects integer HU values")
    stored = arr.astype(np.int32) + 1024
    if stored.max() > 32767 or stored.min() < -32768:
        raise ValueError(f"HU range [{arr.min()}, {arr.max()}] does not fit 16-bit DICOM storage")
    signed = bool(stored.min() < 0)
    stored = stored.astype(np.int16 if signed else np.uint16)

    d = geometry.direction_matrix
    spacing = np.asarray(geometry.spacing)
    origin = np.asarray(geometry.origin)
    if np.dot(np.cross(d[:, 0], d[:, 1]), d[:, 2]) < 0:  # left-handed: flip the slice order
        origin = origin + d[:, 2] * spacing[2] * (arr.shape[0] - 1)
        d = d.copy()
        d[:, 2] = -d[:, 2]
        stored = stored[::-1]
    row_dir, col_dir = d[:, 0], d[:, 1]
    nz, ny, nx = stored.shape

    study_uid = _uid(subject_id, "study")
    series_uid = _uid(subject_id, "series", series_description)
    frame_uid = _uid(subject_id, "frame-of-reference")

    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        for k in range(nz):
            position = origin + d[:, 2] * spacing[2] * k
            sop_uid = _uid(subject_id, "instance", series_description, str(k))
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = _CT_SOP_CLASS
            meta.MediaStorageSOPInstanceUID = sop_uid
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = pydicom.Dataset()
            ds.file_meta = meta
            ds.SOPClassUID = _CT_SOP_CLASS
            ds.SOPInstanceUID = sop_uid
            ds.Modality = "CT"
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.PatientID = subject_id
            ds.PatientName = subject_id
            ds.PatientPosition = "HFS"
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series_uid
            ds.FrameOfReferenceUID = frame_uid
            ds.StudyID = "1"
            ds.SeriesNumber = 1
            ds.InstanceNumber = k + 1
            ds.SeriesDescription = series_description
            ds.StudyDate = "20000101"
            ds.SeriesDate = "20000101"
            ds.Manufacturer = "drasclr"
            ds.ImagePositionPatient = [_ds_number(v) for v in position]
            ds.ImageOrientationPatient = [_ds_number(v) for v in (*row_dir, *col_dir)]
            # PixelSpacing is (row spacing = between rows = y, column spacing = x).
            ds.PixelSpacing = [_ds_number(spacing[1]), _ds_number(spacing[0])]
            ds.SliceThickness = _ds_number(spacing[2])
            ds.SpacingBetweenSlices = _ds_number(spacing[2])
            ds.SliceLocation = _ds_number(float(np.dot(position, np.cross(row_dir, col_dir))))
            ds.Rows = ny
            ds.Columns = nx
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.BitsAllocated = 16
            ds.BitsStored = 16
            ds.HighBit = 15
            ds.PixelRepresentation = 1 if signed else 0
            ds.RescaleIntercept = "-1024"
            ds.RescaleSlope = "1"
            ds.RescaleType = "HU"
            little_endian = stored.dtype.newbyteorder("<")
            ds.PixelData = np.ascontiguousarray(stored[k], dtype=little_endian).tobytes()
            ds.save_as(tmp / f"{k:05d}.dcm", enforce_file_format=True)
    return folder


# ----------------------------------------------------------------------------------- readers
def _read_file_image(path: Path) -> sitk.Image:
    if path.stat().st_size == 0:
        raise InputError(path, "file is empty")
    _check_whole(path)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as err:
        reason = _itk_reason(err)
        problem = f"cannot read image (corrupt or unsupported format): {reason}"
        raise InputError(path, problem) from err


def _check_whole(path: Path) -> None:
    """Raise InputError when a file holds less data than its header declares (truncated)."""
    try:
        problem = image_file_problem(path)
        if problem is None and not path.name.lower().endswith(IMAGE_SUFFIXES):
            problem = _dicom_problem_or_none(path)
    except OSError as err:
        raise InputError(path, f"cannot read file: {err}") from err
    if problem is not None:
        raise InputError(path, problem)


def _dicom_problem_or_none(path: Path) -> str | None:
    """:func:`dicom_problem` for a DICOM file; None for files that are not DICOM."""
    with path.open("rb") as fh:
        fh.seek(128)
        if fh.read(4) != b"DICM":
            return None
    return dicom_problem(path)


def _itk_reason(err: Exception) -> str:
    """The informative part of a SimpleITK exception text (drops the C++ source location)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if "ERROR:" in line:
            reason = line.split("ERROR:", 1)[1].split("):", 1)[-1].strip()
            if reason.endswith(":") and i + 1 < len(lines):  # detail on the last line (NRRD)
                reason = f"{reason} {lines[-1]}"
            return reason[:300]
    return (lines[-1] if lines else type(err).__name__)[:300]


def _dicom_series_files(folder: Path) -> list[str]:
    """Files of the largest DICOM series under ``folder`` (recursive), sorted along the normal."""
    import pydicom

    best: list[str] = []
    best_root, best_sid = folder, ""
    warnings_on = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # "No Series were found" for plain folders
    try:
        for root, _dirs, _files in os.walk(folder):
            for sid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(root):
                names = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(root, sid))
                if len(names) > len(best):
                    best, best_root, best_sid = names, Path(root), sid
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warnings_on)
    if not best:
        if not any(p.is_file() for p in folder.rglob("*")):
            raise InputError(folder, "folder is empty")
        raise InputError(folder, "no readable DICOM series in folder")
    _check_left_out_slices(best_root, best_sid, set(best))
    if len(best) == 1:  # a multi-frame (enhanced) CT file, or a single slice: checked on read
        return best

    positions: list[np.ndarray] = []
    orientation: np.ndarray | None = None
    for name in best:
        _check_whole(Path(name))
        try:
            ds = pydicom.dcmread(name, stop_before_pixels=True)
            pos = np.asarray(ds.ImagePositionPatient, dtype=float)
            iop = np.asarray(ds.ImageOrientationPatient, dtype=float)
        except Exception as err:
            problem = f"DICOM header without usable position/orientation: {err}"
            raise InputError(Path(name), problem) from err
        if orientation is None:
            orientation = iop
        elif not np.allclose(iop, orientation, atol=1e-3):
            raise InputError(folder, "DICOM series mixes slice orientations")
        positions.append(pos)
    assert orientation is not None
    normal = np.cross(orientation[:3], orientation[3:])
    along = np.asarray([p @ normal for p in positions])
    order = np.argsort(along, kind="stable")
    gaps = np.diff(along[order])
    if np.any(gaps < 1e-3):
        raise InputError(folder, "DICOM series has duplicate slice positions")
    if gaps.max() - gaps.min() > 0.01 * gaps.mean() + 0.01:
        raise InputError(
            folder,
            f"DICOM series has uneven slice spacing ({gaps.min():.3f}..{gaps.max():.3f} mm; "
            "missing slices?)",
        )
    return [best[i] for i in order]


def _check_left_out_slices(root: Path, series_uid: str, listed: set[str]) -> None:
    """Fail on a file of the series that GDCM left out of it because it is cut short.

    GDCM drops a DICOM file it cannot parse from the series listing, so a truncated slice would
    otherwise show up as a gap in the spacing, or (the last slice) not at all.
    """
    import pydicom

    for path in sorted(p for p in root.iterdir() if p.is_file() and str(p) not in listed):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
            uid = str(ds.get("SeriesInstanceUID", ""))
        except Exception:  # noqa: BLE001 - not DICOM, or a header cut short: checked below
            uid = series_uid
        if uid == series_uid:
            _check_whole(path)


def _read_dicom_folder(folder: Path) -> sitk.Image:
    files = _dicom_series_files(folder)
    if len(files) == 1:
        return _read_file_image(Path(files[0]))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        return reader.Execute()
    except RuntimeError as err:
        raise InputError(folder, f"cannot read DICOM series: {_itk_reason(err)}") from err


def _read_any(path: str | os.PathLike[str]) -> tuple[Path, sitk.Image]:
    path = Path(path)
    if not path.exists():
        raise InputError(path, "does not exist")
    image = _read_dicom_folder(path) if path.is_dir() else _read_file_image(path)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            path, f"multi-component image ({image.GetNumberOfComponentsPerPixel()} values/voxel)"
        )
    dim = image.GetDimension()
    if dim == 4 and image.GetSize()[3] == 1:
        image = sitk.Extract(image, [*image.GetSize()[:3], 0], [0, 0, 0, 0])
        dim = 3
    if dim == 2:
        raise InputError(path, "2D image; a 3D CT is required")
    if dim != 3:
        raise InputError(path, f"{dim}D image; a 3D volume is required")
    if min(image.GetSize()) < 2:
        raise InputError(path, f"degenerate 3D image of size {image.GetSize()} (a single slice?)")
    return path, image


def _check_hu(path: Path, array: np.ndarray) -> None:
    """Raise InputError unless ``array`` looks like a CT in Hounsfield units."""
    if array.size == 0:
        raise InputError(path, "image has no voxels")
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        raise InputError(path, "image contains NaN or infinite values")
    lo, hi = float(array.min()), float(array.max())
    if lo == hi:
        raise InputError(path, f"image is constant ({lo:g} everywhere)")
    # Percentiles on a strided sample (fast on 512^3 volumes), without the padding value that
    # scanners put outside the reconstruction circle (-2000, -2048, -3024, -32768 ...).
    sample = array.reshape(-1)[:: max(1, array.size // 2_000_000)]
    if lo < -1100 and np.mean(sample == lo) > 0.005:
        sample = sample[sample != lo]
        if sample.size == 0:
            raise InputError(path, "image holds nothing but padding")
    p1, p999 = (float(v) for v in np.percentile(sample, [1.0, 99.9]))
    if p1 > -500:
        raise InputError(
            path,
            f"values do not look like HU: no air (1st percentile {p1:.0f}, minimum {lo:.0f}; air "
            "should be about -1000 HU). Raw stored values without RescaleSlope/Intercept?",
        )
    if p1 < -1500:
        raise InputError(
            path, f"values do not look like HU: air at {p1:.0f} (1st percentile), far below -1000"
        )
    if p999 > 4000:
        raise InputError(
            path, f"values do not look like HU: 99.9th percentile {p999:.0f}, far above 4000 HU"
        )


def read_ct(path: str | os.PathLike[str]) -> Volume:
    """Read a CT volume in HU from NIfTI / NRRD / MHA / MHD or a folder holding a DICOM series.

    For a folder, the largest DICOM series in it (searched recursively) is read, slices sorted by
    position along the slice normal; DICOM rescale slope/intercept are applied. Physical geometry is
    kept as stored (LPS). The values are checked to be HU.

    Args:
        path: image file or DICOM folder.

    Returns:
        Volume with the array indexed [z, y, x]: int16 for integer data that fits (DICOM series
        are rescaled by SimpleITK to int32 and narrowed back), otherwise the stored dtype.

    Raises:
        InputError: missing, empty or corrupt input; not 3D (2D, single slice, 4D, multi-component);
            NaN/Inf; constant; values that are not HU (e.g. stored values without rescale).
    """
    path, image = _read_any(path)
    volume = from_sitk(image)
    _check_hu(path, volume.array)
    arr = volume.array
    if np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.int16 and arr.dtype.itemsize >= 2:
        if arr.min() >= -32768 and arr.max() <= 32767:  # e.g. DICOM rescaled to int32
            volume = Volume(arr.astype(np.int16), volume.geometry)
    return volume


def read_mask(path: str | os.PathLike[str]) -> Volume:
    """Read a label image (any integer type; integral floats are converted to int32).

    Args:
        path: image file (or DICOM folder).

    Returns:
        Volume with integer labels indexed [z, y, x].

    Raises:
        InputError: missing/empty/corrupt, not 3D, or non-integer / non-finite values.
    """
    path, image = _read_any(path)
    volume = from_sitk(image)
    arr = volume.array
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise InputError(path, "mask contains NaN or infinite values")
        if not np.array_equal(arr, np.rint(arr)):
            raise InputError(path, "mask has non-integer values; expected labels")
        volume = Volume(arr.astype(np.int32), volume.geometry)
    elif not np.issubdtype(arr.dtype, np.integer) and arr.dtype != bool:
        raise InputError(path, f"mask has unsupported type {arr.dtype}")
    return volume


def content_hash(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of an image file, or of every file of a DICOM folder (sorted relative names)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "does not exist")
    return file_sha256(path)


# ----------------------------------------------------------------------------------- resampling
def resample_isotropic(
    volume: Volume, spacing_mm: float = 1.0, order: int = 1, fill: float = -1024
) -> Volume:
    """Resample to isotropic voxels keeping direction, physical extent and centre.

    The new grid has ``round(n * spacing / spacing_mm)`` voxels per axis and the same centre (and
    direction) as the input, so it covers the same LPS box to within one output voxel.

    Args:
        volume: input (CT in HU or a label mask).
        spacing_mm: output voxel size in mm.
        order: 0 nearest neighbour (masks), 1 linear (CT), 3 B-spline.
        fill: value for output voxels outside the input (use 0 for masks).

    Returns:
        Resampled volume with the input's dtype (interpolated integers are rounded and clipped).
    """
    if spacing_mm <= 0:
        raise ValueError(f"spacing_mm must be positive, got {spacing_mm}")
    interpolators = {0: sitk.sitkNearestNeighbor, 1: sitk.sitkLinear, 3: sitk.sitkBSpline}
    if order not in interpolators:
        raise ValueError(f"order must be 0, 1 or 3, got {order}")
    geo = volume.geometry
    old_size = np.asarray(geo.shape, dtype=float)
    old_spacing = np.asarray(geo.spacing)
    new_size = np.maximum(1, np.rint(old_size * old_spacing / spacing_mm)).astype(int)
    d = geo.direction_matrix
    centre = np.asarray(geo.origin) + d @ (old_spacing * (old_size - 1) / 2)
    new_origin = centre - d @ (spacing_mm * (new_size - 1) / 2)
    new_geo = Geometry(
        spacing=(spacing_mm,) * 3,
        origin=tuple(new_origin),
        direction=geo.direction,
        shape=tuple(int(s) for s in new_size),
    )

    dtype = volume.array.dtype
    if order == 0 and np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        if not info.min <= fill <= info.max:
            raise ValueError(f"fill {fill} does not fit {dtype}; use fill=0 for masks")
    src = volume.array.astype(np.uint8) if dtype == bool else volume.array
    image = to_sitk(src, geo)
    out_type = image.GetPixelID() if order == 0 else sitk.sitkFloat32
    f = sitk.ResampleImageFilter()
    f.SetSize([int(s) for s in new_size])
    f.SetOutputSpacing(new_geo.spacing)
    f.SetOutputOrigin(new_geo.origin)
    f.SetOutputDirection(new_geo.direction)
    f.SetInterpolator(interpolators[order])
    f.SetDefaultPixelValue(float(fill))
    f.SetOutputPixelType(out_type)
    out = sitk.GetArrayFromImage(f.Execute(image))
    if out.dtype != dtype:
        if np.issubdtype(dtype, np.integer):
            np.rint(out, out=out)  # ITK would truncate towards zero
            if order == 3:  # B-spline can overshoot the input range
                info = np.iinfo(dtype)
                np.clip(out, info.min, info.max, out=out)
        out = out.astype(dtype)
    return Volume(out, new_geo)
