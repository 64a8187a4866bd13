"""The ESD figure: eigenvalue histogram, linear and log-log, with the MP bulk and the power law.

Seed 000/001's first pictures: a histogram of one layer's eigenvalues (linear, where the MP
bulk shows), the same on log-log axes (where a power-law tail is a straight line), the
fitted Marchenko–Pastur density in red and the start of the power-law tail (xmin) in
orange, with the fitted power-law density drawn from xmin on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ._style import COLORS, new_figure, style
from .data import MPCurve, esd_panels, power_law_pdf, tail_of

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["draw_esd", "plot_esd", "esd_figure"]


def draw_esd(evals: np.ndarray, *, title: str = "", bins: int | None = None,
             mp: MPCurve | None = None, alpha: float | None = None, xmin: float | None = None,
             xmax: float | None = None, fitter: str = "ww", xlabel: str = "eigenvalue λ",
             ) -> "Figure":
    """Two panels: linear ESD (left) and log-log ESD (right) of ``evals``.

    Args:
        evals: the layer's eigenvalues (any order), on the lake's scale.
        bins: histogram bins (default ``data.auto_bins``: 2√n within [10, 100]).
        mp: the MP density to overlay (``data.mp_curve``); skipped when None.
        alpha, xmin, xmax, fitter: the power-law fit to overlay; its density is drawn from
            xmin on, scaled by the tail's share of the ESD so it sits on the histogram.
    Returns:
        The figure; ``fig.axes[0]`` linear (zoomed on the bulk), ``fig.axes[1]`` log-log.
        Bars are the densities of ``data.esd_panels(evals, bins=bins, marks=(xmin, λ+))``.
    """
    ev = np.asarray(evals, dtype=np.float64)
    with style():
        fig, axes = new_figure(11.0, 4.4, ncols=2)
        panels = esd_panels(ev, bins=bins,
                            marks=(xmin, mp.lambda_plus if mp is not None else None))
        for ax, log, h in zip(axes[0], (False, True), panels):
            ax.bar(h.edges[:-1], h.density, width=np.diff(h.edges), align="edge",
                   color=COLORS["data"], alpha=0.55, edgecolor="none",
                   label=f"ESD ({int(h.counts.sum() + h.n_beyond)} eigenvalues)")
            if mp is not None:
                sel = mp.density > 0
                ax.plot(mp.x[sel], mp.density[sel], color=COLORS["mp"], lw=1.8,
                        label=f"MP fit (σ² = {mp.sigma2:.3g}, Q = {mp.Q:.3g})")
                ax.axvline(mp.lambda_plus, color=COLORS["mp"], lw=0.9, ls=":",
                           label=f"MP edge λ+ = {mp.lambda_plus:.3g}")
            if xmin is not None and np.isfinite(xmin):
                ax.axvline(xmin, color=COLORS["xmin"], lw=1.6, ls="--",
                           label=f"xmin = {xmin:.4g}")
                if alpha is not None and np.isfinite(alpha):
                    tail = tail_of(ev, xmin=xmin, xmax=xmax if fitter != "ww" else None)
                    n_hist = max(int(h.counts.sum()) + h.n_beyond, 1)
                    if tail.size >= 2:
                        x = np.geomspace(tail[0], tail[-1], 200)
                        y = power_law_pdf(x, alpha=alpha, xmin=xmin, xmax=xmax, fitter=fitter)
                        ax.plot(x, y * tail.size / n_hist, color=COLORS["fit"], lw=1.8,
                                label=f"power law α = {alpha:.3g}")
            if log:
                ax.set_xscale("log")
                ax.set_yscale("log")
                pos = h.density[h.density > 0]
                if pos.size:
                    ax.set_ylim(pos.min() / 3, pos.max() * 3)
                ax.set_title("log-log ESD")
            else:
                ax.set_title("ESD" + (f" (zoomed: {h.n_beyond} larger eigenvalue"
                                      f"{'s' if h.n_beyond > 1 else ''} not shown)"
                                      if h.n_beyond else ""))
                ax.set_xlim(h.edges[0], h.edges[-1])
                top = h.density.max() if h.density.size else 1.0
                ax.set_ylim(0, top * 1.15 if top > 0 else 1.0)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("density")
            ax.legend(loc="upper right")
        if title:
            fig.suptitle(title)
    return fig


def plot_esd(lake, model: str, layer: str | int | None = None, *, bins: int | None = None,
             mp: bool = True, views=None) -> "Figure":
    """ESD of one layer of a model in the lake (see ``source.layer_spectrum`` for selection).

    Example:
        >>> fig = plot_esd("lake/", "torchvision/vgg11", "features.0")  # doctest: +SKIP
        >>> fig.savefig("esd.png")                                      # doctest: +SKIP
    """
    from .source import LAKE_VIEWS, layer_spectrum

    return esd_figure(layer_spectrum(lake, model, layer, views=views or LAKE_VIEWS),
                      bins=bins, mp=mp)


def esd_figure(ls, *, bins: int | None = None, mp: bool = True) -> "Figure":
    """The ESD figure of an already loaded ``source.LayerSpectrum`` (the web explorer reads
    the row and eigenvalues itself, then draws exactly what ``plot_esd`` draws)."""
    r = ls.row
    return draw_esd(
        ls.evals, title=ls.title("ESD"), bins=bins,
        mp=ls.mp_curve() if mp else None,
        alpha=r.get("alpha"), xmin=r.get("xmin"), xmax=r.get("xmax"),
        fitter=r.get("fitter") or r.get("convention") or "ww",
        xlabel=ls.eval_label,
    )
