"""The SQL page: read-only queries over the lake's views, with row, size and time limits.

Four independent locks, so that one bug in any of them is not a hole:

1. **One SELECT.** ``duckdb.extract_statements`` must find exactly one statement, of type
   SELECT (DESCRIBE, SUMMARIZE and SHOW parse as SELECT too). COPY, ATTACH, INSTALL/LOAD,
   CREATE, INSERT, SET, PRAGMA, CALL, EXPORT … are refused before anything runs.
2. **No file access from the query text.** DuckDB's own parse tree
   (``json_serialize_sql``) is walked: a table function must be one of
   ``ALLOWED_TABLE_FUNCTIONS`` (``range``, ``generate_series``, ``unnest``) — so
   ``read_csv('/etc/passwd')``, ``read_text``, ``glob``, ``query('…')`` are refused — and a
   table name must be a plain identifier (``FROM '/etc/passwd'`` is a file read in DuckDB).
3. **A locked database.** The box's DuckDB has the lake views and nothing else, external
   access off except the lake's own folder (``allowed_directories``), extension
   auto-install/auto-load off, a memory limit, and ``lock_configuration`` on: no statement
   can turn any of it back (refused anyway by 1).
4. **Limits.** At most ``sql_rows`` rows (``LIMIT`` is applied around the query), at most
   ``sql_bytes`` of Arrow data, and the query is interrupted after ``sql_seconds``.

DuckDB's error messages — with their hints (``Did you mean "layers"?``, ``Candidate
bindings: …``, the ``LINE 1: …  ^`` marker) — are passed on whole.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from ..errors import QueryRefused
from .options import Limits

if TYPE_CHECKING:
    from ..lake import Lake

__all__ = ["SqlBox", "SqlResult", "check_sql", "ALLOWED_TABLE_FUNCTIONS"]

#: Table functions a query may call: they generate rows and touch no file.
ALLOWED_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
_MEMORY = re.compile(r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", re.IGNORECASE)


@dataclass(frozen=True)
class SqlResult:
    """A query's rows (at most the row limit), whether more existed, and how long it took."""

    sql: str
    table: pa.Table
    truncated: bool
    seconds: float


def check_sql(con: duckdb.DuckDBPyConnection, sql: str, *, max_chars: int) -> None:
    """Refuse anything but one file-free SELECT (see the module docstring, locks 1 and 2).

    Raises:
        QueryRefused: with DuckDB's own message for a syntax error, else one line saying
            what was refused and why.
    """
    if not sql or not sql.strip():
        raise QueryRefused("empty query: write a SELECT over the views (models, layers, …)")
    if len(sql) > max_chars:
        raise QueryRefused(f"query too long (over {max_chars} characters)")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryRefused(str(exc)) from None
    if len(statements) != 1:
        raise QueryRefused(f"one statement at a time (got {len(statements)})")
    if statements[0].type != duckdb.StatementType.SELECT:
        kind = statements[0].type.name
        word = "INSTALL/LOAD" if kind == "LOAD" else kind
        raise QueryRefused(f"only SELECT queries are allowed here ({word} refused: the "
                           "lake is read-only)")
    tree = json.loads(con.execute("SELECT json_serialize_sql($q)", {"q": sql}).fetchall()[0][0])
    if tree.get("error"):
        raise QueryRefused(tree.get("error_message") or "the query could not be parsed")
    for node in _nodes(tree):
        t = node.get("type")
        if t == "TABLE_FUNCTION":
            name = str((node.get("function") or {}).get("function_name", "")).lower()
            if name not in ALLOWED_TABLE_FUNCTIONS:
                raise QueryRefused(f"table function {name}() is not allowed here: query the views "
                                   f"(models, layers, …); allowed: {', '.join(sorted(ALLOWED_TABLE_FUNCTIONS))}")
        elif t == "BASE_TABLE":
            for part in ("catalog_name", "schema_name", "table_name"):
                value = node.get(part) or ""
                if value and not _NAME.match(value):
                    raise QueryRefused(f"{value!r} is not a view name (reading files by path is "
                                       "not allowed here)")


