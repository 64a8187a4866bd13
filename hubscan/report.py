"""One self-contained HTML report of a lake: overview, architectures, universality, warnings,
outliers and the seeds' pictures — a file you can mail, with every image inside it.

Built for big lakes: every number is aggregated in DuckDB over *all* rows (one temporary
table of the selected layer rows, then GROUP BYs), and only the pictures that show points
use a bounded, deterministic sample. Per-layer pictures (ESD, fit, KS, layer profile) are
drawn for a handful of layers the report picks (the most extreme and the best-fitted).

No JavaScript, no external resource: plain HTML + CSS, images as base64 PNG (or inline
SVG), so it renders the same offline, in a mail client or a headless browser.

    >>> from hubscan.report import write_report
    >>> write_report("lake/", "report.html", where="arch = 'BertModel'")  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence

from .errors import HubscanError

__all__ = ["ReportOptions", "build_report", "write_report", "report_data", "ReportData"]

#: A warning label is one element of the comma-joined ``warning`` column.
_HAS = "list_contains(string_split(coalesce(warning, ''), ','), '{label}')"


@dataclass(frozen=True, kw_only=True)
class ReportOptions:
    """What the report shows.

    Attributes:
        where: SQL predicate on layer rows (``layers`` view columns plus the model's
            ``accuracy``, ``params``, ``downloads``, ``likes``, ``library``).
        title: page title.
        top_n: rows in each "worst …" table.
        max_groups: architectures drawn in the alpha-by-architecture figure.
        sample_per_group: points drawn per architecture (statistics use every row).
        image_format: ``png`` (base64 ``<img>``) or ``svg`` (inline).
        dpi: PNG resolution.
        layer_figures: draw the per-layer pictures (ESD, fit, KS) of the picked layers.
    """

    where: str | None = None
    title: str = "hubscan report"
    top_n: int = 15
    max_groups: int = 25
    sample_per_group: int = 1500
    image_format: Literal["png", "svg"] = "png"
    dpi: int = 90
    layer_figures: bool = True


# ============================================================================================
# Data: every number of the report, from DuckDB
# ============================================================================================
@dataclass
class ReportData:
    """The report's tables (lists of row dicts) and figures (name → matplotlib Figure)."""

    overview: dict[str, Any]
    scans: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    archs: list[dict[str, Any]]
    phases: list[dict[str, Any]]
    warnings: list[dict[str, Any]]
    worst_models: list[dict[str, Any]]
    under_layers: list[dict[str, Any]]
    over_layers: list[dict[str, Any]]
    collapsed_layers: list[dict[str, Any]]
    model_outliers: list[dict[str, Any]]
    poor_fits: list[dict[str, Any]]
    alpha_hist: Any
    alpha_groups: Any
    series_models: int
    picked_layers: list[dict[str, Any]]
    timings: dict[str, float]


def _rows(con, sql: str, params: Any = None) -> list[dict[str, Any]]:
    from .plots.source import _rows as rows

    return rows(con, sql, params)


def _exec(con, sql: str) -> None:
    """Run a statement to completion (DuckDB ≥ 2 refuses new work while a result is open)."""
    con.execute(sql).fetchall()


