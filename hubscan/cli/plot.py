"""``hubscan plot …``: the seeds' pictures, drawn from the lake alone (see docs/plots.md).

Every sub-command reads the lake (``--lake``), draws one matplotlib figure and writes it to
``-o FILE``; the suffix picks the format (``.png`` or ``.svg``). Nothing is re-downloaded:
per-layer pictures use the eigenvalues stored in the ``spectra`` table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import typer

from ._app import app

plot_app = typer.Typer(
    name="plot",
    help="Draw the seeds' pictures from the lake: esd, fit, ks, calibration, alpha, series, layers, deltas.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(plot_app, name="plot")

_LAKE = typer.Option(Path("lake"), "--lake", help="Lake folder or object-store URI.")


def _out(default: str):
    return typer.Option(Path(default), "-o", "--output", help="Image file; .png or .svg.")


def _draw(make: Callable[[], object], out: Path, *, dpi: int = 120) -> None:
    """Build the figure, save it, report the path; lake lookup errors exit with code 2."""
    from ..errors import HubscanError
    from ..plots import save_figure

    if out.suffix.lower() not in (".png", ".svg"):
        raise typer.BadParameter(f"{out}: the output must end in .png or .svg")
    try:
        fig = make()
    except (HubscanError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    save_figure(fig, out, dpi=dpi)
    typer.echo(str(out))


@plot_app.command("esd")
def esd_command(
    model: str = typer.Argument(..., help="repo_id (or model_key, or a unique part of a repo_id)."),
    layer: Optional[str] = typer.Argument(None, help="Tensor name, longname, layer_id or unique part; default: the layer with most eigenvalues."),
    lake: Path = _LAKE,
    out: Path = _out("esd.png"),
    bins: Optional[int] = typer.Option(None, "--bins", help="Histogram bins [default: 2√n within 10…100]."),
    no_mp: bool = typer.Option(False, "--no-mp", help="Do not draw the Marchenko–Pastur fit."),
) -> None:
    """ESD histogram of one layer, linear and log-log, with the MP fit and the power law (xmin marked)."""
    from ..plots import plot_esd

    _draw(lambda: plot_esd(str(lake), model, layer, bins=bins, mp=not no_mp), out)


@plot_app.command("fit")
def fit_command(
    model: str = typer.Argument(..., help="repo_id (or model_key, or a unique part of a repo_id)."),
    layer: Optional[str] = typer.Argument(None, help="Tensor name, longname, layer_id or unique part."),
    lake: Path = _LAKE,
    out: Path = _out("fit.png"),
) -> None:
    """Power-law fit of one layer: empirical vs fitted PDF and CCDF, log-log (as powerlaw draws them)."""
    from ..plots import plot_fit

    _draw(lambda: plot_fit(str(lake), model, layer), out)


@plot_app.command("ks")
def ks_command(
    model: str = typer.Argument(..., help="repo_id (or model_key, or a unique part of a repo_id)."),
    layer: Optional[str] = typer.Argument(None, help="Tensor name, longname, layer_id or unique part."),
    lake: Path = _LAKE,
    out: Path = _out("ks.png"),
) -> None:
    """KS distance vs candidate xmin for one layer; the lake's xmin marked, K = tail size annotated."""
    from ..plots import plot_ks

    _draw(lambda: plot_ks(str(lake), model, layer), out)


