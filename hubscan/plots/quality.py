"""Alpha vs accuracy: the seeds' model-series figure, from the lake's quality views.

Seed 001's figures put each VGG / ResNet model at (reported test accuracy, mean layer alpha):
within a series, smaller mean alpha goes with better accuracy. Here the points come from
``quality_points`` (a model-level metric of ``model_metrics`` against a reported metric of
``model_evals``: a card's ``model-index``, torchvision's enums, an imported CSV), one line
per group (a family, or a base model and its fine-tunes), and each group's legend entry
carries its Spearman ρ and Kendall τ with n and the permutation p-value
(``hubscan.lake.quality``). A lake with no reported metric raises ``PlotDataError`` with a
one-line reason instead of drawing an empty axis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from .data import SeriesPoint

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["QUALITY_METRICS", "QualitySeries", "quality_series_from_lake", "draw_quality",
           "plot_quality", "NO_EVALS"]

#: ``plot series --metric`` names → ``model_metrics.metric``.
QUALITY_METRICS = {"alpha": "alpha_mean", "alpha_weighted": "alpha_weighted_mean",
                   "log_norm": "log_norm_mean", "log_alpha_norm": "log_alpha_norm_mean"}

#: What a lake without any reported metric says, in one line.
NO_EVALS = ("no model in the lake has a reported metric (a card's model-index, torchvision's "
            "acc@1/acc@5, or `hubscan evals import FILE.csv`): nothing to plot against")


@dataclass(frozen=True)
class QualitySeries:
    """The points of one figure and the correlations of its groups."""

    metric: str
    eval_metric: str
    dataset: str | None
    group_kind: str
    variant: str
    points: tuple[SeriesPoint, ...]
    correlations: dict[str, Any] = field(default_factory=dict)  # group name -> Correlation


def _metric(metric: str) -> str:
    if metric in QUALITY_METRICS.values():
        return metric
    try:
        return QUALITY_METRICS[metric]
    except KeyError:
        raise ValueError(f"metric must be one of {', '.join(QUALITY_METRICS)}, not {metric!r}") from None


def quality_series_from_lake(lake: Any, *, metric: str = "alpha", eval_metric: str | None = None,
                             dataset: str | None = None, group_kind: str = "family",
                             variant: str = "all", groups: Sequence[str] | None = None,
                             permutations: int = 9999) -> QualitySeries:
    """Points and per-group correlations of ``metric`` against a reported metric.

    Args:
        metric: ``alpha``, ``alpha_weighted``, ``log_norm`` or ``log_alpha_norm`` (the mean
            over each model's layers, ``model_metrics``).
        eval_metric, dataset: the reported metric (``acc@1``, ``accuracy`` …) and dataset;
            default: the pair with the most models.
        group_kind: ``family`` or ``base_model``.
        variant: ``all`` layers, or ``no_last_fc`` (all but the last dense layer: the seeds'
            VGG figures).
        groups: keep only these group names (``vgg``, ``resnet`` …).

    Raises:
        PlotDataError: no model has both the metric and a reported metric (``NO_EVALS``).
    """
    from ..lake.quality import correlations
    from .source import PlotDataError, _rows, connection

    m = _metric(metric)
    if group_kind not in ("family", "base_model"):
        raise ValueError(f"group_kind must be family or base_model, not {group_kind!r}")
    if variant not in ("all", "no_last_fc"):
        raise ValueError(f"variant must be all or no_last_fc, not {variant!r}")
    with connection(lake) as con:
        base = {"g": group_kind, "v": variant, "m": m}
        if not _rows(con, "SELECT 1 AS x FROM model_evals LIMIT 1"):
            raise PlotDataError(NO_EVALS)
        pairs = _rows(con, """SELECT eval_metric, dataset, count(DISTINCT model_key) AS n FROM quality_points
                              WHERE group_kind = $g AND variant = $v AND metric = $m
                              GROUP BY ALL ORDER BY n DESC, eval_metric, dataset NULLS FIRST""", base)
        if eval_metric is not None:
            pairs = [p for p in pairs if p["eval_metric"] == eval_metric
                     and (dataset is None or p["dataset"] == dataset)]
        if not pairs:
            what = f" {eval_metric}" if eval_metric else " metric"
            raise PlotDataError(f"no analysed model has both {metric} and a reported{what}")
        em, ds = pairs[0]["eval_metric"], pairs[0]["dataset"]
        rows = _rows(con, """SELECT group_name, repo_id, metric_value, eval_value FROM quality_points
                             WHERE group_kind = $g AND variant = $v AND metric = $m AND eval_metric = $e
                               AND dataset IS NOT DISTINCT FROM $d
                             ORDER BY group_name, repo_id""", {**base, "e": em, "d": ds})
        if groups is not None:
            wanted = {g.lower() for g in groups}
            rows = [r for r in rows if str(r["group_name"]).lower() in wanted]
        q = lambda v: v.replace("'", "''")  # noqa: E731 - quoting for the where clause
        where = (f"group_kind = '{q(group_kind)}' AND variant = '{q(variant)}' AND metric = '{q(m)}' "
                 f"AND eval_metric = '{q(em)}' AND dataset IS NOT DISTINCT FROM "
                 + ("NULL" if ds is None else f"'{q(ds)}'"))
        corr = {c.group_name: c for c in correlations(con, where=where, permutations=permutations)}
    if not rows:
        raise PlotDataError(f"no model of {', '.join(groups or [])} has both {metric} and {em}")
    points = []
    for r in rows:
        c = corr.get(r["group_name"])
        label = str(r["group_name"])
        if c is not None and c.spearman is not None:
            p = "" if c.p_spearman is None else f", p={c.p_spearman:.2g}"
            tau = "" if c.kendall is None else f" τ={c.kendall:+.2f}"
            label += f"  ρ={c.spearman:+.2f}{tau}{p}"
        points.append(SeriesPoint(label=str(r["repo_id"]), family=label, x=float(r["eval_value"]),
                                  y=float(r["metric_value"]), n_layers=0))
    return QualitySeries(metric=m, eval_metric=em, dataset=ds, group_kind=group_kind, variant=variant,
                         points=tuple(points), correlations=corr)


def draw_quality(qs: QualitySeries, *, title: str = "") -> "Figure":
    """The series figure: one line per group, ρ / τ / p in the legend."""
    from .series import draw_series

    short = {v: k for k, v in QUALITY_METRICS.items()}.get(qs.metric, qs.metric)
    vs = qs.eval_metric + (f" ({qs.dataset})" if qs.dataset else "")
    t = title or (f"mean {short} vs {vs}, per {qs.group_kind.replace('_', ' ')}"
                  + (" — all layers but the last FC" if qs.variant == "no_last_fc" else ""))
    return draw_series(list(qs.points), metric=short, vs=vs, title=t)


def plot_quality(lake: Any, *, metric: str = "alpha", eval_metric: str | None = None,
                 dataset: str | None = None, group_kind: str = "family", variant: str = "all",
                 groups: Sequence[str] | None = None) -> "Figure":
    """``draw_quality`` of ``quality_series_from_lake`` (see there)."""
    return draw_quality(quality_series_from_lake(lake, metric=metric, eval_metric=eval_metric,
                                                 dataset=dataset, group_kind=group_kind,
                                                 variant=variant, groups=groups))
