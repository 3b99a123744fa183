"""The inputs of a preprocessing run: which scans make up the cohort, and their content hashes.

:func:`discover_inputs` lists the subjects (``subject_id``, absolute ``input_path``) of a folder
of scans (one NIfTI / NRRD / MHA / MHD file or one DICOM series folder per subject), of a table
with those two columns (Parquet or CSV), or of a synthetic cohort folder. :func:`input_hash` is
the content hash the manifest records (hex SHA-256 of the file or DICOM folder, plus the data
files a MetaImage ``.mhd`` header points at, :func:`mhd_data_files`); a re-run skips ``ok``
subjects whose hash is unchanged. Problems raise :class:`~drasclr.imaging.io.InputError`, which
names the path.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from drasclr.fsutil import file_sha256
from drasclr.imaging.io import InputError, content_hash

__all__ = [
    "IMAGE_SUFFIXES",
    "discover_inputs",
    "input_hash",
]


IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
"""File suffixes read as one scan each; a folder holding ``.dcm`` files is one DICOM series."""


# ----------------------------------------------------------------------------------- inputs
def _is_dicom_folder(path: Path) -> bool:
    return path.is_dir() and any(p.suffix.lower() == ".dcm" for p in path.rglob("*.dcm"))


def _strip_suffix(name: str) -> str:
    low = name.lower()
    for suf in IMAGE_SUFFIXES:
        if low.endswith(suf):
            return name[: -len(suf)]
    return name


def discover_inputs(inputs: str | Path) -> pd.DataFrame:
    """List the subjects of an input folder or manifest table.

    Accepted inputs:

    * a synthetic cohort folder (holds ``manifest.parquet`` of schema ``synth_manifest``): its
      ``image`` column;
    * a table (``.parquet`` or ``.csv``) with columns ``subject_id`` and ``input_path`` (relative
      paths are taken relative to the table's folder);
    * a folder of scans: every image file (NIfTI, NRRD, MHA/MHD) and every sub-folder holding a
      DICOM series is one subject, named after the file (without suffix) or folder.

    Args:
        inputs: folder or table path.

    Returns:
        DataFrame with ``subject_id`` and absolute ``input_path``, in a stable order.

    Raises:
        InputError: the path does not exist, holds no scans, or a table lacks its columns.
    """
    root = Path(inputs)
    if not root.exists():
        raise InputError(root, "inputs not found")
    if root.is_dir() and (root / "manifest.parquet").is_file() and (root / "images").is_dir():
        from drasclr.tables import read_frame

        m = read_frame(root / "manifest.parquet", "synth_manifest")
        return pd.DataFrame({
            "subject_id": m["subject_id"].astype(str),
            "input_path": [str((root / p).resolve()) for p in m["image"]],
        })
    if root.is_file():
        if root.suffix == ".parquet":
            table = pd.read_parquet(root)
        elif root.suffix == ".csv":
            table = pd.read_csv(root, dtype=str)
        else:
            raise InputError(root, "an inputs table must be .parquet or .csv")
        missing = {"subject_id", "input_path"} - set(table.columns)
        if missing:
            raise InputError(root, f"inputs table lacks column(s) {sorted(missing)}")
        paths = [p if Path(p).is_absolute() else str((root.parent / p).resolve())
                 for p in table["input_path"].astype(str)]
        return pd.DataFrame({"subject_id": table["subject_id"].astype(str), "input_path": paths})
    rows = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.name.lower().endswith(IMAGE_SUFFIXES):
            rows.append((_strip_suffix(entry.name), str(entry.resolve())))
        elif _is_dicom_folder(entry):
            rows.append((entry.name, str(entry.resolve())))
    if not rows:
        raise InputError(root, "no scans found (NIfTI, NRRD, MHA/MHD files or DICOM folders)")
    return pd.DataFrame(rows, columns=["subject_id", "input_path"])


def mhd_data_files(header: str | Path) -> list[Path]:
    """The data files a MetaImage header (``.mhd``) points at (empty for ``LOCAL`` data).

    Handles ``ElementDataFile = <file>``, ``LIST`` (one file name per following line) and the
    ``<printf pattern> <min> <max> <step>`` form; names are relative to the header's folder.

    Raises:
        InputError: the header names no data file, or a named file does not exist.
    """
    header = Path(header)
    lines = header.read_bytes().decode("latin-1").splitlines()
    at = next((i for i, ln in enumerate(lines) if ln.split("=")[0].strip() == "ElementDataFile"),
              None)
    if at is None or "=" not in lines[at]:
        raise InputError(header, "MetaImage header has no ElementDataFile line")
    value = lines[at].split("=", 1)[1].strip()
    if value.upper() == "LOCAL":
        return []
    if value.upper().startswith("LIST"):
        names = [ln.strip() for ln in lines[at + 1 :] if ln.strip()]
    elif "%" in value and len(value.split()) == 4:
        pattern, lo, hi, step = value.split()
        names = [pattern % i for i in range(int(lo), int(hi) + 1, int(step))]
    else:
        names = [value]
    files = [header.parent / n for n in names]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise InputError(header, f"MetaImage data file(s) not found: {missing[:3]}")
    return files


def input_hash(path: str | Path) -> str:
    """Content hash of one input: :func:`drasclr.imaging.io.content_hash`, and for a MetaImage header
    (``.mhd``) also of the data file(s) it points at, so a changed ``.raw`` is re-processed."""
    digest = content_hash(path)
    if not str(path).lower().endswith(".mhd"):
        return digest
    h = hashlib.sha256(digest.encode())
    for f in mhd_data_files(path):
        h.update(f.name.encode() + file_sha256(f).encode())
    return h.hexdigest()
