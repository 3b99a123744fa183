"""Detect image files cut short (interrupted copies or downloads) before ITK reads them.

ITK does not notice every short file: a ``.nii.gz`` whose gzip stream stops early reads "fine",
the missing voxels coming back as zeros (0 HU, fake soft tissue). Each function here compares what
a file holds with what its own header declares and returns the problem in words, or ``None`` when
the file is whole (:func:`image_file_problem`, :func:`dicom_problem`; :mod:`drasclr.imaging.io`
turns a problem into an ``InputError``). The checks read headers, file sizes and, for compressed
data, the compressed stream (gzip/zlib/bzip2 are decoded and counted, never kept); they never look
at voxel values.

Supported: NIfTI-1/-2 (``.nii``, ``.nii.gz``), NRRD (``.nrrd`` attached, ``.nhdr`` + one data file;
raw, gzip or bzip2 encoding), MetaImage (``.mha``, ``.mhd`` + one data file; raw or zlib-compressed)
and DICOM files (uncompressed or encapsulated pixel data). Other layouts (text encodings, data
split over several files) are left to the reader.
"""

from __future__ import annotations

import bz2
import gzip
import math
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "image_file_problem",
    "dicom_problem",
]


_GZIP_MAGIC = b"\x1f\x8b"


_CHUNK = 1 << 20


# Bytes per value of the NRRD and MetaImage element types (MET_LONG counted as 4 bytes, its
# smallest platform size, so that a check never asks for more data than a valid file holds).
_NRRD_BYTES = {
    **dict.fromkeys(("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8",
                     "uint8_t"), 1),
    **dict.fromkeys(("short", "short int", "signed short", "signed short int", "int16",
                     "int16_t", "ushort", "unsigned short", "unsigned short int", "uint16",
                     "uint16_t"), 2),
    **dict.fromkeys(("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32",
                     "uint32_t", "float"), 4),
    **dict.fromkeys(("longlong", "long long", "long long int", "signed long long",
                     "signed long long int", "int64", "int64_t", "ulonglong",
                     "unsigned long long", "unsigned long long int", "uint64", "uint64_t",
                     "double"), 8),
}


_MET_BYTES = {
    "MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
    "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
    "MET_DOUBLE": 8,
}


# ----------------------------------------------------------------------------- streams
def _decoded_size(
    fh: BinaryIO, make: Callable[[], Any], magic: bytes | None, limit: int
) -> tuple[int, bool]:
    """Decode a compressed stream from ``fh`` (data discarded).

    Args:
        fh: file positioned at the start of the stream.
        make: factory of a decompressor object (zlib / bz2).
        magic: leading bytes of a further member (concatenated gzip members), or None.
        limit: stop counting once this many bytes have been produced (enough data seen).

    Returns:
        (decoded bytes, whether the stream ended properly or ``limit`` was reached).
    """
    dec, total = make(), 0
    while True:
        block = fh.read(_CHUNK)
        if not block:
            return total, False
        while block:
            total += len(dec.decompress(block))
            if total >= limit:
                return total, True
            if not dec.eof:
                break
            block = dec.unused_data
            if magic is None or not block.startswith(magic):
                return total, True  # end of the (last) member; anything after is not image data
            dec = make()


def _stream_problem(
    fh: BinaryIO, kind: str, make: Callable[[], Any], magic: bytes | None, want: int
) -> str | None:
    """Problem text when a compressed stream ends before ``want`` decoded bytes."""
    try:
        got, ended = _decoded_size(fh, make, magic, want)
    except (zlib.error, OSError, EOFError) as err:
        return f"corrupt {kind} stream: {err}"
    if not ended:
        return (f"truncated: the {kind} stream ends early ({got:,} bytes decoded before the end "
                f"of the file; the header declares {want:,})")
    if got < want:
        return f"truncated: the {kind} stream holds {got:,} bytes, the header declares {want:,}"
    return None


def _gzip_problem(path: Path, start: int, want: int) -> str | None:
    """Problem text of a gzip stream from byte ``start`` of ``path`` to its end.

    Fast path: a whole single-member stream ends with its decoded size (mod 2**32); when that
    trailer disagrees with ``want`` (truncated, several members, extra data) the stream is decoded.
    """
    with path.open("rb") as fh:
        if path.stat().st_size - start >= 18:
            fh.seek(-4, os.SEEK_END)
            if struct.unpack("<I", fh.read(4))[0] == want % (1 << 32):
                return None
        fh.seek(start)
        return _stream_problem(fh, "gzip", _gzip_stream, _GZIP_MAGIC, want)


def _gzip_stream() -> Any:
    return zlib.decompressobj(16 + zlib.MAX_WBITS)


