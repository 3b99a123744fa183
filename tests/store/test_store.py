"""Patch store + manifest: create/open/append/plan, atomicity, concurrency, reads, compression."""

from __future__ import annotations

import json
import multiprocessing as mp
import pickle
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zarr

import drasclr.store.writer as store_writer
from drasclr.bench.store import bench_store
from drasclr.store.digest import store_digest
from drasclr.store.layout import SCHEMA_VERSION, StoreError
from drasclr.store.manifest import MANIFEST_FILE
from drasclr.store.reader import PatchStore, SubjectPatches
from drasclr.store.writer import Plan, StoreWriter, open_store
from drasclr.synth.patches import ct_like_patches
from drasclr.tables import SchemaError

L, P, B = 8, 32, 4
N_MAX = 16  # subjects the synthetic cohort has


@pytest.fixture(scope="module")
def cohort() -> np.ndarray:
    """(N_MAX, L, P, P, P) int16 CT-like patches, fixed seed."""
    return ct_like_patches(N_MAX * L, P, seed=7).reshape(N_MAX, L, P, P, P)


@pytest.fixture(scope="module")
def atlas() -> tuple[np.ndarray, np.ndarray]:
    """A 2x2x2 landmark grid (mm) and its 2-nearest-neighbour table."""
    lm = np.stack(np.meshgrid(*[np.arange(2)] * 3, indexing="ij"), -1).reshape(-1, 3) * 26.0
    d = np.linalg.norm(lm[:, None] - lm[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    return lm, np.argsort(d, axis=1, kind="stable")[:, :2]


def subjects(ids: Iterable[int]) -> list[tuple[str, str, str]]:
    return [(f"sub{i:03d}", f"/data/sub{i:03d}.nii.gz", f"hash{i}") for i in ids]


def sid_num(subject_id: str) -> int:
    return int(subject_id[3:])


def make(path: Path, atlas: tuple[np.ndarray, np.ndarray], **kw: object) -> StoreWriter:
    lm, nb = atlas
    return open_store(
        path, landmarks_mm=lm, neighbours=nb, atlas_id="atlas-test", block_size=B, **kw
    )


def patches_for(plan_items: tuple, cohort: np.ndarray) -> list[SubjectPatches]:
    out = []
    for it in plan_items:
        n = sid_num(it.subject_id)
        out.append(
            SubjectPatches(
                it,
                cohort[n],
                valid=np.arange(L) != n % L,
                lung_fraction=np.full(L, n / N_MAX, np.float32),
                centre_mm=np.full((L, 3), float(n), np.float32),
                record={
                    "dice": 0.9,
                    "fov_fraction": 7 / 8,
                    "spacing": [0.7, 0.7, 1.25],
                    "shape": [512, 512, 300],
                    "transform": np.eye(4).ravel(),
                    "t_register": 1.5,
                },
            )
        )
    return out


def run_all(
    writer: StoreWriter, plan: Plan, cohort: np.ndarray, order: list[int] | None = None
) -> None:
    blocks = plan.blocks
    for b in order or list(blocks):
        writer.commit_rows(writer.write_block(b, patches_for(blocks[b], cohort)))


def test_create_write_read_back(tmp_path: Path, atlas, cohort) -> None:
    w = make(tmp_path / "s.zarr", atlas)
    plan = w.plan(subjects(range(12)))
    assert [it.store_index for it in plan.items] == list(range(12)) and plan.capacity == 12
    assert list(plan.blocks) == [0, 1, 2]
    run_all(w, plan, cohort)
    ps = PatchStore(tmp_path / "s.zarr")
    np.testing.assert_array_equal(ps.landmarks, atlas[0])
    np.testing.assert_array_equal(ps.neighbours, atlas[1])
    assert ps.landmarks_norm.min() == -1 and ps.landmarks_norm.max() == 1
    assert ps.num_subjects == 12 and ps.num_landmarks == L and ps.patch_size == P
    assert ps.subject_ids == [f"sub{i:03d}" for i in range(12)]
    assert ps.valid.shape == (L, 12) and ps.valid.sum() == 12 * (L - 1)
    assert not ps.valid[5, 5] and ps.valid[4, 5]
    np.testing.assert_allclose(ps.lung_fraction[:, 3], 3 / N_MAX)
    np.testing.assert_array_equal(ps.centre_mm[2, 9], [9, 9, 9])
    idx = [7, 0, 11, 3, 3]  # any order, repeats allowed
    np.testing.assert_array_equal(ps.read_landmark_batch(5, idx), cohort[idx, 5])
    got = ps.read_landmarks_batch([5, *ps.neighbours[5]], idx)
    np.testing.assert_array_equal(
        got, cohort[idx][:, [5, *ps.neighbours[5]]].transpose(1, 0, 2, 3, 4)
    )
    np.testing.assert_array_equal(ps.read_subject(ps.index_of("sub010")), cohort[10])
    clone = pickle.loads(pickle.dumps(ps))  # loader workers get the same snapshot
    assert clone.subject_ids == ps.subject_ids
    np.testing.assert_array_equal(clone.read_landmark_batch(2, idx), cohort[idx, 2])
    # the pread reader agrees with zarr's own decoder on the same files
    z = zarr.open_array(tmp_path / "s.zarr" / "patches", mode="r")
    np.testing.assert_array_equal(z[:, 4], cohort[4])
    m = ps.manifest
    assert (
        set(m.status) == {"ok"}
        and m.dice.eq(0.9).all()
        and list(m["transform"][0]) == list(np.eye(4).ravel())
    )
    with pytest.raises(IndexError):
        ps.read_landmark_batch(L, [0])
    with pytest.raises(StoreError, match="not stored"):
        ps.index_of("nobody")


def test_plan_skip_append_and_reprocess(tmp_path: Path, atlas, cohort) -> None:
    path = tmp_path / "s.zarr"
    w = make(path, atlas)
    run_all(w, w.plan(subjects(range(6))), cohort)  # indices 0..5, block 1 half full
    again = make(path, atlas).plan(subjects(range(6)))
    assert len(again) == 0 and len(again.skipped) == 6 and again.capacity == 8
    # append: 3 new subjects + 1 changed input go to a fresh block after the last committed one
    w2 = make(path, atlas)
    ins = subjects(range(9))
    ins[2] = (ins[2][0], ins[2][1], "hash2-new")
    plan = w2.plan(ins)
    assert [(it.subject_id, it.store_index, it.reason) for it in plan.items] == [
        ("sub002", 8, "input_changed"),
        ("sub006", 9, "new"),
        ("sub007", 10, "new"),
        ("sub008", 11, "new"),
    ]
    assert plan.capacity == 12
    run_all(w2, plan, cohort)
    ps = PatchStore(path)
    assert ps.num_subjects == 9 and ps.index_of("sub002") == 8
    assert not ps.valid[:, 2].any()  # the old slot is no longer a committed subject
    with pytest.raises(StoreError, match="no committed subject"):
        ps.read_subject(2)
    np.testing.assert_array_equal(ps.read_subject(8), cohort[2])
    w3 = make(path, atlas, config_fingerprint="cfg-v2")
    plan3 = w3.plan(subjects(range(1)))
    assert [(it.store_index, it.reason) for it in plan3.items] == [(12, "config_changed")]


def test_overwrite_and_mismatch(tmp_path: Path, atlas, cohort) -> None:
    path = tmp_path / "s.zarr"
    run_all(make(path, atlas), make(path, atlas).plan(subjects(range(4))), cohort)
    lm, nb = atlas
    with pytest.raises(StoreError, match="landmarks_mm"):
        open_store(path, landmarks_mm=lm + 1, neighbours=nb, atlas_id="atlas-test")
    with pytest.raises(StoreError, match="atlas_id"):
        open_store(path, atlas_id="other")
    w = make(path, atlas, overwrite=True)
    assert w.manifest().empty and w.info.capacity == 0 and PatchStore(path).num_subjects == 0
    (tmp_path / "notastore").mkdir()
    (tmp_path / "notastore" / "keep.txt").write_text("x")
    with pytest.raises(StoreError, match="not a patch store"):
        make(tmp_path / "notastore", atlas, overwrite=True)
    with pytest.raises(StoreError, match="needs landmarks_mm"):
        open_store(tmp_path / "new.zarr")


def test_schema_version_mismatch(tmp_path: Path, atlas) -> None:
    path = tmp_path / "s.zarr"
    make(path, atlas)
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["patch_store"]["schema_version"] = SCHEMA_VERSION + 1
    (path / "zarr.json").write_text(json.dumps(meta))
    for opener in (lambda: open_store(path), lambda: PatchStore(path), lambda: StoreWriter(path)):
        with pytest.raises(
            StoreError,
            match=f"schema_version {SCHEMA_VERSION + 1}.*schema_version {SCHEMA_VERSION}",
        ):
            opener()


def test_duplicate_subject_ids(tmp_path: Path, atlas) -> None:
    w = make(tmp_path / "s.zarr", atlas)
    with pytest.raises(StoreError, match=r"duplicate subject id\(s\).*'sub001'.*'sub003'"):
        w.plan(subjects(range(5)) + subjects([3, 1]))


def test_manifest_validated_on_write_and_read(tmp_path: Path, atlas, cohort) -> None:
    path = tmp_path / "s.zarr"
    w = make(path, atlas)
    plan = w.plan(subjects(range(4)))
    rows = w.write_block(0, patches_for(plan.items, cohort))
    bad = [dict(r) for r in rows]
    bad[0]["dice"] = 1.5
    with pytest.raises(SchemaError, match=f"{MANIFEST_FILE}.*dice"):
        w.commit_rows(bad)
    bad = [dict(r) for r in rows]
    bad[1]["store_index"] = -1  # ok row without a slot
    with pytest.raises(SchemaError, match=MANIFEST_FILE):
        w.commit_rows(bad)
    with pytest.raises(StoreError, match="not manifest columns"):
        w.failed_row(plan.items[0], "boom", stauts="x")
    w.commit_rows(rows)
    # a manifest broken on disk is refused on read, naming the file
    mpath = path / MANIFEST_FILE
    table = pq.read_table(mpath)
    status = table.column("status").to_pylist()
    status[2] = "done"
    pq.write_table(
        table.set_column(
            table.schema.get_field_index("status"), "status", pa.array(status, pa.string())
        ),
        mpath,
    )
    with pytest.raises(SchemaError, match=f"{mpath}.*status"):
        PatchStore(path)
    with pytest.raises(SchemaError, match=str(mpath)):
        w.plan(subjects(range(4)))


def test_failed_subjects_are_retried(tmp_path: Path, atlas, cohort) -> None:
    w = make(tmp_path / "s.zarr", atlas)
    plan = w.plan(subjects(range(4)))
    ok = patches_for(plan.items[:3], cohort)
    rows = w.write_block(0, ok) + [
        w.failed_row(plan.items[3], "RegistrationError: diverged", t_read=0.1)
    ]
    m = w.commit_rows(rows)
    assert m.set_index("subject_id").loc["sub003", ["status", "store_index", "error"]].tolist() == [
        "failed",
        -1,
        "RegistrationError: diverged",
    ]
    retry = w.plan(subjects(range(4)))
    assert [(it.subject_id, it.store_index, it.reason) for it in retry.items] == [
        ("sub003", 4, "retry")
    ]
    run_all(w, retry, cohort)
    ps = PatchStore(tmp_path / "s.zarr")
    assert ps.num_subjects == 4 and not ps.valid[:, 3].any()
    np.testing.assert_array_equal(ps.read_subject(4), cohort[3])


def test_crash_inside_block_write_leaves_subjects_absent(
    tmp_path: Path, atlas, cohort, monkeypatch
) -> None:
    path = tmp_path / "s.zarr"
    w = make(path, atlas)
    plan = w.plan(subjects(range(8)))
    w.commit_rows(w.write_block(0, patches_for(plan.blocks[0], cohort)))
    real = store_writer._write_region

    def crash_on_valid(array: zarr.Array, region: slice, data: np.ndarray) -> None:
        if array.basename == "valid":
            raise OSError("worker killed")
        real(array, region, data)

    monkeypatch.setattr(store_writer, "_write_region", crash_on_valid)
    with pytest.raises(OSError, match="worker killed"):
        w.write_block(1, patches_for(plan.blocks[1], cohort))  # patches written, no rows returned
    monkeypatch.setattr(store_writer, "_write_region", real)
    ps = PatchStore(path)
    assert ps.num_subjects == 4 and not ps.valid[:, 4:].any()
    with pytest.raises(StoreError):
        ps.read_subject(5)
    # a re-run plans the crashed subjects again, into the same (uncommitted) block, and completes
    rerun = make(path, atlas).plan(subjects(range(8)))
    assert [it.store_index for it in rerun.items] == [4, 5, 6, 7] and rerun.skipped == tuple(
        f"sub{i:03d}" for i in range(4)
    )
    run_all(w, rerun, cohort)
    ps = PatchStore(path)
    assert ps.num_subjects == 8
    for i in range(8):
        np.testing.assert_array_equal(ps.read_subject(ps.index_of(f"sub{i:03d}")), cohort[i])


@pytest.mark.parametrize("kind", ["threads", "processes"])
def test_parallel_block_writers_lose_nothing(tmp_path: Path, atlas, cohort, kind: str) -> None:
    path = tmp_path / "s.zarr"
    w = make(path, atlas)
    plan = w.plan(subjects(range(N_MAX)))
    jobs = {b: patches_for(items, cohort) for b, items in plan.blocks.items()}
    if kind == "threads":
        pool = ThreadPoolExecutor(max_workers=4)
    else:
        pool = ProcessPoolExecutor(max_workers=2, mp_context=mp.get_context("spawn"))
    with pool:
        futures = [pool.submit(w.write_block, b, subs) for b, subs in jobs.items()]
        rows = [r for f in futures for r in f.result()]
    w.commit_rows(rows)  # driver commits
    ps = PatchStore(path)
    assert ps.num_subjects == N_MAX
    got = ps.read_landmarks_batch(np.arange(L), np.arange(N_MAX))
    np.testing.assert_array_equal(got, cohort.transpose(1, 0, 2, 3, 4))


def test_identical_runs_are_byte_identical(tmp_path: Path, atlas, cohort) -> None:
    digests, files = [], []
    for name, order in (("a.zarr", [0, 1, 2]), ("b.zarr", [2, 0, 1])):
        w = make(tmp_path / name, atlas)
        run_all(w, w.plan(subjects(range(12))), cohort, order=order)
        digests.append(store_digest(tmp_path / name))
        files.append(
            {
                p.relative_to(tmp_path / name).as_posix(): p.read_bytes()
                for p in (tmp_path / name / "patches").rglob("*")
                if p.is_file()
            }
        )
    assert digests[0] == digests[1]
    assert files[0] == files[1] and len(files[0]) == 4  # 3 shards + zarr.json
    w = make(tmp_path / "c.zarr", atlas)
    run_all(w, w.plan(subjects(range(11, -1, -1))), cohort)  # other subject order -> other store
    assert store_digest(tmp_path / "c.zarr") != digests[0]


def test_compression_ratio_on_ct_like_patches(tmp_path: Path, atlas, cohort) -> None:
    w = make(tmp_path / "s.zarr", atlas)
    run_all(w, w.plan(subjects(range(N_MAX))), cohort)
    stored = sum(
        p.stat().st_size for p in (tmp_path / "s.zarr" / "patches" / "c").rglob("*") if p.is_file()
    )
    ratio = stored / cohort.nbytes
    print(f"patch store bytes / raw int16 = {ratio:.3f}")
    assert ratio <= 0.55


def test_write_block_rejects_misuse(tmp_path: Path, atlas, cohort) -> None:
    w = make(tmp_path / "s.zarr", atlas)
    plan = w.plan(subjects(range(8)))
    subs = patches_for(plan.items, cohort)
    with pytest.raises(StoreError, match="not in block 0"):
        w.write_block(0, subs[3:5])
    with pytest.raises(StoreError, match="outside the store capacity"):
        w.write_block(2, [])
    wrong = SubjectPatches(
        plan.items[0], cohort[0][:, :16], subs[0].valid, subs[0].lung_fraction, subs[0].centre_mm
    )
    with pytest.raises(StoreError, match="patches has shape"):
        w.write_block(0, [wrong])


def test_bench_store_small(tmp_path: Path) -> None:
    r = bench_store(
        tmp_path,
        num_landmarks=8,
        num_subjects=16,
        block_size=4,
        batch_size=8,
        num_batches=2,
        num_subject_reads=4,
    )
    assert set(r["layouts"]) == {
        "store",
        "store_zarr_api",
        "plain",
        "landmark_chunks",
        "small_chunks",
    }
    s = r["layouts"]["store"]
    assert s["ratio"] < 0.6 and s["batch_read_patches_s"] > 0 and s["subject_read_patches_s"] > 0
    assert r["layouts"]["plain"]["ratio"] > 0.99


def test_patches_are_clipped_to_hu_window(tmp_path: Path, atlas, cohort) -> None:
    w = make(tmp_path / "s.zarr", atlas)
    (item,) = w.plan(subjects([0])).items
    hot = cohort[0].astype(np.int32)
    hot[0, 0, 0, :3] = [3000, -3000, 100]
    w.commit_rows(
        w.write_block(
            0, [SubjectPatches(item, hot, np.ones(L, bool), np.zeros(L), np.zeros((L, 3)))]
        )
    )
    got = PatchStore(tmp_path / "s.zarr").read_subject(0)
    assert got.dtype == np.int16 and list(got[0, 0, 0, :3]) == [240, -1024, 100]


@pytest.mark.parametrize("fraction", [0.97, 0.33])
@pytest.mark.parametrize("array", ["patches", "valid", "lung_fraction", "centre_mm"])
def test_cut_shard_or_chunk_file_gives_a_clear_error(tmp_path: Path, atlas, cohort,
                                                     array: str, fraction: float) -> None:
    w = make(tmp_path / "s.zarr", atlas)
    run_all(w, w.plan(subjects(range(8))), cohort)
    victim = min(p for p in (tmp_path / "s.zarr" / array / "c").rglob("*") if p.is_file())
    data = victim.read_bytes()
    victim.write_bytes(data[: int(len(data) * fraction)])
    ps = PatchStore(tmp_path / "s.zarr")
    with pytest.raises(StoreError, match="truncated") as info:
        if array == "patches":
            ps.read_subject(0)
        else:
            getattr(ps, array)
    assert str(victim) in str(info.value)


def test_missing_shard_of_committed_subjects_is_an_error_not_zeros(tmp_path: Path, atlas,
                                                                    cohort) -> None:
    w = make(tmp_path / "s.zarr", atlas)
    run_all(w, w.plan(subjects(range(8))), cohort)
    shard = tmp_path / "s.zarr" / "patches" / "c" / "0" / "1" / "0" / "0" / "0"
    shard.unlink()  # block 1: subjects 4..7
    ps = PatchStore(tmp_path / "s.zarr")
    np.testing.assert_array_equal(ps.read_subject(0), cohort[0])  # block 0 is intact
    with pytest.raises(StoreError, match="missing"):
        ps.read_landmark_batch(0, [0, 5])
