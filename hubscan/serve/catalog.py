"""The explorer's snapshot of the lake: one consistent, read-only DuckDB copy of what pages show.

Why a snapshot: the lake's views deduplicate every row of every file at each query (window
functions over whole tables) — right for correctness, and about 2 s per aggregate at a million
layer rows. A page must answer in milliseconds. So at start, and again whenever the lake's
file list changes, the explorer runs the views once and stores the result, sorted, in a
private DuckDB file (compressed and buffer-managed: it need not fit in memory), attached
read-only as ``serve``:

=================  ===========================================================================
``serve.models``   every committed model (all revisions): the ``models`` row, the per-model
                   metrics of the ``model_summary`` view (same definitions, from
                   ``serve.layers``), ``is_latest`` (in ``models_latest``), ``revision_seq`` and
                   ``previous_key`` (as the ``history`` view), ``pipeline_tag``, and the facets
                   filters use (``phases``, ``warning_labels``, ``formats``)
``serve.layers``   the ``layers`` view's rows (every column, plus ``valid`` and
                   ``has_spectrum``), sorted by model
``serve.files``    ``model_files`` with ``n_models``: how many models list the weight file
``serve.events``   ``repo_events``
``serve.archs``    the report's per-architecture table over the latest revisions
``serve.<t>``      ``lineage``, ``lineage_links``, ``finetune_deltas``, ``evals``,
                   ``model_evals`` when the lake has them
=================  ===========================================================================

Only a picture's eigenvalues are still read from the lake (the ``spectra`` view by key, with
bound constants that DuckDB pushes down to the files' row-group statistics: tens of ms at 1M
rows), once per picture. The snapshot only ever reads the lake; the lake is never written.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Iterator

import duckdb

from ..errors import LakeError

if TYPE_CHECKING:
    from ..lake import Lake

__all__ = ["Capabilities", "Snapshot", "Catalog", "build_snapshot", "lake_signature",
           "FORMAT_COLUMNS", "OPTIONAL_RELATIONS", "VALID"]

log = logging.getLogger("hubscan.serve")

#: Layer columns of issue 13's format/quantisation facts; used wherever the lake has them.
FORMAT_COLUMNS = ("source_format", "quant_method", "bits", "expert")
#: Relations of newer lakes that the model page reads when the lake has them (lineage links,
#: fine-tune deltas, reported quality numbers); each is copied into the snapshot.
OPTIONAL_RELATIONS = ("lineage", "lineage_links", "finetune_deltas", "evals", "model_evals")
#: The views' definition of a usable alpha (schemas/views.sql).
VALID = "(status = 'ok' AND alpha IS NOT NULL AND NOT isnan(alpha))"

_MEMORY = re.compile(r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", re.IGNORECASE)


@dataclass(frozen=True)
class Capabilities:
    """What this lake has beyond the base schema, checked once per snapshot.

    Attributes:
        relations: the optional relations present (``lineage``, ``evals``, ``finetune_deltas``).
        format_columns: the format/quantisation columns the ``layers`` view has.
        columns: every relation's columns (for the SQL page's reference list).
    """

    relations: frozenset[str]
    format_columns: tuple[str, ...]
    columns: dict[str, tuple[str, ...]]

    def has(self, relation: str) -> bool:
        return relation in self.relations

    def relation_columns(self, relation: str) -> tuple[str, ...]:
        return self.columns.get(relation, ())


def lake_signature(lake: "Lake") -> str:
    """A digest of the lake's file list (path, size, mtime): it changes when a scan, a
    compaction or a refit writes, and costs one listing."""
    h = hashlib.sha256()
    for e in sorted(lake.storage.list_files(), key=lambda e: e.path):
        if e.path.endswith(".parquet"):
            h.update(f"{e.path}\0{e.size}\0{e.mtime_ns}\n".encode())
    return h.hexdigest()


def _capabilities(con: duckdb.DuckDBPyConnection) -> Capabilities:
    rows = con.execute("""SELECT table_name, list(column_name ORDER BY column_index)
                          FROM duckdb_columns() WHERE database_name = 'memory'
                          GROUP BY table_name""").fetchall()
    columns = {name: tuple(cols) for name, cols in rows}
    layer_cols = set(columns.get("layers", ()))
    return Capabilities(
        relations=frozenset(r for r in OPTIONAL_RELATIONS if r in columns),
        format_columns=tuple(c for c in FORMAT_COLUMNS if c in layer_cols),
        columns=columns)


def _build_statements(caps: Capabilities) -> list[str]:
    fmt = caps.format_columns
    # Per-model facets of format/quantisation (layers v2), when the lake has the columns: the
    # file formats and the quantisation methods other than 'none' (plain float weights).
    fmt_parts = [f"list_sort(list_distinct(list(CAST({c} AS VARCHAR)) FILTER "
                 f"(WHERE {c} IS NOT NULL AND {c} <> 'none')))"
                 for c in ("quant_method", "source_format") if c in fmt]
    formats = ("list_sort(list_distinct(flatten([" + ", ".join(fmt_parts) + "])))"
               if fmt_parts else "CAST([] AS VARCHAR[])")
    out = [
        # Every column of the layers view (a layer page needs no lookup in the lake), whether
        # the lake keeps the layer's eigenvalues, and the views' valid-alpha flag. Sorted by
        # model only: row-group zonemaps prune a model's rows and pages order the few rows
        # they read; a full sort of a million wide rows costs seconds more.
        f"""CREATE TABLE serve.layers AS
            SELECT l.*, {VALID} AS valid,
                   EXISTS (SELECT 1 FROM raw_spectra AS s WHERE s.file_sha256 = l.file_sha256
                           AND s.tensor = l.tensor AND s.analysis_version = l.analysis_version)
                       AS has_spectrum
            FROM layers AS l ORDER BY model_key""",
        # The model_summary view's definitions (schemas/views.sql), from the copied rows;
        # tests/serve check every column against the view.
        f"""CREATE TABLE serve.summary AS
            WITH l AS (SELECT *, (status IN ('ok', 'fit-failed')) AS analysed,
                              coalesce(string_split(warning, ','), []) AS warnings
                       FROM serve.layers)
            SELECT model_key,
                   count(*) AS n_layers,
                   count(*) FILTER (WHERE valid) AS n_fits,
                   avg(alpha) FILTER (WHERE valid) AS alpha_mean,
                   median(alpha) FILTER (WHERE valid) AS alpha_median,
                   count(*) FILTER (WHERE valid AND alpha BETWEEN 2 AND 4)
                       / nullif(count(*) FILTER (WHERE valid), 0) AS frac_alpha_2_4,
                   count(*) FILTER (WHERE valid AND alpha BETWEEN 2 AND 6)
                       / nullif(count(*) FILTER (WHERE valid), 0) AS frac_alpha_2_6,
                   avg(alpha_weighted) FILTER (WHERE valid AND NOT isnan(alpha_weighted)) AS alpha_weighted_mean,
                   avg(log_norm) FILTER (WHERE analysed AND NOT isnan(log_norm)) AS log_norm_mean,
                   avg(log_spectral_norm) FILTER (WHERE analysed AND NOT isnan(log_spectral_norm))
                       AS log_spectral_norm_mean,
                   avg(log_alpha_norm) FILTER (WHERE valid AND NOT isnan(log_alpha_norm)) AS log_alpha_norm_mean,
                   avg(stable_rank) FILTER (WHERE analysed AND NOT isnan(stable_rank)) AS stable_rank_mean,
                   count(*) FILTER (WHERE list_contains(warnings, 'over-trained')) AS n_over_trained,
                   count(*) FILTER (WHERE list_contains(warnings, 'under-trained')) AS n_under_trained,
                   count(*) FILTER (WHERE warning IS NOT NULL AND warning <> '') AS n_warnings,
                   count(*) FILTER (WHERE status = 'fit-failed') AS n_fit_failed,
                   count(*) FILTER (WHERE status = 'skipped') AS n_skipped_layers,
                   list_sort(list_distinct(list(phase) FILTER (WHERE phase IS NOT NULL))) AS phases,
                   list_sort(list_distinct(flatten(list(warnings)))) AS warning_labels,
                   {formats} AS formats
            FROM l GROUP BY model_key""",
        """CREATE TABLE serve.models AS
            SELECT m.model_key, m.source, m.repo_id, m.revision, m.analysis_version, m.convention,
                   m.arch, m.model_type, m.library, m.params, m.downloads, m.likes, m.status,
                   m.scan_date, m.written_at, m.accuracy, m.tags,
                   json_extract_string(m.meta_json, '$.pipeline_tag') AS pipeline_tag,
                   m.model_key IN (SELECT model_key FROM models_latest) AS is_latest,
                   row_number() OVER w AS revision_seq,
                   lag(m.model_key) OVER w AS previous_key,
                   count(*) OVER (PARTITION BY m.source, m.repo_id, m.analysis_version) AS n_revisions,
                   coalesce(s.n_layers, 0) AS n_layers, coalesce(s.n_fits, 0) AS n_fits,
                   s.alpha_mean, s.alpha_median, s.frac_alpha_2_4, s.frac_alpha_2_6,
                   s.alpha_weighted_mean, s.log_norm_mean, s.log_spectral_norm_mean,
                   s.log_alpha_norm_mean, s.stable_rank_mean,
                   coalesce(s.n_over_trained, 0) AS n_over_trained,
                   coalesce(s.n_under_trained, 0) AS n_under_trained,
                   coalesce(s.n_warnings, 0) AS n_warnings,
                   coalesce(s.n_fit_failed, 0) AS n_fit_failed,
                   coalesce(s.n_skipped_layers, 0) AS n_skipped_layers,
                   coalesce(s.phases, []) AS phases,
                   coalesce(s.warning_labels, []) AS warning_labels,
                   coalesce(s.formats, []) AS formats
            FROM models AS m LEFT JOIN serve.summary AS s ON s.model_key = m.model_key
            WINDOW w AS (PARTITION BY m.source, m.repo_id, m.analysis_version
                         ORDER BY m.written_at, m.model_key)
            ORDER BY m.model_key""",
        "DROP TABLE serve.summary",
        """CREATE TABLE serve.files AS
            SELECT model_key, file, file_sha256, analysis_version, size, reused,
                   count(*) OVER (PARTITION BY file_sha256, analysis_version) AS n_models
            FROM model_files ORDER BY model_key, file""",
        "CREATE TABLE serve.events AS SELECT * FROM repo_events ORDER BY seen_at, repo_id",
        # The report's per-architecture table (hubscan.report), over the latest revisions.
        """CREATE TABLE serve.archs AS
            WITH l AS (
                SELECT l.*, coalesce(string_split(l.warning, ','), []) AS labels
                FROM serve.layers AS l JOIN serve.models AS m ON m.model_key = l.model_key
                WHERE m.is_latest)
            SELECT coalesce(arch, '(unknown)') AS arch,
                   count(DISTINCT model_key) AS models,
                   count(*) FILTER (WHERE status IN ('ok', 'fit-failed')) AS layers,
                   count(*) FILTER (WHERE valid) AS fits,
                   avg(alpha) FILTER (WHERE valid) AS alpha_mean,
                   median(alpha) FILTER (WHERE valid) AS alpha_median,
                   avg(CASE WHEN alpha BETWEEN 2 AND 4 THEN 1.0 ELSE 0.0 END) FILTER (WHERE valid) AS share_2_4,
                   avg(CASE WHEN alpha BETWEEN 2 AND 6 THEN 1.0 ELSE 0.0 END) FILTER (WHERE valid) AS share_2_6,
                   avg(log_norm) FILTER (WHERE valid AND isfinite(log_norm)) AS log_norm_mean,
                   count(*) FILTER (WHERE list_contains(labels, 'under-trained')) AS under_trained,
                   count(*) FILTER (WHERE list_contains(labels, 'over-trained')) AS over_trained,
                   count(*) FILTER (WHERE list_contains(labels, 'rank-collapse')) AS rank_collapse
            FROM l GROUP BY 1 ORDER BY layers DESC, arch""",
    ]
    for rel in sorted(caps.relations):
        order = " ORDER BY model_key" if "model_key" in caps.relation_columns(rel) else ""
        out.append(f"CREATE TABLE serve.{rel} AS SELECT * FROM {rel}{order}")
    return out


class Snapshot:
    """One generation of the explorer's data: a lake connection (views) with the snapshot
    file attached read-only as ``serve``. Handlers take a cursor with ``with snap.cursor()``;
    a replaced snapshot closes (and deletes its file) once its last cursor is returned."""

    def __init__(self, *, con: duckdb.DuckDBPyConnection, path: str, generation: int,
                 signature: str, caps: Capabilities, build_s: float,
                 facets: dict[str, tuple[tuple[str, int], ...]], counts: dict[str, int],
                 newest: datetime | None) -> None:
        self._con = con
        self.path = path
        self.generation = generation
        self.signature = signature
        self.caps = caps
        self.build_s = build_s
        self.built_at = time.time()
        self.facets = facets
        self.counts = counts
        self.newest = newest
        self._lock = threading.Lock()
        self._users = 0
        self._retired = False
        self._closed = False

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock:
            if self._closed:
                raise LakeError("the explorer's snapshot was closed")
            self._users += 1
            cur = self._con.cursor()  # one new DuckDB connection per request, made one at a time
        try:
            yield cur
        finally:
            try:
                cur.close()
            finally:
                with self._lock:
                    self._users -= 1
                    done = self._retired and self._users == 0
                if done:
                    self._close()

    def retire(self) -> None:
        """No new users; close when the last cursor is returned."""
        with self._lock:
            self._retired = True
            done = self._users == 0
        if done:
            self._close()

    def _close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._con.close()
        finally:
            for suffix in ("", ".wal"):
                try:
                    os.unlink(self.path + suffix)
                except FileNotFoundError:
                    pass


def build_snapshot(lake: "Lake", folder: str, *, generation: int = 1,
                   memory_limit: str = "4GB",
                   connect: Callable[[], duckdb.DuckDBPyConnection] | None = None) -> Snapshot:
    """Run the lake's views once into ``<folder>/snapshot-<generation>.duckdb`` and return the
    snapshot attached read-only. Reads the lake only.

    ``connect`` gives the connection with the lake's views (default ``lake.connect``); a test
    passes one with extra views to exercise what newer lakes have.
    """
    if not _MEMORY.match(memory_limit):
        raise ValueError(f"memory limit must look like '4GB', not {memory_limit!r}")
    t0 = time.perf_counter()
    signature = lake_signature(lake)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"snapshot-{generation}.duckdb")
    con = (connect or lake.connect)()
    try:
        con.execute("SET GLOBAL TimeZone = 'UTC'")  # cursors are new sessions: they inherit it
        con.execute(f"SET memory_limit = '{memory_limit}'")
        con.execute(f"SET temp_directory = {_quote(os.path.join(folder, 'spill'))}")
        caps = _capabilities(con)
        con.execute(f"ATTACH {_quote(path)} AS serve")
        for stmt in _build_statements(caps):
            con.execute(stmt)
        con.execute("DETACH serve")
        con.execute(f"ATTACH {_quote(path)} AS serve (READ_ONLY)")
        facets = _facets(con, caps)
        counts = {t: con.execute(f"SELECT count(*) FROM serve.{t}").fetchall()[0][0]
                  for t in ("models", "layers", "files", "events")}
        counts["latest"] = con.execute(
            "SELECT count(*) FROM serve.models WHERE is_latest").fetchall()[0][0]
        newest = con.execute("SELECT max(written_at) FROM serve.models").fetchall()[0][0]
    except BaseException:
        con.close()
        for suffix in ("", ".wal"):
            if os.path.exists(path + suffix):
                os.unlink(path + suffix)
        raise
    return Snapshot(con=con, path=path, generation=generation, signature=signature, caps=caps,
                    build_s=time.perf_counter() - t0, facets=facets, counts=counts,
                    newest=newest)


def _facets(con: duckdb.DuckDBPyConnection, caps: Capabilities) -> dict[str, tuple[tuple[str, int], ...]]:
    """Distinct values (with model counts) of every leaderboard filter, over live models."""
    out: dict[str, tuple[tuple[str, int], ...]] = {}
    for name in ("source", "arch", "library", "pipeline_tag", "status"):
        out[name] = tuple(con.execute(
            f"""SELECT CAST({name} AS VARCHAR) AS v, count(*) AS n FROM serve.models
                WHERE is_latest AND {name} IS NOT NULL GROUP BY 1 ORDER BY n DESC, v""").fetchall())
    for name, col in (("phase", "phases"), ("warning", "warning_labels"), ("format", "formats")):
        out[name] = tuple(con.execute(
            f"""SELECT v, count(*) AS n FROM (SELECT unnest({col}) AS v FROM serve.models
                WHERE is_latest) GROUP BY 1 ORDER BY n DESC, v""").fetchall())
    return out


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class Catalog:
    """The current snapshot, rebuilt in the background when the lake's file list changes.

    ``refresh_s`` = 0 builds once. A rebuild that fails (a file vanished mid-build, a
    compaction racing) keeps serving the previous snapshot and is retried next interval.
    """

    def __init__(self, lake: "Lake", *, refresh_s: float = 30.0, memory_limit: str = "4GB",
                 connect: Callable[[], duckdb.DuckDBPyConnection] | None = None) -> None:
        self.lake = lake
        self._connect = connect
        self.refresh_s = float(refresh_s)
        self.memory_limit = memory_limit
        self._dir = tempfile.mkdtemp(prefix="hubscan-serve-")
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._generation = 1
        self._listeners: list[Any] = []
        self._building: duckdb.DuckDBPyConnection | None = None
        self._closing = False
        try:
            self._snap = self._build_with_retries(1)
        except BaseException:
            shutil.rmtree(self._dir, ignore_errors=True)
            raise
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _connect_tracked(self) -> duckdb.DuckDBPyConnection:
        con = (self._connect or self.lake.connect)()
        self._building = con  # close() interrupts a build still running
        return con

    def _build_with_retries(self, generation: int, attempts: int = 3) -> Snapshot:
        for attempt in range(attempts):
            try:
                return build_snapshot(self.lake, self._dir, generation=generation,
                                      memory_limit=self.memory_limit,
                                      connect=self._connect_tracked)
            except (duckdb.IOException, duckdb.InvalidInputException, OSError):
                if attempt == attempts - 1:  # a compaction removed a listed file: list again
                    raise
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def snapshot(self) -> Snapshot:
        with self._lock:
            return self._snap

    def on_swap(self, callback) -> None:
        """Call ``callback(new_snapshot)`` after each rebuild (the SQL box reconnects)."""
        self._listeners.append(callback)

    def refresh(self, *, force: bool = False) -> bool:
        """Rebuild if the lake's files changed (or ``force``); True when a new snapshot is live."""
        with self._build_lock:
            current = self.snapshot
            if not force and lake_signature(self.lake) == current.signature:
                return False
            self._generation += 1
            new = self._build_with_retries(self._generation)
            with self._lock:
                old, self._snap = self._snap, new
            for cb in self._listeners:
                cb(new)
            old.retire()
            log.info("snapshot %d: %d models, %d layer rows in %.1f s", new.generation,
                     new.counts["models"], new.counts["layers"], new.build_s)
            return True

    def start(self) -> None:
        """Watch the lake in a daemon thread (no-op when ``refresh_s`` is 0)."""
        if self.refresh_s <= 0 or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(self.refresh_s):
                try:
                    self.refresh()
                except Exception as exc:  # noqa: BLE001 - keep serving the old snapshot
                    if self._closing:
                        return
                    log.warning("snapshot refresh failed (serving the previous one): %s: %s",
                                type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")

        self._thread = threading.Thread(target=loop, name="hubscan-serve-refresh", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop watching (interrupting a rebuild in progress), close the snapshot, delete its
        folder."""
        self._closing = True
        self._stop.set()
        if self._thread is not None:
            while self._thread.is_alive():
                building = self._building
                if building is not None:
                    try:
                        building.interrupt()
                    except duckdb.Error:
                        pass
                self._thread.join(timeout=0.2)
        self.snapshot.retire()
        shutil.rmtree(self._dir, ignore_errors=True)
