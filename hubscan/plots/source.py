"""Read what a picture needs from the lake — and nothing else (no model is ever re-downloaded).

Every function takes a ``Lake``, a lake URI/path, or an open DuckDB connection with the lake
views (``Lake.connect()``), so the report can run all its queries on one connection.

Selection rules, shared by the CLI and the Python API:

- **model**: an exact ``model_key``; else an exact ``repo_id`` (or ``source/repo_id``) among
  the latest analyses (``models_latest``; the newest ``written_at`` wins when one repo has
  several analysis versions); else a case-insensitive substring of ``repo_id`` that names
  exactly one repo.
- **layer**: a ``layer_id`` (int), an exact tensor name or longname, or a substring naming
  exactly one tensor; by default the analysed layer with the most eigenvalues (the most
  informative ESD), ties broken by checkpoint order.
- **where**: a SQL predicate over the columns of the ``layers`` view plus the model's
  ``accuracy``, ``params``, ``downloads``, ``likes``, ``library`` — it filters layer rows.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import HubscanError
from .data import (
    AlphaGroups,
    AlphaHistogram,
    LayerProfile,
    MPCurve,
    SeriesPoint,
    layer_profile,
    model_family,
    mp_curve,
    series_points,
)

__all__ = [
    "LayerSpectrum",
    "Views",
    "LAKE_VIEWS",
    "connection",
    "resolve_model",
    "layer_spectrum",
    "base_relation",
    "alpha_group_stats",
    "alpha_histogram",
    "alpha_groups_from_lake",
    "series_from_lake",
    "layer_profile_from_lake",
    "VALID_ALPHA",
    "PlotDataError",
]

#: The views' definition of a usable alpha (schemas/views.sql).
VALID_ALPHA = "(status = 'ok' AND alpha IS NOT NULL AND NOT isnan(alpha))"

#: Model columns a ``where`` predicate may use next to the ``layers`` view's own.
MODEL_COLUMNS = ("accuracy", "params", "downloads", "likes", "library")

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class PlotDataError(HubscanError, LookupError):
    """The lake lacks what a picture needs (no such model/layer, no stored spectrum, no fit)."""


@dataclass(frozen=True)
class Views:
    """Which relations the lookups read. The defaults are the lake views; the report points
    them at temporary tables it filled once (``report_layers``, ``report_models``), so that
    a dozen per-layer pictures do not each re-run the deduplicating views of a big lake.

    Attributes:
        models: every model row (exact ``model_key`` lookups).
        models_latest: one row per repo and analysis version (name lookups, series).
        layers: per-model layer rows (the ``layers`` view's columns).
    """

    models: str = "models"
    models_latest: str = "models_latest"
    layers: str = "layers"


LAKE_VIEWS = Views()


# --------------------------------------------------------------------------------------------
# Connections
# --------------------------------------------------------------------------------------------
class connection:  # noqa: N801 - used as a context manager, reads like a function
    """``with connection(lake) as con:`` — a DuckDB connection with the lake views.

    Accepts a ``Lake``, a path/URI, or an already open connection (left open on exit).
    """

    def __init__(self, lake: Any) -> None:
        self._lake = lake
        self._own = False
        self.con = None

    def __enter__(self):
        lake = self._lake
        if hasattr(lake, "execute") and not hasattr(lake, "connect"):
            self.con = lake  # a DuckDB connection
            return self.con
        if isinstance(lake, (str, Path)):
            from ..lake import Lake

            lake = Lake(lake)
        self.con = lake.connect()
        self._own = True
        return self.con

    def __exit__(self, *exc) -> None:
        if self._own and self.con is not None:
            self.con.close()


def _rows(con, sql: str, params: Any = None) -> list[dict[str, Any]]:
    """Rows as dicts, through Arrow (DuckDB's own ``fetchall`` needs pytz for timestamptz)."""
    return _arrow(con, sql, params).to_pylist()


def _arrow(con, sql: str, params: Any = None):
    rel = con.sql(sql, params=params)
    if rel is None:  # a statement without a result (DDL), already executed
        import pyarrow as pa

        return pa.table({})
    fetch = getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table
    return fetch()


def _check_ident(name: str, what: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"{what} must be a column name, not {name!r}")
    return name


# --------------------------------------------------------------------------------------------
# One model, one layer
# --------------------------------------------------------------------------------------------
def resolve_model(con, model: str, *, views: Views = LAKE_VIEWS) -> dict[str, Any]:
    """The ``models`` row ``model`` names (see the module docstring for the rules)."""
    rows = _rows(con, f"SELECT * FROM {views.models} WHERE model_key = ?", [model])
    if not rows:
        rows = _rows(con, f"""
            SELECT * FROM {views.models_latest}
            WHERE repo_id = $m OR source || '/' || repo_id = $m OR source || '://' || repo_id = $m
            ORDER BY written_at DESC, model_key DESC""", {"m": model})
    if not rows:
        rows = _rows(con, f"""
            SELECT * FROM {views.models_latest} WHERE contains(lower(repo_id), lower($m))
            ORDER BY written_at DESC, model_key DESC""", {"m": model})
        repos = sorted({(r["source"], r["repo_id"]) for r in rows})
        if len(repos) > 1:
            names = ", ".join(f"{s}/{r}" for s, r in repos[:10])
            more = f" (and {len(repos) - 10} more)" if len(repos) > 10 else ""
            raise PlotDataError(f"{model!r} matches {len(repos)} models: {names}{more}")
    if not rows:
        raise PlotDataError(f"no model {model!r} in the lake (give a repo_id or model_key; "
                            "`hubscan query \"SELECT repo_id FROM models\"` lists them)")
    return rows[0]


@dataclass(frozen=True)
class LayerSpectrum:
    """One layer of one model with its stored eigenvalues: everything a per-layer figure needs.

    Attributes:
        model: the ``models`` row.
        row: the ``layers`` view row (alpha, xmin, xmax, D, Q, sigma_mp, bulk_max, …).
        evals: eigenvalues as stored in ``spectra`` (float32, ascending), on the
            convention's scale (``ww``: σ², conv layers halved; ``seed``: σ²/N).
    """

    model: dict[str, Any]
    row: dict[str, Any]
    evals: np.ndarray = field(repr=False)

    @property
    def model_name(self) -> str:
        return str(self.model.get("repo_id") or self.model.get("model_key"))

    @property
    def layer_name(self) -> str:
        return str(self.row.get("longname") or self.row.get("tensor"))

    @property
    def fitter(self) -> str:
        return str(self.row.get("fitter") or self.row.get("convention") or "ww")

    @property
    def eval_label(self) -> str:
        conv = self.row.get("convention") or "ww"
        return "eigenvalue λ = σ²/N (seed scale)" if conv == "seed" else "eigenvalue λ = σ² (ww scale)"

    @property
    def fit_options(self) -> dict[str, Any]:
        """Options that make a refit of ``evals`` reproduce the lake's fit.

        A ``ww`` fit whose xmax is below the largest eigenvalue was clipped
        (``fix_fingers='clip_xmax'`` or an int ``xmax``): the refit clips there too.
        """
        xmax = self.row.get("xmax")
        if xmax is None or not self.evals.size or not math.isfinite(xmax):
            return {}
        top = float(self.evals[-1])
        if xmax < top * (1 - 1e-6):
            return {"xmax": float(xmax)}
        return {}

    def title(self, what: str, *, fit: bool = True) -> str:
        r = self.row
        parts = [f"{self.model_name} · {self.layer_name}"]
        dims = []
        if r.get("N") and r.get("M"):
            dims.append(f"N×M = {r['N']}×{r['M']}")
        if r.get("rf") and r["rf"] > 1:
            dims.append(f"rf = {r['rf']}")
        if r.get("Q"):
            dims.append(f"Q = {r['Q']:.3g}")
        dims.append(f"{self.evals.size} eigenvalues")
        if fit and r.get("alpha") is not None and not _isnan(r.get("alpha")):
            dims.append(f"α = {r['alpha']:.3f}")
        if r.get("warning"):
            dims.append(str(r["warning"]))
        return f"{parts[0]} — {what}\n" + ", ".join(dims)

    def mp_curve(self) -> MPCurve | None:
        """The lake's MP fit on the eigenvalues' own scale, or None when there is none.

        ``hubscan.esd.mp`` (weightwatcher's procedure) keeps ``sigma_mp`` on the mean-1 scale and
        ``bulk_max = σ²(1+1/√Q)²`` on the ESD's scale; so the MP variance on the lake's scale
        is ``bulk_max / (1 + 1/√Q)²`` and the drawn curve ends exactly at ``bulk_max``.
        """
        return mp_curve_for_row(self.row, self.evals)


def mp_curve_for_row(row: dict[str, Any], evals: np.ndarray | None = None) -> MPCurve | None:
    """MP curve from a ``layers`` row (``bulk_max`` and ``Q``; ``sigma_mp`` × mean(evals)
    when ``bulk_max`` is missing). None when the row has no MP fit."""
    Q = row.get("Q")
    if Q is None or _isnan(Q) or Q < 1:
        return None
    bulk_max = row.get("bulk_max")
    if bulk_max is not None and not _isnan(bulk_max) and bulk_max > 0:
        sigma2 = float(bulk_max) / (1.0 + 1.0 / math.sqrt(Q)) ** 2
    else:
        s = row.get("sigma_mp")
        if s is None or _isnan(s) or s <= 0 or evals is None or not len(evals):
            return None
        sigma2 = float(s) ** 2 * float(np.mean(np.asarray(evals, dtype=np.float64)))
    return mp_curve(sigma2=sigma2, Q=float(Q))


def _isnan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)


def _select_layer(con, model_key: str, layer: str | int | None, *,
                  views: Views = LAKE_VIEWS) -> dict[str, Any]:
    base = f"SELECT * FROM {views.layers} WHERE model_key = $k"
    if layer is None:
        rows = _rows(con, base + f""" AND {VALID_ALPHA}
            ORDER BY num_evals DESC NULLS LAST, layer_id, tensor LIMIT 1""", {"k": model_key})
        if not rows:
            rows = _rows(con, base + """ AND status <> 'skipped'
                ORDER BY num_evals DESC NULLS LAST, layer_id, tensor LIMIT 1""", {"k": model_key})
        if not rows:
            raise PlotDataError(f"{model_key}: no analysed layer")
        return rows[0]
    if isinstance(layer, int) or (isinstance(layer, str) and layer.isdigit()):
        rows = _rows(con, base + " AND layer_id = $i ORDER BY file, tensor",
                     {"k": model_key, "i": int(layer)})
        if rows:
            return rows[0]
    # A longname names a module: its weight is analysed, its bias skipped — prefer analysed.
    rows = _rows(con, base + """ AND (tensor = $l OR longname = $l)
                 ORDER BY (status = 'skipped'), file, tensor""", {"k": model_key, "l": str(layer)})
    if rows:
        return rows[0]
    rows = _rows(con, base + """ AND contains(lower(tensor), lower($l)) AND status <> 'skipped'
                 ORDER BY layer_id, tensor""", {"k": model_key, "l": str(layer)})
    if len(rows) == 1:
        return rows[0]
    if rows:
        names = ", ".join(r["tensor"] for r in rows[:8])
        raise PlotDataError(f"{layer!r} matches {len(rows)} tensors: {names}…")
    raise PlotDataError(f"{model_key}: no layer {layer!r}")


def layer_spectrum(lake: Any, model: str, layer: str | int | None = None, *,
                   views: Views = LAKE_VIEWS) -> LayerSpectrum:
    """Resolve ``model``/``layer`` and load the layer's stored eigenvalues.

    Raises:
        PlotDataError: no such model/layer, the layer was not analysed, or the scan did not
            keep spectra (``keep_spectra = false``).
    """
    with connection(lake) as con:
        m = resolve_model(con, model, views=views)
        row = _select_layer(con, m["model_key"], layer, views=views)
        if row.get("status") == "skipped":
            raise PlotDataError(f"{row['tensor']} was skipped ({row.get('skip_reason')}): no ESD")
        ev = _rows(con,
                   "SELECT evals FROM spectra WHERE file_sha256 = $s AND tensor = $t "
                   "AND analysis_version = $v LIMIT 1",
                   {"s": row["file_sha256"], "t": row["tensor"], "v": row["analysis_version"]})
    if not ev or ev[0]["evals"] is None:
        raise PlotDataError(f"{m['repo_id']} · {row['tensor']}: no spectrum in the lake "
                            "(the scan ran with keep_spectra = false)")
    evals = np.sort(np.asarray(ev[0]["evals"], dtype=np.float32))
    return LayerSpectrum(model=m, row=row, evals=evals)


# --------------------------------------------------------------------------------------------
# Many layers: the base relation, alphas by group, series, per-model profile
# --------------------------------------------------------------------------------------------
def base_relation(where: str | None = None, *, latest: bool = True) -> str:
    """SQL for the layer rows plots aggregate: the latest analysis of each model, joined with
    a few model columns, filtered by ``where``. A sub-query, to use as ``FROM (…) AS b``."""
    cols = ", ".join(f"m.{c} AS {c}" for c in MODEL_COLUMNS)
    src = "layers_latest" if latest else "layers"
    valid = "(l.status = 'ok' AND l.alpha IS NOT NULL AND NOT isnan(l.alpha))"
    sql = (f"SELECT l.*, {cols}, {valid} AS valid "
           f"FROM {src} AS l JOIN models AS m ON m.model_key = l.model_key")
    if where:
        sql = f"SELECT * FROM ({sql}) WHERE ({where})"
    return sql


def alpha_group_stats(con, *, by: str = "arch", relation: str | None = None,
                      max_groups: int = 25) -> list[dict[str, Any]]:
    """Per group: fitted-layer count, exact shares in [2, 4] and [2, 6], median alpha.

    Groups beyond ``max_groups`` (by count) are merged into ``other``. Ordered by count.
    """
    by = _check_ident(by, "by")
    rel = relation or base_relation()
    counts = _rows(con, f"""
        SELECT coalesce(CAST({by} AS VARCHAR), '(unknown)') AS g, count(*) AS n
        FROM ({rel}) WHERE valid GROUP BY g ORDER BY n DESC, g""")
    top = [r["g"] for r in counts]
    if len(top) > max_groups:
        top = top[: max_groups - 1]
    rows = _rows(con, f"""
        WITH t AS (
            SELECT CASE WHEN list_contains($top, g) THEN g ELSE 'other' END AS g, alpha
            FROM (SELECT coalesce(CAST({by} AS VARCHAR), '(unknown)') AS g, alpha
                  FROM ({rel}) WHERE valid))
        SELECT g, count(*) AS n,
               avg(CASE WHEN alpha BETWEEN 2 AND 4 THEN 1.0 ELSE 0.0 END) AS share_2_4,
               avg(CASE WHEN alpha BETWEEN 2 AND 6 THEN 1.0 ELSE 0.0 END) AS share_2_6,
               median(alpha) AS median, avg(alpha) AS mean
        FROM t GROUP BY g ORDER BY (g = 'other'), n DESC, g""", {"top": top})
    return rows


def alpha_groups_from_lake(lake: Any, *, by: str = "arch", where: str | None = None,
                           max_groups: int = 25, sample_per_group: int = 2000,
                           relation: str | None = None) -> AlphaGroups:
    """``AlphaGroups`` with exact per-group statistics and a deterministic sample of points.

    The sample takes, per group, the ``sample_per_group`` rows with the smallest
    ``hash(model_key, tensor)`` — stable across runs, unbiased with respect to alpha.
    """
    by = _check_ident(by, "by")
    rel = relation or base_relation(where)
    with connection(lake) as con:
        # One pass over the (deduplicating) views into a small temp table; the three
        # queries below read that instead of re-running the views.
        tmp = f"_hubscan_alpha_{abs(hash((by, rel))) % 10**12}"
        _arrow(con, f"""CREATE OR REPLACE TEMP TABLE {tmp} AS
                        SELECT {by}, alpha, model_key, tensor, valid FROM ({rel}) WHERE valid""")
        try:
            small = f"SELECT * FROM {tmp}"
            stats = alpha_group_stats(con, by=by, relation=small, max_groups=max_groups)
            names = [r["g"] for r in stats]
            top = [n for n in names if n != "other"]
            pts = _rows(con, f"""
                WITH t AS (
                    SELECT CASE WHEN list_contains($top, g) THEN g ELSE 'other' END AS g,
                           alpha, h
                    FROM (SELECT coalesce(CAST({by} AS VARCHAR), '(unknown)') AS g, alpha,
                                 hash(model_key, tensor) AS h
                          FROM {tmp}))
                SELECT g, alpha FROM t
                QUALIFY row_number() OVER (PARTITION BY g ORDER BY h) <= $k""",
                        {"top": top, "k": int(sample_per_group)})
        finally:
            _arrow(con, f"DROP TABLE IF EXISTS {tmp}")
    by_group: dict[str, list[float]] = {n: [] for n in names}
    for r in pts:
        by_group.setdefault(r["g"], []).append(r["alpha"])
    return AlphaGroups(
        names=tuple(names),
        values=tuple(np.sort(np.asarray(by_group[n], dtype=np.float64)) for n in names),
        n=np.array([r["n"] for r in stats], dtype=np.int64),
        share_2_4=np.array([r["share_2_4"] for r in stats], dtype=np.float64),
        share_2_6=np.array([r["share_2_6"] for r in stats], dtype=np.float64),
        median=np.array([r["median"] for r in stats], dtype=np.float64),
    )


#: Metrics that exist only where the power-law fit succeeded.
FIT_METRICS = ("alpha", "alpha_weighted", "log_alpha_norm", "D", "sigma", "xmin")

#: Layer metrics a series plot can average (``layers`` columns).
SERIES_METRICS = ("alpha", "alpha_weighted", "log_norm", "log_spectral_norm", "log_alpha_norm",
                  "stable_rank", "entropy", "D")


def series_from_lake(lake: Any, *, metric: str = "alpha", vs: str = "accuracy",
                     family: str | Sequence[str] | None = None, where: str | None = None,
                     exclude_last: bool = False, relation: str | None = None,
                     views: Views = LAKE_VIEWS) -> list[SeriesPoint]:
    """One point per model (latest analysis): ``x`` = the model's ``vs`` column, ``y`` = the
    mean of ``metric`` over its layers — layers with a valid alpha for alpha-based metrics,
    every analysed matrix for the others — the means of the ``models`` table
    (``analysis.summary.model_summary``: ``alpha_mean``, ``log_norm_mean`` …).

    Args:
        metric: a ``layers`` column (``SERIES_METRICS``).
        vs: a ``models`` column (``accuracy``, ``params``, ``downloads`` …).
        family: keep models whose ``data.model_family(repo_id)`` is in it.
        exclude_last: drop each model's last analysed layer (highest ``layer_id``) from its
            mean, as ``model_summary(exclude_final_layer=True)``.
        relation: the layer rows to use (a ``base_relation``-shaped sub-query) instead of
            ``base_relation(where)``.
    """
    metric = _check_ident(metric, "metric")
    vs = _check_ident(vs, "vs")
    rel = relation or base_relation(where)
    # The last layer = the analysed matrix with the largest layer_id (analysis.summary.model_summary's
    # exclude_final_layer), whether or not its fit succeeded.
    last = ("QUALIFY layer_id IS DISTINCT FROM max(layer_id) FILTER "
            "(WHERE status IN ('ok', 'fit-failed')) OVER (PARTITION BY model_key)"
            if exclude_last else "")
    # As analysis.summary.model_summary (the models table): alpha-based metrics over successful fits,
    # the others over every analysed matrix.
    keep = "valid" if metric in FIT_METRICS else "status IN ('ok', 'fit-failed')"
    with connection(lake) as con:
        rows = _rows(con, f"""
            WITH a AS (
                SELECT model_key, layer_id, valid, status, CAST({metric} AS DOUBLE) AS y
                FROM ({rel}) {last}),
            v AS (SELECT * FROM a WHERE {keep})
            SELECT m.model_key, m.repo_id, CAST(m.{vs} AS DOUBLE) AS x,
                   list(v.y) FILTER (WHERE v.y IS NOT NULL AND isfinite(v.y)) AS ys
            FROM {views.models_latest} AS m JOIN v ON v.model_key = m.model_key
            GROUP BY ALL ORDER BY m.repo_id""")
    fams = [model_family(r["repo_id"]) for r in rows]
    if family is not None:
        wanted = {family.lower()} if isinstance(family, str) else {f.lower() for f in family}
        keep = [i for i, f in enumerate(fams) if f in wanted]
        rows = [rows[i] for i in keep]
        fams = [fams[i] for i in keep]
    return series_points([r["repo_id"] for r in rows],
                         [np.asarray(r["ys"] or [], dtype=np.float64) for r in rows],
                         [r["x"] for r in rows], families=fams)


def layer_profile_from_lake(lake: Any, model: str, *,
                            views: Views = LAKE_VIEWS) -> tuple[LayerProfile, str]:
    """Every analysed (not skipped) layer of one model, in checkpoint order."""
    with connection(lake) as con:
        m = resolve_model(con, model, views=views)
        rows = _rows(con, f"""
            SELECT layer_id, file, tensor, longname, kind,
                   CASE WHEN {VALID_ALPHA} THEN alpha END AS alpha, warning
            FROM {views.layers} WHERE model_key = $k AND status <> 'skipped'
            ORDER BY file, layer_id, tensor""", {"k": m["model_key"]})
    if not rows:
        raise PlotDataError(f"{m['repo_id']}: no analysed layer")
    prof = layer_profile([r["layer_id"] for r in rows],
                         [r["longname"] or r["tensor"] for r in rows],
                         [r["kind"] for r in rows], [r["alpha"] for r in rows],
                         [r["warning"] for r in rows])
    return prof, str(m["repo_id"])


def alpha_histogram(con, *, relation: str | None = None, lo: float = 0.0, hi: float = 12.0,
                    width: float = 0.25) -> AlphaHistogram:
    """Exact histogram of every valid alpha, counted in DuckDB (no sample), and the exact
    shares in [2, 4] and [2, 6]. Bins are ``[lo + k·width, lo + (k+1)·width)``, the last one
    closed (``np.histogram`` semantics)."""
    rel = relation or base_relation()
    nb = int(round((hi - lo) / width))
    edges = lo + width * np.arange(nb + 1)
    rows = _rows(con, f"""
        SELECT CASE WHEN alpha < $lo THEN -1
                    WHEN alpha > $hi THEN $nb + 1
                    ELSE least(CAST(floor((alpha - $lo) / $w) AS BIGINT), $nb - 1) END AS k,
               count(*) AS n,
               count(*) FILTER (WHERE alpha BETWEEN 2 AND 4) AS n24,
               count(*) FILTER (WHERE alpha BETWEEN 2 AND 6) AS n26
        FROM ({rel}) WHERE valid GROUP BY k""", {"lo": lo, "hi": hi, "w": width, "nb": nb})
    counts = np.zeros(nb, dtype=np.int64)
    below = above = n24 = n26 = 0
    for r in rows:
        k, n = int(r["k"]), int(r["n"])
        n24 += int(r["n24"])
        n26 += int(r["n26"])
        if k < 0:
            below += n
        elif k > nb:
            above += n
        else:
            counts[k] += n
    total = int(counts.sum()) + below + above
    return AlphaHistogram(edges=edges, counts=counts, n_below=below, n_above=above,
                          share_2_4=n24 / total if total else float("nan"),
                          share_2_6=n26 / total if total else float("nan"))
