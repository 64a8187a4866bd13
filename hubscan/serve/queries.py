"""Every page's numbers: bound-parameter SQL over the snapshot (``serve.*``) and, for one
layer, the lake's own views by key.

Each function takes a DuckDB cursor of the current snapshot and returns plain dicts and
lists — the HTML page and its ``/api/…`` twin render the same values. The SQL text is ours;
request values only ever arrive as parameters (``?``/``$name``), and the column names a
request may pick come from the whitelists in ``params``.

Pagination is by keyset: a page ends with the sort key of its last row, and the next page
asks for rows after it (``WHERE (sort, model_key) > …``), so page 1,000 costs what page 1
costs — no ``OFFSET`` walking over a million rows.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any, Sequence

import duckdb

from ..errors import BadRequest, PageNotFound
from .catalog import Capabilities, Snapshot
from .params import EXACT_FILTERS, SORTS, Cursor, LeaderboardQuery

__all__ = ["rows", "leaderboard", "model_detail", "layer_detail", "compare", "archs",
           "changes", "spectrum", "LEADERBOARD_COLUMNS"]

LEADERBOARD_COLUMNS = (
    "model_key", "source", "repo_id", "revision", "arch", "library", "pipeline_tag", "params",
    "downloads", "status", "n_layers", "n_fits", "alpha_mean", "alpha_weighted_mean",
    "log_norm_mean", "frac_alpha_2_6", "n_fit_failed", "n_warnings", "warning_labels",
    "formats", "written_at", "scan_date", "n_revisions",
)
_LAYER_TABLE = ("file", "tensor", "longname", "layer_id", "kind", "N", "M", "Q", "num_evals",
                "status", "alpha", "alpha_weighted", "log_norm", "log_spectral_norm",
                "stable_rank", "D", "num_pl_spikes", "phase", "warning", "valid")


def rows(cur: duckdb.DuckDBPyConnection, sql: str, params: Any = None) -> list[dict[str, Any]]:
    """Rows as dicts, through Arrow (exact types, tz-aware timestamps, no pytz needed)."""
    rel = cur.sql(sql, params=params)
    if rel is None:  # pragma: no cover - every query here returns rows
        return []
    fetch = getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table
    return fetch().to_pylist()


def _one(cur, sql: str, params: Any, missing: str) -> dict[str, Any]:
    found = rows(cur, sql, params)
    if not found:
        raise PageNotFound(missing)
    return found[0]


# --------------------------------------------------------------------------------------------
# Leaderboard
# --------------------------------------------------------------------------------------------
def _where(q: LeaderboardQuery, caps: Capabilities) -> tuple[list[str], list[Any]]:
    where, args = ["is_latest"], []
    for name, value in q.filters:
        if name == "format" and not caps.format_columns:
            raise BadRequest("format: this lake has no format/quantisation columns")
        where.append(EXACT_FILTERS[name])
        args.append(value)
    if q.q:
        where.append("contains(lower(repo_id), lower(?))")
        args.append(q.q)
    if q.min_params is not None:
        where.append("params >= ?")
        args.append(q.min_params)
    if q.max_params is not None:
        where.append("params <= ?")
        args.append(q.max_params)
    return where, args


def _keyset(col: str, typ: str, cur: Cursor, *, forward: bool, desc: bool) -> tuple[str, list[Any]]:
    """Rows strictly after (``forward``) or before ``cur`` in the order
    ``(col IS NULL), col <dir>, model_key <dir>`` (NULLs last in both directions)."""
    gt = "<" if desc else ">"
    lt = ">" if desc else "<"
    v = f"CAST(? AS {typ})"
    if forward:
        if cur.null:
            return f"({col} IS NULL AND model_key {gt} ?)", [cur.key]
        return (f"({col} IS NULL OR {col} {gt} {v} OR ({col} = {v} AND model_key {gt} ?))",
                [cur.value, cur.value, cur.key])
    if cur.null:
        return f"({col} IS NOT NULL OR model_key {lt} ?)", [cur.key]
    return (f"({col} IS NOT NULL AND ({col} {lt} {v} OR ({col} = {v} AND model_key {lt} ?)))",
            [cur.value, cur.value, cur.key])


def _cursor_of(row: dict[str, Any], q: LeaderboardQuery) -> str:
    col = SORTS[q.sort][0]
    value = row[col]
    if isinstance(value, datetime):
        value = value.astimezone(timezone.utc).isoformat()
    return Cursor(sort=q.sort, order=q.order, null=value is None, value=value,
                  key=row["model_key"]).encode()


def leaderboard(cur, q: LeaderboardQuery, caps: Capabilities) -> dict[str, Any]:
    """One page of live models (latest revision of each repo) plus the filtered total."""
    where, args = _where(q, caps)
    col, typ = SORTS[q.sort]
    desc = q.order == "desc"
    total = rows(cur, f"SELECT count(*) AS n FROM serve.models WHERE {' AND '.join(where)}",
                 args)[0]["n"]
    cursor = q.after or q.before
    backward = q.before is not None
    if cursor is not None:
        cond, cargs = _keyset(col, typ, cursor, forward=not backward, desc=desc)
        where, args = [*where, cond], [*args, *cargs]
    d = "DESC" if desc != backward else "ASC"
    nulls = "DESC" if backward else "ASC"
    cols = ", ".join(f'"{c}"' for c in LEADERBOARD_COLUMNS)
    got = rows(cur, f"""SELECT {cols} FROM serve.models WHERE {' AND '.join(where)}
                        ORDER BY ({col} IS NULL) {nulls}, {col} {d}, model_key {d}
                        LIMIT {int(q.page_size) + 1}""", args)
    more = len(got) > q.page_size
    got = got[: q.page_size]
    if backward:
        got.reverse()
    has_next = more if not backward else True
    has_prev = (more if backward else q.after is not None) and bool(got)
    return {
        "total": total,
        "rows": got,
        "next": _cursor_of(got[-1], q) if got and has_next else None,
        "prev": _cursor_of(got[0], q) if got and has_prev else None,
    }


# --------------------------------------------------------------------------------------------
# One model
# --------------------------------------------------------------------------------------------
def model_detail(cur, key: str, caps: Capabilities, *, max_layers: int) -> dict[str, Any]:
    """A model's row, layers, warnings, shared files, history and lineage."""
    model = _one(cur, "SELECT * FROM serve.models WHERE model_key = ?", [key],
                 f"no model {key!r} in this lake")
    cols = ", ".join(f'"{c}"' for c in (*_LAYER_TABLE, *caps.format_columns))
    layers = rows(cur, f"""SELECT {cols} FROM serve.layers WHERE model_key = ?
                           ORDER BY file, layer_id, tensor LIMIT {int(max_layers) + 1}""", [key])
    warnings = rows(cur, """
        SELECT w AS label, count(*) AS layers
        FROM (SELECT unnest(string_split(warning, ',')) AS w FROM serve.layers
              WHERE model_key = ? AND warning IS NOT NULL AND warning <> '')
        GROUP BY 1 ORDER BY layers DESC, label""", [key])
    files = rows(cur, """SELECT file, file_sha256, size, reused, n_models FROM serve.files
                         WHERE model_key = ? ORDER BY file""", [key])
    shared = rows(cur, """
        SELECT f.file, o.model_key, m.repo_id, m.revision, m.is_latest
        FROM serve.files AS f
        JOIN serve.files AS o ON o.file_sha256 = f.file_sha256
             AND o.analysis_version = f.analysis_version AND o.model_key <> f.model_key
        JOIN serve.models AS m ON m.model_key = o.model_key
        WHERE f.model_key = ? AND f.n_models > 1
        QUALIFY row_number() OVER (PARTITION BY f.file ORDER BY m.is_latest DESC, m.repo_id, m.revision) <= 20
        ORDER BY f.file, m.repo_id, m.revision""", [key])
    for f in files:
        f["shared_with"] = [s for s in shared if s["file"] == f["file"]]
    history = rows(cur, """
        SELECT h.model_key, h.revision, h.revision_seq, h.scan_date, h.written_at, h.status,
               h.is_latest, h.n_fits, h.alpha_mean, h.alpha_weighted_mean, h.log_norm_mean,
               h.frac_alpha_2_6, h.n_warnings,
               h.alpha_mean - p.alpha_mean AS d_alpha_mean,
               h.log_norm_mean - p.log_norm_mean AS d_log_norm_mean
        FROM serve.models AS h LEFT JOIN serve.models AS p ON p.model_key = h.previous_key
        WHERE h.source = ? AND h.repo_id = ? AND h.analysis_version = ?
        ORDER BY h.revision_seq""", [model["source"], model["repo_id"], model["analysis_version"]])
    return {
        "model": model,
        "layers": layers[:max_layers],
        "layers_truncated": len(layers) > max_layers,
        "warnings": warnings,
        "files": files,
        "history": history,
        "lineage": _lineage(cur, model, caps),
        "deltas": _deltas(cur, model, caps),
        "evals": _evals(cur, model, caps),
    }


