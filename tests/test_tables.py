"""Schema-validated Parquet tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from drasclr.tables import SchemaError, load_schema, read_frame, write_table


def _boxes(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "box_id": [f"b{i}" for i in range(n)],
            "subject_id": ["s0"] * n,
            "label": ["cle", "pse", "healthy"][:n],
            "centre_x": [0.0] * n, "centre_y": [1.0] * n, "centre_z": [2.0] * n,
            "size_mm": [32.0] * n, "lesion_fraction": [0.2, 0.1, 0.0][:n], "lung_fraction": [0.9] * n,
        }
    )


def test_schemas_load() -> None:
    for name in ("labels", "boxes", "synth_manifest"):
        sch = load_schema(name)
        assert sch.arrow.metadata[b"drasclr.schema"] == name.encode()


def test_round_trip(tmp_path: Path) -> None:
    write_table(_boxes(), tmp_path / "b.parquet", "boxes")
    df = read_frame(tmp_path / "b.parquet", "boxes")
    assert list(df["label"]) == ["cle", "pse", "healthy"]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.assign(label=["cle", "xx", "healthy"]), "must be one of"),
        (lambda d: d.assign(size_mm=[32.0, 0.0, 32.0]), "must be >"),
        (lambda d: d.assign(lung_fraction=[0.9, 1.5, 0.9]), "must be <= 1"),
        (lambda d: d.assign(box_id=["a", "a", "b"]), "must be unique"),
        (lambda d: d.drop(columns=["centre_z"]), "missing column"),
        (lambda d: d.assign(subject_id=[None, "s", "s"]), "not nullable"),
        (lambda d: d.assign(centre_x=["a", "b", "c"]), "cannot be read as float64"),
    ],
)
def test_write_rejects_bad_tables(tmp_path: Path, mutate, message: str) -> None:
    target = tmp_path / "b.parquet"
    with pytest.raises(SchemaError, match=message):
        write_table(mutate(_boxes()), target, "boxes")
    assert not target.exists(), "a rejected table must not be written"


def test_read_rejects_foreign_and_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pandas(_boxes().assign(size_mm=-1.0)), bad)
    with pytest.raises(SchemaError, match=str(bad)):
        read_frame(bad, "boxes")
    write_table(_boxes(), tmp_path / "b.parquet", "boxes")
    with pytest.raises(SchemaError, match="holds a 'boxes' table"):
        read_frame(tmp_path / "b.parquet", "labels")
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet")
    with pytest.raises(SchemaError, match="not a readable table"):
        read_frame(junk, "boxes")


def test_optional_column_reads_as_nulls_from_older_files(tmp_path: Path) -> None:
    """A manifest written before ``laa950`` existed still reads; the new column is all null."""
    schema = load_schema("manifest")
    col = next(c for c in schema.columns if c.name == "laa950")
    assert col.optional and col.nullable
    older = pa.schema([f for f in schema.arrow if f.name != "laa950"],
                      metadata=schema.arrow.metadata)
    path = tmp_path / "manifest.parquet"
    pq.write_table(pa.Table.from_pylist([], schema=older), path)
    frame = read_frame(path, "manifest")
    assert "laa950" in frame.columns and frame["laa950"].isna().all()
    # a column that is not optional is still required
    required = pa.schema([f for f in schema.arrow if f.name != "dice"],
                         metadata=schema.arrow.metadata)
    pq.write_table(pa.Table.from_pylist([], schema=required), path)
    with pytest.raises(SchemaError, match="dice"):
        read_frame(path, "manifest")