def _nodes(tree: Any):
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _locked_connection(lake: "Lake", limits: Limits) -> duckdb.DuckDBPyConnection:
    if not _MEMORY.match(limits.sql_memory):
        raise ValueError(f"sql_memory must look like '2GB', not {limits.sql_memory!r}")
    con = lake.connect()
    try:
        if lake.is_local:
            root = os.path.realpath(lake.storage.root).rstrip("/") + "/"
            con.execute("SET allowed_directories = [" + _quote(root) + "]")
        for stmt in ("SET GLOBAL TimeZone = 'UTC'",
                     "SET enable_external_access = false",
                     "SET autoinstall_known_extensions = false",
                     "SET autoload_known_extensions = false",
                     f"SET memory_limit = '{limits.sql_memory}'",
                     "SET lock_configuration = true"):
            con.execute(stmt)
    except BaseException:
        con.close()
        raise
    return con


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class SqlBox:
    """Read-only SQL over one lake's views (one locked DuckDB; a cursor per query)."""

    def __init__(self, lake: "Lake", limits: Limits) -> None:
        self.limits = limits
        self._con = _locked_connection(lake, limits)
        self._lock = threading.Lock()
        # Two queries at a time: a third waits (up to the time limit) instead of starving pages.
        self._slots = threading.BoundedSemaphore(2)

    def run(self, sql: str, *, max_rows: int | None = None) -> SqlResult:
        """Check and run ``sql``; at most ``max_rows`` (≤ the row limit) rows come back.

        Raises:
            QueryRefused: refused by a check, failed in DuckDB (its message), cut off at the
                time limit, or a result over the size limit.
        """
        limits = self.limits
        rows = min(max_rows or limits.sql_rows, limits.sql_rows)
        if not self._slots.acquire(timeout=limits.sql_seconds):
            raise QueryRefused("the SQL box is busy with other queries; try again")
        try:
            return self._run(sql, rows)
        finally:
            self._slots.release()

    def _run(self, sql: str, rows: int) -> SqlResult:
        limits = self.limits
        with self._lock:
            cur = self._con.cursor()
        t0 = time.perf_counter()
        timer = threading.Timer(limits.sql_seconds, cur.interrupt)
        try:
            check_sql(cur, sql, max_chars=limits.max_sql_chars)
            timer.start()
            rel = cur.sql(sql)
            if rel is None:  # pragma: no cover - check_sql lets only SELECTs through
                raise QueryRefused("the statement returned no rows")
            table = _arrow(rel.limit(rows + 1))
        except duckdb.InterruptException:
            raise QueryRefused(f"query cut off after {limits.sql_seconds:g} s (the time limit); "
                               "add a WHERE or LIMIT, or use `hubscan query` for long queries") from None
        except duckdb.Error as exc:
            if time.perf_counter() - t0 >= limits.sql_seconds:
                raise QueryRefused(f"query cut off after {limits.sql_seconds:g} s (the time limit)") from None
            raise QueryRefused(str(exc)) from None
        finally:
            timer.cancel()
            cur.close()
        if table.nbytes > limits.sql_bytes:
            raise QueryRefused(f"result too large ({table.nbytes / 2**20:.0f} MiB > "
                               f"{limits.sql_bytes / 2**20:.0f} MiB): select fewer columns or rows")
        truncated = table.num_rows > rows
        if truncated:
            table = table.slice(0, rows)
        return SqlResult(sql=sql, table=table, truncated=truncated,
                         seconds=time.perf_counter() - t0)

    def close(self) -> None:
        self._con.close()


def _arrow(rel: duckdb.DuckDBPyRelation) -> pa.Table:
    fetch = getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table
    return fetch()