def _first(cols: Sequence[str], *names: str) -> str | None:
    return next((n for n in names if n in cols), None)


def _lineage(cur, model: dict[str, Any], caps: Capabilities) -> dict[str, Any] | None:
    """Bases and derived models (fine-tunes, adapters, merges, quantised copies), or None when
    the lake has no lineage. Reads ``lineage_links`` (one row per link) when the lake has it,
    else ``lineage``; a link names its model by ``(source, repo_id[, revision])`` and its base
    by ``(base_source, base_repo_id)``. Each row gets ``model_key``/``base_model_key`` of the
    latest analysis of either side where the lake has one (for links in the page)."""
    rel = next((r for r in ("lineage_links", "lineage") if caps.has(r)), None)
    if rel is None:
        return None
    cols = caps.relation_columns(rel)
    if not {"repo_id", "base_repo_id"} <= set(cols):
        return {"relation": rel, "bases": [], "derived": [],
                "note": f"{rel} columns not recognised: " + ", ".join(cols)}
    mine = ['"repo_id" = $repo'] + (['"source" = $source'] if "source" in cols else [])
    if "revision" in cols:
        mine.append('("revision" IS NULL OR "revision" = $revision)')
    theirs = ['"base_repo_id" = $repo'] + (['"base_source" = $source'] if "base_source" in cols else [])
    src = "source" if "source" in cols else None
    bsrc = "base_source" if "base_source" in cols else None
    p = {"repo": model["repo_id"], "source": model["source"], "revision": model["revision"]}

    def linked(where: list[str]) -> list[dict[str, Any]]:
        params = {k: v for k, v in p.items() if f"${k}" in " ".join(where)}
        return rows(cur, f"""
            SELECT l.*,
                   (SELECT m.model_key FROM serve.models AS m WHERE m.repo_id = l.repo_id
                    {f'AND m.source = l.{src}' if src else ''} AND m.is_latest
                    ORDER BY m.written_at DESC LIMIT 1) AS model_key_latest,
                   (SELECT m.model_key FROM serve.models AS m WHERE m.repo_id = l.base_repo_id
                    {f'AND m.source = l.{bsrc}' if bsrc else ''} AND m.is_latest
                    ORDER BY m.written_at DESC LIMIT 1) AS base_model_key_latest
            FROM serve.{rel} AS l WHERE {' AND '.join(where)}
            ORDER BY l.repo_id, l.base_repo_id LIMIT 200""", params)

    return {"relation": rel, "bases": linked(mine), "derived": linked(theirs)}


