"""``hubscan lake check``: is every file readable, of a registered schema, where it belongs?

Errors (the lake holds something wrong; exit status 1):

- ``unreadable``: a ``.parquet`` file whose footer cannot be read;
- ``schema``: a file without a hubscan schema version, or whose schema differs from the
  registry's schema of that version (types, nullability, docs);
- ``layout``: a file outside ``<table>/<k>=<v>/…`` of its table's partition keys, or whose
  in-file partition column (``models.source``) disagrees with its folder;
- ``duplicate-in-file``: the same key twice in one file (writers never do that);
- ``orphan-temp``: a writer's temp file older than ``temp_max_age_s`` (a crashed write);
- ``model-without-layers``: a committed model with status ok/partial and no layer rows;
- ``dangling-model-file``: a committed model lists a weight file that has no layer rows.

Warnings (normal in a live lake, fixed by time or ``hubscan lake compact``; errors with
``strict``): ``duplicate-key`` across files (at-least-once writes; views deduplicate),
``uncommitted`` units (model_files without a models row: in progress, or a crashed unit
that a retry will complete), ``young-temp`` files, ``stray`` non-lake files.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import LakeError
from .compact import PENDING_DIR, pending_deletes
from .fs import TEMP_MARK, TRASH_MARK, FileEntry
from .schema import META_TABLE, META_VERSION

if TYPE_CHECKING:
    from . import Lake

__all__ = ["check", "CheckReport", "Finding"]

Severity = Literal["error", "warning"]
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_VALUE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_NAME = re.compile(r"^part-c?[0-9a-f]+\.v(\d+)\.parquet$")


@dataclass(frozen=True)
class Finding:
    severity: Severity
    kind: str
    message: str
    path: str | None = None


@dataclass
class CheckReport:
    findings: list[Finding] = field(default_factory=list)
    files_checked: int = 0
    strict: bool = False

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors and not (self.strict and self.warnings)

    def kinds(self) -> set[str]:
        return {f.kind for f in self.findings}

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "files_checked": self.files_checked,
                "findings": [f.__dict__ for f in self.findings]}


def check(lake: "Lake", *, strict: bool = False, temp_max_age_s: float = 3600.0,
          keys: bool = True, references: bool = True) -> CheckReport:
    """Check every file of the lake; ``keys``/``references`` can be skipped on huge lakes
    (they read the key columns of every file / run the view joins)."""
    storage = lake.storage
    report = CheckReport(strict=strict)
    add = report.findings.append
    pending = pending_deletes(storage)
    by_table: dict[str, list[FileEntry]] = {}
    now_ns = time.time_ns()
    for e in storage.list_files():
        rel = storage.relative(e.path)
        if rel.startswith(PENDING_DIR.split("/")[0] + "/") or e.path in pending:
            continue
        if TEMP_MARK in e.name or TRASH_MARK in e.name:
            old = e.mtime_ns is not None and now_ns - e.mtime_ns > temp_max_age_s * 1e9
            add(Finding("error" if old else "warning", "orphan-temp" if old else "young-temp",
                        "temp file of an unfinished write" + (" (crashed writer; `hubscan lake "
                                                             "compact` removes it)" if old else ""),
                        rel))
            continue
        table = rel.split("/", 1)[0]
        if not e.path.endswith(".parquet") or table not in lake.registry:
            add(Finding("warning", "stray", "not a lake data file", rel))
            continue
        by_table.setdefault(table, []).append(e)
    for table, files in sorted(by_table.items()):
        for e in files:
            report.files_checked += 1
            _check_file(lake, table, e, add)
        if keys:
            _check_keys(lake, table, files, add)
    if references:
        try:
            _check_references(lake, add)
        except Exception as exc:  # noqa: BLE001 - a lake the views cannot read is a finding
            add(Finding("error", "views", f"the views cannot read the lake: "
                        f"{type(exc).__name__}: {str(exc).splitlines()[0]}"))
    return report


def _check_file(lake: "Lake", table: str, e: FileEntry, add: Any) -> None:
    storage = lake.storage
    rel = storage.relative(e.path)
    try:
        with storage.fs.open_input_file(e.path) as f:
            schema = pq.read_schema(f)
    except FileNotFoundError:
        return  # compacted away since listing
    except (OSError, pa.ArrowInvalid) as exc:
        add(Finding("error", "unreadable", f"cannot read footer: {exc}", rel))
        return
    meta = schema.metadata or {}
    version = meta.get(META_VERSION.encode())
    if meta.get(META_TABLE.encode(), b"").decode() != table or version is None:
        add(Finding("error", "schema", "no hubscan table/version metadata for this table", rel))
        return
    try:
        expected = lake.registry.get(table, int(version))
    except (LakeError, ValueError) as exc:
        add(Finding("error", "schema", str(exc), rel))
        return
    m = _NAME.match(e.name)
    if not m:
        add(Finding("error", "layout", "file name is not part-<hex>.v<N>.parquet: the views do "
                    "not read it", rel))
    elif int(m.group(1)) != expected.version:
        add(Finding("error", "layout", f"name says schema v{m.group(1)}, file metadata "
                    f"v{expected.version}", rel))
    if not schema.equals(expected.arrow, check_metadata=True):
        add(Finding("error", "schema", f"differs from registry {table} v{expected.version}: "
                    f"{_diff(expected.arrow, schema)}", rel))
    parts = rel.split("/")[1:-1]
    names = [p.split("=", 1)[0] for p in parts]
    if names != list(expected.partition) or any("=" not in p for p in parts):
        add(Finding("error", "layout", f"expected partition folders {list(expected.partition)}", rel))
        return
    values = dict(p.split("=", 1) for p in parts)
    for k, v in values.items():
        if not _VALUE.match(v) or (k == "scan_date" and not _DATE.match(v)):
            add(Finding("error", "layout", f"bad partition value {k}={v!r}", rel))
    for col in set(expected.partition) & set(expected.column_names):
        with storage.fs.open_input_file(e.path) as f:
            inside = pc.unique(pq.read_table(f, columns=[col]).column(col)).to_pylist()
        if inside != [values[col]] and inside:
            add(Finding("error", "layout", f"column {col} = {inside} but folder says "
                        f"{values[col]!r}", rel))


def _diff(expected: pa.Schema, got: pa.Schema) -> str:
    missing = [n for n in expected.names if n not in got.names]
    extra = [n for n in got.names if n not in expected.names]
    changed = [n for n in expected.names if n in got.names
               and not expected.field(n).equals(got.field(n), check_metadata=True)]
    bits = []
    if missing:
        bits.append(f"missing {missing}")
    if extra:
        bits.append(f"extra {extra}")
    if changed:
        bits.append(f"changed {changed}")
    if not bits:
        bits.append("schema metadata or column order differs")
    return "; ".join(bits)


def _check_keys(lake: "Lake", table: str, files: list[FileEntry], add: Any) -> None:
    keys = list(lake.registry[table].key)
    pieces = []
    for i, e in enumerate(files):
        try:
            with lake.storage.fs.open_input_file(e.path) as f:
                t = pq.read_table(f, columns=keys)
        except FileNotFoundError:
            continue
        except (OSError, pa.ArrowInvalid):
            continue  # reported as unreadable / schema already
        pieces.append(t.append_column("_file", pa.array([i] * t.num_rows, pa.int64())))
    if not pieces:
        return
    data = pa.concat_tables(pieces)
    per_file = data.group_by([*keys, "_file"]).aggregate([("_file", "count")])
    inside = per_file.filter(pc.greater(per_file.column("_file_count"), 1))
    for i in sorted(set(inside.column("_file").to_pylist())):
        n = pc.sum(pc.equal(inside.column("_file"), i)).as_py()
        add(Finding("error", "duplicate-in-file", f"{n} key(s) appear more than once",
                    lake.storage.relative(files[i].path)))
    across = per_file.group_by(keys).aggregate([("_file", "count")])
    dup = pc.sum(pc.greater(across.column("_file_count"), 1)).as_py() or 0
    if dup:
        add(Finding("warning", "duplicate-key", f"{table}: {dup} key(s) stored in more than one "
                    "file (views show each once; `hubscan lake compact` removes the copies)"))


def _check_references(lake: "Lake", add: Any) -> None:
    q = lake.query
    no_layers = q("""SELECT m.model_key FROM models m
                     WHERE m.status IN ('ok', 'partial')
                       AND m.model_key NOT IN (SELECT model_key FROM layers)
                     ORDER BY 1""").column(0).to_pylist()
    for key in no_layers:
        add(Finding("error", "model-without-layers", f"{key}: committed with status ok/partial "
                    "but no layer rows"))
    dangling = q("""SELECT f.model_key, f.file FROM model_files f
                    WHERE NOT EXISTS (SELECT 1 FROM file_layers l
                                      WHERE l.file_sha256 = f.file_sha256
                                        AND l.analysis_version = f.analysis_version)
                    ORDER BY 1, 2""").to_pylist()
    for r in dangling:
        add(Finding("error", "dangling-model-file", f"{r['model_key']}: file {r['file']} has no "
                    "layer rows"))
    uncommitted = q("""SELECT count(DISTINCT model_key) FROM raw_model_files
                       WHERE model_key NOT IN (SELECT model_key FROM raw_models)""").column(0)[0].as_py()
    if uncommitted:
        add(Finding("warning", "uncommitted", f"{uncommitted} unit(s) wrote model_files but no "
                    "models row yet (in progress, or crashed: a retry completes them)"))
