"""DICOM series writer for synthetic scans: one CT Image Storage file per axial slice.

:func:`write_dicom_series` writes an integer HU volume indexed [z, y, x] with its
:class:`~drasclr.imaging.geometry.Geometry` (LPS mm: ImagePositionPatient,
ImageOrientationPatient, PixelSpacing, slice spacing) so that :func:`drasclr.imaging.io.read_ct`
reads the same HU and geometry back: stored values ``HU + 1024`` with RescaleSlope 1 and
RescaleIntercept -1024, a left-handed geometry stored with the slice order reversed,
deterministic UIDs (``2.25.`` + UUID v5) derived from the subject id, and the folder written
atomically. The cohort generator (:mod:`drasclr.synth.cohort`) uses it to exercise the DICOM input
path; pydicom is imported only when it is called.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np

from drasclr.fsutil import atomic_path
from drasclr.imaging.geometry import Geometry

__all__ = [
    "write_dicom_series",
]


#: Namespace of the deterministic (UUID v5) DICOM UIDs written by drasclr.
_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/batmanlab/DrasCLR#drasclr")


#: CT Image Storage SOP class.
_CT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.2"


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
