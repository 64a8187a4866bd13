"""One model's layer alphas by depth: where in the network the heavy tails (or their absence) are.

Each analysed layer in checkpoint order, coloured by kind (dense, conv2d, embedding …),
over the [2, 4] / [2, 6] bands. Layers flagged under-trained (α > 6) or over-trained
(α < 2) stand out of the bands; failed fits are drawn as grey crosses on the x axis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ._style import COLORS, new_figure, shade_alpha_bands, style
from .data import LayerProfile

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["draw_layers", "plot_layers"]

_KIND_COLORS = {
    "dense": "#1f77b4",
    "conv2d": "#9467bd",
    "conv1d": "#8c564b",
    "embedding": "#e377c2",
}


def draw_layers(profile: LayerProfile, *, title: str = "", label_every: int | None = None,
                ) -> "Figure":
    """Alpha vs depth; one scatter per layer kind (legend = kinds), bands shaded.

    The y range shows alpha up to 12; larger alphas are drawn at the top edge as ▴.
    """
    p = profile
    n = len(p.names)
    with style():
        fig, axes = new_figure(max(7.0, min(16.0, 0.12 * n + 5)), 4.6)
        ax = axes[0, 0]
        shade_alpha_bands(ax)
        ok = np.isfinite(p.alpha)
        ymax = 12.0
        kinds = np.array(p.kinds, dtype=object)
        for kind in sorted(set(p.kinds)):
            sel = ok & (kinds == kind)
            if not sel.any():
                continue
            c = _KIND_COLORS.get(kind, COLORS["muted"])
            low = sel & (p.alpha <= ymax)
            ax.plot(p.depth[low], p.alpha[low], "o", ms=5, color=c, label=kind)
            high = sel & (p.alpha > ymax)
            if high.any():
                ax.plot(p.depth[high], np.full(high.sum(), ymax), "^", ms=7, color=c)
        if ok.any():
            ax.plot(p.depth[ok], np.minimum(p.alpha[ok], ymax), "-", lw=0.6,
                    color=COLORS["muted"], zorder=1)
        if (~ok).any():
            ax.plot(p.depth[~ok], np.full((~ok).sum(), 0.6), "x", ms=6, color=COLORS["muted"],
                    label="fit failed")
        ax.set_ylim(0.3, ymax + 0.5)
        ax.set_xlim(-0.5, max(n - 0.5, 0.5))
        ax.set_xlabel("layer (checkpoint order)")
        ax.set_ylabel("power-law exponent α")
        if n and n <= 40:
            ax.set_xticks(p.depth, [_short(s) for s in p.names], rotation=70, ha="right",
                          fontsize=7)
        elif n and label_every:
            idx = p.depth[::label_every]
            ax.set_xticks(idx, [_short(p.names[i]) for i in idx], rotation=70, ha="right",
                          fontsize=7)
        ok_share = np.mean((p.alpha[ok] >= 2) & (p.alpha[ok] <= 6)) if ok.any() else np.nan
        stats = f"{int(ok.sum())} fitted layers, {np.nanmean(p.alpha) if ok.any() else np.nan:.2f} mean α"
        if np.isfinite(ok_share):
            stats += f", {100 * ok_share:.0f}% in [2, 6]"
        ax.set_title((title + "\n" if title else "") + stats)
        ax.legend(loc="upper left", ncols=3)
    return fig


def _short(name: str, width: int = 28) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1):]


def plot_layers(lake, model: str, *, views=None) -> "Figure":
    """Alpha per layer of one model of the lake (its newest analysis)."""
    from .source import LAKE_VIEWS, layer_profile_from_lake

    profile, model_name = layer_profile_from_lake(lake, model, views=views or LAKE_VIEWS)
    return draw_layers(profile, title=f"{model_name}: layer α by depth")