def report_data(con, options: ReportOptions = ReportOptions()) -> ReportData:
    """Run every aggregate of the report on an open lake connection (``Lake.connect()``)."""
    from .plots.source import alpha_groups_from_lake, alpha_histogram, base_relation

    t: dict[str, float] = {}
    clock = [time.perf_counter()]

    def lap(name: str) -> None:  # seconds per step, for the report's footer and the benchmark
        now = time.perf_counter()
        t[name] = now - clock[0]
        clock[0] = now

    # One scan of the deduplicating views; every later query reads this table.
    _exec(con, "CREATE OR REPLACE TEMP TABLE report_layers AS " + base_relation(options.where))
    _exec(con, """CREATE OR REPLACE TEMP TABLE report_models AS
                   SELECT * FROM models_latest
                   WHERE model_key IN (SELECT DISTINCT model_key FROM report_layers)""")
    rel = "SELECT * FROM report_layers"
    lap("select")

    under, over, collapse = (_HAS.format(label=x) for x in
                             ("under-trained", "over-trained", "rank-collapse"))
    overview = _rows(con, f"""
        SELECT (SELECT count(*) FROM report_models) AS models,
               (SELECT count(*) FROM report_models WHERE status = 'ok') AS models_ok,
               (SELECT count(*) FROM report_models WHERE status = 'partial') AS models_partial,
               (SELECT count(*) FROM report_models WHERE status = 'failed') AS models_failed,
               (SELECT count(DISTINCT arch) FROM report_models) AS archs,
               (SELECT string_agg(DISTINCT source, ', ') FROM report_models) AS sources,
               (SELECT string_agg(DISTINCT convention, ', ') FROM report_models) AS conventions,
               (SELECT count(DISTINCT analysis_version) FROM report_models) AS analysis_versions,
               count(*) AS tensors,
               count(*) FILTER (WHERE status IN ('ok', 'fit-failed')) AS analysed,
               count(*) FILTER (WHERE valid) AS fitted,
               count(*) FILTER (WHERE status = 'skipped') AS skipped,
               count(*) FILTER (WHERE status = 'fit-failed') AS fit_failed,
               count(*) FILTER (WHERE status = 'error') AS errors,
               count(*) FILTER (WHERE {under}) AS under_trained,
               count(*) FILTER (WHERE {over}) AS over_trained,
               count(*) FILTER (WHERE {collapse}) AS rank_collapse,
               median(alpha) FILTER (WHERE valid) AS alpha_median,
               avg(alpha) FILTER (WHERE valid) AS alpha_mean,
               avg(CASE WHEN alpha BETWEEN 2 AND 4 THEN 1.0 ELSE 0.0 END) FILTER (WHERE valid) AS share_2_4,
               avg(CASE WHEN alpha BETWEEN 2 AND 6 THEN 1.0 ELSE 0.0 END) FILTER (WHERE valid) AS share_2_6,
               min(written_at) AS first_written, max(written_at) AS last_written
        FROM report_layers""")[0]
    lap("overview")

    scans = _rows(con, """
        SELECT scan_id, spec_name, started_at, finished_at, status, n_planned, n_skipped,
               n_done, n_failed, bytes_fetched
        FROM scans ORDER BY started_at DESC LIMIT 10""")
    failures = _rows(con, """
        SELECT stage, error_class, count(*) AS n, count(DISTINCT model_key) AS models,
               any_value(message) AS example
        FROM failures GROUP BY ALL ORDER BY n DESC LIMIT 20""")

    archs = _rows(con, f"""
        SELECT coalesce(arch, '(unknown)') AS arch,
               count(DISTINCT model_key) AS models,
               count(*) FILTER (WHERE status IN ('ok', 'fit-failed')) AS layers,
               count(*) FILTER (WHERE valid) AS fits,
               avg(alpha) FILTER (WHERE valid) AS alpha_mean,
               median(alpha) FILTER (WHERE valid) AS alpha_median,
               avg(CASE WHEN alpha BETWEEN 2 AND 4 THEN 1.0 ELSE 0.0 END) FILTER (WHERE valid) AS share_2_4,
               avg(CASE WHEN alpha BETWEEN 2 AND 6 THEN 1.0 ELSE 0.0 END) FILTER (WHERE valid) AS share_2_6,
               avg(log_norm) FILTER (WHERE valid AND isfinite(log_norm)) AS log_norm_mean,
               count(*) FILTER (WHERE {under}) AS under_trained,
               count(*) FILTER (WHERE {over}) AS over_trained,
               count(*) FILTER (WHERE {collapse}) AS rank_collapse
        FROM report_layers GROUP BY 1 ORDER BY layers DESC, arch""")
    phases = _rows(con, """
        SELECT coalesce(phase, '(none)') AS phase, count(*) AS layers,
               median(alpha) FILTER (WHERE valid) AS alpha_median
        FROM report_layers WHERE status IN ('ok', 'fit-failed')
        GROUP BY 1 ORDER BY layers DESC""")
    warnings = _rows(con, """
        SELECT w AS warning, count(*) AS layers, count(DISTINCT model_key) AS models
        FROM (SELECT model_key, unnest(string_split(warning, ',')) AS w
              FROM report_layers WHERE warning IS NOT NULL AND warning <> '')
        GROUP BY 1 ORDER BY layers DESC""")
    lap("tables")

    n = int(options.top_n)
    layer_cols = ("repo_id, arch, tensor, kind, N, M, num_evals, alpha, D, num_pl_spikes, "
                  "warning, phase, weak_rank_loss")
    worst_models = _rows(con, f"""
        SELECT repo_id, arch, count(*) FILTER (WHERE valid) AS fits,
               count(*) FILTER (WHERE {under}) AS under_trained,
               count(*) FILTER (WHERE {over}) AS over_trained,
               count(*) FILTER (WHERE {collapse}) AS rank_collapse,
               avg(alpha) FILTER (WHERE valid) AS alpha_mean,
               avg(CASE WHEN alpha BETWEEN 2 AND 6 THEN 1.0 ELSE 0.0 END) FILTER (WHERE valid) AS share_2_6,
               (count(*) FILTER (WHERE {under} OR {over} OR {collapse}))
                   / greatest(count(*) FILTER (WHERE status IN ('ok', 'fit-failed')), 1) AS warned_share,
               any_value(model_key) AS model_key
        FROM report_layers GROUP BY repo_id, arch, model_key
        HAVING count(*) FILTER (WHERE {under} OR {over} OR {collapse}) > 0
        ORDER BY warned_share DESC, under_trained + over_trained + rank_collapse DESC, repo_id
        LIMIT {n}""")
    under_layers = _rows(con, f"""SELECT {layer_cols}, model_key FROM report_layers
        WHERE valid AND {under} ORDER BY alpha DESC, repo_id, tensor LIMIT {n}""")
    over_layers = _rows(con, f"""SELECT {layer_cols}, model_key FROM report_layers
        WHERE valid AND {over} ORDER BY alpha ASC, repo_id, tensor LIMIT {n}""")
    collapsed_layers = _rows(con, f"""SELECT {layer_cols}, model_key,
               weak_rank_loss / greatest(num_evals, 1) AS zero_share
        FROM report_layers WHERE {collapse}
        ORDER BY zero_share DESC, repo_id, tensor LIMIT {n}""")
    # Models whose mean alpha is far from their architecture's (≥ 3 models to compare with).
    model_outliers = _rows(con, f"""
        WITH m AS (SELECT model_key, repo_id, coalesce(arch, '(unknown)') AS arch,
                          avg(alpha) FILTER (WHERE valid) AS alpha_mean,
                          count(*) FILTER (WHERE valid) AS fits
                   FROM report_layers GROUP BY ALL HAVING fits > 0),
             a AS (SELECT arch, avg(alpha_mean) AS arch_mean, stddev_samp(alpha_mean) AS arch_sd,
                          count(*) AS arch_models FROM m GROUP BY arch)
        SELECT m.repo_id, m.arch, m.fits, m.alpha_mean, a.arch_mean, a.arch_models,
               (m.alpha_mean - a.arch_mean) / nullif(a.arch_sd, 0) AS z
        FROM m JOIN a USING (arch)
        WHERE a.arch_models >= 3 AND abs((m.alpha_mean - a.arch_mean) / nullif(a.arch_sd, 0)) >= 2
        ORDER BY abs(z) DESC LIMIT {n}""")
    poor_fits = _rows(con, f"""SELECT {layer_cols}, model_key FROM report_layers
        WHERE valid ORDER BY D DESC, repo_id, tensor LIMIT {n}""")
    lap("worst")

    alpha_hist = alpha_histogram(con, relation=rel)
    groups = alpha_groups_from_lake(con, by="arch", relation=rel, max_groups=options.max_groups,
                                    sample_per_group=options.sample_per_group)
    series_models = _rows(con, """SELECT count(*) AS n FROM report_models
                                  WHERE accuracy IS NOT NULL""")[0]["n"]
    lap("figure_data")

    picked = _pick_layers(con, under_layers, over_layers)
    lap("pick_layers")
    return ReportData(overview=overview, scans=scans, failures=failures, archs=archs,
                      phases=phases, warnings=warnings, worst_models=worst_models,
                      under_layers=under_layers, over_layers=over_layers,
                      collapsed_layers=collapsed_layers, model_outliers=model_outliers,
                      poor_fits=poor_fits, alpha_hist=alpha_hist, alpha_groups=groups,
                      series_models=int(series_models), picked_layers=picked, timings=t)


