"""Pictures from the lake: the seeds' figures, as matplotlib ``Figure``s (docs/plots.md).

Every ``plot_*`` function reads only the lake (a ``Lake``, a path/URI, or an open DuckDB
connection with the lake views) and returns a ``matplotlib.figure.Figure`` — it shows
inline in a notebook; ``save_figure(fig, "x.svg")`` writes PNG or SVG by suffix.

    >>> from hubscan.plots import plot_esd, plot_alpha, save_figure
    >>> fig = plot_esd("lake/", "demo/mlp-16", "fc2")          # doctest: +SKIP
    >>> save_figure(plot_alpha("lake/", by="arch"), "alpha.svg") # doctest: +SKIP

Per layer: ``plot_esd`` (ESD + MP + power law), ``plot_fit`` (PDF/CCDF), ``plot_ks``
(KS vs xmin). Per model: ``plot_layers``; against its base model: ``plot_deltas``. Across
the lake: ``plot_alpha`` (by architecture), ``plot_quality`` (mean alpha vs reported
accuracy per family, with rank correlations), ``plot_series`` (mean metric vs a models
column). Estimator: ``plot_calibration``.
The numbers behind each figure come from ``hubscan.plots.data`` (pure functions) and
``hubscan.plots.source`` (lake queries); the ``draw_*`` functions draw given numbers, and
``esd_figure``/``fit_figure``/``ks_figure`` draw a layer already loaded as a
``source.LayerSpectrum`` (what ``hubscan serve`` does).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "plot_esd", "plot_fit", "plot_ks", "plot_layers", "plot_alpha", "plot_series",
    "plot_calibration", "draw_esd", "draw_fit", "draw_ks", "draw_layers", "draw_alpha_groups",
    "draw_series", "save_figure", "figure_bytes", "PlotDataError", "plot_deltas", "draw_deltas",
    "plot_quality", "draw_quality", "esd_figure", "fit_figure", "ks_figure",
]

_LAZY = {
    "plot_esd": "esd", "draw_esd": "esd", "esd_figure": "esd",
    "plot_fit": "fit", "draw_fit": "fit", "fit_figure": "fit",
    "plot_ks": "ks", "draw_ks": "ks", "ks_figure": "ks",
    "plot_layers": "layers", "draw_layers": "layers",
    "plot_alpha": "alpha", "draw_alpha_groups": "alpha",
    "plot_series": "series", "draw_series": "series",
    "plot_calibration": "calibration",
    "plot_deltas": "deltas", "draw_deltas": "deltas",
    "plot_quality": "quality", "draw_quality": "quality",
    "save_figure": "_style", "figure_bytes": "_style",
    "PlotDataError": "source",
}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'hubscan.plots' has no attribute {name!r}")
    return getattr(importlib.import_module(f"hubscan.plots.{mod}"), name)
