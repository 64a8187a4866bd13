"""``hubscan lake compact``: merge small files per partition and drop superseded rows.

Every unit of work writes one small file per table, so after a month of nightly scans a
partition holds thousands of them, and every query pays a footer read per file. Compaction
rewrites them into few large files, without a moment where a reader or a writer can be hurt:

1. List the table's files and read their key columns. Per key, the survivor is the row with
   the greatest ``(written_at, partition)`` lake-wide; files holding any other row are
   "dirty".
2. Per partition, group the *small* files (< ``target_bytes``) and the dirty ones, in
   groups of about ``target_bytes``.
3. For each group: read each file together with the identity of the bytes read; keep the
   survivors (one copy); write the merged file under a new name (atomic, like every write).
4. Only then remove *exactly the files read* — a file rewritten under the same name since
   (a retried unit) has another identity and is left alone. With ``grace_s > 0`` the inputs
   are only recorded in ``_maintenance/pending/`` and removed by a later run, for readers
   that hold file lists longer than a query (DuckDB sessions of their own).

Why this is safe:

- Readers: the merged file appears before its inputs go, and views keep one row per key,
  so the overlap shows no duplicates; a query that listed a file just before it went is
  re-run by :meth:`Lake.query` (the rows are in the merged file).
- Writers: a file written after step 1 is not in any group; a rewritten file is kept by
  the identity check. So no row written concurrently is lost.
- Superseded rows: a row is dropped only if its key has a row with a greater
  ``(written_at, partition)`` or an identical copy in the same group; the survivor is
  never dropped, and since compaction never moves rows between partitions every run
  (even concurrent ones) agrees on it. After a compaction each key is stored once.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Iterable

from concurrent.futures import ThreadPoolExecutor

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..refs import short_hash
from .fs import TEMP_MARK, TRASH_MARK, FileEntry, Storage
from .schema import TableSchema, conform_table
from .writer import encode_parquet, sort_table

if TYPE_CHECKING:
    from . import Lake

__all__ = ["compact", "CompactionReport", "MergedGroup", "pending_deletes", "PENDING_DIR"]

#: Where compactions with a grace period record the files they will delete later.
PENDING_DIR = "_maintenance/pending"


@dataclass(frozen=True)
class MergedGroup:
    """One merge: which files of one partition became which file."""

    table: str
    partition: str
    inputs: tuple[str, ...]
    output: str | None  # None when every row was superseded elsewhere
    rows_in: int
    rows_out: int
    bytes_in: int
    bytes_out: int
    deleted: int  # inputs removed now (0 with a grace period)
    kept_changed: int  # inputs not removed because they were rewritten since read


@dataclass
class CompactionReport:
    """What a compaction did; ``files_*``/``bytes_*`` count live ``.parquet`` files."""

    files_before: int = 0
    files_after: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    groups: list[MergedGroup] = field(default_factory=list)
    pending_recorded: int = 0
    pending_deleted: int = 0
    temp_removed: int = 0
    skipped_groups: int = 0  # inputs vanished under us (another compaction took them)
    seconds: float = 0.0
    dry_run: bool = False

    @property
    def rows_in(self) -> int:
        return sum(g.rows_in for g in self.groups)

    @property
    def rows_out(self) -> int:
        return sum(g.rows_out for g in self.groups)

    def as_dict(self) -> dict[str, Any]:
        return {
            "files_before": self.files_before, "files_after": self.files_after,
            "bytes_before": self.bytes_before, "bytes_after": self.bytes_after,
            "groups": len(self.groups), "rows_in": self.rows_in, "rows_out": self.rows_out,
            "rows_dropped": self.rows_in - self.rows_out,
            "pending_recorded": self.pending_recorded, "pending_deleted": self.pending_deleted,
            "temp_removed": self.temp_removed, "skipped_groups": self.skipped_groups,
            "seconds": round(self.seconds, 3), "dry_run": self.dry_run,
        }


def compact(lake: "Lake", *, tables: Iterable[str] | None = None,
            target_bytes: int = 128 * 2**20, min_files: int = 2, grace_s: float = 0.0,
            temp_max_age_s: float = 3600.0, settle_s: float = 0.25,
            dry_run: bool = False) -> CompactionReport:
    """Compact the lake (see the module docstring for the guarantees).

    Args:
        tables: which tables (default: all registered).
        target_bytes: files below this size are merged, into files of at most about this
            size (Parquet bytes; DuckDB advises ≥ 100 MB per file for large lakes).
        min_files: merge a partition only when it has at least this many small files.
        grace_s: 0 deletes merged inputs at once; > 0 records them and deletes them in a
            compaction that runs at least ``grace_s`` seconds later.
        temp_max_age_s: remove temp files of crashed writers older than this (local lakes).
        settle_s: minimum time between the last merged file of a table appearing and its
            inputs being deleted (a directory listing of a big partition takes several
            system calls; this makes one that overlaps both see the inputs or the output).
        dry_run: plan and report the groups, change nothing.
    """
    t0 = time.perf_counter()
    storage = lake.storage
    report = CompactionReport(dry_run=dry_run)
    names = list(tables) if tables is not None else lake.registry.tables
    for name in names:
        lake.registry.get(name)  # unknown table → LakeError before anything changes
    if not dry_run:
        report.pending_deleted = _process_pending(storage)
        report.temp_removed = _remove_stale_temp(storage, temp_max_age_s)
    pending = pending_deletes(storage)
    before = _live(storage, names, pending)
    report.files_before = len(before)
    report.bytes_before = sum(e.size for e in before)
    tombstone: list[FileEntry] = []
    for name in names:
        schema = lake.registry[name]
        files = [e for e in before if _table_of(storage, e) == name]
        if len(files) == 0:
            continue
        index = _key_index(storage, schema, files)
        winners, dirty = _winners(schema, index)
        groups = _plan(storage, files, dirty, target_bytes=target_bytes, min_files=min_files)
        if dry_run:
            for part, members in groups:
                report.groups.append(MergedGroup(name, part, tuple(e.path for e in members), None,
                                                 0, 0, sum(e.size for e in members), 0, 0, 0))
            continue
        done: list[tuple[MergedGroup, list[FileEntry]]] = []
        last_write = 0.0
        for part, members in groups:
            merged = _merge_group(storage, schema, part, members, winners)
            if merged is None:
                report.skipped_groups += 1
            else:
                done.append(merged[:2])
                last_write = merged[2]
        if grace_s > 0:
            for group, read in done:
                tombstone.extend(read)
                report.groups.append(group)
            continue
        # Let every merged file be visible for a moment before its inputs go: a reader whose
        # directory listing spans several getdents calls then always sees one or the other.
        time.sleep(max(0.0, settle_s - (time.perf_counter() - last_write)))
        for group, read in done:
            deleted = sum(storage.delete_if_unchanged(e) for e in read)
            report.groups.append(replace(group, deleted=deleted, kept_changed=len(read) - deleted))
    if tombstone:
        _record_pending(storage, tombstone, grace_s)
        report.pending_recorded = len(tombstone)
    after = _live(storage, names, pending_deletes(storage))
    report.files_after = len(after)
    report.bytes_after = sum(e.size for e in after)
    report.seconds = time.perf_counter() - t0
    return report


# --------------------------------------------------------------------------------- planning
def _table_of(storage: Storage, entry: FileEntry) -> str:
    return storage.relative(entry.path).split("/", 1)[0]


def _partition_of(storage: Storage, entry: FileEntry) -> str:
    rel = storage.relative(entry.path)
    return rel.split("/", 1)[1].rsplit("/", 1)[0] if rel.count("/") >= 2 else ""


def _live(storage: Storage, tables: list[str], pending: set[str]) -> list[FileEntry]:
    out = []
    for name in tables:
        out += [e for e in storage.list_files(name)
                if e.path.endswith(".parquet") and e.path not in pending]
    return out


def _plan(storage: Storage, files: list[FileEntry], dirty: set[str], *, target_bytes: int,
          min_files: int) -> list[tuple[str, list[FileEntry]]]:
    """Groups to rewrite, per partition: the small files (when there are at least
    ``min_files``) and every file holding superseded rows ("dirty", whatever its size)."""
    by_part: dict[str, list[FileEntry]] = {}
    for e in files:
        by_part.setdefault(_partition_of(storage, e), []).append(e)
    groups = []
    for part, entries in sorted(by_part.items()):
        small = [e for e in entries if e.size < target_bytes]
        chosen = small if len(small) >= max(2, min_files) else []
        chosen += [e for e in entries if e.path in dirty and e not in chosen]
        if not chosen or (len(chosen) == 1 and chosen[0].path not in dirty):
            continue
        current: list[FileEntry] = []
        size = 0
        for e in sorted(chosen, key=lambda x: x.path):
            if current and size + e.size > target_bytes:
                groups.append((part, current))
                current, size = [], 0
            current.append(e)
            size += e.size
        if current:
            groups.append((part, current))
    # a lone clean file in a group of its own would just be copied
    return [(p, g) for p, g in groups if len(g) >= 2 or g[0].path in dirty]


# --------------------------------------------------------------------------------- merging
def _key_index(storage: Storage, schema: TableSchema, files: list[FileEntry]) -> pa.Table:
    """Key columns, ``written_at``, partition and file path of every row of the table."""
    cols = [*schema.key, "written_at"]

    def read(e: FileEntry) -> pa.Table | None:
        try:
            with storage.fs.open_input_file(e.path) as f:
                t = pq.read_table(f, columns=cols)
        except FileNotFoundError:
            return None  # compacted away by a concurrent run: its rows live elsewhere
        n = t.num_rows
        return t.append_column("_part", pa.array([_part_key(_partition_of(storage, e))] * n,
                                                 pa.string())) \
                .append_column("_file", pa.array([e.path] * n, pa.string()))

    with ThreadPoolExecutor(max_workers=1 if storage.local else 16) as pool:
        pieces = [t for t in pool.map(read, files) if t is not None]
    if not pieces:
        return pa.table({c: pa.array([], pa.string()) for c in [*cols, "_part", "_file"]})
    return pa.concat_tables(pieces, promote_options="permissive")


def _part_key(partition: str) -> str:
    """``source=hf/scan_date=2026-11-02`` → ``hf\x01 2026-11-02``: compares like the tuple of
    values, i.e. like the views' ``ORDER BY source DESC, scan_date DESC`` tie-break."""
    return "\x01".join(p.split("=", 1)[1] for p in partition.split("/") if "=" in p)


