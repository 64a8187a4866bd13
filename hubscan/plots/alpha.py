"""Layer alphas per architecture (or any grouping), with the universality bands shaded.

The seeds' claim (METHOD.md §7): 80–90 % of a well-trained model's layer alphas lie in
[2, 4], and alpha outside [2, 6] flags over-/under-training. One row per group: a box plot
of its alphas, the points themselves (a sample on large lakes), and the exact share of the
group's layers in [2, 4] and [2, 6] written beside it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ._style import COLORS, new_figure, shade_alpha_bands, style
from .data import AlphaGroups, AlphaHistogram

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["draw_alpha_groups", "draw_alpha_histogram", "plot_alpha"]

#: Alphas are drawn up to this value; larger ones ("fingers", failed-looking fits) sit on
#: the right edge as ▸ so that one alpha of 80 does not squash every box.
ALPHA_AXIS_MAX = 12.0


def draw_alpha_groups(groups: AlphaGroups, *, by: str = "arch", title: str = "",
                      seed: int = 0) -> "Figure":
    """Horizontal box plot per group (largest group on top) plus jittered points.

    Returns the figure; ``fig.axes[0]``'s y tick labels are the group names in drawing
    order (top to bottom), each annotated with its exact band shares.
    """
    n = len(groups.names)
    rng = np.random.default_rng(seed)
    with style():
        fig, axes = new_figure(9.0, max(2.6, 0.42 * n + 1.6))
        ax = axes[0, 0]
        shade_alpha_bands(ax, orientation="vertical")
        ys = np.arange(n)[::-1]  # first group on top
        if n:
            clipped = [np.minimum(v, ALPHA_AXIS_MAX) for v in groups.values]
            ax.boxplot(clipped, positions=ys, orientation="horizontal", widths=0.6,
                       showfliers=False, patch_artist=True,
                       boxprops={"facecolor": "white", "alpha": 0.8},
                       medianprops={"color": COLORS["ccdf"], "lw": 1.5})
            for y, v in zip(ys, groups.values):
                if v.size == 0:
                    continue
                jitter = rng.uniform(-0.18, 0.18, v.size)
                inside = v <= ALPHA_AXIS_MAX
                ax.scatter(v[inside], y + jitter[inside], s=6, color=COLORS["data"],
                           alpha=0.45, lw=0, zorder=3)
                if (~inside).any():
                    ax.scatter(np.full((~inside).sum(), ALPHA_AXIS_MAX), y + jitter[~inside],
                               s=18, marker=">", color=COLORS["ccdf"], zorder=3)
            labels = [f"{name}  (n={cnt})" for name, cnt in zip(groups.names, groups.n)]
            ax.set_yticks(ys, labels)
            for y, s24, s26 in zip(ys, groups.share_2_4, groups.share_2_6):
                ax.annotate(f"[2,4] {_pct(s24)}   [2,6] {_pct(s26)}", xy=(1.0, y),
                            xycoords=("axes fraction", "data"), xytext=(6, 0),
                            textcoords="offset points", va="center", fontsize=8)
        ax.set_xlim(0.8, ALPHA_AXIS_MAX + 0.4)
        ax.set_ylim(-0.7, n - 0.3)
        ax.set_xlabel("layer power-law exponent α")
        ax.set_ylabel(by)
        ax.set_title(title or f"Layer α by {by}: share in the universality bands")
        ax.legend(loc="lower right")
    return fig


def _pct(x: float) -> str:
    return "—" if not np.isfinite(x) else f"{100 * x:.0f}%"


def plot_alpha(lake, *, by: str = "arch", where: str | None = None, max_groups: int = 25,
               sample_per_group: int = 2000) -> "Figure":
    """Alphas of every fitted layer in the lake, grouped by a ``layers`` view column.

    Shares and counts are exact (computed in DuckDB over every row); the drawn points are
    at most ``sample_per_group`` per group, a deterministic sample.
    """
    from .source import alpha_groups_from_lake

    groups = alpha_groups_from_lake(lake, by=by, where=where, max_groups=max_groups,
                                    sample_per_group=sample_per_group)
    return draw_alpha_groups(groups, by=by)


def draw_alpha_histogram(hist: AlphaHistogram, *, title: str = "") -> "Figure":
    """Histogram of every layer alpha with the universality bands and their exact shares.

    ``hist`` comes from ``source.alpha_histogram`` (all rows, not a sample); the legend's
    shares count every alpha, those off the axis included.
    """
    edges, counts = hist.edges, hist.counts
    with style():
        fig, axes = new_figure(8.0, 4.2)
        ax = axes[0, 0]
        ax.axvspan(2, 6, color=COLORS["band26"], alpha=0.25, zorder=0,
                   label=f"α ∈ [2, 6]: {_pct(hist.share_2_6)}")
        ax.axvspan(2, 4, color=COLORS["band24"], alpha=0.18, zorder=0,
                   label=f"α ∈ [2, 4]: {_pct(hist.share_2_4)}")
        ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color=COLORS["data"],
               alpha=0.8, edgecolor="white", lw=0.3, label=f"{hist.total} fitted layers")
        if hist.n_above:
            ax.annotate(f"{hist.n_above} with α > {edges[-1]:g} →", xy=(1.0, 0.97),
                        xycoords="axes fraction", ha="right", va="top", fontsize=8,
                        color=COLORS["ccdf"])
        from matplotlib.ticker import MaxNLocator

        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(edges[0], edges[-1])
        ax.set_xlabel("layer power-law exponent α")
        ax.set_ylabel("layers")
        ax.set_title(title or "Universality: layer α across the lake")
        ax.legend(loc="upper right", bbox_to_anchor=(1.0, 0.9))
    return fig
