"""Rows → one Parquet file per table per unit of work, under a deterministic name.

The layout (DESIGN.md "The lake")::

    <root>/<table>/source=<source>/scan_date=<YYYY-MM-DD>/part-<hash(unit key)>.v<N>.parquet

- One unit (one model) writes one file per table, so a retried unit overwrites exactly its
  own files and a crash can leave at most whole files behind.
- The ``models`` row is written **last**: it is the commit marker. Views only show a
  model, its ``model_files`` and its layers once its ``models`` row exists, so a unit that
  died half-way is invisible, and re-running it makes it appear whole.
- Rows are sorted by the table's ``sort`` columns (``arch, repo_id`` for models,
  ``file_sha256, tensor`` for layers) so row-group statistics prune point queries.
- ``written_at`` is filled with the unit's commit time where a row has none; views keep the
  newest row per key, which is what makes at-least-once writes idempotent.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from typing import Any, Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import LakeError, SchemaMismatch
from ..refs import short_hash
from ..results import ModelResult
from .fs import Storage
from .schema import SchemaRegistry, TableSchema, rows_to_table

__all__ = [
    "write_result",
    "write_rows",
    "encode_parquet",
    "sort_table",
    "partition_dir",
    "unit_file_name",
    "COMMIT_ORDER",
]

#: Order in which a unit's tables are written: ``models`` (the commit marker) comes last.
COMMIT_ORDER = ("spectra", "layers", "deltas", "model_files", "lineage", "evals", "failures", "models")

_VALUE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def unit_file_name(unit_key: str, version: int = 1) -> str:
    """``part-<16 hex>.v<schema version>.parquet`` — the same unit always maps to the same name.

    The schema version in the name lets readers bind each version's files without opening
    every footer (see ``views.py``); ``lake check`` verifies it against the file's metadata.
    """
    return f"part-{short_hash(unit_key, 16)}.v{version}.parquet"


def partition_dir(schema: TableSchema, values: Mapping[str, Any]) -> str:
    """``source=hf/scan_date=2026-11-23`` for ``schema.partition``; values are validated so a
    path can never escape its table folder or break hive parsing."""
    parts = []
    for col in schema.partition:
        v = values.get(col)
        if isinstance(v, (date, datetime)):
            v = v.date().isoformat() if isinstance(v, datetime) else v.isoformat()
        if v is None or v == "":
            raise LakeError(f"{schema.name}: partition value {col!r} is missing")
        v = str(v)
        if col == "scan_date" and not _DATE.match(v):
            raise LakeError(f"{schema.name}: scan_date must be YYYY-MM-DD, not {v!r}")
        if not _VALUE.match(v):
            raise LakeError(f"{schema.name}: partition value {col}={v!r} has characters "
                            "outside [A-Za-z0-9_.-]")
        parts.append(f"{col}={v}")
    return "/".join(parts)


def sort_table(schema: TableSchema, table: pa.Table) -> pa.Table:
    if not schema.sort or table.num_rows < 2:
        return table
    return table.sort_by([(c, "ascending", "at_end") for c in schema.sort])


def encode_parquet(schema: TableSchema, table: pa.Table) -> pa.Buffer:
    """Serialise a table (already of ``schema.arrow``) to Parquet bytes: zstd, statistics on,
    sorting columns declared, the registry schema (docs, version) in the file."""
    if not table.schema.equals(schema.arrow, check_metadata=True):
        raise SchemaMismatch(f"{schema.name}: table schema differs from registry v{schema.version}")
    sink = pa.BufferOutputStream()
    sorting = [pq.SortingColumn(schema.arrow.get_field_index(c)) for c in schema.sort]
    pq.write_table(table, sink, compression="zstd", write_statistics=True,
                   sorting_columns=sorting or None, row_group_size=256 * 1024)
    return sink.getvalue()


def write_rows(storage: Storage, schema: TableSchema, rows: Sequence[Mapping[str, Any]], *,
               partition: Mapping[str, Any], unit_key: str,
               now: datetime | None = None) -> str | None:
    """Validate, sort and atomically write ``rows`` as one file; returns its path (None if
    there were no rows: an empty file would only cost a listing and a footer read)."""
    if not rows:
        return None
    now = now or datetime.now(timezone.utc)
    folder = partition_dir(schema, partition)
    for col in set(schema.partition) & set(schema.column_names):
        bad = {r.get(col) for r in rows} - {str(partition[col])}
        if bad:
            raise LakeError(f"{schema.name}: rows have {col} = {sorted(map(str, bad))} but are "
                            f"written to partition {col}={partition[col]}")
    filled = [r if r.get("written_at") is not None else {**r, "written_at": now} for r in rows]
    table = sort_table(schema, rows_to_table(schema, filled))
    path = storage.path(schema.name, folder, unit_file_name(unit_key, schema.version))
    storage.write_atomic(path, encode_parquet(schema, table))
    return path


def write_result(storage: Storage, registry: SchemaRegistry, result: ModelResult) -> tuple[str, ...]:
    """Write one model's rows; the ``models`` file last (the commit marker)."""
    model = result.model
    if not model or not model.get("model_key"):
        raise LakeError("ModelResult.model needs a model_key")
    if model.get("source") not in (None, result.source):
        raise LakeError(f"{result.model_key}: models.source {model.get('source')!r} differs from "
                        f"ModelResult.source {result.source!r}")
    now = datetime.now(timezone.utc)
    values = {"source": result.source, "scan_date": result.scan_date or now.date().isoformat()}
    written = []
    for table in COMMIT_ORDER:
        rows = [model] if table == "models" else getattr(result, table)
        path = write_rows(storage, registry[table], rows, partition=values,
                          unit_key=result.model_key, now=now)
        if path:
            written.append(path)
    return tuple(written)
