"""The report's HTML: one page of plain HTML + CSS, no JavaScript, no external resource."""

from __future__ import annotations

import html
import math
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Sequence

from .data import ReportData, ReportOptions

__all__ = ["render"]


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


def _quality_section(data: ReportData, figs: Callable[[str], str]) -> str:
    """"Alpha vs accuracy": do the spectral metrics rank models by reported quality?"""
    from ..plots.quality import NO_EVALS

    head = '<section id="quality"><h2>Alpha vs accuracy</h2>'
    if not data.quality and not data.series_models:
        return head + f'<p class="empty">{_esc(NO_EVALS[0].upper() + NO_EVALS[1:])}.</p></section>'
    note = ('<p class="note">The seeds: within a model series, smaller mean α (and log-norm) goes '
            'with better test accuracy. Per family (or base model and its fine-tunes) of ≥ 3 '
            f'models, over the whole lake ({_fmt(data.quality_models)} model(s) report a metric; '
            'the report filter does not apply): Spearman ρ and Kendall τ of each model-level mean '
            'with each reported metric, two-sided permutation p (exact up to 8 models). '
            '"no last FC" leaves each model\'s last dense layer out, as the seeds do for VGG.</p>')
    table = _table(data.quality, (
        ("group_name", "group", ""), ("group_kind", "by", ""), ("metric", "metric", ""),
        ("variant", "layers", ""), ("eval_metric", "vs", ""), ("dataset", "dataset", ""),
        ("n", "n", ""), ("spearman", "Spearman ρ", "f2"), ("p_spearman", "p", "f3"),
        ("kendall", "Kendall τ", "f2"), ("p_kendall", "p", "f3")),
        empty="no group has 3 models with a reported metric")
    return head + note + table + figs("quality") + "</section>"


def render(data: ReportData, figures: list[tuple[str, str, str]], options: ReportOptions,
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
<a href="#universality">Universality</a><a href="#quality">Alpha vs accuracy</a><a href="#warnings">Warnings</a>
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
                 '(under-trained). This report never calls a random-like layer (an ESD the '
                 'Marchenko–Pastur law explains whole) over-trained: its α describes no tail.</p>')
    parts.append(figs("universality"))
    parts.append("<h3>Phases of training (seed 001: 5+1 phases)</h3>" + _table(data.phases, (
        ("phase", "phase", ""), ("layers", "layers", ""), ("alpha_median", "median α", "f2")),
        empty="no phase labels"))
    parts.append("</section>")

    parts.append(_quality_section(data, figs))

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
    parts.append("<h3>One model, layer by layer</h3>" + figs("layers"))
    parts.append("<h3>Selected layers</h3>" + figs("layer"))
    parts.append("</section>")

    timing = ", ".join(f"{k} {v:.2f} s" for k, v in data.timings.items())
    parts.append(f'<p class="note">Built in {timing}.</p></main></body></html>\n')
    return "\n".join(parts)


