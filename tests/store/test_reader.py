"""drasclr.store.reader: the fast shard reader and the plain-zarr fallback read the same patches."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import zarr

from drasclr.store import PatchStore, StoreError, SubjectPatches, open_store
from drasclr.store.reader import _ShardReader, _ZarrReader, make_reader
from drasclr.synth.patches import ct_like_patches

P, L, B, K = 8, 6, 4, 2


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two committed blocks of B subjects each (no Ray); the second block half full."""
    path = tmp_path_factory.mktemp("reader") / "s.zarr"
    lm = np.arange(L, dtype=np.float64)[:, None] * np.array([26.0, 0.0, 0.0])
    d = np.abs(lm[:, None, 0] - lm[None, :, 0])
    np.fill_diagonal(d, np.inf)
    nb = np.argsort(d, axis=1, kind="stable")[:, :K]
    writer = open_store(path, landmarks_mm=lm, neighbours=nb, atlas_id="atlas-test",
                        patch_size=P, block_size=B)
    n = B + B // 2
    plan = writer.plan([(f"sub{i}", f"/in/sub{i}.nii.gz", f"hash{i}") for i in range(n)])
    data = ct_like_patches(n * L, P, seed=5).reshape(n, L, P, P, P)
    for block, items in plan.blocks.items():
        subjects = [SubjectPatches(it, data[it.store_index], valid=np.ones(L, bool),
                                   lung_fraction=np.full(L, 0.5),
                                   centre_mm=np.zeros((L, 3), np.float32)) for it in items]
        writer.commit_rows(writer.write_block(block, subjects))
    return path


def test_fast_and_zarr_readers_agree(store: Path) -> None:
    fast, plain = PatchStore(store, reader="shard"), PatchStore(store, reader="zarr")
    assert isinstance(fast._reader, _ShardReader) and isinstance(plain._reader, _ZarrReader)
    idx = fast.store_indices
    rng = np.random.default_rng(0)
    for _ in range(5):  # unsorted, repeated, across shard boundaries
        lms = rng.integers(0, L, size=4)
        subj = rng.choice(idx, size=5)
        a = fast.read_landmarks_batch(lms, subj)
        b = plain.read_landmarks_batch(lms, subj)
        assert a.dtype == b.dtype == np.int16 and a.shape == (4, 5, P, P, P)
        np.testing.assert_array_equal(a, b)
    for s in idx:
        np.testing.assert_array_equal(fast.read_subject(int(s)), plain.read_subject(int(s)))
    raw = zarr.open_array(store / "patches", mode="r")[:, idx]
    np.testing.assert_array_equal(fast.read_landmarks_batch(np.arange(L), idx), raw)


def test_auto_takes_the_fast_reader_and_the_choice_survives_pickling(store: Path) -> None:
    assert isinstance(PatchStore(store)._reader, _ShardReader)
    again = pickle.loads(pickle.dumps(PatchStore(store, reader="zarr")))
    assert isinstance(again._reader, _ZarrReader)


def test_another_layout_falls_back_to_zarr_unless_the_fast_reader_is_required(
    store: Path, tmp_path: Path
) -> None:
    """An array re-chunked by another tool (no shards) is read by zarr, with the same values."""
    src = zarr.open_array(store / "patches", mode="r")
    copy = zarr.create_array(tmp_path / "patches", shape=src.shape, chunks=(1, 1, P, P, P),
                             dtype="int16", fill_value=int(src.fill_value))
    copy[:] = src[:]
    reader = make_reader(tmp_path / "patches")
    assert isinstance(reader, _ZarrReader)
    lms, subj = np.array([3, 0]), np.array([1, 4])
    np.testing.assert_array_equal(reader.read(lms, subj), src.get_orthogonal_selection((lms, subj)))
    with pytest.raises(StoreError, match="unsupported patches layout"):
        make_reader(tmp_path / "patches", "shard")
    with pytest.raises(ValueError, match="reader must be one of"):
        make_reader(tmp_path / "patches", "fast")