@plot_app.command("calibration")
def calibration_command(
    out: Path = _out("calibration.png"),
    n: int = typer.Option(1000, "--n", help="Sample size of each Pareto sample (seed 000: 1000)."),
    trials: int = typer.Option(10, "--trials", help="Samples per true alpha."),
    fitter: str = typer.Option("ww", "--fitter", help="ww | seed | truncated"),
    sampler: str = typer.Option("numpy", "--sampler", help="numpy (the seeds' np.random.pareto, a Lomax law) | pareto (exact power law) | shape (np.random.pareto(alpha) vs alpha: both of the seed's biases)."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    lake: Optional[Path] = typer.Option(None, "--lake", help="Also draw this lake's layer alphas (histogram, right axis)."),
    where: Optional[str] = typer.Option(None, "--where", help="SQL predicate on the lake's layer rows."),
) -> None:
    """Pareto calibration of the alpha estimator: fitted vs true alpha (seed 000)."""
    from ..plots import plot_calibration

    _draw(lambda: plot_calibration(n=n, trials=trials, fitter=fitter, sampler=sampler,
                                   seed=seed, lake=str(lake) if lake else None, where=where),
          out)


@plot_app.command("alpha")
def alpha_command(
    by: str = typer.Option("arch", "--by", help="Group by this layers column: arch, model_type, kind, source, phase …"),
    lake: Path = _LAKE,
    out: Path = _out("alpha.png"),
    where: Optional[str] = typer.Option(None, "--where", help="SQL predicate on layer rows, e.g. \"kind = 'dense'\"."),
    max_groups: int = typer.Option(25, "--max-groups", help="Largest groups shown; the rest become 'other'."),
) -> None:
    """Distribution of layer alphas per group, the [2,4] and [2,6] bands shaded, exact shares annotated."""
    from ..plots import plot_alpha

    _draw(lambda: plot_alpha(str(lake), by=by, where=where, max_groups=max_groups), out)


@plot_app.command("series")
def series_command(
    metric: str = typer.Option("alpha", "--metric", help="Layer metric averaged per model: alpha, log_norm, alpha_weighted, log_spectral_norm …"),
    vs: str = typer.Option("accuracy", "--vs", help="x axis: accuracy (a reported metric, see --eval) or a models column: params, downloads …"),
    family: Optional[list[str]] = typer.Option(None, "--family", help="Model series (leading letters of the name): vgg, resnet … (repeatable)."),
    eval_metric: Optional[str] = typer.Option(None, "--eval", help="Reported metric on the x axis (acc@1, accuracy …); default: the most reported."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Dataset of --eval (when several report it)."),
    group: str = typer.Option("family", "--group", help="family | base_model: what a line (and a correlation) is."),
    lake: Path = _LAKE,
    out: Path = _out("series.png"),
    where: Optional[str] = typer.Option(None, "--where", help="SQL predicate on layer rows (then --vs is a models column)."),
    exclude_last: bool = typer.Option(False, "--exclude-last", help="Leave each model's last FC layer out of its mean (the seeds do for VGG)."),
) -> None:
    """Mean layer metric per model vs reported accuracy, one line per series, ρ/τ in the legend (seed 001).

    With ``--vs accuracy`` the x axis is a reported metric (``evals``: model cards, torchvision's
    acc@1/acc@5, imported CSVs) and each series' legend gives Spearman ρ, Kendall τ and the
    permutation p-value; without any reported metric it says so in one line.
    """
    from ..plots import plot_series
    from ..plots.quality import QUALITY_METRICS, plot_quality

    if vs == "accuracy" and metric in QUALITY_METRICS and where is None:
        def make():
            from ..errors import HubscanError

            try:
                return plot_quality(str(lake), metric=metric, eval_metric=eval_metric, dataset=dataset,
                                    group_kind=group, variant="no_last_fc" if exclude_last else "all",
                                    groups=family or None)
            except HubscanError as first:  # a lake from before evals: models.accuracy only
                if eval_metric is not None:
                    raise
                try:
                    return plot_series(str(lake), metric=metric, vs=vs, family=family or None,
                                       exclude_last=exclude_last)
                except HubscanError:
                    raise first from None

        _draw(make, out)
        return
    _draw(lambda: plot_series(str(lake), metric=metric, vs=vs, family=family or None,
                              where=where, exclude_last=exclude_last), out)


@plot_app.command("deltas")
def deltas_command(
    model: str = typer.Argument(..., help="The derived model: repo_id (or model_key, or a unique part of a repo_id)."),
    base: Optional[str] = typer.Option(None, "--base", help="Its base model's repo_id (default: the first the lake has)."),
    lake: Path = _LAKE,
    out: Path = _out("deltas.png"),
) -> None:
    """Per-layer alpha of a fine-tune and its base along depth, and Δalpha (finetune_deltas)."""
    from ..plots import plot_deltas

    _draw(lambda: plot_deltas(str(lake), model, base=base), out)


@plot_app.command("layers")
def layers_command(
    model: str = typer.Argument(..., help="repo_id (or model_key, or a unique part of a repo_id)."),
    lake: Path = _LAKE,
    out: Path = _out("layers.png"),
) -> None:
    """Alpha of each layer of one model, in checkpoint order, over the [2,4]/[2,6] bands."""
    from ..plots import plot_layers

    _draw(lambda: plot_layers(str(lake), model), out)