def _winners(schema: TableSchema, index: pa.Table) -> tuple[pa.Table, set[str]]:
    """Per key the greatest ``(written_at, partition)`` over the lake (``_w``, ``_p``), and the
    files that hold a row below it (superseded: a retry on a later day, a re-analysis…).

    The partition breaks ties between identical copies in different partitions; it never
    changes when a file is rewritten, so every compaction — even concurrent ones — agrees on
    which copy is the survivor and never drops it.
    """
    keys = ", ".join(f'"{k}"' for k in schema.key)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("idx", index)
        con.execute(f"""CREATE TEMP TABLE w AS
            SELECT {keys}, max(written_at) AS _w, max(_part) AS _p FROM (
                SELECT {keys}, written_at, _part,
                       max(written_at) OVER (PARTITION BY {keys}) AS _mw FROM idx)
            WHERE written_at = _mw GROUP BY {keys}""")
        on = " AND ".join(f'i."{k}" IS NOT DISTINCT FROM w."{k}"' for k in schema.key)
        dirty = _fetch(con.sql(f"""SELECT DISTINCT i._file FROM idx i JOIN w ON {on}
                                   WHERE i.written_at < w._w OR i._part < w._p"""))
        winners = _fetch(con.sql("SELECT * FROM w"))
    finally:
        con.close()
    return winners, set(dirty.column("_file").to_pylist())


