"""Reading CT images and masks from files (with checks that a CT is whole and in HU), and writing.

:func:`read_ct` reads a NIfTI, NRRD or MetaImage file, or a folder holding a DICOM series (the
largest series, slices sorted along the slice normal, rescale slope/intercept applied), into a
:class:`~drasclr.imaging.geometry.Volume`: array indexed ``[z, y, x]``, geometry kept as stored
(ITK/LPS mm, conventions of :mod:`drasclr.imaging.geometry`). It refuses what is not a usable CT
in Hounsfield units: files cut short (:mod:`drasclr.imaging.truncation`), not 3D, NaN/Inf,
constant, no air near -1000 HU, values far outside the HU range (e.g. stored values without
rescale). :func:`read_mask` reads integer label images; :func:`write_image` writes NIfTI, NRRD
or MHA atomically; :func:`content_hash` is the hex SHA-256 of an input file or of every file of
a DICOM folder (the basis of the manifest's ``input_hash``).

Every problem of an input raises :class:`InputError`, which names the file and the problem and
pickles across Ray workers. Reading goes through SimpleITK (GDCM for DICOM).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from drasclr.fsutil import atomic_path, file_sha256
from drasclr.imaging.geometry import Geometry, Volume, from_sitk, to_sitk
from drasclr.imaging.truncation import dicom_problem, image_file_problem

__all__ = [
    "InputError",
    "write_image",
    "read_ct",
    "read_mask",
    "content_hash",
]


#: File suffixes the image writer understands (longest first so ``.nii.gz`` wins over ``.gz``).
IMAGE_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


_WRITE_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".mha")


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
