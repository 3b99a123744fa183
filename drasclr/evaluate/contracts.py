"""Data contracts of the evaluation's result tables, checked before a table is written.

Every table :func:`save_table` writes has a JSON schema ``schemas/eval_<table>.json`` in the
format of the other ``schemas/*.json`` (:func:`drasclr.tables.load_schema`): its columns in order,
each with an Arrow type and nullability, ``"required": false`` for a column that only some runs
have (e.g. the voxel-truth columns of ``dense_overlap``). Tables whose columns are named after
the methods (``detected_fraction``: ``<method>: cle``...) list those in an extra top-level
``column_patterns`` entry: a regular expression for the column name with a type and nullability
(:func:`drasclr.tables.load_schema` ignores the entry).

:func:`check_table` validates column names, types and nullability of the frame as it will be
written (the Arrow table ``DataFrame.to_parquet`` writes), and never changes the data: unlike
:func:`drasclr.tables.conform` it neither casts nor drops nor adds columns. The rules:

* every required column is there, no column is unknown (neither a schema column nor a pattern),
  no name is repeated, and the required columns come in the schema's order (optional and pattern
  columns may sit anywhere: pandas places a column where it first appears);
* a column's Arrow type is the schema's; a column without any value (Arrow ``null``: all missing,
  or a table without rows) is accepted when it is nullable or the table has no rows; a nullable
  integer column may be a float column holding only whole numbers and nulls (pandas's form of an
  integer column with missing values);
* a column that is not nullable holds no null (pandas NaN counts as null, as in Parquet);
* a table with neither rows nor columns (an experiment that had nothing to score) passes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from drasclr.fsutil import atomic_path
from drasclr.tables import (
    SCHEMA_DIR,
    Column,
    SchemaError,
    TableSchema,
    _first_bad,
    load_schema,
    schema_from_dict,
)

PATTERNS_KEY = "column_patterns"
"""Top-level schema entry listing columns named by pattern (``pattern``, ``type``, ``nullable``)."""


def schema_name(table: str) -> str:
    """The schema of a result table: ``eval_<table>``."""
    return f"eval_{table}"


@dataclass(frozen=True)
class ResultContract:
    """A result table's schema and its pattern columns.

    Attributes:
        schema: the table schema (:func:`drasclr.tables.load_schema`).
        patterns: ``(compiled name pattern, column)`` of the pattern columns.
    """

    schema: TableSchema
    patterns: tuple[tuple[re.Pattern[str], Column], ...] = ()

    def column_for(self, name: str) -> Column | None:
        """The schema column or pattern column that ``name`` is, or None (unknown)."""
        for col in self.schema.columns:
            if col.name == name:
                return col
        for pattern, col in self.patterns:
            if pattern.fullmatch(name):
                return col
        return None

    def arrow_type(self, col: Column) -> pa.DataType:
        """The Arrow type of a column of this contract."""
        return self.schema.arrow_of((col,)).field(0).type


@cache
def load_contract(name: str) -> ResultContract:
    """Load ``schemas/<name>.json`` with its ``column_patterns``."""
    schema = load_schema(name)
    raw = json.loads((SCHEMA_DIR / f"{name}.json").read_text())
    entries = raw.get(PATTERNS_KEY, [])
    cols = schema_from_dict({"name": name, "version": schema.version, "columns": [
        {"name": e["pattern"], "type": e["type"], "nullable": bool(e.get("nullable", False)),
         "description": e.get("description", "")} for e in entries
    ]}).columns
    return ResultContract(schema, tuple((re.compile(c.name), c) for c in cols))


def _whole_numbers(arr: pa.ChunkedArray) -> bool:
    values = arr.to_numpy(zero_copy_only=False)
    values = values[~np.isnan(values)]
    return bool(np.all(np.isfinite(values) & (values == np.round(values))))


def check_table(frame: pd.DataFrame, table: str, schema: str | None = None) -> None:
    """Validate a result table against its contract (rules in the module docstring).

    Args:
        frame: the table as it will be written.
        table: the table's name (file stem), named in errors.
        schema: schema name (default ``eval_<table>``).

    Raises:
        SchemaError: the first breach, naming the table and the column.
    """
    name = schema or schema_name(table)
    where = f"evaluation table '{table}' (schema '{name}')"
    try:
        contract = load_contract(name)
    except SchemaError as err:
        raise SchemaError(f"{where}: {err}") from err
    if frame.shape == (0, 0):
        return
    columns = [str(c) for c in frame.columns]
    dup = sorted({c for c in columns if columns.count(c) > 1})
    if dup:
        raise SchemaError(f"{where}: repeated column(s) {dup}")
    unknown = [c for c in columns if contract.column_for(c) is None]
    if unknown:
        raise SchemaError(f"{where}: column(s) {unknown} not in the schema")
    required = [c.name for c in contract.schema.columns if c.required]
    missing = [c for c in required if c not in columns]
    if missing:
        raise SchemaError(f"{where}: missing column(s) {missing}")
    order = [c for c in columns if c in required]
    if order != required:
        raise SchemaError(f"{where}: columns {order} are not in the schema's order {required}")
    try:
        arrow = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as err:
        raise SchemaError(f"{where}: cannot be written as a table: {err}") from err
    for name_, arr in zip(arrow.column_names, arrow.columns):
        col = contract.column_for(name_)
        assert col is not None
        if arr.null_count and not col.nullable:
            row = _first_bad(pc.is_null(arr))
            raise SchemaError(f"{where}: column '{name_}' has {arr.null_count} missing value(s) "
                              f"(first at row {row}) but is not nullable")
        expected, actual = contract.arrow_type(col), arr.type
        if actual == expected or pa.types.is_null(actual):
            continue  # a null column holds no value (nullable, or a table without rows)
        if (col.nullable and pa.types.is_integer(expected) and pa.types.is_floating(actual)
                and _whole_numbers(arr)):
            continue  # pandas's integer column with missing values
        raise SchemaError(
            f"{where}: column '{name_}' has type {actual}, the schema says {col.type}"
        )


def save_table(
    frame: pd.DataFrame, out_dir: Path, name: str, schema: str | None = None
) -> dict[str, str]:
    """Check ``frame`` against its contract, then write ``name.parquet`` and ``name.csv``
    atomically; return their paths.

    Args:
        frame: the table; written as it is (the check never changes it).
        out_dir: output folder.
        name: file stem (the table's name).
        schema: schema name (default ``eval_<name>``).

    Raises:
        SchemaError: the frame breaks its contract (nothing is written).
    """
    check_table(frame, name, schema)
    paths = {}
    for ext in ("parquet", "csv"):
        path = out_dir / f"{name}.{ext}"
        with atomic_path(path) as tmp:
            if ext == "parquet":
                frame.to_parquet(tmp, index=False)
            else:
                frame.to_csv(tmp, index=False)
        paths[ext] = str(path)
    return paths
