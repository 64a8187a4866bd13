"""Model series: a layer metric averaged per model vs the model's reported accuracy.

Seed 001's figures: VGG11…19 (with and without BN) and ResNet18…152, mean alpha or mean
log-norm on one axis, reported test accuracy on the other. Within a series, smaller mean
alpha / log-norm should go with better accuracy — the unsupervised quality metric.
"""

from __future__ import annotations

from itertools import cycle
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ._style import new_figure, style
from .data import SeriesPoint

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["draw_series", "plot_series", "METRIC_LABELS"]

METRIC_LABELS = {
    "alpha": "mean layer α",
    "alpha_weighted": "mean α̂ (alpha_weighted)",
    "log_norm": "mean log₁₀ ‖W‖²_F (log_norm)",
    "log_spectral_norm": "mean log₁₀ λ_max",
    "log_alpha_norm": "mean log₁₀ Σλ^α (log_alpha_norm)",
    "stable_rank": "mean stable rank",
    "entropy": "mean matrix entropy",
    "D": "mean KS distance D",
}

_MARKERS = "osD^v<>pP*Xh"


def draw_series(points: Sequence[SeriesPoint], *, metric: str = "alpha",
                vs: str = "accuracy", title: str = "", annotate: bool | None = None,
                max_legend: int = 12) -> "Figure":
    """Scatter ``(x, y)`` per model, one colour/marker and a connecting line per family.

    Points of a family are joined in order of ``x``; each point is labelled with its model
    name when there are at most 40 points (``annotate=None``), or as ``annotate`` says.
    The y label names the metric (``METRIC_LABELS``); the legend lists at most
    ``max_legend`` families.
    """
    if annotate is None:
        annotate = len(points) <= 40
    with style():
        fig, axes = new_figure(7.5, 5.0)
        ax = axes[0, 0]
        fams = sorted({p.family for p in points})
        for fam, marker in zip(fams, cycle(_MARKERS)):
            pts = sorted((p for p in points if p.family == fam), key=lambda p: p.x)
            xs = np.array([p.x for p in pts])
            ys = np.array([p.y for p in pts])
            ax.plot(xs, ys, marker=marker, ms=7, lw=1, alpha=0.85, label=f"{fam} ({len(pts)})")
            if annotate:
                for p in pts:
                    ax.annotate(_short(p.label), xy=(p.x, p.y), xytext=(5, 4),
                                textcoords="offset points", fontsize=7)
        if not points:
            ax.text(0.5, 0.5, f"no model has both {vs} and {metric}", ha="center",
                    va="center", transform=ax.transAxes)
        ax.set_xlabel(vs.replace("_", " "))
        ax.set_ylabel(METRIC_LABELS.get(metric, f"mean {metric}"))
        ax.set_title(title or f"{METRIC_LABELS.get(metric, metric)} vs {vs}")
        if points and len(fams) <= max_legend:
            ax.legend(loc="best", title="series")
    return fig


def _short(label: str) -> str:
    return label.rsplit("/", 1)[-1]


def plot_series(lake, *, metric: str = "alpha", vs: str = "accuracy",
                family: str | Sequence[str] | None = None, where: str | None = None,
                exclude_last: bool = False, relation: str | None = None,
                views=None) -> "Figure":
    """Mean ``metric`` over each model's fitted layers vs its ``vs`` column (``models``).

    Args:
        family: keep only these series (``vgg``, ``resnet`` …; see ``data.model_family``).
        exclude_last: leave each model's last analysed layer out of its mean (the seeds
            drop VGG's final classifier layer, whose alpha throws the average off).
    """
    from .source import LAKE_VIEWS, series_from_lake

    points = series_from_lake(lake, metric=metric, vs=vs, family=family, where=where,
                              exclude_last=exclude_last, relation=relation,
                              views=views or LAKE_VIEWS)
    if not points:  # one line, not an empty axis
        from .source import PlotDataError

        raise PlotDataError(f"no model has both {vs} and a {metric}"
                            + (f" in {family}" if family else ""))
    fam = family if isinstance(family, str) or family is None else ", ".join(family)
    title = f"{METRIC_LABELS.get(metric, metric)} vs {vs}" + (f" — {fam}" if fam else "")
    if exclude_last:
        title += " (last layer excluded)"
    return draw_series(points, metric=metric, vs=vs, title=title)
