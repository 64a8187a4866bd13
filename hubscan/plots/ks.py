"""KS distance vs xmin (seed 002): how the fit chose where the power-law tail starts.

The landscape is usually convex with one clear minimum; the orange line marks the lake's
xmin and the annotation gives K, the number of eigenvalues in the tail (seed 002's LSA
"K"). A ragged landscape, or a minimum at the last few eigenvalues (a "finger"), says the
alpha of this layer deserves suspicion.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ._style import COLORS, new_figure, style
from .data import KSCurve, ks_curve

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["draw_ks", "plot_ks", "compute_ks_curve", "ks_figure"]


def draw_ks(curve: KSCurve, *, title: str = "", xlabel: str = "candidate xmin") -> "Figure":
    """D vs candidate xmin (log x), the curve's minimum and the marked xmin with its K.

    ``fig.axes[0].lines[0]`` is the curve; the marked xmin is the orange vertical line.
    """
    with style():
        fig, axes = new_figure(7.0, 4.5)
        ax = axes[0, 0]
        ax.plot(curve.xmin, curve.D, color=COLORS["data"], lw=1.4, marker=".", ms=3,
                label="KS distance D")
        ax.plot([curve.best_xmin], [curve.best_D], "o", color=COLORS["ccdf"], ms=7,
                label=f"minimum D = {curve.best_D:.3f}")
        ax.axvline(curve.marked_xmin, color=COLORS["xmin"], lw=1.8, ls="--",
                   label=f"xmin = {curve.marked_xmin:.4g}")
        ax.annotate(f"K = {curve.marked_K}", xy=(curve.marked_xmin, 0.04),
                    xycoords=("data", "axes fraction"), xytext=(-6, 0),
                    textcoords="offset points", ha="right", color=COLORS["xmin"],
                    fontsize=10, fontweight="bold")
        if np.all(curve.xmin > 0):
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("KS distance D")
        ax.set_title((title + "\n" if title else "") + "KS distance vs xmin")
        ax.legend(loc="upper right")
    return fig


def compute_ks_curve(evals: np.ndarray, *, fitter: str = "ww", xmin: float | None = None,
                     **fit_options) -> KSCurve:
    """Refit ``evals`` with ``hubscan.esd.powerlaw.fit`` keeping every candidate's D.

    ``xmin`` (the lake's) is the value marked; the refit's own minimum is ``best_xmin`` —
    the same value when the lake's fit used the same options, which the tests check.
    """
    from ..esd.powerlaw.fit import fit_power_law

    fit = fit_power_law(np.asarray(evals, dtype=np.float64), fitter=fitter, return_curve=True,
                        **fit_options)
    if fit.candidates_xmin is None or len(fit.candidates_xmin) == 0:
        from ..errors import HubscanError

        raise HubscanError("no xmin candidates: too few eigenvalues for a power-law fit")
    return ks_curve(evals, candidates_xmin=fit.candidates_xmin,
                    candidates_D=fit.candidates_D, xmin=xmin)


def plot_ks(lake, model: str, layer: str | int | None = None, *, views=None) -> "Figure":
    """KS-vs-xmin figure of one layer in the lake (refits its eigenvalues with its fitter)."""
    from .source import LAKE_VIEWS, layer_spectrum

    return ks_figure(layer_spectrum(lake, model, layer, views=views or LAKE_VIEWS))


def ks_figure(ls) -> "Figure":
    """The KS-vs-xmin figure of an already loaded ``source.LayerSpectrum``."""
    xmin = ls.row.get("xmin")
    curve = compute_ks_curve(ls.evals, fitter=ls.fitter,
                             xmin=None if xmin is None else float(xmin), **ls.fit_options)
    return draw_ks(curve, title=ls.title("KS"), xlabel=f"candidate xmin ({ls.eval_label})")
