"""drasclr.uri against a real S3 API: moto's server on 127.0.0.1, started and stopped here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from _s3 import moto_bucket

from drasclr import uri

moto_server = pytest.importorskip("moto.server", reason="needs moto[server]")
pytest.importorskip("s3fs", reason="needs s3fs")


@pytest.fixture(scope="module")
def bucket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``s3://drasclr-test`` on a moto S3 server bound to loopback; env points botocore at it."""
    with moto_bucket(tmp_path_factory.mktemp("aws"), "drasclr-test") as url:
        yield url


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _write_tree(root: Path, n: int = 6) -> dict[str, bytes]:
    rng = np.random.default_rng(n)
    for i in range(n):
        f = root / f"d{i % 3}" / f"f{i}.bin"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(rng.bytes(100 + 37 * i))
    return _tree(root)


# ------------------------------------------------------------------------------ no server needed


def test_location_parsing(tmp_path: Path) -> None:
    assert uri.is_remote("s3://b/k") and uri.is_remote("S3://b/k") and uri.is_remote("gs://b")
    assert not uri.is_remote(tmp_path) and not uri.is_remote("relative/dir")
    assert not uri.is_remote("file:///tmp/x") and not uri.is_remote("C:/data")
    assert uri.local_path("file:///tmp/x") == Path("/tmp/x")
    with pytest.raises(ValueError, match="remote"):
        uri.local_path("s3://b/k")
    assert uri.join("s3://b/runs/", "a", "/ckpt.pt") == "s3://b/runs/a/ckpt.pt"
    assert uri.join(tmp_path, "a", "b") == str(tmp_path / "a" / "b")
    assert uri.name("s3://b/runs/store.zarr/") == "store.zarr"
    assert uri.storage_options(tmp_path) == {}


