"""Artifact locations that may be local paths or object-storage URIs (``s3://bucket/key``).

Every artifact of the pipeline (inputs, patch store, manifest, checkpoints, features, results) is
addressed by a *location*: a local path (``str`` or :class:`~pathlib.Path`, optionally
``file://``) or a URI with a remote scheme such as ``s3://``. Remote I/O goes through fsspec
(``s3fs`` for ``s3://``); library code that needs random access to files (the Zarr patch store
reads shards with ``pread``) works on a local copy obtained with :func:`local_cache`.

Configuration comes from the standard AWS variables, read by botocore: ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, ``AWS_DEFAULT_REGION`` /
``AWS_REGION``. An S3-compatible server (MinIO, Ceph, moto) is selected with
``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``.

Directory outputs are published with a completion marker: :func:`put` (and :func:`local_cache`
in a writing mode) first deletes the destination's marker, uploads every file, removes remote
files the local tree no longer has, and writes ``_DRASCLR_SUCCESS`` (a JSON list of files and
sizes) last. S3 has no atomic rename of a prefix, so a crash mid-upload leaves files but no
marker; readers that pass ``require_complete=True`` refuse such a prefix. A single file is one
object PUT, which S3 makes visible atomically.
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

SUCCESS_MARKER = "_DRASCLR_SUCCESS"
"""Name of the completion marker written last under a directory-like remote prefix."""

_LOCAL_SCHEMES = ("", "file", "local")

Location = str | os.PathLike[str]
Mode = Literal["r", "w", "rw"]


class RemoteError(OSError):
    """A remote location is missing, incomplete or could not be transferred."""


# ---------------------------------------------------------------------------------------------
# parsing


def scheme(location: Location) -> str:
    """The URI scheme of ``location`` in lower case ('' for a plain local path)."""
    text = os.fspath(location)
    head, sep, _ = text.partition("://")
    if not sep or "/" in head or os.sep in head:
        return ""
    return head.lower()


def is_remote(location: Location) -> bool:
    """True when ``location`` names object storage (any scheme but none / ``file``)."""
    return scheme(location) not in _LOCAL_SCHEMES


def local_path(location: Location) -> Path:
    """The local path of a non-remote location (``file://`` prefix removed)."""
    if is_remote(location):
        raise ValueError(f"{location}: is a remote URI, not a local path")
    text = os.fspath(location)
    if scheme(text):
        text = text.split("://", 1)[1]
    return Path(text)


def join(base: Location, *parts: str) -> str:
    """Join components onto a location, keeping its scheme.

    ``join("s3://b/x", "y")`` is ``"s3://b/x/y"``; a local base gives a local path string.
    """
    if is_remote(base):
        text = os.fspath(base).rstrip("/")
        return posixpath.join(text, *(p.strip("/") for p in parts))
    return str(local_path(base).joinpath(*parts))


def name(location: Location) -> str:
    """Last path component of a location (``s3://b/runs/ckpt.pt`` → ``ckpt.pt``)."""
    return posixpath.basename(os.fspath(location).rstrip("/"))


# ---------------------------------------------------------------------------------------------
# file systems


def storage_options(location: Location) -> dict[str, Any]:
    """fsspec keyword arguments for ``location``, taken from the environment.

    Pass them to readers that accept fsspec URLs, e.g.
    ``pandas.read_parquet(uri, storage_options=storage_options(uri))`` or
    ``zarr.open_array(uri, storage_options=storage_options(uri))``.
    """
    if scheme(location) not in ("s3", "s3a"):
        return {}
    options: dict[str, Any] = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["endpoint_url"] = endpoint
    return options


def filesystem(location: Location) -> tuple[Any, str]:
    """The fsspec file system for ``location`` and the path within it (no scheme).

    Directory listings are never cached, so a check right after another process wrote sees the
    write.
    """
    import fsspec

    text = os.fspath(location)
    proto = scheme(text) or "file"
    if proto == "s3a":
        proto = "s3"
    options = storage_options(text)
    if proto == "s3":
        options["use_listings_cache"] = False
    try:
        fs = fsspec.filesystem(proto, **options)
    except (ImportError, ValueError) as err:
        raise RemoteError(
            f"{text}: no file system for scheme '{proto}' ({err}); for s3:// install s3fs"
        ) from err
    return fs, fs._strip_protocol(text).rstrip("/")


# ---------------------------------------------------------------------------------------------
# queries


def exists(location: Location) -> bool:
    """True when a file, or any object under a prefix, exists at ``location``."""
    if not is_remote(location):
        return local_path(location).exists()
    fs, path = filesystem(location)
    return bool(fs.exists(path))


def is_dir(location: Location) -> bool:
    """True when ``location`` is a directory / a prefix holding objects."""
    if not is_remote(location):
        return local_path(location).is_dir()
    fs, path = filesystem(location)
    return bool(fs.isdir(path))


def listdir(location: Location, recursive: bool = False) -> list[str]:
    """Names under ``location``, relative to it, sorted, with '/' separators.

    Args:
        location: a directory or prefix.
        recursive: list every file below (no directory entries) instead of the direct children.
    """
    if not is_remote(location):
        root = local_path(location)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: not a directory")
        if recursive:
            return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        return sorted(p.name for p in root.iterdir())
    sizes = _remote_files(location) if recursive else None
    if sizes is not None:
        return sorted(sizes)
    fs, path = filesystem(location)
    if not fs.isdir(path):
        raise FileNotFoundError(f"{location}: no such prefix")
    return sorted(posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False))


