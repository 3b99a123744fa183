"""Parquet tables with JSON-described schemas (``schemas/*.json``), validated on read and write.

A schema file lists the table's columns with an Arrow type, nullability and simple constraints
(``min``/``max`` inclusive, ``exclusive_min``, ``allowed`` values, ``unique``; ``optional`` for a
nullable column added later, which older files lack and read as nulls); a column with
``"required": false`` may be absent from a table (it is then simply not there), and
``reads_versions`` lists older table versions that the current schema still reads. Tables are written
atomically and checked against their schema both when written and when read, so a labels table
that breaks its contract is rejected with the file, column and first offending row named.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from drasclr.fsutil import atomic_path

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"

_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "bool": pa.bool_(),
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "list<float64>": pa.list_(pa.float64()),
    "list<int64>": pa.list_(pa.int64()),
    "list<string>": pa.list_(pa.string()),
}


class SchemaError(ValueError):
    """A table does not satisfy its schema."""


@dataclass(frozen=True)
class Column:
    """One column of a table schema."""

    name: str
    type: str
    nullable: bool = False
    description: str = ""
    min: float | None = None
    max: float | None = None
    exclusive_min: bool = False
    allowed: tuple[Any, ...] | None = None
    unique: bool = False
    optional: bool = False
    """Added after the schema version: files written before it lack the column and read it as
    all nulls (only for nullable columns)."""
    required: bool = True


@dataclass(frozen=True)
class TableSchema:
    """A named, versioned table schema."""

    name: str
    version: int
    columns: tuple[Column, ...]
    description: str = ""
    reads_versions: tuple[int, ...] = ()

    @property
    def arrow(self) -> pa.Schema:
        """The Arrow schema, with name and version in its metadata."""
        return self.arrow_of(self.columns)

    def arrow_of(self, columns: tuple[Column, ...]) -> pa.Schema:
        """The Arrow schema of some of the columns (a table without its absent optional ones)."""
        fields = [pa.field(c.name, _TYPES[c.type], nullable=c.nullable) for c in columns]
        meta = {b"drasclr.schema": self.name.encode(), b"drasclr.version": str(self.version).encode()}
        return pa.schema(fields, metadata=meta)

    @property
    def names(self) -> list[str]:
        """Column names in order."""
        return [c.name for c in self.columns]


def schema_from_dict(data: dict[str, Any]) -> TableSchema:
    """Build a TableSchema from its JSON form."""
    cols = []
    for c in data["columns"]:
        if c["type"] not in _TYPES:
            raise SchemaError(f"schema {data['name']}: column {c['name']} has unknown type {c['type']}")
        allowed = tuple(c["allowed"]) if c.get("allowed") is not None else None
        cols.append(Column(**{**c, "allowed": allowed}))
    return TableSchema(data["name"], int(data["version"]), tuple(cols), data.get("description", ""),
                       tuple(int(v) for v in data.get("reads_versions", ())))


@cache
def load_schema(name: str) -> TableSchema:
    """Load ``schemas/<name>.json``."""
    path = SCHEMA_DIR / f"{name}.json"
    if not path.exists():
        raise SchemaError(f"no schema named '{name}' (looked for {path})")
    return schema_from_dict(json.loads(path.read_text()))


def _as_table(data: pa.Table | pd.DataFrame) -> pa.Table:
    if isinstance(data, pd.DataFrame):
        return pa.Table.from_pandas(data, preserve_index=False)
    return data


def conform(data: pa.Table | pd.DataFrame, schema: TableSchema, source: str = "table") -> pa.Table:
    """Select/cast columns to the schema and validate; raise SchemaError naming ``source``."""
    table = _as_table(data)
    for col in schema.columns:
        if col.optional and col.nullable and col.name not in table.column_names:
            table = table.append_column(col.name, pa.nulls(len(table), _TYPES[col.type]))
    missing = [c.name for c in schema.columns if c.required and c.name not in table.column_names]
    if missing:
        raise SchemaError(f"{source}: missing column(s) {missing} required by schema '{schema.name}'")
    present = tuple(c for c in schema.columns if c.name in table.column_names)
    arrays = []
    for col in present:
        arr = table.column(col.name)
        target = _TYPES[col.type]
        if arr.type != target:
            try:
                arr = arr.cast(target, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
                raise SchemaError(
                    f"{source}: column '{col.name}' has type {arr.type}, cannot be read as {col.type}: {err}"
                ) from err
        arrays.append(arr)
    out = pa.Table.from_arrays(arrays, schema=schema.arrow_of(present))
    validate(out, schema, source)
    return out


def _first_bad(mask: pa.ChunkedArray | pa.Array) -> int:
    return int(np.flatnonzero(np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool))[0])


def validate(table: pa.Table, schema: TableSchema, source: str = "table") -> None:
    """Check nullability, ranges, allowed values and uniqueness; raise SchemaError on the first breach."""
    for col in schema.columns:
        if not col.required and col.name not in table.column_names:
            continue
        arr = table.column(col.name)
        where = f"{source}: column '{col.name}'"
        nulls = arr.null_count
        if nulls and not col.nullable:
            row = _first_bad(pc.is_null(arr))
            raise SchemaError(f"{where} has {nulls} missing value(s) (first at row {row}) but is not nullable")
        if col.type.startswith("list"):
            continue
        if pa.types.is_floating(arr.type):
            bad = pc.and_(pc.is_nan(arr), pc.invert(pc.is_null(arr)))
            if pc.any(bad).as_py():
                raise SchemaError(f"{where} holds NaN at row {_first_bad(pc.fill_null(bad, False))}")
        if col.min is not None:
            op = pc.less_equal if col.exclusive_min else pc.less
            bad = pc.fill_null(op(arr, col.min), False)
            if pc.any(bad).as_py():
                row = _first_bad(bad)
                rel = ">" if col.exclusive_min else ">="
                raise SchemaError(f"{where} must be {rel} {col.min}; row {row} has {arr[row].as_py()}")
        if col.max is not None:
            bad = pc.fill_null(pc.greater(arr, col.max), False)
            if pc.any(bad).as_py():
                row = _first_bad(bad)
                raise SchemaError(f"{where} must be <= {col.max}; row {row} has {arr[row].as_py()}")
        if col.allowed is not None:
            outside = pc.invert(pc.is_in(arr, value_set=pa.array(col.allowed, type=arr.type)))
            bad = pc.fill_null(pc.and_(outside, pc.is_valid(arr)), False)
            if pc.any(bad).as_py():
                row = _first_bad(bad)
                raise SchemaError(
                    f"{where} must be one of {list(col.allowed)}; row {row} has {arr[row].as_py()!r}"
                )
        if col.unique:
            values = arr.to_pandas()
            dup = values[values.duplicated()]
            if len(dup):
                raise SchemaError(f"{where} must be unique; duplicated value(s) {sorted(map(str, dup.unique()))[:5]}")


def write_table(data: pa.Table | pd.DataFrame, path: str | Path, schema: str | TableSchema) -> Path:
    """Validate against the schema and write Parquet atomically."""
    sch = load_schema(schema) if isinstance(schema, str) else schema
    path = Path(path)
    table = conform(data, sch, source=str(path))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return path


def read_table(path: str | Path, schema: str | TableSchema) -> pa.Table:
    """Read Parquet (or CSV) and validate against the schema."""
    sch = load_schema(schema) if isinstance(schema, str) else schema
    path = Path(path)
    if not path.exists():
        raise SchemaError(f"{path}: file not found")
    try:
        if path.suffix.lower() == ".csv":
            table = pa.Table.from_pandas(pd.read_csv(path), preserve_index=False)
        else:
            table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError, ValueError) as err:
        raise SchemaError(f"{path}: not a readable table: {err}") from err
    meta = table.schema.metadata or {}
    found = meta.get(b"drasclr.schema")
    if found is not None and found.decode() != sch.name:
        raise SchemaError(f"{path}: holds a '{found.decode()}' table, expected '{sch.name}'")
    version = meta.get(b"drasclr.version")
    if version is not None and int(version) not in (sch.version, *sch.reads_versions):
        raise SchemaError(
            f"{path}: schema '{sch.name}' version {int(version)}, this drasclr reads version {sch.version}"
        )
    return conform(table, sch, source=str(path))


def read_frame(path: str | Path, schema: str | TableSchema) -> pd.DataFrame:
    """:func:`read_table` as a pandas DataFrame."""
    return read_table(path, schema).to_pandas()