def test_local_locations_pass_through(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with uri.local_cache(target, "w") as p:
        assert p == target
        p.mkdir()
        (p / "x").write_text("1")
    assert uri.exists(target) and uri.is_dir(target) and uri.listdir(target) == ["x"]
    copy = uri.put(target, tmp_path / "copy")
    assert _tree(Path(copy)) == _tree(target)
    uri.remove(target)
    assert not uri.exists(target)


# ------------------------------------------------------------------------------ against moto S3


def test_zarr_tree_round_trip(bucket: str, tmp_path: Path) -> None:
    zarr = pytest.importorskip("zarr")
    src = tmp_path / "patches.zarr"
    data = np.random.default_rng(0).integers(-1024, 240, size=(3, 5, 8, 8, 8)).astype(np.int16)
    arr = zarr.create_array(str(src), shape=data.shape, chunks=(1, 1, 8, 8, 8), dtype="int16")
    arr[:] = data
    arr.attrs["schema_version"] = 1
    target = uri.join(bucket, "run-zarr", "patches.zarr")

    assert uri.put(src, target) == target
    assert uri.is_complete(target)
    marker = uri.read_marker(target)
    assert marker["n_files"] == len(_tree(src)) > 5
    assert uri.listdir(target, recursive=True) == sorted([*_tree(src), uri.SUCCESS_MARKER])

    with uri.local_cache(target, scratch=tmp_path / "scratch", require_complete=True) as local:
        assert local != src and local.is_dir()
        assert _tree(local) == _tree(src)  # marker not copied into the local tree
        back = zarr.open_array(str(local), mode="r")
        np.testing.assert_array_equal(back[:], data)
        assert back.attrs["schema_version"] == 1
    assert not local.exists(), "scratch copy must be removed after the block"

    direct = zarr.open_array(target, mode="r", storage_options=uri.storage_options(target))
    np.testing.assert_array_equal(direct[1, 2], data[1, 2])


def test_parquet_file_write_and_read(bucket: str, tmp_path: Path) -> None:
    table = pd.DataFrame({"subject_id": ["s0", "s1", "s2"], "fev1pp": [81.5, 42.0, 99.9]})
    target = uri.join(bucket, "run-pq", "manifest.parquet")
    with uri.local_cache(target, "w", scratch=tmp_path) as local:
        assert not local.exists()
        table.to_parquet(local)
    assert uri.exists(target) and not uri.is_dir(target)
    pd.testing.assert_frame_equal(
        pd.read_parquet(target, storage_options=uri.storage_options(target)), table
    )
    with uri.local_cache(target) as local:
        pd.testing.assert_frame_equal(pd.read_parquet(local), table)
    got = uri.get(target, tmp_path / "dl" / "m.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(got), table)


def test_failed_block_uploads_nothing(bucket: str, tmp_path: Path) -> None:
    target = uri.join(bucket, "run-fail-block", "features")
    with (
        pytest.raises(RuntimeError, match="boom"),
        uri.local_cache(target, "w", scratch=tmp_path) as local,
    ):
        _write_tree(local)
        raise RuntimeError("boom")
    assert not uri.exists(target)
    assert list(tmp_path.iterdir()) == []  # scratch cleaned on error too


def test_interrupted_upload_leaves_no_marker(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = uri.join(bucket, "run-interrupt", "store")
    v1 = tmp_path / "v1"
    _write_tree(v1, n=4)
    uri.put(v1, target)
    assert uri.is_complete(target)

    fs, _ = uri.filesystem(target)
    real_put = fs.put

    def dies_half_way(lpaths: list[str], rpaths: list[str], **kw: Any) -> None:
        half = len(lpaths) // 2
        real_put(lpaths[:half], rpaths[:half], **kw)
        raise ConnectionError("network dropped")

    monkeypatch.setattr(fs, "put", dies_half_way)
    with (
        pytest.raises(ConnectionError),
        uri.local_cache(target, "w", scratch=tmp_path / "s") as local,
    ):
        _write_tree(local, n=10)
    monkeypatch.undo()

    assert uri.exists(target), "the partial upload is visible..."
    assert not uri.is_complete(target), "...but carries no completion marker"
    with pytest.raises(uri.RemoteError, match="incomplete"):
        uri.get(target, tmp_path / "dl", require_complete=True)
    with (
        pytest.raises(uri.RemoteError, match="incomplete"),
        uri.local_cache(target, require_complete=True, scratch=tmp_path / "r"),
    ):
        pass

    # a clean re-run publishes again and mirrors away files from the older version
    v2 = tmp_path / "v2"
    expected = _write_tree(v2, n=3)
    uri.put(v2, target)
    assert uri.is_complete(target)
    assert _tree(uri.get(target, tmp_path / "dl2", require_complete=True)) == expected


def test_marker_detects_changed_files(bucket: str, tmp_path: Path) -> None:
    target = uri.join(bucket, "run-tamper", "ckpt")
    _write_tree(tmp_path / "src", n=3)
    uri.put(tmp_path / "src", target)
    fs, path = uri.filesystem(target)
    first = next(f for f in uri.listdir(target, recursive=True) if f != uri.SUCCESS_MARKER)
    fs.pipe_file(f"{path}/{first}", b"short")
    with pytest.raises(uri.RemoteError, match="differ"):
        uri.get(target, tmp_path / "dl", require_complete=True)
    fs.pipe_file(f"{path}/{uri.SUCCESS_MARKER}", b"not json")
    with pytest.raises(uri.RemoteError, match="unreadable"):
        uri.read_marker(target)


def test_rw_resumes_and_removes(bucket: str, tmp_path: Path) -> None:
    target = uri.join(bucket, "run-rw", "results")
    with uri.local_cache(target, "rw", scratch=tmp_path) as local:
        assert not local.exists()  # nothing there yet
        local.mkdir()
        (local / "a.txt").write_text("a")
        (local / "b.txt").write_text("b")
    with uri.local_cache(target, "rw", scratch=tmp_path, require_complete=True) as local:
        assert sorted(p.name for p in local.iterdir()) == ["a.txt", "b.txt"]
        (local / "a.txt").unlink()
        (local / "c.txt").write_text("c")
    assert uri.listdir(target) == sorted(["b.txt", "c.txt", uri.SUCCESS_MARKER])
    assert uri.read_marker(target)["files"] == {"b.txt": 1, "c.txt": 1}
    uri.remove(target)
    assert not uri.exists(target)
    with pytest.raises(FileNotFoundError):
        uri.get(target, tmp_path / "gone")


def test_write_block_must_produce_output(bucket: str, tmp_path: Path) -> None:
    with (
        pytest.raises(uri.RemoteError, match="wrote nothing"),
        uri.local_cache(uri.join(bucket, "empty"), "w", scratch=tmp_path),
    ):
        pass
