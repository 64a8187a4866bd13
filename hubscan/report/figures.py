"""The report's pictures: which figures, drawn by ``hubscan.plots`` from the report's tables,
and how each is embedded (base64 PNG or inline SVG) so the page needs no external file.
"""

from __future__ import annotations

import base64
from typing import Any

from ..errors import HubscanError
from .data import ReportData, ReportOptions

__all__ = ["figures", "embed"]


def figures(con, data: ReportData, options: ReportOptions) -> list[tuple[str, str, Any]]:
    """(section, caption, Figure) for every picture of the report."""
    from ..plots.alpha import draw_alpha_groups, draw_alpha_histogram
    from ..plots.esd import plot_esd
    from ..plots.fit import plot_fit
    from ..plots.ks import plot_ks
    from ..plots.layers import plot_layers
    from ..plots.source import Views

    # Lookups read the report's temporary tables, not the lake's deduplicating views.
    views = Views(models="report_models", models_latest="report_models", layers="report_layers")
    rel = "SELECT * FROM report_layers"
    figs: list[tuple[str, str, Any]] = []
    if data.alpha_hist.total:
        figs.append(("universality", "Every fitted layer's α (exact counts) with the [2, 4] and "
                     "[2, 6] bands.", draw_alpha_histogram(data.alpha_hist)))
        figs.append(("universality", "Layer α by architecture: box = quartiles, points = a "
                     f"sample of ≤ {options.sample_per_group} layers per architecture, shares "
                     "over all layers.", draw_alpha_groups(data.alpha_groups, by="arch")))
    figs += _quality_figures(con, data, rel, views)
    if data.worst_models:
        worst = data.worst_models[0]
        figs.append(("layers", f"Layer α by depth for the model with the largest share of "
                     f"warned layers ({worst['repo_id']}).",
                     plot_layers(con, worst["model_key"], views=views)))
    if options.layer_figures:
        for p in data.picked_layers:
            who = f"{p['repo_id']} · {p['tensor']} ({p['why']}, α = {p['alpha']:.2f})"
            try:
                key, tensor = p["model_key"], p["tensor"]
                figs.append(("layer", f"ESD of {who}.", plot_esd(con, key, tensor, views=views)))
                figs.append(("layer", f"Power-law fit of {who}.",
                             plot_fit(con, key, tensor, views=views)))
                if p["why"] == "best-fitted heavy tail":
                    figs.append(("layer", f"KS distance vs xmin of {who}.",
                                 plot_ks(con, key, tensor, views=views)))
            except HubscanError:  # no spectrum / no fit: that picture is simply left out
                continue
    return figs


def _quality_figures(con, data: ReportData, rel: str, views: Any) -> list[tuple[str, str, Any]]:
    """The "alpha vs accuracy" figures: from the quality views when the lake has reported
    metrics, else (a lake from before ``evals``) from ``models.accuracy``."""
    from ..plots.quality import plot_quality
    from ..plots.series import plot_series

    out: list[tuple[str, str, Any]] = []
    if data.quality:
        for metric, variant, what in (("alpha", "all", "all layers"),
                                      ("alpha", "no_last_fc", "all layers but the last FC"),
                                      ("log_norm", "all", "all layers")):
            try:
                fig = plot_quality(con, metric=metric, variant=variant)
            except HubscanError:
                continue
            out.append(("quality", f"Mean layer {metric} ({what}) per model vs its most reported "
                        "metric, one line per family; legend: Spearman ρ, Kendall τ, permutation p "
                        "(seed 001's VGG / ResNet figures).", fig))
        return out
    if data.series_models >= 2:
        for metric in ("alpha", "log_norm"):
            try:
                fig = plot_series(con, metric=metric, vs="accuracy", relation=rel, views=views)
            except HubscanError:
                continue
            out.append(("quality", f"Mean layer {metric} per model vs reported accuracy, one "
                        "line per model series (seed 001).", fig))
    return out


def embed(fig: Any, options: ReportOptions) -> str:
    from ..plots._style import figure_bytes

    data = figure_bytes(fig, fmt=options.image_format, dpi=options.dpi)
    if options.image_format == "svg":
        text = data.decode("utf-8")
        return text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE: inline SVG
    return ('<img alt="figure" src="data:image/png;base64,'
            + base64.b64encode(data).decode("ascii") + '">')


