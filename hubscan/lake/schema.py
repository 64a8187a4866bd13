"""The schema registry: ``schemas/<table>.v<N>.json`` → Arrow schemas, and rows → Arrow tables.

The JSON field lists in ``schemas/`` are the contract between the analysis, the writer,
the views and every user query, so they are plain files a reader can open without Python.
This module turns them into ``pyarrow`` schemas once, with every field's ``doc`` kept in
the Arrow field metadata and the table name and schema version in the schema metadata —
both travel inside each Parquet file, so ``hubscan lake check`` can tell, years later,
which version a file was written with.

Evolution: a table's *current* version is its highest ``vN``. A new version may only add
nullable columns; old files stay readable because every reader unions by column name and
fills the missing columns with NULL.

Writing goes through :func:`rows_to_table`, which is strict on purpose: an unknown column,
a missing non-nullable value or a value of the wrong type raises :class:`SchemaMismatch`
naming the column, instead of Arrow silently dropping the column or truncating ``3.5`` to
``3``.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa

from ..errors import LakeError, SchemaMismatch

__all__ = [
    "TableSchema",
    "SchemaRegistry",
    "default_registry",
    "load_registry",
    "arrow_type",
    "duckdb_type",
    "rows_to_table",
    "conform_table",
    "PARTITION_TYPES",
    "META_TABLE",
    "META_VERSION",
]

#: Schema-metadata keys stored in every file the lake writes.
META_TABLE = "hubscan.table"
META_VERSION = "hubscan.schema_version"

#: Arrow types of the hive partition columns (``source=hf/scan_date=2026-11-23``).
PARTITION_TYPES: dict[str, pa.DataType] = {"source": pa.string(), "scan_date": pa.date32()}

_SCALARS: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int64": pa.int64(),
    "int32": pa.int32(),
    "float64": pa.float64(),
    "float32": pa.float32(),
    "bool": pa.bool_(),
    "date32": pa.date32(),
}
_TIMESTAMP = re.compile(r"^timestamp\[(s|ms|us|ns)(?:,\s*tz=([^\]]+))?\]$")
_LIST = re.compile(r"^list<(.+)>$")
_FILE_NAME = re.compile(r"^(?P<table>[a-z_]+)\.v(?P<version>\d+)\.json$")


def arrow_type(spec: str) -> pa.DataType:
    """Parse a registry type string (``int64``, ``list<float32>``, ``timestamp[us, tz=UTC]``)."""
    spec = spec.strip()
    if spec in _SCALARS:
        return _SCALARS[spec]
    if m := _LIST.match(spec):
        # "element" is the child name Parquet's LIST convention uses, so the schema read back
        # from a file equals the registry's exactly.
        return pa.list_(pa.field("element", arrow_type(m.group(1))))
    if m := _TIMESTAMP.match(spec):
        return pa.timestamp(m.group(1), tz=m.group(2))
    raise LakeError(f"unknown schema type {spec!r}")


def duckdb_type(t: pa.DataType) -> str:
    """The DuckDB SQL spelling of an Arrow type (used to build typed empty relations)."""
    if pa.types.is_list(t):
        return f"{duckdb_type(t.value_type)}[]"
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ" if t.tz else "TIMESTAMP"
    names = {
        pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.int32(): "INTEGER",
        pa.float64(): "DOUBLE", pa.float32(): "FLOAT", pa.bool_(): "BOOLEAN",
        pa.date32(): "DATE",
    }
    try:
        return names[t]
    except KeyError:
        raise LakeError(f"no DuckDB type for Arrow type {t}") from None


@dataclass(frozen=True)
class TableSchema:
    """One version of one table: its Arrow schema plus the lake's layout rules for it.

    Attributes:
        name: table name (``layers``), also the top folder in the lake.
        version: schema version (the ``vN`` of the file name).
        doc: what one row is.
        partition: hive partition columns, in path order (``source``, ``scan_date``).
        sort: columns rows are sorted by inside a file (row-group statistics prune on them).
        key: the idempotency key; views keep one row per key (newest ``written_at``).
        arrow: the Arrow schema, with field docs and table/version in the metadata.
    """

    name: str
    version: int
    doc: str
    partition: tuple[str, ...]
    sort: tuple[str, ...]
    key: tuple[str, ...]
    arrow: pa.Schema = field(repr=False)

    @property
    def column_names(self) -> list[str]:
        return self.arrow.names

    @property
    def partition_only(self) -> tuple[str, ...]:
        """Partition columns that live only in the path (not inside the file)."""
        return tuple(p for p in self.partition if p not in self.arrow.names)

    def with_partitions(self) -> pa.Schema:
        """The schema a reader sees: file columns plus path-only partition columns."""
        extra = [pa.field(p, PARTITION_TYPES[p]) for p in self.partition_only]
        return pa.schema(list(self.arrow) + extra, metadata=self.arrow.metadata)

    @classmethod
    def from_json(cls, spec: Mapping[str, Any]) -> "TableSchema":
        try:
            name, version = spec["table"], int(spec["version"])
            fields = []
            for f in spec["fields"]:
                meta = {"doc": f["doc"]} if f.get("doc") else None
                fields.append(pa.field(f["name"], arrow_type(f["type"]),
                                       nullable=bool(f.get("nullable", True)), metadata=meta))
        except (KeyError, TypeError, ValueError) as exc:
            raise LakeError(f"invalid schema spec: {exc!r}") from exc
        metadata = {META_TABLE: name, META_VERSION: str(version)}
        arrow = pa.schema(fields, metadata=metadata)
        ts = cls(name=name, version=version, doc=spec.get("doc", ""),
                 partition=tuple(spec.get("partition", ())), sort=tuple(spec.get("sort", ())),
                 key=tuple(spec.get("key", ())), arrow=arrow)
        ts._validate()
        return ts

    def _validate(self) -> None:
        names = self.arrow.names
        if len(set(names)) != len(names):
            raise LakeError(f"{self.name} v{self.version}: duplicate column names")
        for col in (*self.sort, *self.key, "written_at"):
            if col not in names:
                raise LakeError(f"{self.name} v{self.version}: column {col!r} is not a field")
        for p in self.partition:
            if p not in PARTITION_TYPES:
                raise LakeError(f"{self.name}: unsupported partition column {p!r}")


class SchemaRegistry:
    """Every version of every table; ``registry["layers"]`` is the current (highest) one."""

    def __init__(self, schemas: Iterable[TableSchema]) -> None:
        self._by_name: dict[str, dict[int, TableSchema]] = {}
        for s in schemas:
            self._by_name.setdefault(s.name, {})[s.version] = s
        for name, versions in self._by_name.items():
            self._check_evolution(name, versions)

    @staticmethod
    def _check_evolution(name: str, versions: Mapping[int, TableSchema]) -> None:
        """A newer version may only add nullable columns; everything old stays as it was."""
        ordered = [versions[v] for v in sorted(versions)]
        for old, new in zip(ordered, ordered[1:]):
            for f in old.arrow:
                if f.name not in new.arrow.names:
                    raise LakeError(f"{name} v{new.version} drops column {f.name!r}")
                nf = new.arrow.field(f.name)
                if nf.type != f.type or nf.nullable != f.nullable:
                    raise LakeError(f"{name} v{new.version} changes column {f.name!r}")
            for f in new.arrow:
                if f.name not in old.arrow.names and not f.nullable:
                    raise LakeError(f"{name} v{new.version}: added column {f.name!r} "
                                    "must be nullable (old files have no value)")

    @property
    def tables(self) -> list[str]:
        return sorted(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> TableSchema:
        return self.get(name)

    def get(self, name: str, version: int | None = None) -> TableSchema:
        try:
            versions = self._by_name[name]
        except KeyError:
            raise LakeError(f"unknown lake table {name!r} (known: {', '.join(self.tables)})") from None
        if version is None:
            return versions[max(versions)]
        try:
            return versions[version]
        except KeyError:
            raise SchemaMismatch(f"{name}: no schema version {version} in the registry") from None

    def versions(self, name: str) -> list[int]:
        return sorted(self._by_name.get(name, {}))


def load_registry(directory: str | Path | None = None) -> SchemaRegistry:
    """Load ``<table>.v<N>.json`` files from ``directory`` (default: the packaged schemas)."""
    root = resources.files("hubscan.schemas") if directory is None else Path(directory)
    schemas = []
    for entry in root.iterdir():
        m = _FILE_NAME.match(entry.name)
        if not m:
            continue
        spec = json.loads(entry.read_text(encoding="utf-8"))
        ts = TableSchema.from_json(spec)
        if ts.name != m["table"] or ts.version != int(m["version"]):
            raise LakeError(f"{entry.name}: file name does not match table/version inside")
        schemas.append(ts)
    if not schemas:
        raise LakeError(f"no schemas found in {root}")
    return SchemaRegistry(schemas)


@functools.cache
def default_registry() -> SchemaRegistry:
    """The registry shipped with hubscan (``hubscan.schemas``), loaded once."""
    return load_registry()


# --------------------------------------------------------------------------------------------
# Rows → Arrow
# --------------------------------------------------------------------------------------------


def rows_to_table(schema: TableSchema, rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Build a table of ``schema``'s exact Arrow schema from row dicts, or say what is wrong.

    Missing nullable columns become NULL; unknown columns, NULL in a non-nullable column and
    values that do not convert losslessly raise :class:`SchemaMismatch`.
    """
    names = set(schema.arrow.names)
    for i, row in enumerate(rows):
        unknown = set(row) - names
        if unknown:
            raise SchemaMismatch(f"{schema.name}: row {i} has unknown column(s) "
                                 f"{sorted(unknown)} (schema v{schema.version})")
    arrays = []
    for f in schema.arrow:
        values = [row.get(f.name) for row in rows]
        arrays.append(_column(schema, f, values))
    return pa.Table.from_arrays(arrays, schema=schema.arrow)