def _deltas(cur, model: dict[str, Any], caps: Capabilities) -> list[dict[str, Any]] | None:
    """Per-base summaries of the ``finetune_deltas`` rows of this model (None: none in the lake):
    layers matched, mean Δα and mean Δ log-norm where the view has them."""
    if not caps.has("finetune_deltas"):
        return None
    cols = caps.relation_columns("finetune_deltas")
    if "model_key" not in cols or "base_model_key" not in cols:
        return []
    aggs = [f'avg("{c}") AS mean_{c}' for c in ("delta_alpha", "delta_log_norm") if c in cols]
    return rows(cur, f"""SELECT base_model_key, count(*) AS layers{''.join(', ' + a for a in aggs)}
                         FROM serve.finetune_deltas WHERE model_key = ? GROUP BY 1 ORDER BY 1""",
                [model["model_key"]])


def _evals(cur, model: dict[str, Any], caps: Capabilities) -> list[dict[str, Any]] | None:
    """Reported quality numbers: ``model_evals`` (per analysed model) when the lake has it,
    else ``evals`` by repo (and revision); None when it has neither."""
    if caps.has("model_evals") and "model_key" in caps.relation_columns("model_evals"):
        return rows(cur, "SELECT * FROM serve.model_evals WHERE model_key = ? LIMIT 200",
                    [model["model_key"]])
    if not caps.has("evals"):
        return None
    cols = caps.relation_columns("evals")
    if "model_key" in cols:
        return rows(cur, "SELECT * FROM serve.evals WHERE model_key = ? LIMIT 200", [model["model_key"]])
    if "repo_id" not in cols:
        return []
    where = ['repo_id = $repo'] + (['source = $source'] if "source" in cols else [])
    if "revision" in cols:
        where.append("(revision IS NULL OR revision = $revision)")
    params = {k: v for k, v in {"repo": model["repo_id"], "source": model["source"],
                                "revision": model["revision"]}.items() if f"${k}" in " ".join(where)}
    return rows(cur, f"SELECT * FROM serve.evals WHERE {' AND '.join(where)} LIMIT 200", params)


