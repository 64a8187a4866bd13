"""The power-law fit figure: empirical vs fitted PDF and CCDF on log-log axes.

Seed 000's "Linear Log Log Plots" and seed 002's fit check, as the ``powerlaw`` package
draws them: solid lines are the data (PDF blue, CCDF red), dashed lines the fitted power
law. A good fit shows two straight, overlapping pairs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ._style import COLORS, new_figure, style
from .data import FitCurves, power_law_curves

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["draw_fit", "plot_fit", "fit_figure"]


def draw_fit(curves: FitCurves, *, title: str = "", D: float | None = None,
             xlabel: str = "eigenvalue λ") -> "Figure":
    """One log-log panel with the four curves of ``curves`` (see ``data.power_law_curves``).

    Lines, in order: empirical PDF, fitted PDF, empirical CCDF, fitted CCDF — the test
    suite reads them back from ``fig.axes[0].lines``.
    """
    c = curves
    with style():
        fig, axes = new_figure(7.0, 5.0)
        ax = axes[0, 0]
        pdf = np.where(c.pdf_density > 0, c.pdf_density, np.nan)
        ax.plot(c.pdf_centers, pdf, color=COLORS["data"], lw=2, marker="o", ms=3,
                label="empirical PDF")
        ax.plot(c.pdf_centers, c.fit_pdf, color=COLORS["data"], lw=1.5, ls="--",
                label="power-law PDF")
        ccdf = np.where(c.ccdf > 0, c.ccdf, np.nan)
        ax.plot(c.ccdf_x, ccdf, color=COLORS["ccdf"], lw=2, label="empirical CCDF  P(X ≥ x)")
        fit_ccdf = np.where(c.fit_ccdf > 0, c.fit_ccdf, np.nan)
        ax.plot(c.ccdf_x, fit_ccdf, color=COLORS["ccdf"], lw=1.5, ls="--",
                label="power-law CCDF")
        ax.axvline(c.xmin, color=COLORS["xmin"], lw=1.2, ls=":", label=f"xmin = {c.xmin:.4g}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("p(x),  P(X ≥ x)")
        stats = f"α = {c.alpha:.3f}, n_tail = {c.n_tail}, fitter = {c.fitter}"
        if D is not None and np.isfinite(D):
            stats += f", D = {D:.3f}"
        ax.set_title((title + "\n" if title else "") + stats)
        ax.legend(loc="lower left")
    return fig


def plot_fit(lake, model: str, layer: str | int | None = None, *,
             bins_per_decade: int = 10, views=None) -> "Figure":
    """PDF/CCDF fit figure of one layer in the lake, using the lake's alpha, xmin and xmax."""
    from .source import LAKE_VIEWS, layer_spectrum

    return fit_figure(layer_spectrum(lake, model, layer, views=views or LAKE_VIEWS),
                      bins_per_decade=bins_per_decade)


def fit_figure(ls, *, bins_per_decade: int = 10) -> "Figure":
    """The PDF/CCDF figure of an already loaded ``source.LayerSpectrum``."""
    r = ls.row
    if r.get("alpha") is None or r.get("xmin") is None:
        from ..errors import HubscanError

        raise HubscanError(f"{ls.layer_name} of {ls.model_name} has no power-law fit "
                           f"(status {r.get('status')!r}, warning {r.get('warning')!r})")
    curves = power_law_curves(ls.evals, alpha=float(r["alpha"]), xmin=float(r["xmin"]),
                              xmax=r.get("xmax"), fitter=ls.fitter,
                              bins_per_decade=bins_per_decade)
    if curves.n_tail == 0:
        from .source import PlotDataError

        raise PlotDataError(f"{ls.layer_name} of {ls.model_name}: no stored eigenvalue is ≥ the "
                            f"lake's xmin {r['xmin']:.4g} (spectra and layers disagree)")
    return draw_fit(curves, title=ls.title("power-law fit", fit=False), D=r.get("D"),
                    xlabel=ls.eval_label)