def _zlib_or_gzip_stream() -> Any:
    return zlib.decompressobj(32 + zlib.MAX_WBITS)  # detects the zlib or gzip wrapper


def _size_problem(have: int, want: int, what: str = "image data") -> str | None:
    if have < want:
        return f"truncated: the file holds {have:,} bytes of {what}, its header declares {want:,}"
    return None


# ----------------------------------------------------------------------------- NIfTI
def _nifti_expected(head: bytes) -> int | None:
    """Bytes of a single-file NIfTI (vox_offset + voxel data) from its header, or None."""
    if len(head) < 348:
        return None
    for order in "<>":
        (sizeof_hdr,) = struct.unpack(order + "i", head[:4])
        if sizeof_hdr == 348:
            dim = struct.unpack(order + "8h", head[40:56])
            (bitpix,) = struct.unpack(order + "h", head[72:74])
            (offset,) = struct.unpack(order + "f", head[108:112])
            header = 352
            break
        if sizeof_hdr == 540 and len(head) >= 540:
            (bitpix,) = struct.unpack(order + "h", head[14:16])
            dim = struct.unpack(order + "8q", head[16:80])
            (offset,) = struct.unpack(order + "q", head[168:176])
            header = 544
            break
    else:
        return None
    n_dim = dim[0]
    if not 1 <= n_dim <= 7 or bitpix <= 0 or any(d < 1 for d in dim[1 : n_dim + 1]):
        return None  # left to the reader, which reports a malformed header
    voxels = math.prod(dim[1 : n_dim + 1])
    return max(int(offset), header) + math.ceil(voxels * bitpix / 8)


def _nifti_problem(path: Path) -> str | None:
    with path.open("rb") as raw:
        compressed = raw.read(2) == _GZIP_MAGIC
    if not compressed:
        with path.open("rb") as fh:
            want = _nifti_expected(fh.read(544))
        return None if want is None else _size_problem(path.stat().st_size, want)
    try:
        with gzip.open(path, "rb") as gz:
            head = gz.read(544)
    except (OSError, EOFError, zlib.error) as err:
        return f"corrupt gzip stream: {err}"
    want = _nifti_expected(head)
    return None if want is None else _gzip_problem(path, 0, want)


# ----------------------------------------------------------------------------- text headers
def _text_header(path: Path, nrrd: bool) -> tuple[dict[str, str], int] | None:
    """Fields (lower-case keys) of an NRRD or MetaImage header and the header's byte length."""
    with path.open("rb") as fh:
        head = fh.read(1 << 16)
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(head):
        end = head.find(b"\n", pos)
        if end < 0:
            return None
        line = head[pos:end].decode("latin-1").strip()
        pos = end + 1
        if nrrd:
            if not line and fields:
                return fields, pos  # blank line: end of an attached NRRD header
            if line.startswith("#") or ":=" in line or ":" not in line:
                continue
            key, value = line.split(":", 1)
        else:
            if "=" not in line:
                continue
            key, value = line.split("=", 1)
        fields[key.strip().lower()] = value.strip()
        if not nrrd and key.strip().lower() == "elementdatafile":
            return fields, pos
    return (fields, pos) if nrrd and fields else None


def _data_location(
    path: Path, detached: str | None, header_end: int, skip: int
) -> tuple[Path, int] | None:
    """(file, first byte) of the voxel data: right after the header, or in a detached file.

    None for what is not checked here: lists or patterns of data files, or a missing data file
    (the reader reports it).
    """
    if detached is None:
        return path, header_end
    name = detached.strip()
    if not name or name.upper().startswith("LIST") or "%" in name or " " in name:
        return None
    data = Path(name) if Path(name).is_absolute() else path.parent / name
    return (data, skip) if data.is_file() else None


def _named(problem: str | None, data: Path, path: Path) -> str | None:
    """Prefix a problem of a detached data file with that file's name."""
    return problem if problem is None or data == path else f"{data}: {problem}"


def _nrrd_problem(path: Path) -> str | None:
    parsed = _text_header(path, nrrd=True)
    if parsed is None:
        return None
    fields, header_end = parsed
    value_bytes = _NRRD_BYTES.get(fields.get("type", "").lower())
    try:
        sizes = [int(s) for s in fields.get("sizes", "").split()]
        byte_skip = int(fields.get("byte skip", fields.get("byteskip", "0")))
    except ValueError:
        return None
    located = _data_location(path, fields.get("data file", fields.get("datafile")), header_end, 0)
    if value_bytes is None or not sizes or located is None:
        return None
    data, start = located
    want = math.prod(sizes) * value_bytes
    encoding = fields.get("encoding", "raw").lower()
    if encoding == "raw":
        problem = _size_problem(data.stat().st_size - start - max(byte_skip, 0), want)
    elif encoding in ("gzip", "gz"):
        problem = _gzip_problem(data, start, want)
    elif encoding in ("bzip2", "bz2"):
        with data.open("rb") as fh:
            fh.seek(start)
            problem = _stream_problem(fh, "bzip2", bz2.BZ2Decompressor, b"BZh", want)
    else:
        return None  # text encodings: the reader checks the number of values
    return _named(problem, data, path)