# --------------------------------------------------------------------------------------------
# One layer
# --------------------------------------------------------------------------------------------
def layer_detail(cur, key: str, file: str, tensor: str) -> dict[str, Any]:
    """A model's layer: every column of its row, its neighbours, how widely its file is shared."""
    row = _one(cur, """SELECT * FROM serve.layers WHERE model_key = ? AND file = ? AND tensor = ?""",
               [key, file, tensor], f"no layer {tensor!r} in {file!r} of {key!r}")
    model = _one(cur, "SELECT * FROM serve.models WHERE model_key = ?", [key],
                 f"no model {key!r} in this lake")
    order = rows(cur, """
        WITH o AS (SELECT file, tensor, layer_id,
                          lag(tensor) OVER w AS prev_tensor, lag(file) OVER w AS prev_file,
                          lead(tensor) OVER w AS next_tensor, lead(file) OVER w AS next_file
                   FROM serve.layers WHERE model_key = ? AND (status <> 'skipped' OR tensor = ?)
                   WINDOW w AS (ORDER BY file, layer_id, tensor))
        SELECT * FROM o WHERE file = ? AND tensor = ?""", [key, tensor, file, tensor])
    shared = rows(cur, """SELECT n_models FROM serve.files WHERE model_key = ? AND file = ?""",
                  [key, file])
    return {"model": model, "layer": row, "neighbours": order[0] if order else {},
            "n_models": shared[0]["n_models"] if shared else 1}


def spectrum(cur, file_sha256: str, tensor: str, analysis_version: str) -> list[float] | None:
    """The stored eigenvalues of one weight-file tensor (``spectra`` by key), or None."""
    got = rows(cur, """SELECT evals FROM spectra WHERE file_sha256 = $s AND tensor = $t
                       AND analysis_version = $v LIMIT 1""",
               {"s": file_sha256, "t": tensor, "v": analysis_version})
    return got[0]["evals"] if got and got[0]["evals"] is not None else None


# --------------------------------------------------------------------------------------------
# Compare two models / revisions
# --------------------------------------------------------------------------------------------
def compare(cur, a: str, b: str, *, max_layers: int) -> dict[str, Any]:
    """Two models side by side, layer by layer (matched by tensor name): Δ = b − a."""
    ma = _one(cur, "SELECT * FROM serve.models WHERE model_key = ?", [a], f"no model {a!r} in this lake")
    mb = _one(cur, "SELECT * FROM serve.models WHERE model_key = ?", [b], f"no model {b!r} in this lake")
    pairs = rows(cur, f"""
        WITH a AS (SELECT * FROM serve.layers WHERE model_key = $a AND status <> 'skipped'
                   QUALIFY row_number() OVER (PARTITION BY tensor ORDER BY file) = 1),
             b AS (SELECT * FROM serve.layers WHERE model_key = $b AND status <> 'skipped'
                   QUALIFY row_number() OVER (PARTITION BY tensor ORDER BY file) = 1)
        SELECT coalesce(a.tensor, b.tensor) AS tensor,
               a.file AS file_a, b.file AS file_b, a.layer_id AS layer_a, b.layer_id AS layer_b,
               CASE WHEN a.valid THEN a.alpha END AS alpha_a,
               CASE WHEN b.valid THEN b.alpha END AS alpha_b,
               CASE WHEN b.valid THEN b.alpha END - CASE WHEN a.valid THEN a.alpha END AS d_alpha,
               a.log_norm AS log_norm_a, b.log_norm AS log_norm_b,
               b.log_norm - a.log_norm AS d_log_norm,
               a.warning AS warning_a, b.warning AS warning_b,
               a.file_sha256 = b.file_sha256 AS same_file
        FROM a FULL OUTER JOIN b ON a.tensor = b.tensor
        ORDER BY coalesce(a.file, b.file), coalesce(a.layer_id, b.layer_id), tensor
        LIMIT {int(max_layers) + 1}""", {"a": a, "b": b})
    summary = rows(cur, """
        WITH a AS (SELECT tensor, CASE WHEN valid THEN alpha END AS alpha, log_norm
                   FROM serve.layers WHERE model_key = $a AND status <> 'skipped'
                   QUALIFY row_number() OVER (PARTITION BY tensor ORDER BY file) = 1),
             b AS (SELECT tensor, CASE WHEN valid THEN alpha END AS alpha, log_norm
                   FROM serve.layers WHERE model_key = $b AND status <> 'skipped'
                   QUALIFY row_number() OVER (PARTITION BY tensor ORDER BY file) = 1)
        SELECT count(*) FILTER (WHERE a.tensor IS NOT NULL AND b.tensor IS NOT NULL) AS matched,
               count(*) FILTER (WHERE b.tensor IS NULL) AS only_a,
               count(*) FILTER (WHERE a.tensor IS NULL) AS only_b,
               avg(b.alpha - a.alpha) AS mean_d_alpha,
               avg(abs(b.alpha - a.alpha)) AS mean_abs_d_alpha,
               avg(b.log_norm - a.log_norm) AS mean_d_log_norm
        FROM a FULL OUTER JOIN b ON a.tensor = b.tensor""", {"a": a, "b": b})[0]
    return {"a": ma, "b": mb, "layers": pairs[:max_layers],
            "layers_truncated": len(pairs) > max_layers, "summary": summary}