def _fetch(rel: Any) -> pa.Table:
    fetch = getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table
    return fetch()


def _merge_group(storage: Storage, schema: TableSchema, part: str, members: list[FileEntry],
                 winners: pa.Table) -> tuple[MergedGroup, list[FileEntry], float] | None:
    """Write the group's survivors as one new file; returns the group and the identities of
    the inputs as read (to delete, by the caller, once the new file has settled), and when
    the new file appeared."""
    tables, read = [], []
    for e in members:
        try:
            t, identity = storage.read_parquet(e.path)
        except (FileNotFoundError, OSError):
            return None  # taken by a concurrent compaction: leave the rest for next time
        tables.append(conform_table(schema, t))
        read.append(identity)
    rows_in = sum(t.num_rows for t in tables)
    kept = _keep_newest(schema, pa.concat_tables(tables), winners, part)
    output, bytes_out = None, 0
    if kept.num_rows:
        digest = short_hash("\n".join(sorted(e.path for e in members)), 15)
        name = f"part-c{digest}.v{schema.version}.parquet"
        output = storage.path(schema.name, part, name)
        data = encode_parquet(schema, sort_table(schema, kept))
        storage.write_atomic(output, data)
        bytes_out = data.size
    group = MergedGroup(schema.name, part, tuple(e.path for e in members), output, rows_in,
                        kept.num_rows, sum(e.size for e in members), bytes_out, 0, 0)
    return group, [e for e in read if e.path != output], time.perf_counter()


