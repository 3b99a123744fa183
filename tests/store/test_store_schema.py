"""``schemas/store.json`` matches the code: constants, and a store the writer actually creates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr

from drasclr.imaging.intensity import HU_WINDOW
from drasclr.store import MANIFEST_FILE, SCHEMA_VERSION, PatchStore, SubjectPatches, open_store
from drasclr.store.layout import _ATTR
from drasclr.store.manifest import MANIFEST_SCHEMA
from drasclr.synth.patches import ct_like_patches
from drasclr.tables import SCHEMA_DIR

L, P, B, K = 8, 8, 2, 2  # landmarks, patch edge, block size, neighbours per landmark


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / "store.json").read_text())


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small store with one committed block of B subjects (no Ray)."""
    path = tmp_path_factory.mktemp("schema") / "s.zarr"
    lm = np.stack(np.meshgrid(*[np.arange(2)] * 3, indexing="ij"), -1).reshape(-1, 3) * 26.0
    d = np.linalg.norm(lm[:, None] - lm[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    nb = np.argsort(d, axis=1, kind="stable")[:, :K]
    writer = open_store(path, landmarks_mm=lm, neighbours=nb, atlas_id="atlas-test",
                        patch_size=P, block_size=B)
    plan = writer.plan([(f"sub{i}", f"/in/sub{i}.nii.gz", f"hash{i}") for i in range(B)])
    data = ct_like_patches(B * L, P, seed=3).reshape(B, L, P, P, P)
    (block, items), = plan.blocks.items()
    subjects = [
        SubjectPatches(it, data[n], valid=np.ones(L, bool), lung_fraction=np.full(L, 0.5),
                       centre_mm=np.zeros((L, 3), np.float32))
        for n, it in enumerate(items)
    ]
    writer.commit_rows(writer.write_block(block, subjects))
    return path


def _symbols(capacity: int) -> dict[str, int]:
    return {"L": L, "S_cap": capacity, "P": P, "B": B, "k_max": K}


def _resolve(shape: list[Any] | None, sym: dict[str, int]) -> tuple[int, ...] | None:
    return None if shape is None else tuple(sym[s] if isinstance(s, str) else s for s in shape)


def _compressor(codecs: list[dict[str, Any]]) -> dict[str, Any]:
    """The compression codec of an array's codec chain (inside a shard), in the JSON's terms."""
    if len(codecs) == 1 and codecs[0]["name"] == "sharding_indexed":
        codecs = codecs[0]["configuration"]["codecs"]
    (codec,) = [c for c in codecs if c["name"] != "bytes"]
    cfg = codec.get("configuration", {})
    if codec["name"] == "blosc":
        keys = ("cname", "clevel", "shuffle", "typesize")
        return {"name": "blosc", **{k: cfg[k] for k in keys}}
    return {"name": codec["name"], "level": cfg["level"]}


def test_constants_match_code(schema: dict[str, Any]) -> None:
    assert schema["name"] == "store"
    assert schema["schema_version"] == SCHEMA_VERSION
    assert tuple(schema["hu_window"]) == tuple(HU_WINDOW)
    assert schema["group_attribute"]["name"] == _ATTR
    assert schema["manifest"] == {**schema["manifest"], "file": MANIFEST_FILE,
                                  "schema": MANIFEST_SCHEMA}
    assert (SCHEMA_DIR / f"{schema['manifest']['schema']}.json").is_file()
    assert set(schema["dimensions"]) == {"L", "S_cap", "P", "B", "k_max"}
    for array in schema["arrays"]:
        used = [s for key in ("shape", "chunks", "shards") for s in array[key] or []
                if isinstance(s, str)]
        assert set(used) <= set(schema["dimensions"]), array["name"]
        assert len(array["shape"]) == len(array["dimension_names"]) == len(array["chunks"])


def test_run_files_match_preprocess(schema: dict[str, Any]) -> None:
    from drasclr.preprocess import run

    files = schema["run_files"]
    assert (files["config"], files["summary"], files["qc_sheet"], files["qc_dir"]) == (
        run.CONFIG_FILE, run.SUMMARY_FILE, run.SHEET_FILE, run.QC_DIR)


def test_written_store_matches_schema(schema: dict[str, Any], store: Path) -> None:
    root = zarr.open_group(store, mode="r")
    attrs = dict(root.attrs[_ATTR])
    assert list(attrs) == [k["name"] for k in schema["group_attribute"]["keys"]]
    assert attrs["schema_version"] == schema["schema_version"]
    assert attrs["hu_window"] == schema["hu_window"]
    assert (attrs["num_landmarks"], attrs["patch_size"], attrs["block_size"], attrs["k_max"]) == (
        L, P, B, K)
    sym = _symbols(attrs["capacity"])
    assert attrs["capacity"] == B  # one block
    assert np.shape(attrs["landmarks_mm"]) == np.shape(attrs["landmarks_norm"]) == (L, 3)
    assert np.shape(attrs["neighbours"]) == (L, K)

    on_disk = {meta.parent.name for meta in store.glob("*/zarr.json")}
    assert on_disk == {a["name"] for a in schema["arrays"]}
    for spec in schema["arrays"]:
        arr = root[spec["name"]]
        meta = json.loads((store / spec["name"] / "zarr.json").read_text())
        assert arr.dtype == np.dtype(spec["dtype"]), spec["name"]
        assert arr.shape == _resolve(spec["shape"], sym), spec["name"]
        assert list(meta["dimension_names"]) == spec["dimension_names"], spec["name"]
        assert arr.chunks == _resolve(spec["chunks"], sym), spec["name"]
        assert arr.shards == _resolve(spec["shards"], sym), spec["name"]
        assert _compressor(meta["codecs"]) == spec["compressor"], spec["name"]
        fill = meta["fill_value"]
        assert fill == spec["fill_value"] or (fill == "NaN" == spec["fill_value"]), spec["name"]

    manifest = store / schema["manifest"]["file"]
    assert manifest.is_file()
    assert pq.read_schema(manifest).metadata[b"drasclr.schema"] == schema["manifest"][
        "schema"].encode()
    ps = PatchStore(store)
    assert ps.num_subjects == B and ps.info.hu_window == tuple(schema["hu_window"])
