"""DuckDB views over the lake: ``raw_<table>`` readers, then ``schemas/views.sql``.

Two layers:

1. ``raw_<table>`` — every row of every file of a table, hive partition columns included,
   *not* deduplicated. Each is ``<typed empty relation> UNION ALL BY NAME <files>``: the
   empty relation carries the registry's current columns and types, so a table with no
   files yet is an empty view with the right columns, and old files written before a
   column was added show NULL there (schema evolution).

   - local lakes read files with DuckDB's own ``read_parquet('<root>/<t>/**/*.parquet',
     hive_partitioning = true, union_by_name = true)``; the glob is re-evaluated on every
     query, so a long-lived connection sees new files.
   - object-store lakes register a ``pyarrow.dataset`` (listing done once, when the views
     are registered) — DuckDB scans it with projection and filter pushdown and needs no
     extension (``httpfs`` would have to be downloaded).

2. ``schemas/views.sql`` — the user-facing views (``models``, ``layers``, ``arch_summary``,
   …), written only against ``raw_*`` so the same SQL serves both storages.
"""

from __future__ import annotations

import os
import re
from importlib import resources

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from .fs import Storage
from .schema import PARTITION_TYPES, SchemaRegistry, TableSchema, duckdb_type

__all__ = ["register_views", "views_sql", "raw_view_sql", "script", "table_glob", "VIEW_NAMES"]

#: The user-facing views defined in ``schemas/views.sql``, in definition order.
VIEW_NAMES = (
    "models", "model_files", "file_layers", "layers", "spectra", "failures", "scans",
    "repo_events", "models_latest", "layers_latest", "model_summary", "arch_summary", "history",
    "lineage", "lineage_links", "model_bases", "deltas", "finetune_deltas", "evals", "model_evals",
    "model_metrics", "model_groups", "quality_points", "quality_correlations",
)


def views_sql() -> str:
    """The text of ``schemas/views.sql`` (packaged as ``hubscan.schemas``)."""
    return resources.files("hubscan.schemas").joinpath("views.sql").read_text(encoding="utf-8")


def table_glob(storage: Storage, table: str, version: int | None = None, *,
               as_uri: bool = False) -> str:
    """The glob DuckDB reads a table (of one schema version) from; ``as_uri`` gives
    ``s3://bucket/prefix/…`` (for DuckDB's own httpfs) instead of the pyarrow path."""
    suffix = f"*.v{version}.parquet" if version is not None else "*.parquet"
    if as_uri and not storage.local:
        scheme = storage.uri.split("://", 1)[0]
        return f"{scheme}://{storage.root}/{table}/**/{suffix}"
    return storage.path(table) + "/**/" + suffix


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _empty_relation(schema: TableSchema) -> str:
    cols = [f"CAST(NULL AS {duckdb_type(f.type)}) AS {_ident(f.name)}" for f in schema.arrow]
    cols += [f"CAST(NULL AS {duckdb_type(PARTITION_TYPES[p])}) AS {_ident(p)}"
             for p in schema.partition_only]
    return "SELECT " + ", ".join(cols) + " WHERE false"


def _hive_types(schema: TableSchema) -> str:
    items = ", ".join(f"{_quote(p)}: {duckdb_type(PARTITION_TYPES[p])}" for p in schema.partition)
    return "{" + items + "}"


_VERSION_SUFFIX = re.compile(r"\.v(\d+)\.parquet$")


def _versions_present(storage: Storage, table: str) -> list[int]:
    """Schema versions of the table's files, from their names — including versions newer
    than this registry knows (a lake written by a newer hubscan stays readable: its extra
    columns simply appear)."""
    if storage.local:
        names = (n for _, _, files in os.walk(storage.path(table)) for n in files)
    else:
        names = (e.name for e in storage.list_files(table))
    found = {int(m.group(1)) for n in names if (m := _VERSION_SUFFIX.search(n))}
    return sorted(found, reverse=True)


def raw_view_sql(storage: Storage, registry: SchemaRegistry, table: str, *,
                 as_uri: bool = False) -> str:
    """``CREATE OR REPLACE VIEW raw_<t>`` reading the files with DuckDB's ``read_parquet``
    (local lakes; object stores too when DuckDB has httpfs and ``as_uri`` is set).

    One ``read_parquet`` per schema version present (files carry it in their name), each
    with ``union_by_name = false``: all files of a version share one schema, so DuckDB binds
    it from a single footer instead of opening every file, which keeps ``connect()`` cheap
    on an uncompacted lake of thousands of files. The versions are then united *by name*
    with the typed empty relation, so old files show NULL in columns added later.
    """
    schema = registry[table]
    body = _empty_relation(schema)
    for version in _versions_present(storage, table):
        body += (
            "\nUNION ALL BY NAME\nSELECT * FROM read_parquet("
            f"{_quote(table_glob(storage, table, version, as_uri=as_uri))}, "
            f"hive_partitioning = true, union_by_name = false, "
            f"hive_types = {_hive_types(schema)}, hive_types_autocast = false)"
        )
    return f"CREATE OR REPLACE VIEW raw_{table} AS\n{body};\n"


def _dataset(storage: Storage, schema: TableSchema) -> ds.Dataset | None:
    files = [e.path for e in storage.list_files(schema.name) if e.path.endswith(".parquet")]
    if not files:
        return None
    part_schema = pa.schema([pa.field(p, PARTITION_TYPES[p]) for p in schema.partition])
    partitioning = ds.partitioning(part_schema, flavor="hive")
    return ds.dataset(files, schema=schema.with_partitions(), format="parquet",
                      filesystem=storage.fs, partitioning=partitioning,
                      partition_base_dir=storage.path(schema.name))


def register_views(con: duckdb.DuckDBPyConnection, storage: Storage,
                   registry: SchemaRegistry) -> None:
    """Create ``raw_<table>`` for every registered table, then the views of views.sql."""
    con.execute("SET TimeZone = 'UTC'")
    for name in registry.tables:
        schema = registry[name]
        if storage.local:
            con.execute(raw_view_sql(storage, registry, name))
            continue
        dataset = _dataset(storage, schema)
        body = _empty_relation(schema)
        if dataset is not None:
            con.register(f"_arrow_{name}", dataset)
            body += f"\nUNION ALL BY NAME\nSELECT * FROM _arrow_{name}"
        con.execute(f"CREATE OR REPLACE VIEW raw_{name} AS\n{body}")
    con.execute(views_sql())


def script(storage: Storage, registry: SchemaRegistry) -> str:
    """The views as one SQL script for the ``duckdb`` CLI (or any DuckDB client), no Python.

    For an object-store lake the raw views read ``s3://…`` globs, which needs DuckDB's
    ``httpfs`` extension and an S3 secret (see docs/lake.md); the script says so on top.
    """
    parts = ["SET TimeZone = 'UTC';\n"]
    if not storage.local:
        parts.insert(0, "-- needs: INSTALL httpfs; LOAD httpfs; CREATE SECRET (TYPE s3, KEY_ID '…',\n"
                        "--        SECRET '…', ENDPOINT 'host:port', URL_STYLE 'path', USE_SSL false);\n")
    parts += [raw_view_sql(storage, registry, n, as_uri=True) for n in registry.tables]
    parts.append(views_sql())
    return "\n".join(parts)