def _keep_newest(schema: TableSchema, table: pa.Table, winners: pa.Table, part: str) -> pa.Table:
    """The group's rows that are their key's survivor lake-wide, one copy each.

    A key unknown to ``winners`` (written after the index was taken — cannot happen for
    listed files, but costs nothing to handle) is kept.
    """
    keys = list(schema.key)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("g", table.append_column("_row", pa.array(range(table.num_rows), pa.int64())))
        con.register("w", winners)
        on = " AND ".join(f'g."{k}" IS NOT DISTINCT FROM w."{k}"' for k in keys)
        by = ", ".join(f'g."{k}"' for k in keys)
        idx = _fetch(con.sql(
            f"""SELECT g._row FROM g LEFT JOIN w ON {on}
                WHERE w._w IS NULL OR g.written_at > w._w
                   OR (g.written_at = w._w AND $part >= w._p)
                QUALIFY row_number() OVER (PARTITION BY {by} ORDER BY g.written_at DESC, g._row) = 1
                ORDER BY g._row""", params={"part": _part_key(part)})).column("_row")
    finally:
        con.close()
    # Take the rows from the original table so types, nullability and metadata stay exact.
    return table.take(pc.cast(idx, pa.int64()))


# --------------------------------------------------------------------------------- deferred deletes
def pending_deletes(storage: Storage) -> set[str]:
    """Paths recorded for deletion by compactions with a grace period (still on storage)."""
    out: set[str] = set()
    for _, entries, _ in _read_pending(storage):
        out.update(e.path for e in entries)
    return out


def _read_pending(storage: Storage) -> list[tuple[str, list[FileEntry], float]]:
    out = []
    for e in storage.list_files(PENDING_DIR):
        if not e.path.endswith(".json"):
            continue
        try:
            doc = json.loads(storage.read_bytes(e.path))
        except (FileNotFoundError, ValueError):
            continue
        entries = [FileEntry(**x) for x in doc["files"]]
        out.append((e.path, entries, float(doc["delete_after"])))
    return out


def _record_pending(storage: Storage, entries: list[FileEntry], grace_s: float) -> None:
    doc = {"created": time.time(), "delete_after": time.time() + grace_s,
           "files": [e.__dict__ for e in entries]}
    path = storage.path(PENDING_DIR, f"{int(time.time())}-{uuid.uuid4().hex[:12]}.json")
    storage.write_atomic(path, json.dumps(doc).encode())


def _process_pending(storage: Storage) -> int:
    deleted = 0
    now = time.time()
    for path, entries, delete_after in _read_pending(storage):
        if now < delete_after:
            continue
        for entry in entries:
            deleted += storage.delete_if_unchanged(entry)
        storage.delete(path)
    return deleted


def _remove_stale_temp(storage: Storage, max_age_s: float) -> int:
    if not storage.local:
        return 0
    removed = 0
    now_ns = time.time_ns()
    for e in storage.list_files():
        if (TEMP_MARK in e.name or TRASH_MARK in e.name) and e.mtime_ns is not None \
                and now_ns - e.mtime_ns > max_age_s * 1e9:
            storage.delete(e.path)
            removed += 1
    return removed