def _pick_layers(con, under: list[dict], over: list[dict]) -> list[dict[str, Any]]:
    """Layers worth a closer look, each with a stored spectrum: the best-fitted heavy tail
    (α in [2, 4], smallest D, most eigenvalues), the most under-trained, the most over-trained.

    Candidates are ranked first and checked for a spectrum one by one (a keyed lookup), never
    with a join of the whole ``spectra`` table."""
    best = _rows(con, """
        SELECT model_key, repo_id, tensor, file_sha256, analysis_version, alpha, D,
               'best-fitted heavy tail' AS why
        FROM report_layers
        WHERE valid AND alpha BETWEEN 2 AND 4 AND num_evals >= 50
        ORDER BY D ASC, num_evals DESC, repo_id, tensor LIMIT 10""")
    picked: list[dict[str, Any]] = []
    for rows, why in ((best, None), (under, "most under-trained"), (over, "most over-trained")):
        for r in rows:
            if _has_spectrum(con, r):
                picked.append({**r, "why": why or r["why"]})
                break
    return picked


def _has_spectrum(con, r: dict[str, Any]) -> bool:
    key = _rows(con, """SELECT file_sha256, analysis_version FROM report_layers
                        WHERE model_key = $k AND tensor = $t LIMIT 1""",
                {"k": r["model_key"], "t": r["tensor"]})
    if not key:
        return False
    return bool(_rows(con, """SELECT 1 AS ok FROM spectra WHERE file_sha256 = $s AND tensor = $t
                              AND analysis_version = $v LIMIT 1""",
                      {"s": key[0]["file_sha256"], "t": r["tensor"],
                       "v": key[0]["analysis_version"]}))


