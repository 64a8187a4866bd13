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

import time
from pathlib import Path
from typing import Any

from .data import ReportData, ReportOptions, report_data
from .figures import embed, figures
from .render import render

__all__ = ["ReportOptions", "build_report", "write_report", "report_data", "ReportData"]


def build_report(lake: Any, *, options: ReportOptions | None = None, **kw: Any) -> str:
    """The report as one HTML string.

    Args:
        lake: a ``Lake``, a lake path/URI, or an open connection with the lake views.
        options: ``ReportOptions``; or give its fields as keywords (``where=…``).
    """
    from ..plots.source import connection

    options = options or ReportOptions(**kw)
    uri = str(getattr(lake, "uri", lake)) if not hasattr(lake, "execute") else "(connection)"
    with connection(lake) as con:
        data = report_data(con, options)
        t0 = time.perf_counter()
        figs = figures(con, data, options)
        embedded = [(s, cap, embed(fig, options)) for s, cap, fig in figs]
        data.timings["figures"] = time.perf_counter() - t0
    return render(data, embedded, options, uri)


def write_report(lake: Any, path: str | Path, **kw: Any) -> Path:
    """Write ``build_report(lake, **kw)`` to ``path`` (atomically: temp file, then rename)."""
    path = Path(path)
    text = build_report(lake, **kw)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