def _meta_problem(path: Path) -> str | None:
    parsed = _text_header(path, nrrd=False)
    if parsed is None:
        return None
    fields, header_end = parsed
    value_bytes = _MET_BYTES.get(fields.get("elementtype", "").upper())
    try:
        sizes = [int(s) for s in fields.get("dimsize", "").split()]
        channels = int(fields.get("elementnumberofchannels", "1"))
        header_size = int(fields.get("headersize", "0"))
        packed = int(fields["compresseddatasize"]) if "compresseddatasize" in fields else None
    except ValueError:
        return None
    name = fields.get("elementdatafile", "")
    located = _data_location(path, None if name.upper() == "LOCAL" else name, header_end,
                             max(header_size, 0))
    if value_bytes is None or not sizes or located is None:
        return None
    data, start = located
    want = math.prod(sizes) * channels * value_bytes
    have = data.stat().st_size - start
    if fields.get("compresseddata", "false").lower() != "true":
        problem = _size_problem(have, want)
    elif packed is not None:  # the header states the compressed size: compare sizes only
        problem = _size_problem(have, packed, "compressed data")
    else:
        with data.open("rb") as fh:
            fh.seek(start)
            problem = _stream_problem(fh, "zlib", _zlib_or_gzip_stream, None, want)
    return _named(problem, data, path)


# ----------------------------------------------------------------------------- API
def image_file_problem(path: str | os.PathLike[str]) -> str | None:
    """Whether an image file holds less data than its header declares.

    Args:
        path: a NIfTI, NRRD or MetaImage file (others are not checked).

    Returns:
        ``"truncated: ..."`` (or ``"corrupt ... stream"``) in words, or None when the file is
        whole or its format is not checked here.
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return _nifti_problem(path)
    if name.endswith((".nrrd", ".nhdr")):
        return _nrrd_problem(path)
    if name.endswith((".mha", ".mhd")):
        return _meta_problem(path)
    return None


def _pixel_bytes(ds: Any) -> int:
    """Bytes of uncompressed pixel data a DICOM header declares (0 when it cannot tell)."""
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        bits = int(ds.BitsAllocated)
        samples = int(ds.get("SamplesPerPixel", 1))
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        return 0
    return math.ceil(rows * cols * samples * frames * bits / 8)


def _encapsulated_complete(fh: BinaryIO, start: int, size: int) -> bool:
    """Whether encapsulated pixel data (items from ``start``) ends with its sequence delimiter."""
    pos = start
    while pos + 8 <= size:
        fh.seek(pos)
        group, element, length = struct.unpack("<HHI", fh.read(8))
        if (group, element) == (0xFFFE, 0xE0DD):
            return True
        if (group, element) != (0xFFFE, 0xE000) or pos + 8 + length > size:
            return False
        pos += 8 + length
    return False


def dicom_problem(path: str | os.PathLike[str]) -> str | None:
    """Whether a DICOM file's pixel data is shorter than its header declares.

    Reads the header with pydicom, leaving the pixel data on disk, and compares the pixel data
    element's declared length and position with the file size (uncompressed data), or walks the
    fragments to the sequence delimiter (encapsulated data).

    Args:
        path: one DICOM file.

    Returns:
        ``"truncated: ..."`` in words, or None when the file is whole (or holds no pixel data).
    """
    import pydicom

    path = Path(path)
    size = path.stat().st_size
    try:
        ds = pydicom.dcmread(path, defer_size=256)
        try:
            raw = ds.get_item(0x7FE00010, keep_deferred=True)
        except TypeError:  # pydicom < 3 never reads a deferred value in get_item
            raw = ds.get_item(0x7FE00010)
    except EOFError as err:
        return f"truncated: the file ends inside its DICOM header ({err})"
    tell = getattr(raw, "value_tell", None)
    if raw is None or tell is None:
        return None
    length = int(raw.length)
    if length == 0xFFFFFFFF:
        with path.open("rb") as fh:
            if _encapsulated_complete(fh, int(tell), size):
                return None
        return "truncated: the encapsulated pixel data ends before its sequence delimiter"
    want = max(length, _pixel_bytes(ds) if not ds.file_meta.TransferSyntaxUID.is_compressed
               else 0)
    return _size_problem(size - int(tell), want, "pixel data")
