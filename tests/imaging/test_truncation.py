"""Truncated image files fail at read with "truncated" and the file's name (drasclr.imaging.truncation)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from drasclr.imaging.geometry import Geometry
from drasclr.imaging.io import InputError, read_ct, read_mask, write_image
from drasclr.imaging.truncation import dicom_problem, image_file_problem
from drasclr.synth.dicom import write_dicom_series

GEO = Geometry(spacing=(0.8, 0.8, 1.5), origin=(-20.0, -30.0, 10.0),
               direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0), shape=(48, 40, 30))
CUTS = (0.97, 0.33)


def _ct() -> np.ndarray:
    """int16 HU: a noisy body with air around it (compresses poorly, passes the HU checks)."""
    rng = np.random.default_rng(0)
    arr = rng.normal(40, 30, GEO.array_shape)
    arr[:, :, :6] = rng.normal(-1000, 20, (30, 40, 6))
    return arr.astype(np.int16)


def _sitk_file(path: Path, compress: bool) -> Path:
    image = sitk.GetImageFromArray(_ct())
    image.SetSpacing(GEO.spacing)
    sitk.WriteImage(image, str(path), useCompression=compress)
    return path


def _cut(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


# file name -> how it is written (the file that gets cut is the one holding the voxels)
WRITERS = {
    "ct.nii.gz": lambda p: write_image(p, _ct(), GEO),
    "ct.nii": lambda p: write_image(p, _ct(), GEO),
    "ct.nrrd": lambda p: write_image(p, _ct(), GEO),  # gzip encoding
    "raw.nrrd": lambda p: _sitk_file(p, compress=False),
    "ct.mha": lambda p: write_image(p, _ct(), GEO),  # zlib-compressed
    "raw.mha": lambda p: _sitk_file(p, compress=False),
}


@pytest.mark.parametrize("fraction", CUTS)
@pytest.mark.parametrize("name", sorted(WRITERS))
def test_cut_image_file_fails_at_read_saying_truncated(tmp_path: Path, name: str,
                                                       fraction: float) -> None:
    path = WRITERS[name](tmp_path / name)
    assert read_ct(path).array.shape == GEO.array_shape  # the whole file reads
    _cut(path, fraction)
    with pytest.raises(InputError, match="truncated") as info:
        read_ct(path)
    assert info.value.path == path and str(path) in str(info.value)
    with pytest.raises(InputError, match="truncated"):
        read_mask(path)


def _nhdr(header: Path) -> Path:
    """A detached NRRD: ``.nhdr`` text header + raw ``.raw`` data file."""
    (header.parent / "ct.raw").write_bytes(_ct().tobytes())
    header.write_text("NRRD0004\ntype: short\ndimension: 3\nsizes: 48 40 30\n"
                      "spacings: 0.8 0.8 1.5\nendian: little\nencoding: raw\n"
                      "data file: ct.raw\n\n")
    return header


DETACHED = {
    "ct.mhd": lambda p: _sitk_file(p, compress=False),
    "ct.mhd-zlib": lambda p: _sitk_file(p.with_name("ct.mhd"), compress=True),
    "ct.nhdr": _nhdr,
}


@pytest.mark.parametrize("fraction", CUTS)
@pytest.mark.parametrize("name", sorted(DETACHED))
def test_cut_detached_data_file_is_named(tmp_path: Path, name: str, fraction: float) -> None:
    header = DETACHED[name](tmp_path / name)
    (data,) = [p for p in tmp_path.iterdir() if p != header]
    assert read_ct(header).array.shape == GEO.array_shape
    _cut(data, fraction)
    with pytest.raises(InputError, match="truncated") as info:
        read_ct(header)
    assert str(data) in str(info.value)


@pytest.mark.parametrize("fraction", CUTS)
@pytest.mark.parametrize("which", [15, -1])  # a middle slice; the last one (no gap left behind)
def test_cut_dicom_slice_fails_naming_the_slice(tmp_path: Path, fraction: float,
                                                which: int) -> None:
    folder = write_dicom_series(tmp_path / "series", _ct(), GEO, subject_id="T")
    assert read_ct(folder).array.shape == GEO.array_shape
    slices = sorted(folder.iterdir())
    assert all(dicom_problem(p) is None for p in slices)
    victim = _cut(slices[which], fraction)
    with pytest.raises(InputError, match="truncated") as info:
        read_ct(folder)
    assert str(victim) in str(info.value)


def test_multi_member_gzip_nifti_is_whole(tmp_path: Path) -> None:
    """The fast check (gzip trailer) falls back to decoding; two gzip members are one file."""
    path = write_image(tmp_path / "ct.nii.gz", _ct(), GEO)
    raw = gzip.decompress(path.read_bytes())
    half = len(raw) // 2
    path.write_bytes(gzip.compress(raw[:half]) + gzip.compress(raw[half:]))
    assert image_file_problem(path) is None
    np.testing.assert_array_equal(read_ct(path).array, _ct())
    # the same file cut inside its second member is still caught
    _cut(path, 0.9)
    assert "truncated" in (image_file_problem(path) or "")


def test_gzip_stream_with_wrong_trailer_but_all_data_is_whole(tmp_path: Path) -> None:
    """A trailer that disagrees with the header does not by itself make a file truncated."""
    path = write_image(tmp_path / "ct.nii.gz", _ct(), GEO)
    raw = gzip.decompress(path.read_bytes()) + b"\0" * 16  # bytes beyond the declared data
    path.write_bytes(gzip.compress(raw))
    assert image_file_problem(path) is None


def _mha_without_compressed_size(path: Path) -> tuple[bytearray, int]:
    """The .mha bytes without the CompressedDataSize line (so the zlib stream is decoded)."""
    data = bytearray(path.read_bytes())
    line_start = data.index(b"CompressedDataSize = ")
    data[line_start : data.index(b"\n", line_start) + 1] = b""
    start = data.index(b"ElementDataFile = LOCAL\n") + len("ElementDataFile = LOCAL\n")
    return data, start


@pytest.mark.parametrize("fraction", CUTS)
def test_cut_mha_without_compressed_size_is_decoded(tmp_path: Path, fraction: float) -> None:
    path = write_image(tmp_path / "ct.mha", _ct(), GEO)
    data, _ = _mha_without_compressed_size(path)
    path.write_bytes(bytes(data))
    assert image_file_problem(path) is None  # (ITK itself needs the size line to read it)
    _cut(path, fraction)
    assert (image_file_problem(path) or "").startswith("truncated: the zlib stream ends early")


def test_corrupt_zlib_stream_is_reported(tmp_path: Path) -> None:
    path = write_image(tmp_path / "ct.mha", _ct(), GEO)
    data, start = _mha_without_compressed_size(path)
    data[start + 100 : start + 140] = bytes(40)
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="corrupt zlib stream") as info:
        read_ct(path)
    assert str(path) in str(info.value)