# ============================================================================================
# Figures
# ============================================================================================
def _figures(con, data: ReportData, options: ReportOptions) -> list[tuple[str, str, Any]]:
    """(section, caption, Figure) for every picture of the report."""
    from .plots.alpha import draw_alpha_groups, draw_alpha_histogram
    from .plots.esd import plot_esd
    from .plots.fit import plot_fit
    from .plots.ks import plot_ks
    from .plots.layers import plot_layers
    from .plots.series import plot_series
    from .plots.source import Views

    # Lookups read the report's temporary tables, not the lake's deduplicating views.
    views = Views(models="report_models", models_latest="report_models", layers="report_layers")
    rel = "SELECT * FROM report_layers"
    figs: list[tuple[str, str, Any]] = []
    if data.alpha_hist.total:
        figs.append(("universality", "Every fitted layer's α (exact counts) with the [2, 4] and "
                     "[2, 6] bands.", draw_alpha_histogram(data.alpha_hist)))
        figs.append(("universality", "Layer α by architecture: box = quartiles, points = a "
                     f"sample of ≤ {options.sample_per_group} layers per architecture, shares "
                     "over all layers.", draw_alpha_groups(data.alpha_groups, by="arch")))
    if data.series_models >= 2:
        for metric in ("alpha", "log_norm"):
            figs.append(("series", f"Mean layer {metric} per model vs reported accuracy, one "
                         "line per model series (seed 001).",
                         plot_series(con, metric=metric, vs="accuracy", relation=rel,
                                     views=views)))
    if data.worst_models:
        worst = data.worst_models[0]
        figs.append(("layers", f"Layer α by depth for the model with the largest share of "
                     f"warned layers ({worst['repo_id']}).",
                     plot_layers(con, worst["model_key"], views=views)))
    if options.layer_figures:
        for p in data.picked_layers:
            who = f"{p['repo_id']} · {p['tensor']} ({p['why']}, α = {p['alpha']:.2f})"
            try:
                key, tensor = p["model_key"], p["tensor"]
                figs.append(("layer", f"ESD of {who}.", plot_esd(con, key, tensor, views=views)))
                figs.append(("layer", f"Power-law fit of {who}.",
                             plot_fit(con, key, tensor, views=views)))
                if p["why"] == "best-fitted heavy tail":
                    figs.append(("layer", f"KS distance vs xmin of {who}.",
                                 plot_ks(con, key, tensor, views=views)))
            except HubscanError:  # no spectrum / no fit: that picture is simply left out
                continue
    return figs