def _remote_files(location: Location) -> dict[str, int]:
    """Every object under a remote prefix: relative key → size in bytes."""
    fs, path = filesystem(location)
    found = fs.find(path, detail=True)
    prefix = path + "/"
    out: dict[str, int] = {}
    for key, info in found.items():
        if info.get("type") == "directory" or not key.startswith(prefix):
            continue
        out[key[len(prefix):]] = int(info.get("size") or 0)
    return out


def is_complete(location: Location) -> bool:
    """True when a remote prefix carries its completion marker (local: when it exists)."""
    if not is_remote(location):
        return local_path(location).exists()
    return exists(join(location, SUCCESS_MARKER))


def read_marker(location: Location) -> dict[str, Any]:
    """The completion marker of a remote prefix (files and sizes); RemoteError if absent."""
    fs, path = filesystem(join(location, SUCCESS_MARKER))
    try:
        with fs.open(path, "rb") as fh:
            record = json.loads(fh.read().decode())
    except FileNotFoundError as err:
        raise RemoteError(f"{location}: no completion marker {SUCCESS_MARKER}") from err
    except (UnicodeDecodeError, ValueError) as err:
        raise RemoteError(
            f"{location}: completion marker {SUCCESS_MARKER} unreadable: {err}"
        ) from err
    if not isinstance(record, dict) or not isinstance(record.get("files"), dict):
        raise RemoteError(f"{location}: completion marker {SUCCESS_MARKER} unreadable: no 'files'")
    return record


# ---------------------------------------------------------------------------------------------
# transfers


def get(location: Location, dest: Location, *, require_complete: bool = False) -> Path:
    """Copy a file or a whole prefix from ``location`` to the local path ``dest``.

    Args:
        location: remote (or local) file or directory.
        dest: local destination; a file is written to ``dest``, a prefix becomes directory ``dest``.
        require_complete: for a prefix, refuse one without its completion marker and check that
            every file the marker lists is present with its recorded size.

    Returns:
        ``dest`` as a Path.
    """
    dest = local_path(dest)
    if not is_remote(location):
        src = local_path(location)
        if not src.exists():
            raise FileNotFoundError(f"{src}: does not exist")
        if src.is_dir():
            shutil.copytree(src, dest, dirs_exist_ok=True)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
        return dest
    fs, path = filesystem(location)
    if fs.isfile(path):
        dest.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(path, str(dest))
        return dest
    files = _remote_files(location)
    if not files:
        raise FileNotFoundError(f"{location}: no such file or prefix")
    if require_complete:
        _check_against_marker(location, files)
    files.pop(SUCCESS_MARKER, None)
    dest.mkdir(parents=True, exist_ok=True)
    rels = sorted(files)
    for rel in rels:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
    if rels:
        fs.get([f"{path}/{r}" for r in rels], [str(dest / r) for r in rels])
    return dest


def _check_against_marker(location: Location, files: dict[str, int]) -> None:
    """Raise RemoteError unless the marker exists and every file it lists has its size."""
    if SUCCESS_MARKER not in files:
        raise RemoteError(
            f"{location}: incomplete (no {SUCCESS_MARKER}); an upload was interrupted or is "
            "still running"
        )
    listed: dict[str, int] = read_marker(location)["files"]
    bad = sorted(rel for rel, size in listed.items() if files.get(rel) != size)
    if bad:
        raise RemoteError(
            f"{location}: {len(bad)} file(s) differ from the completion marker, e.g. {bad[:3]}"
        )


