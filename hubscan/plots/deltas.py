"""A fine-tune against its base, layer by layer: where along the depth did alpha move?

Top: each layer's alpha in the fine-tune and in its base model (``finetune_deltas``, layers
matched by tensor name), over the [2, 4] / [2, 6] bands. Bottom: Δalpha = α_fine-tune −
α_base per layer (negative = a heavier tail than the base had: the over-fitting signature
the seeds describe), with the relative Frobenius move ‖W − W_base‖ / ‖W_base‖ on a second
axis where the distances were computed. The layers that moved most are labelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._style import COLORS, new_figure, shade_alpha_bands, style

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["DeltaProfile", "deltas_from_lake", "draw_deltas", "plot_deltas"]


@dataclass(frozen=True)
class DeltaProfile:
    """Per-layer numbers of one (model, base) pair, in the model's checkpoint order."""

    model: str
    base: str
    relation: str | None
    names: tuple[str, ...]
    depth: np.ndarray
    alpha: np.ndarray  # NaN where the fit failed
    base_alpha: np.ndarray
    rel_delta: np.ndarray  # NaN where distances were not computed

    @property
    def delta_alpha(self) -> np.ndarray:
        return self.alpha - self.base_alpha


def deltas_from_lake(lake: Any, model: str, *, base: str | None = None) -> DeltaProfile:
    """The ``finetune_deltas`` rows of ``model`` (named as ``plots.source.resolve_model`` does)
    against ``base`` (a base repo id; default: its first base in the lake)."""
    from .source import PlotDataError, _rows, connection, resolve_model

    with connection(lake) as con:
        m = resolve_model(con, model)
        bases = _rows(con, """SELECT DISTINCT base_repo_id FROM finetune_deltas WHERE model_key = $k
                              ORDER BY base_repo_id""", {"k": m["model_key"]})
        if not bases:
            raise PlotDataError(f"{m['repo_id']}: no base model in the lake to compare with "
                                "(the lineage names none, or the base is not analysed)")
        chosen = base or bases[0]["base_repo_id"]
        rows = _rows(con, """SELECT tensor, longname, relation, alpha, base_alpha, rel_delta, file, layer_id
                             FROM finetune_deltas WHERE model_key = $k AND base_repo_id = $b
                             ORDER BY file, layer_id, tensor""", {"k": m["model_key"], "b": chosen})
    if not rows:
        raise PlotDataError(f"{m['repo_id']}: no layer shared with {chosen}")

    def arr(col: str) -> np.ndarray:
        return np.array([np.nan if r[col] is None else float(r[col]) for r in rows], dtype=np.float64)

    return DeltaProfile(model=str(m["repo_id"]), base=str(chosen), relation=rows[0]["relation"],
                        names=tuple(r["longname"] or r["tensor"] for r in rows),
                        depth=np.arange(len(rows), dtype=np.float64), alpha=arr("alpha"),
                        base_alpha=arr("base_alpha"), rel_delta=arr("rel_delta"))


def draw_deltas(p: DeltaProfile, *, title: str = "", label_top: int = 3) -> "Figure":
    """Two panels: alpha of both models by depth, then Δalpha (bars) and the relative move."""
    n = len(p.names)
    with style():
        fig, axes = new_figure(max(7.0, min(16.0, 0.14 * n + 5)), 6.4, nrows=2, sharex=True)
        top, bottom = axes[0, 0], axes[1, 0]
        shade_alpha_bands(top)
        for y, label, color, marker in ((p.base_alpha, f"base: {p.base}", COLORS["muted"], "s"),
                                        (p.alpha, f"{p.relation or 'derived'}: {p.model}", COLORS["data"], "o")):
            ok = np.isfinite(y)
            top.plot(p.depth[ok], y[ok], marker=marker, ms=4.5, lw=0.8, color=color, label=label)
        top.set_ylabel("layer α")
        top.legend(loc="best")
        d = p.delta_alpha
        ok = np.isfinite(d)
        colors = np.where(d[ok] < 0, COLORS["ccdf"], COLORS["data"])
        bottom.bar(p.depth[ok], d[ok], color=colors, width=0.8)
        bottom.axhline(0.0, color=COLORS["muted"], lw=0.8)
        bottom.set_ylabel("Δα = α − α_base")
        bottom.set_xlabel("layer (checkpoint order)")
        if n <= 40:  # few layers: name them
            bottom.set_xticks(p.depth, list(p.names), rotation=60, ha="right", fontsize=7)
        elif ok.any():  # many: name the ones that moved most
            for i in np.argsort(-np.abs(np.where(ok, d, 0.0)))[:label_top]:
                if ok[i] and d[i] != 0:
                    bottom.annotate(p.names[i], xy=(p.depth[i], d[i]), xytext=(3, 3 if d[i] >= 0 else -10),
                                    textcoords="offset points", fontsize=7)
        moved = np.isfinite(p.rel_delta)
        if moved.any():
            ax2 = bottom.twinx()
            ax2.plot(p.depth[moved], p.rel_delta[moved], "D", ms=3.5, color=COLORS["xmin"],
                     label="‖W − W_base‖ / ‖W_base‖")
            ax2.set_ylabel("relative move", color=COLORS["xmin"])
            ax2.grid(False)
            ax2.legend(loc="lower right")
        top.set_title(title or f"{p.model} vs its base {p.base}: α by depth")
    return fig


def plot_deltas(lake: Any, model: str, *, base: str | None = None) -> "Figure":
    """``draw_deltas`` of a model in the lake and its base (``finetune_deltas``)."""
    return draw_deltas(deltas_from_lake(lake, model, base=base))