def _embed(fig: Any, options: ReportOptions) -> str:
    from .plots._style import figure_bytes

    data = figure_bytes(fig, fmt=options.image_format, dpi=options.dpi)
    if options.image_format == "svg":
        text = data.decode("utf-8")
        return text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE: inline SVG
    return ('<img alt="figure" src="data:image/png;base64,'
            + base64.b64encode(data).decode("ascii") + '">')


# ============================================================================================
# HTML
# ============================================================================================
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #1d2330; background: #f6f7f9; }
header { background: #1d2330; color: #fff; padding: 18px 32px; }
header h1 { margin: 0 0 4px 0; font-size: 22px; }
header p { margin: 0; color: #c8ccd6; font-size: 13px; }
main { padding: 8px 32px 40px 32px; max-width: 1280px; }
section { background: #fff; border: 1px solid #e1e4ea; border-radius: 6px; margin: 18px 0;
          padding: 12px 20px 18px 20px; }
h2 { font-size: 18px; margin: 8px 0 12px 0; }
h3 { font-size: 15px; margin: 18px 0 8px 0; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { border: 1px solid #e1e4ea; border-radius: 6px; padding: 8px 14px; min-width: 120px; }
.card b { display: block; font-size: 20px; }
.card span { font-size: 12px; color: #5b6272; }
table { border-collapse: collapse; font-size: 12.5px; margin: 4px 0 8px 0; }
th, td { border-bottom: 1px solid #e8eaef; padding: 4px 10px; text-align: left; }
th { background: #f0f2f5; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.bad td { background: #fff3f2; }
figure { margin: 12px 0; }
figure img, figure svg { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 12.5px; color: #5b6272; }
.note { font-size: 12.5px; color: #5b6272; }
.empty { color: #8a90a0; font-style: italic; }
nav a { color: #9fc3ff; margin-right: 14px; font-size: 13px; }
code { background: #f0f2f5; padding: 1px 4px; border-radius: 3px; }
"""


def _version() -> str:
    """The installed hubscan version (metadata: works however the package is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hubscan")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def _esc(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _fmt(v: Any, kind: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if kind == "pct":
        return f"{100 * float(v):.0f}%"
    if kind == "f2":
        return f"{float(v):.2f}"
    if kind == "f3":
        return f"{float(v):.3f}"
    if kind == "bytes":
        return _human_bytes(int(v))
    if isinstance(v, datetime):
        return v.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


Column = tuple[str, str, str]  # (key, header, format)


def _table(rows: Sequence[dict[str, Any]], cols: Sequence[Column], *, empty: str = "none",
           bad: Callable[[dict[str, Any]], bool] | None = None) -> str:
    if not rows:
        return f'<p class="empty">{_esc(empty)}</p>'
    head = "".join(f"<th>{_esc(h)}</th>" for _, h, _ in cols)
    body = []
    for r in rows:
        cells = []
        for key, _, kind in cols:
            v = r.get(key)
            num = isinstance(v, (int, float)) and not isinstance(v, bool)
            cells.append(f'<td{" class=num" if num else ""}>{_esc(_fmt(v, kind))}</td>')
        cls = ' class="bad"' if bad and bad(r) else ""
        body.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _cards(items: Iterable[tuple[str, Any, str]]) -> str:
    return '<div class="cards">' + "".join(
        f'<div class="card"><b>{_esc(_fmt(v, k))}</b><span>{_esc(label)}</span></div>'
        for label, v, k in items) + "</div>"


_LAYER_COLS: tuple[Column, ...] = (
    ("repo_id", "model", ""), ("tensor", "tensor", ""), ("kind", "kind", ""),
    ("N", "N", ""), ("M", "M", ""), ("alpha", "α", "f2"), ("D", "D", "f3"),
    ("num_pl_spikes", "K", ""), ("warning", "warning", ""), ("phase", "phase", ""),
)


def _render(data: ReportData, figures: list[tuple[str, str, str]], options: ReportOptions,
            lake_uri: str) -> str:
    __version__ = _version()
    o = data.overview
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    flt = f" · filter: <code>{_esc(options.where)}</code>" if options.where else ""

    def figs(section: str) -> str:
        out = [f"<figure>{img}<figcaption>{_esc(cap)}</figcaption></figure>"
               for s, cap, img in figures if s == section]
        return "".join(out) or '<p class="empty">no picture (not enough data)</p>'

    parts = [f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="hubscan {_esc(__version__)}">
<title>{_esc(options.title)}</title>
<style>{_CSS}</style></head>
<body>
<header><h1>{_esc(options.title)}</h1>
<p>lake <code>{_esc(lake_uri)}</code> · generated {now} · hubscan {_esc(__version__)}{flt}</p>
<nav><a href="#overview">Overview</a><a href="#archs">Architectures</a>
<a href="#universality">Universality</a><a href="#warnings">Warnings</a>
<a href="#outliers">Outliers</a><a href="#pictures">Pictures</a></nav></header>
<main>"""]

    parts.append('<section id="overview"><h2>Scan overview</h2>')
    parts.append(_cards([
        ("models", o["models"], ""), ("architectures", o["archs"], ""),
        ("tensors", o["tensors"], ""), ("matrices analysed", o["analysed"], ""),
        ("power-law fits", o["fitted"], ""), ("median α", o["alpha_median"], "f2"),
        ("α in [2, 4]", o["share_2_4"], "pct"), ("α in [2, 6]", o["share_2_6"], "pct"),
    ]))
    parts.append(f"""<p class="note">Models: {_fmt(o['models_ok'])} ok, {_fmt(o['models_partial'])}
partial, {_fmt(o['models_failed'])} failed · sources: {_esc(o['sources'] or '—')} · conventions:
{_esc(o['conventions'] or '—')} ({_fmt(o['analysis_versions'])} analysis version(s)) ·
tensors skipped: {_fmt(o['skipped'])}, fits failed: {_fmt(o['fit_failed'])}, errors:
{_fmt(o['errors'])} · rows written {_fmt(o['first_written'])} – {_fmt(o['last_written'])}.
Each model counts once, at its latest analysed revision.</p>""")
    parts.append("<h3>Recent scans</h3>" + _table(data.scans, (
        ("scan_id", "scan", ""), ("spec_name", "spec", ""), ("started_at", "started", ""),
        ("finished_at", "finished", ""), ("status", "status", ""), ("n_planned", "planned", ""),
        ("n_skipped", "skipped", ""), ("n_done", "done", ""), ("n_failed", "failed", ""),
        ("bytes_fetched", "fetched", "bytes")), empty="no scan rows (models written directly)",
        bad=lambda r: r.get("status") == "failed"))
    parts.append("<h3>Failures (whole lake)</h3>" + _table(data.failures, (
        ("stage", "stage", ""), ("error_class", "error", ""), ("n", "rows", ""),
        ("models", "models", ""), ("example", "example message", "")), empty="no failures"))
    parts.append("</section>")

    parts.append('<section id="archs"><h2>Per architecture</h2>' + _table(data.archs, (
        ("arch", "architecture", ""), ("models", "models", ""), ("layers", "layers", ""),
        ("fits", "fits", ""), ("alpha_mean", "mean α", "f2"), ("alpha_median", "median α", "f2"),
        ("share_2_4", "α∈[2,4]", "pct"), ("share_2_6", "α∈[2,6]", "pct"),
        ("log_norm_mean", "mean log-norm", "f2"), ("under_trained", "under-trained", ""),
        ("over_trained", "over-trained", ""), ("rank_collapse", "rank collapse", "")),
        empty="no analysed layers") + "</section>")

    parts.append('<section id="universality"><h2>Universality</h2>')
    parts.append('<p class="note">The seeds: 80–90 % of the layer exponents of well-trained '
                 'models lie in [2, 4]; weightwatcher flags α &lt; 2 (over-trained) and α &gt; 6 '
                 '(under-trained).</p>')
    parts.append(figs("universality"))
    parts.append("<h3>Phases of training (seed 001: 5+1 phases)</h3>" + _table(data.phases, (
        ("phase", "phase", ""), ("layers", "layers", ""), ("alpha_median", "median α", "f2")),
        empty="no phase labels"))
    parts.append("</section>")

    parts.append('<section id="warnings"><h2>Warnings</h2>' + _table(data.warnings, (
        ("warning", "label", ""), ("layers", "layers", ""), ("models", "models", "")),
        empty="no warnings"))
    parts.append("<h3>Models with the largest share of warned layers</h3>" + _table(
        data.worst_models, (("repo_id", "model", ""), ("arch", "architecture", ""),
                            ("fits", "fits", ""), ("warned_share", "warned", "pct"),
                            ("under_trained", "under", ""), ("over_trained", "over", ""),
                            ("rank_collapse", "rank collapse", ""),
                            ("alpha_mean", "mean α", "f2"), ("share_2_6", "α∈[2,6]", "pct"))))
    parts.append("<h3>Most under-trained layers (largest α &gt; 6)</h3>"
                 + _table(data.under_layers, _LAYER_COLS))
    parts.append("<h3>Most over-trained layers (smallest α &lt; 2)</h3>"
                 + _table(data.over_layers, _LAYER_COLS))
    parts.append("<h3>Rank collapse (share of zero eigenvalues)</h3>" + _table(
        data.collapsed_layers, (*_LAYER_COLS[:5], ("weak_rank_loss", "zero eigenvalues", ""),
                                ("zero_share", "share", "pct"), ("alpha", "α", "f2"))))
    parts.append("</section>")

    parts.append('<section id="outliers"><h2>Outliers</h2>')
    parts.append("<h3>Models far from their architecture (|z| ≥ 2 of mean α)</h3>" + _table(
        data.model_outliers, (("repo_id", "model", ""), ("arch", "architecture", ""),
                              ("fits", "fits", ""), ("alpha_mean", "mean α", "f2"),
                              ("arch_mean", "architecture mean α", "f2"),
                              ("arch_models", "models in arch", ""), ("z", "z", "f2")),
        empty="no model is 2 standard deviations from its architecture's mean "
              "(needs ≥ 3 models per architecture)"))
    parts.append("<h3>Poorest power-law fits (largest KS distance D)</h3>"
                 + _table(data.poor_fits, _LAYER_COLS))
    parts.append("</section>")

    parts.append('<section id="pictures"><h2>Pictures</h2>')
    parts.append("<h3>Model series</h3>" + figs("series"))
    parts.append("<h3>One model, layer by layer</h3>" + figs("layers"))
    parts.append("<h3>Selected layers</h3>" + figs("layer"))
    parts.append("</section>")

    timing = ", ".join(f"{k} {v:.2f} s" for k, v in data.timings.items())
    parts.append(f'<p class="note">Built in {timing}.</p></main></body></html>\n')
    return "\n".join(parts)


# ============================================================================================
# Entry points
# ============================================================================================
def build_report(lake: Any, *, options: ReportOptions | None = None, **kw: Any) -> str:
    """The report as one HTML string.

    Args:
        lake: a ``Lake``, a lake path/URI, or an open connection with the lake views.
        options: ``ReportOptions``; or give its fields as keywords (``where=…``).
    """
    from .plots.source import connection

    options = options or ReportOptions(**kw)
    uri = str(getattr(lake, "uri", lake)) if not hasattr(lake, "execute") else "(connection)"
    with connection(lake) as con:
        data = report_data(con, options)
        t0 = time.perf_counter()
        figs = _figures(con, data, options)
        embedded = [(s, cap, _embed(fig, options)) for s, cap, fig in figs]
        data.timings["figures"] = time.perf_counter() - t0
    return _render(data, embedded, options, uri)


def write_report(lake: Any, path: str | Path, **kw: Any) -> Path:
    """Write ``build_report(lake, **kw)`` to ``path`` (atomically: temp file, then rename)."""
    path = Path(path)
    text = build_report(lake, **kw)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