def _column(schema: TableSchema, f: pa.Field, values: list[Any]) -> pa.Array:
    where = f"{schema.name}.{f.name} ({f.type})"
    if pa.types.is_integer(f.type):
        for v in values:
            if isinstance(v, (float, np.floating)) and not float(v).is_integer():
                raise SchemaMismatch(f"{where}: {v!r} is not an integer")
            if isinstance(v, (str, bytes)):
                raise SchemaMismatch(f"{where}: got a string {v!r}")
    if pa.types.is_floating(f.type) or pa.types.is_boolean(f.type):
        for v in values:
            if isinstance(v, (str, bytes)):
                raise SchemaMismatch(f"{where}: got a string {v!r}")
    if pa.types.is_list(f.type) and pa.types.is_floating(f.type.value_type):
        # float64 ESDs are stored as float32 on purpose (DESIGN.md); numpy casts them.
        np_type = np.float32 if f.type.value_type == pa.float32() else np.float64
        values = [None if v is None else np.asarray(v, dtype=np_type) for v in values]
    try:
        arr = pa.array(values, type=f.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
        raise SchemaMismatch(f"{where}: {exc}") from exc
    if not f.nullable and arr.null_count:
        raise SchemaMismatch(f"{where}: {arr.null_count} NULL value(s) in a non-nullable column")
    return arr


def conform_table(schema: TableSchema, table: pa.Table) -> pa.Table:
    """Cast a table read from older files to ``schema``: add missing columns as NULL, drop
    path-only partition columns, keep the registry's column order and metadata."""
    if table.schema.equals(schema.arrow, check_metadata=True):
        return table  # the common case: a file of the current version
    arrays = []
    for f in schema.arrow:
        if f.name in table.column_names:
            col = table.column(f.name)
            try:
                arrays.append(col.cast(f.type) if col.type != f.type else col)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SchemaMismatch(f"{schema.name}.{f.name}: cannot cast {col.type} "
                                     f"to {f.type}: {exc}") from exc
        else:
            if not f.nullable:
                raise SchemaMismatch(f"{schema.name}: non-nullable column {f.name!r} missing")
            arrays.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(arrays, schema=schema.arrow)
