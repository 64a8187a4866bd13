"""The Parquet lake: atomic writes, a versioned schema registry, DuckDB views, maintenance.

    >>> from hubscan.lake import Lake
    >>> lake = Lake("./lake")                     # or Lake("s3://bucket/lake")
    >>> lake.write(result)                        # a ModelResult: one file per table, models last
    >>> lake.query("SELECT arch, alpha_mean FROM arch_summary").to_pandas()
    >>> lake.compact(); lake.check().ok

Modules: ``schema`` (registry, rows → Arrow), ``fs`` (local vs object store, atomic files),
``writer`` (layout, commit order), ``views`` (+ ``schemas/views.sql``), ``compact``,
``check``, ``stats``. See docs/lake.md.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import duckdb
import pyarrow as pa

from ..errors import LakeError
from ..results import ModelResult
from . import views as _views
from .fs import Storage, open_storage
from .schema import SchemaRegistry, default_registry
from .writer import write_result, write_rows

if TYPE_CHECKING:
    from .check import CheckReport
    from .compact import CompactionReport
    from .stats import LakeStats

__all__ = ["Lake", "fetch_arrow"]

# DuckDB / pyarrow messages that mean "a file vanished between listing and reading it" —
# compaction removed it; the rows live on in the merged file, so the query is simply re-run.
_VANISHED = ("no such file", "not found", "no files found", "cannot open file", "does not exist",
             "nosuchkey", "failed to open", "could not open")


class Lake:
    """A hive-partitioned Parquet lake on a local folder or an object store.

    Args:
        uri: a folder (``./lake``, ``file:///data/lake``) or an object-store URI
            (``s3://bucket/prefix``; any ``pyarrow.fs`` / fsspec scheme).
        storage_options: filesystem options, e.g. ``{"endpoint_override": "http://127.0.0.1:9000",
            "access_key": …, "secret_key": …}`` for S3-compatible servers. For ``s3://`` the
            ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` and ``AWS_*`` credential variables are
            honoured too.
        registry: schema registry (default: the schemas shipped in ``hubscan.schemas``).
        fsync: flush each local file and its folder before the write returns (durability
            across power loss; off only for throwaway lakes and benchmarks of the rest).
    """

    def __init__(self, uri: str | os.PathLike[str], *,
                 storage_options: Mapping[str, Any] | None = None,
                 registry: SchemaRegistry | None = None, fsync: bool = True) -> None:
        self.storage: Storage = open_storage(uri, storage_options=storage_options, fsync=fsync)
        self.registry: SchemaRegistry = registry or default_registry()

    @property
    def uri(self) -> str:
        return self.storage.uri

    @property
    def is_local(self) -> bool:
        return self.storage.local

    def __repr__(self) -> str:
        return f"Lake({self.uri!r})"

    # ------------------------------------------------------------------ writing
    def write(self, result: ModelResult) -> tuple[str, ...]:
        """Write one model's rows (one file per non-empty table, the ``models`` row last).

        Idempotent: the file names depend only on the unit (model_key) and partition, so a
        retry overwrites its own files; a retry on another day adds newer rows that the views
        prefer. Returns the paths written.

        Raises:
            SchemaMismatch: a row has an unknown column, a NULL in a required column or a
                value of the wrong type (nothing of this unit is visible then).
            LakeError: bad partition values or storage errors.
        """
        return write_result(self.storage, self.registry, result)

    def write_table(self, table: str, rows: Sequence[Mapping[str, Any]], *,
                    partition: Mapping[str, Any] | None = None,
                    unit_key: str | None = None) -> str | None:
        """Write rows of any table as one file (e.g. a ``scans`` row, engine ``failures``).

        Partition values come from ``partition``, else from a column of the same name when
        every row agrees on it (``source``; ``scan_date`` from ``started_at`` for scans),
        else ``scan_date`` defaults to today (UTC). ``unit_key`` names the file; by default
        it is derived from the rows' keys, so writing the same keys again overwrites.
        """
        schema = self.registry[table]
        if not rows:
            return None
        values = dict(partition or {})
        for col in schema.partition:
            if col in values:
                continue
            seen = {r.get(col) for r in rows}
            if col == "scan_date" and None in seen and "started_at" in schema.column_names:
                seen = {_day(r.get("started_at")) for r in rows}
            if len(seen) == 1 and None not in seen:
                values[col] = seen.pop()
            elif col == "scan_date":
                values[col] = datetime.now(timezone.utc).date().isoformat()
            else:
                raise LakeError(f"{table}: give partition[{col!r}] (rows disagree or lack it)")
        if unit_key is None:
            keys = sorted(repr(tuple(r.get(k) for k in schema.key)) for r in rows)
            unit_key = f"{table}:" + "|".join(keys)
        return write_rows(self.storage, schema, rows, partition=values, unit_key=unit_key)

    # ------------------------------------------------------------------ reading
    def connect(self) -> duckdb.DuckDBPyConnection:
        """A fresh in-memory DuckDB connection with every view registered.

        On a local lake the views re-glob the files at each query, so the connection stays
        current (a table that had *no* file when connecting stays empty until reconnecting).
        On an object store the file list is taken now: reconnect to see newer files.
        """
        con = duckdb.connect()
        try:
            _views.register_views(con, self.storage, self.registry)
        except BaseException:
            con.close()
            raise
        return con

    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None, *,
              retries: int = 5) -> pa.Table:
        """Run SQL against the views; returns a ``pyarrow.Table``.

        A query that races a compaction (a listed file deleted before it was read) is re-run
        on a fresh listing, up to ``retries`` times — the merged file holds the same rows.
        """
        for attempt in range(retries + 1):
            con = None
            try:
                con = self.connect()  # binding the views opens files too
                return fetch_arrow(con, sql, params)
            except (duckdb.IOException, duckdb.InvalidInputException, OSError, pa.ArrowException) as exc:
                if attempt == retries or not _vanished(exc):
                    raise
                time.sleep(0.01 * (attempt + 1))
            finally:
                if con is not None:
                    con.close()
        raise AssertionError("unreachable")  # pragma: no cover

    def sql_script(self) -> str:
        """The view definitions as one SQL script for the ``duckdb`` CLI (see docs/lake.md)."""
        return _views.script(self.storage, self.registry)

    def done_model_keys(self, analysis_version: str | None = None) -> set[str]:
        """Committed model keys (a ``models`` row exists), optionally of one analysis version.

        This is what an incremental scan skips.
        """
        if analysis_version is None:
            t = self.query("SELECT DISTINCT model_key FROM raw_models")
        else:
            t = self.query("SELECT DISTINCT model_key FROM raw_models WHERE analysis_version = ?",
                           [analysis_version])
        return set(t.column("model_key").to_pylist())

    def known_file_hashes(self, analysis_version: str) -> set[str]:
        """Weight files (sha256) whose layers are in the lake for ``analysis_version``: a
        committed model lists the file and its layer rows exist. Content dedup skips them."""
        t = self.query(
            """SELECT DISTINCT f.file_sha256 FROM raw_model_files AS f
               WHERE f.analysis_version = $v
                 AND f.model_key IN (SELECT model_key FROM raw_models)
                 AND f.file_sha256 IN (SELECT file_sha256 FROM raw_layers
                                       WHERE analysis_version = $v)""",
            {"v": analysis_version})
        return set(t.column("file_sha256").to_pylist())

    def file_layers(self, file_hashes: Iterable[str], analysis_version: str) -> pa.Table:
        """The (deduplicated) layer rows of some weight files — for a model that reused them
        (``pipeline.with_reused_layers``)."""
        hashes = sorted(set(file_hashes))
        if not hashes:
            return self.query("SELECT * FROM file_layers WHERE false")
        return self.query(
            "SELECT * FROM file_layers WHERE analysis_version = $v AND file_sha256 IN "
            "(SELECT unnest($h)) ORDER BY file_sha256, layer_id, tensor",
            {"v": analysis_version, "h": hashes})

    # ------------------------------------------------------------------ maintenance
    def compact(self, **options: Any) -> "CompactionReport":
        """Merge small files per partition and drop superseded rows (see ``lake.compact``)."""
        from .compact import compact

        return compact(self, **options)

    def stats(self) -> "LakeStats":
        """Files, rows and bytes per table and partition (see ``lake.stats``)."""
        from .stats import stats

        return stats(self)

    def check(self, **options: Any) -> "CheckReport":
        """Verify files, schemas and keys (see ``lake.check``); ``.ok`` is False on problems."""
        from .check import check

        return check(self, **options)


def fetch_arrow(con: duckdb.DuckDBPyConnection, sql: str,
                params: Sequence[Any] | Mapping[str, Any] | None = None) -> pa.Table:
    """Run ``sql`` and return its result as one Arrow table, across DuckDB versions
    (``to_arrow_table`` in DuckDB ≥ 2, ``fetch_arrow_table`` before)."""
    rel = con.sql(sql, params=params)
    if rel is None:  # a statement without a result (DDL on older DuckDB)
        return pa.table({})
    fetch = getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table
    return fetch()


def _vanished(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, FileNotFoundError) or any(m in text for m in _VANISHED)


def _day(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).date().isoformat() if value.tzinfo else value.date().isoformat()
    return None