# --------------------------------------------------------------------------------------------
# Architectures, what changed
# --------------------------------------------------------------------------------------------
def archs(cur) -> list[dict[str, Any]]:
    """The report's per-architecture table, over the latest revision of every repo."""
    return rows(cur, "SELECT * FROM serve.archs ORDER BY layers DESC, arch")


def changes(cur, snap: Snapshot, since: date | None, *, limit: int = 200) -> dict[str, Any]:
    """New revisions (with how alpha moved), new models, deleted/renamed/restored repos and
    new warnings since ``since`` (default: a week before the newest analysis)."""
    if since is None:
        newest = snap.newest or datetime.now(timezone.utc)
        since = (newest - timedelta(days=7)).date()
    t0 = datetime(since.year, since.month, since.day, tzinfo=timezone.utc)
    lim = int(limit)
    revisions = rows(cur, f"""
        SELECT m.model_key, m.source, m.repo_id, m.revision, m.written_at, m.arch,
               p.model_key AS previous_key, p.revision AS previous_revision,
               p.alpha_mean AS previous_alpha_mean, m.alpha_mean,
               m.alpha_mean - p.alpha_mean AS d_alpha_mean,
               m.log_norm_mean - p.log_norm_mean AS d_log_norm_mean,
               m.n_warnings - p.n_warnings AS d_warnings,
               list_filter(m.warning_labels, lambda x: NOT list_contains(p.warning_labels, x)) AS new_labels
        FROM serve.models AS m JOIN serve.models AS p ON p.model_key = m.previous_key
        WHERE m.written_at >= $t
        ORDER BY abs(m.alpha_mean - p.alpha_mean) DESC NULLS LAST, m.repo_id LIMIT {lim}""", {"t": t0})
    new_models = rows(cur, f"""
        SELECT model_key, source, repo_id, revision, arch, written_at, alpha_mean, n_warnings
        FROM serve.models WHERE written_at >= $t AND revision_seq = 1
        ORDER BY written_at DESC, repo_id LIMIT {lim}""", {"t": t0})
    events = rows(cur, f"""
        SELECT source, repo_id, event, revision, previous_revision, new_repo_id, seen_at
        FROM serve.events WHERE seen_at >= $t AND event IN ('deleted', 'renamed', 'restored')
        ORDER BY seen_at DESC, repo_id LIMIT {lim}""", {"t": t0})
    warned = rows(cur, f"""
        SELECT m.model_key, m.repo_id, m.revision, p.model_key AS previous_key,
               p.n_warnings AS previous_warnings, m.n_warnings,
               list_filter(m.warning_labels, lambda x: NOT list_contains(p.warning_labels, x)) AS new_labels
        FROM serve.models AS m JOIN serve.models AS p ON p.model_key = m.previous_key
        WHERE m.written_at >= $t AND (m.n_warnings > p.n_warnings
              OR len(list_filter(m.warning_labels, lambda x: NOT list_contains(p.warning_labels, x))) > 0)
        ORDER BY m.n_warnings - p.n_warnings DESC, m.repo_id LIMIT {lim}""", {"t": t0})
    n = rows(cur, """
        SELECT (SELECT count(*) FROM serve.models WHERE written_at >= $t
                AND previous_key IS NOT NULL) AS revisions,
               (SELECT count(*) FROM serve.models WHERE written_at >= $t AND revision_seq = 1) AS new,
               (SELECT count(*) FROM serve.events WHERE seen_at >= $t
                AND event IN ('deleted', 'renamed', 'restored')) AS events,
               (SELECT count(*) FROM serve.events) AS all_events""", {"t": t0})[0]
    return {"since": since, "revisions": revisions, "n_revisions": n["revisions"],
            "new_models": new_models, "n_new_models": n["new"], "events": events,
            "n_events": n["events"], "has_events": n["all_events"] > 0, "new_warnings": warned}
