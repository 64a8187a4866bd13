"""Shared look of every hubscan figure, and saving by file suffix.

Figures are built with ``matplotlib.figure.Figure`` directly, never through ``pyplot``: no
global figure registry to leak memory in a long report, no backend switch that could
surprise a notebook, safe in worker threads. Jupyter still shows a returned ``Figure``
(matplotlib-inline renders it), and ``Figure.savefig`` writes PNG/SVG with the Agg/SVG
canvases.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["new_figure", "style", "save_figure", "figure_bytes", "shade_alpha_bands",
           "COLORS", "SUPPORTED_FORMATS"]

#: Colours the seeds use: blue = PDF / data, red = CCDF / MP fit, orange = xmin.
COLORS = {
    "data": "#1f77b4",
    "ccdf": "#d62728",
    "mp": "#d62728",
    "xmin": "#ff7f0e",
    "fit": "#2ca02c",
    "band24": "#2ca02c",
    "band26": "#98df8a",
    "muted": "#7f7f7f",
}

SUPPORTED_FORMATS = ("png", "svg")

_RC = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 8,
    "legend.framealpha": 0.85,
    "svg.fonttype": "none",  # text stays text in SVG: smaller and searchable
    "svg.hashsalt": "hubscan",  # element ids from content, not uuid4: the same figure, the same bytes
}


def style():
    """Context manager with hubscan's rc settings; wrap the whole drawing in it."""
    import matplotlib

    return matplotlib.rc_context(_RC)


def new_figure(width: float = 8.0, height: float = 4.5, *, nrows: int = 1, ncols: int = 1,
               **subplot_kw):
    """A Figure with a grid of axes (``constrained`` layout, so labels never overlap).

    Call inside ``with style():`` so fonts and grids follow the house style.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, axes


def shade_alpha_bands(ax: "Axes", *, orientation: str = "horizontal", label: bool = True) -> None:
    """Shade alpha ∈ [2, 6] (light) and [2, 4] (darker): the seeds' universality bands.

    ``horizontal`` shades y-ranges (alpha on the y axis), ``vertical`` shades x-ranges.
    """
    span = ax.axhspan if orientation == "horizontal" else ax.axvspan
    span(2.0, 6.0, color=COLORS["band26"], alpha=0.25, zorder=0,
         label="α ∈ [2, 6]" if label else None)
    span(2.0, 4.0, color=COLORS["band24"], alpha=0.18, zorder=0,
         label="α ∈ [2, 4]" if label else None)


def _format_of(path: str | Path, fmt: str | None) -> str:
    f = (fmt or Path(path).suffix.lstrip(".")).lower()
    if f not in SUPPORTED_FORMATS:
        raise ValueError(f"unsupported image format {f!r}: use a .png or .svg file name")
    return f


def save_figure(fig: "Figure", path: str | Path, *, fmt: str | None = None, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path``; the format comes from the suffix (``.png`` or ``.svg``).

    The file appears whole or not at all (written to a temporary name, then renamed), so a
    report or a web server never serves half a PNG.
    """
    path = Path(path)
    f = _format_of(path, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format=f, dpi=dpi, metadata=_metadata(f))
    tmp.replace(path)
    return path


def figure_bytes(fig: "Figure", *, fmt: str = "png", dpi: int = 100) -> bytes:
    """The encoded image (for embedding in HTML)."""
    buf = io.BytesIO()
    fig.savefig(buf, format=_format_of("x." + fmt, fmt), dpi=dpi, metadata=_metadata(fmt))
    return buf.getvalue()


def _metadata(fmt: str) -> dict:
    # Reproducible files: no creation date, a fixed creator (README images do not churn).
    if fmt == "png":
        return {"Software": "hubscan"}
    return {"Creator": "hubscan", "Date": None}