def put(
    src: Location, location: Location, *, marker: bool = True, mirror: bool = True
) -> str:
    """Upload a local file or directory tree to ``location``.

    A directory is published with the completion protocol of this module: old marker removed,
    files uploaded, (``mirror``) remote files absent locally deleted, marker written last.

    Args:
        src: local file or directory.
        location: destination file / prefix (remote or local).
        marker: write the completion marker for a directory.
        mirror: delete remote files under the prefix that ``src`` does not have.

    Returns:
        ``location`` as a string.
    """
    src_path = local_path(src)
    if not src_path.exists():
        raise FileNotFoundError(f"{src_path}: nothing to upload")
    dest = os.fspath(location)
    if not is_remote(dest):
        target = local_path(dest)
        if src_path.resolve() == target.resolve():
            return dest
        from drasclr.fsutil import atomic_path

        with atomic_path(target) as tmp:
            if src_path.is_dir():
                shutil.copytree(src_path, tmp)
            else:
                shutil.copy2(src_path, tmp)
        return dest
    fs, path = filesystem(dest)
    if src_path.is_file():
        fs.put_file(str(src_path), path)
        return dest
    local_files = {
        p.relative_to(src_path).as_posix(): p.stat().st_size
        for p in sorted(src_path.rglob("*"))
        if p.is_file()
    }
    local_files.pop(SUCCESS_MARKER, None)
    marker_path = f"{path}/{SUCCESS_MARKER}"
    if fs.exists(marker_path):
        fs.rm_file(marker_path)
    rels = sorted(local_files)
    if rels:
        fs.put([str(src_path / r) for r in rels], [f"{path}/{r}" for r in rels])
    if mirror:
        stale = sorted(set(_remote_files(dest)) - set(local_files) - {SUCCESS_MARKER})
        if stale:
            fs.rm([f"{path}/{r}" for r in stale])
    if marker:
        record = {"files": local_files, "written_at": time.time(), "n_files": len(local_files)}
        with fs.open(marker_path, "wb") as fh:
            fh.write(json.dumps(record, sort_keys=True).encode())
    return dest


def remove(location: Location) -> None:
    """Delete a file or a whole directory / prefix (missing is not an error)."""
    if not is_remote(location):
        p = local_path(location)
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
        return
    fs, path = filesystem(location)
    if fs.exists(path):
        fs.rm(path, recursive=True)


# ---------------------------------------------------------------------------------------------
# local working copies


@contextmanager
def local_cache(
    location: Location,
    mode: Mode = "r",
    *,
    scratch: Location | None = None,
    require_complete: bool = False,
) -> Iterator[Path]:
    """A local path standing for ``location`` for the duration of a block.

    A local location is yielded as it is (no copy; writers keep using their own atomic writes).
    A remote one is staged in a scratch directory that is deleted afterwards:

    * ``"r"``: the file or prefix is downloaded first; nothing is uploaded.
    * ``"w"``: an empty scratch path is yielded; if the block succeeds, whatever was written
      there (a file or a directory) is uploaded with :func:`put`. If the block raises, nothing
      is uploaded and any earlier remote content is untouched.
    * ``"rw"``: downloaded when it exists (for resuming), uploaded when the block succeeds.

    Args:
        location: local path or remote URI.
        mode: ``"r"``, ``"w"`` or ``"rw"``.
        scratch: parent directory for the staging copy (default: the system temp dir, or
            ``DRASCLR_SCRATCH`` when set).
        require_complete: in ``"r"``/``"rw"``, refuse a remote prefix without its marker.

    Yields:
        The local path to read or write.
    """
    if mode not in ("r", "w", "rw"):
        raise ValueError(f"local_cache: mode must be 'r', 'w' or 'rw', got {mode!r}")
    if not is_remote(location):
        yield local_path(location)
        return
    parent = scratch or os.environ.get("DRASCLR_SCRATCH") or None
    if parent is not None:
        Path(parent).mkdir(parents=True, exist_ok=True)
    stage_dir = Path(tempfile.mkdtemp(prefix="drasclr-uri-", dir=parent))
    staged = stage_dir / (name(location) or "artifact")
    try:
        if mode == "r" or (mode == "rw" and exists(location)):
            get(location, staged, require_complete=require_complete)
        yield staged
        if mode in ("w", "rw"):
            if not staged.exists():
                raise RemoteError(f"{location}: the block wrote nothing at {staged} to upload")
            put(staged, location)
    finally:
        shutil.rmtree(stage_dir, ignore_errors=True)
