"""The Pareto calibration figure (seed 000): fitted vs true alpha, and where the lake's fits lie.

The experiment lives in ``hubscan.esd.calibration`` (``pareto_calibration``); this module
draws it (``draw_calibration``: the plain figure) and gives it the house style and, when a
lake is given, overlays the distribution of the lake's layer alphas — the seed's point: "Fortunately,
most of our fits lie in the good range."
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from ._style import COLORS, new_figure, style

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from ..esd.calibration import Calibration

__all__ = ["plot_calibration", "draw_calibration", "GOOD_RANGE"]

#: Seed 000: "the estimator works best for exponents between 1.5 and 3.5".
GOOD_RANGE = (1.5, 3.5)


def plot_calibration(*, alphas: Sequence[float] | None = None, n: int = 1000, trials: int = 10,
                     seed: int = 0, fitter: str = "ww", sampler: str = "numpy",
                     lake: Any = None, where: str | None = None, result: Any = None) -> "Figure":
    """Fitted vs true alpha on Pareto samples (mean ± std over ``trials``), the perfect-estimate
    line, the seed's good range shaded; with ``lake``, a histogram of its layer alphas.

    Args:
        alphas, n, trials, seed, fitter, sampler: ``hubscan.esd.calibration.pareto_calibration``.
        lake: optional lake whose valid alphas (filtered by ``where``) are drawn on a second
            y axis.
        result: a ready ``Calibration`` (skips the experiment).
    """
    from ..esd.calibration import DEFAULT_ALPHAS, pareto_calibration

    if result is None:
        result = pareto_calibration(DEFAULT_ALPHAS if alphas is None else alphas, n=n,
                                    trials=trials, seed=seed, fitter=fitter,
                                    sampler=sampler)  # type: ignore[arg-type]
    with style():
        fig, axes = new_figure(7.0, 5.0)
        ax = axes[0, 0]
        ax.axvspan(*GOOD_RANGE, color=COLORS["band24"], alpha=0.12, zorder=0,
                   label=f"seed 000's good range {GOOD_RANGE[0]}–{GOOD_RANGE[1]}")
        draw_calibration(result, ax=ax)
        if lake is not None:
            from .source import alpha_histogram, base_relation, connection

            with connection(lake) as con:
                hist = alpha_histogram(con, relation=base_relation(where), lo=1.0,
                                       hi=float(max(result.true_alpha)) + 0.5, width=0.1)
            if hist.total:
                twin = ax.twinx()
                twin.bar(hist.edges[:-1], hist.counts, width=0.1, align="edge",
                         color=COLORS["muted"], alpha=0.3, zorder=0,
                         label=f"lake: {hist.total} layer alphas"
                               + (f" ({hist.n_above} > {hist.edges[-1]:g} not shown)"
                                  if hist.n_above else ""))
                twin.set_ylabel("layers in the lake")
                twin.grid(False)
                twin.legend(loc="lower right")
                ax.set_zorder(twin.get_zorder() + 1)  # the calibration curve above the bars
                ax.patch.set_visible(False)
        ax.legend(loc="upper left")
    return fig


def draw_calibration(result: "Calibration", ax: Any = None) -> "Figure":
    """Seed 000's calibration plot: fitted vs true alpha with ±1 std, and the perfect line.

    Returns the matplotlib Figure. Drawn here, not in ``esd.calibration``, so the numeric
    core never imports matplotlib.
    """
    if ax is None:
        from matplotlib.figure import Figure  # no pyplot: no global state, any backend

        fig = Figure(figsize=(5, 4))
        ax = fig.subplots()
    else:
        fig = ax.figure
    a = result.true_alpha
    ax.plot(a, a, color="green", lw=1, label="perfect estimate")
    ax.errorbar(a, result.mean_fit, yerr=result.std_fit, fmt="o-", ms=3, capsize=2,
                label=f"{result.fitter} fit (mean ± std)")
    ax.set_xlabel("true alpha")
    ax.set_ylabel("fitted alpha")
    ax.set_title(f"Pareto calibration: n={result.n}, {result.trials} trials, sampler={result.sampler}")
    ax.legend(loc="upper left")
    return fig
