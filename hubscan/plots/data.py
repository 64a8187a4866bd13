"""The numbers behind every picture, computed apart from drawing so tests can check them.

Each function here is pure (arrays in, frozen dataclasses out, no I/O, no matplotlib), named
after what the figure shows. The drawing modules (``esd.py``, ``fit.py`` …) only place these
numbers on axes; the lake-reading module (``source.py``) only fetches the arrays. So a test
can say "the histogram counts are numpy's", "the MP curve ends at σ²(1+1/√Q)²", "the marked
xmin is the lake's xmin" without looking at pixels.

Formulas follow METHOD.md: the Marchenko–Pastur density for the eigenvalues of
``X = WᵀW/N`` (``W`` is N×M with i.i.d. entries of variance σ², ``Q = N/M ≥ 1``) and the
power-law PDF/CCDF exactly as ``powerlaw`` 1.5 evaluates them for each fitter.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

import numpy as np

__all__ = [
    "Histogram",
    "esd_histogram",
    "zoom_upper",
    "esd_panels",
    "auto_bins",
    "mp_support",
    "mp_density",
    "MPCurve",
    "mp_curve",
    "FitCurves",
    "tail_of",
    "empirical_ccdf",
    "power_law_pdf",
    "power_law_ccdf",
    "power_law_curves",
    "KSCurve",
    "ks_curve",
    "AlphaGroups",
    "alpha_groups",
    "band_share",
    "AlphaHistogram",
    "SeriesPoint",
    "series_points",
    "model_family",
    "LayerProfile",
    "layer_profile",
    "ALPHA_BANDS",
]

#: The universality bands of the seeds: 80–90 % of well-trained layers have alpha in [2, 4];
#: weightwatcher flags alpha outside [2, 6] (METHOD.md §3, §5).
ALPHA_BANDS: tuple[tuple[float, float], ...] = ((2.0, 4.0), (2.0, 6.0))

Fitter = Literal["ww", "seed", "truncated"]


# --------------------------------------------------------------------------------------------
# ESD histogram
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Histogram:
    """A histogram of eigenvalues.

    Attributes:
        edges: bin edges, shape ``(bins + 1,)``, ascending.
        counts: eigenvalues per bin, shape ``(bins,)`` — exactly
            ``np.histogram(values, bins=edges)[0]`` (the last bin is closed).
        density: ``counts / (n · width)`` with ``n`` = every value in the histogram's domain
            (positive ones for log bins), *including* values beyond a zoomed ``range``, so
            the bars are the ESD's density and a probability density (MP) overlays them.
        log: edges are geometric (for log-log axes) rather than linear.
        n_dropped: values a log axis cannot show (≤ 0), not counted in ``n``.
        n_beyond: values in the domain but outside ``range`` (a zoomed view).
    """

    edges: np.ndarray
    counts: np.ndarray
    density: np.ndarray
    log: bool
    n_dropped: int = 0
    n_beyond: int = 0

    @property
    def centers(self) -> np.ndarray:
        if self.log:
            return np.sqrt(self.edges[:-1] * self.edges[1:])
        return 0.5 * (self.edges[:-1] + self.edges[1:])


def esd_histogram(evals: np.ndarray, *, bins: int = 100, log: bool = False,
                  range: tuple[float, float] | None = None) -> Histogram:  # noqa: A002
    """Histogram of an ESD, linear or with geometric bins for a log-log plot.

    Linear bins are ``np.histogram(evals, bins, range)``; log bins span
    ``[min(evals > 0), max]`` geometrically, as weightwatcher's ``plot_loghist`` does, because
    on a log axis equal widths in ``log λ`` make a power law a straight line.

    Args:
        evals: eigenvalues, shape ``(n,)``, any order.
        bins: number of bins (≥ 1).
        log: geometric bins; non-positive eigenvalues are dropped and counted.
        range: ``(lo, hi)`` to zoom on (default: the data's min and max); values outside
            are counted in ``n_beyond`` and still normalise the density.
    """
    if bins < 1:
        raise ValueError("bins must be >= 1")
    x = np.asarray(evals, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    dropped = 0
    if log:
        pos = x[x > 0]
        dropped = int(x.size - pos.size)
        x = pos
    if x.size == 0:
        edges = np.array([1.0, 10.0]) if log else np.array([0.0, 1.0])
        return Histogram(edges, np.zeros(1, np.int64), np.zeros(1), log, dropped)
    lo, hi = (float(x.min()), float(x.max())) if range is None else map(float, range)
    if log:
        lo = max(lo, float(x.min()))
        if hi <= lo:
            lo, hi = lo / 1.1, hi * 1.1
        edges = np.logspace(math.log10(lo), math.log10(hi), bins + 1)
        edges[0], edges[-1] = lo, hi  # exact ends, so the extreme values are counted
    else:
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, bins + 1)
    counts, edges = np.histogram(x, bins=edges)
    widths = np.diff(edges)
    density = counts / (x.size * widths)
    beyond = int(x.size - counts.sum())
    return Histogram(edges, counts.astype(np.int64), density, log, dropped, beyond)


def zoom_upper(evals: np.ndarray, *, marks: Sequence[float | None] = (), quantile: float = 0.98,
               ) -> float:
    """Upper x limit of a linear ESD panel: the bulk and the marked values, not the far tail.

    A heavy tail puts a few eigenvalues 10–100× past the bulk; on a linear axis they squash
    everything else (seed 000: "We can get a better view … by zooming in"). The limit is
    the larger of 1.2 × the ``quantile`` of the eigenvalues and 1.3 × each marked value
    (MP edge, xmin), capped at the largest eigenvalue. The log-log panel shows the rest.
    """
    x = np.asarray(evals, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return 1.0
    top = float(x.max())
    want = 1.2 * float(np.quantile(x, quantile))
    for m in marks:
        if m is not None and np.isfinite(m):
            want = max(want, 1.3 * float(m))
    return min(top, want)


def auto_bins(n: int) -> int:
    """Bins for an ESD of ``n`` eigenvalues: ``2√n`` within [10, 100] (100 = the seeds' choice
    for thousands of eigenvalues; a 64-eigenvalue layer gets 16 readable bars, not 100 slivers)."""
    return int(min(100, max(10, round(2 * math.sqrt(max(n, 1))))))


def esd_panels(evals: np.ndarray, *, bins: int | None = None,
               marks: Sequence[float | None] = ()) -> tuple[Histogram, Histogram]:
    """The two histograms of the ESD figure: linear (zoomed by ``zoom_upper``) and log-log.

    ``bins=None`` → ``auto_bins(len(evals))``.
    """
    x = np.asarray(evals, dtype=np.float64)
    if bins is None:
        bins = auto_bins(int(np.isfinite(x).sum()))
    finite = x[np.isfinite(x)]
    lo = float(finite.min()) if finite.size else 0.0
    linear = esd_histogram(x, bins=bins, range=(lo, zoom_upper(x, marks=marks)))
    return linear, esd_histogram(x, bins=bins, log=True)


# --------------------------------------------------------------------------------------------
# Marchenko–Pastur
# --------------------------------------------------------------------------------------------
def mp_support(sigma2: float, Q: float) -> tuple[float, float]:
    """Support ``[λ−, λ+] = [σ²(1 − 1/√Q)², σ²(1 + 1/√Q)²]`` of the MP law (``Q = N/M ≥ 1``)."""
    if Q < 1:
        raise ValueError(f"Q = N/M must be >= 1, got {Q}")
    r = 1.0 / math.sqrt(Q)
    return sigma2 * (1.0 - r) ** 2, sigma2 * (1.0 + r) ** 2


def mp_density(x: np.ndarray, *, sigma2: float, Q: float) -> np.ndarray:
    """Marchenko–Pastur density ``Q/(2πσ²λ) · √((λ+ − λ)(λ − λ−))`` on its support, 0 outside.

    It is the limiting ESD of ``X = WᵀW/N`` for an N×M matrix ``W`` of i.i.d. entries with
    variance σ²; its mean is σ² and it integrates to 1 (``Q ≥ 1``: no mass at 0).
    """
    lo, hi = mp_support(sigma2, Q)
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros_like(x)
    inside = (x > lo) & (x < hi) & (x > 0)
    xi = x[inside]
    out[inside] = Q / (2.0 * math.pi * sigma2 * xi) * np.sqrt((hi - xi) * (xi - lo))
    return out


@dataclass(frozen=True)
class MPCurve:
    """The MP density sampled on its support, ready to overlay on an ESD histogram.

    ``x`` runs from ``lambda_minus`` to ``lambda_plus`` (both included, density 0 there
    except at λ− = 0 where Q = 1 makes it diverge; that end is nudged inside).
    """

    x: np.ndarray
    density: np.ndarray
    sigma2: float
    Q: float
    lambda_minus: float
    lambda_plus: float


def mp_curve(*, sigma2: float, Q: float, n: int = 400) -> MPCurve:
    """Sample the MP density densely near the edges (square-root behaviour there)."""
    lo, hi = mp_support(sigma2, Q)
    t = 0.5 - 0.5 * np.cos(np.linspace(0.0, math.pi, n))  # Chebyshev spacing: dense at ends
    x = lo + (hi - lo) * t
    if lo == 0.0:
        x[0] = hi * 1e-6
    dens = mp_density(x, sigma2=sigma2, Q=Q)
    return MPCurve(x=x, density=dens, sigma2=sigma2, Q=Q, lambda_minus=lo, lambda_plus=hi)


# --------------------------------------------------------------------------------------------
# Power-law fit: empirical vs fitted PDF and CCDF (the powerlaw package's picture)
# --------------------------------------------------------------------------------------------
def tail_of(evals: np.ndarray, *, xmin: float, xmax: float | None = None) -> np.ndarray:
    """The eigenvalues a fit used: ``xmin ≤ λ ≤ xmax``, ascending, float64.

    The lake keeps eigenvalues as float32 while xmin/xmax were found on float64 values; the
    comparison is done after rounding the bounds to the data's dtype, so the eigenvalue that
    *is* xmin stays in its own tail (``len(tail) == num_pl_spikes``).
    """
    e = np.asarray(evals)
    dt = e.dtype if np.issubdtype(e.dtype, np.floating) else np.float64
    keep = e >= dt.type(xmin)
    if xmax is not None:
        keep &= e <= dt.type(xmax)
    return np.sort(e[keep].astype(np.float64))


def empirical_ccdf(tail: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``P(X ≥ x)`` at the unique values of ``tail`` — powerlaw 1.5's ``Fit.ccdf()``.

    ``1 − searchsorted(data, data, 'left')/n`` handles repeated values the way the
    ``powerlaw`` package does (it takes this from Ginsburg's plfit).
    """
    data = np.sort(np.asarray(tail, dtype=np.float64))
    n = data.size
    if n == 0:
        return data, data
    cdf = np.searchsorted(data, data, side="left") / n
    ux, idx = np.unique(data, return_index=True)
    return ux, 1.0 - cdf[idx]


def _truncation(alpha: float, xmin: float, xmax: float | None, fitter: str) -> float:
    """``1 − (xmax/xmin)^(1−α)``: the mass a power law puts in [xmin, xmax] (1 if untruncated)."""
    if fitter == "ww" or xmax is None or not math.isfinite(xmax):
        return 1.0
    return 1.0 - (xmax / xmin) ** (1.0 - alpha)


def power_law_pdf(x: np.ndarray, *, alpha: float, xmin: float, xmax: float | None = None,
                  fitter: Fitter = "ww") -> np.ndarray:
    """Fitted PDF ``(α−1)/xmin · (x/xmin)^−α`` as the fit defines it.

    ``ww`` and ``seed`` draw the untruncated normalisation (powerlaw 1.5's
    ``Power_Law._pdf_continuous_normalizer`` ignores ``xmax``); ``truncated`` renormalises
    to [xmin, xmax] because that is the density it fitted.
    """
    x = np.asarray(x, dtype=np.float64)
    pdf = (alpha - 1.0) / xmin * (x / xmin) ** (-alpha)
    if fitter == "truncated":
        pdf = pdf / _truncation(alpha, xmin, xmax, fitter)
    return pdf


def power_law_ccdf(x: np.ndarray, *, alpha: float, xmin: float, xmax: float | None = None,
                   fitter: Fitter = "ww") -> np.ndarray:
    """Fitted ``P(X ≥ x)``: ``(x/xmin)^(1−α)``, or truncated at xmax for ``seed``/``truncated``.

    ``seed`` is ``powerlaw.Fit(evals, xmax=max(evals))``: its CDF is renormalised to
    [xmin, xmax] (``Distribution.cdf``), so its CCDF reaches 0 at xmax.
    """
    x = np.asarray(x, dtype=np.float64)
    u = (x / xmin) ** (1.0 - alpha)
    z = _truncation(alpha, xmin, xmax, fitter)
    if z == 1.0:
        return u
    return (u - (1.0 - z)) / z


@dataclass(frozen=True)
class FitCurves:
    """Everything the PDF/CCDF figure draws.

    Attributes:
        tail: the eigenvalues in the fit's range, ascending (``n_tail`` of them).
        pdf_edges, pdf_density: log-binned empirical density of the tail (integrates to 1).
        ccdf_x, ccdf: empirical ``P(X ≥ x)`` at the tail's unique values.
        fit_pdf: fitted density at ``pdf`` bin centres (geometric centres).
        fit_ccdf: fitted ``P(X ≥ x)`` at ``ccdf_x``.
    """

    alpha: float
    xmin: float
    xmax: float | None
    fitter: str
    tail: np.ndarray
    pdf_edges: np.ndarray
    pdf_density: np.ndarray
    ccdf_x: np.ndarray
    ccdf: np.ndarray
    fit_pdf: np.ndarray
    fit_ccdf: np.ndarray

    @property
    def n_tail(self) -> int:
        return int(self.tail.size)

    @property
    def pdf_centers(self) -> np.ndarray:
        return np.sqrt(self.pdf_edges[:-1] * self.pdf_edges[1:])


def power_law_curves(evals: np.ndarray, *, alpha: float, xmin: float, xmax: float | None = None,
                     fitter: Fitter = "ww", bins_per_decade: int = 10) -> FitCurves:
    """Empirical and fitted PDF/CCDF of a power-law fit, log-log (seed 000's figure).

    The empirical PDF uses geometric bins from xmin to the largest tail value,
    ``bins_per_decade`` per decade (at least 3 bins), like ``powerlaw.pdf`` but without its
    integer flooring (meant for discrete data; it merges bins of a narrow continuous tail).
    """
    tail = tail_of(evals, xmin=xmin, xmax=xmax)
    if tail.size == 0:
        empty = np.zeros(0)
        return FitCurves(alpha, xmin, xmax, fitter, tail, np.array([float(xmin)]), empty,
                         empty, empty, empty, empty)
    lo, hi = float(tail[0]), float(tail[-1])
    if hi <= lo:
        hi = lo * 1.01
    nb = max(3, int(math.ceil(math.log10(hi / lo) * bins_per_decade)))
    edges = np.geomspace(lo, hi, nb + 1)
    edges[0], edges[-1] = lo, hi
    counts, _ = np.histogram(tail, bins=edges)
    density = counts / (tail.size * np.diff(edges))
    centers = np.sqrt(edges[:-1] * edges[1:])
    cx, cy = empirical_ccdf(tail)
    return FitCurves(
        alpha=alpha, xmin=xmin, xmax=xmax, fitter=fitter, tail=tail,
        pdf_edges=edges, pdf_density=density, ccdf_x=cx, ccdf=cy,
        fit_pdf=power_law_pdf(centers, alpha=alpha, xmin=xmin, xmax=xmax, fitter=fitter),
        fit_ccdf=power_law_ccdf(cx, alpha=alpha, xmin=xmin, xmax=xmax, fitter=fitter),
    )


# --------------------------------------------------------------------------------------------
# KS distance vs xmin (seed 002)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KSCurve:
    """KS distance D for every candidate xmin, and where the fit landed.

    Attributes:
        xmin: candidate xmins, ascending.
        D: KS distance of the fit starting at each candidate.
        tail_size: ``K`` = number of eigenvalues ≥ each candidate.
        best: index of the first minimum of D (the fitter's tie-break).
        marked_xmin: the xmin to mark — the lake's, when given, else the curve's minimum.
        marked_K: tail size at ``marked_xmin``.
    """

    xmin: np.ndarray
    D: np.ndarray
    tail_size: np.ndarray
    best: int
    marked_xmin: float
    marked_K: int

    @property
    def best_xmin(self) -> float:
        return float(self.xmin[self.best])

    @property
    def best_D(self) -> float:
        return float(self.D[self.best])


def ks_curve(evals: np.ndarray, *, candidates_xmin: np.ndarray, candidates_D: np.ndarray,
             xmin: float | None = None) -> KSCurve:
    """Assemble the KS-vs-xmin curve from a fit's candidates (``fit_power_law(return_curve=True)``).

    ``K`` for each candidate counts eigenvalues ``≥ candidate`` in ``evals`` (the fitter's
    own tail definition, duplicates included). Candidates whose D is not finite (e.g.
    alpha ≤ 1) are dropped from the picture.
    """
    cx = np.asarray(candidates_xmin, dtype=np.float64)
    cd = np.asarray(candidates_D, dtype=np.float64)
    ok = np.isfinite(cx) & np.isfinite(cd)
    cx, cd = cx[ok], cd[ok]
    order = np.argsort(cx, kind="stable")
    cx, cd = cx[order], cd[order]
    e = np.sort(np.asarray(evals, dtype=np.float64))
    K = e.size - np.searchsorted(e, cx, side="left")
    if cx.size == 0:
        raise ValueError("no finite KS candidates to draw")
    best = int(np.argmin(cd))
    if xmin is None:
        marked, mK = float(cx[best]), int(K[best])
    else:
        marked = float(xmin)
        mK = int(tail_of(np.asarray(evals), xmin=marked).size)
    return KSCurve(xmin=cx, D=cd, tail_size=K.astype(np.int64), best=best,
                   marked_xmin=marked, marked_K=mK)


# --------------------------------------------------------------------------------------------
# Alphas by group (architecture), shares in the universality bands
# --------------------------------------------------------------------------------------------
def band_share(alphas: np.ndarray, lo: float, hi: float) -> float:
    """Share of finite alphas in the closed band ``[lo, hi]`` (NaN when there are none)."""
    a = np.asarray(alphas, dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(np.mean((a >= lo) & (a <= hi))) if a.size else float("nan")


@dataclass(frozen=True)
class AlphaGroups:
    """Layer alphas per group (e.g. architecture), ordered for display.

    ``values[i]`` are group ``names[i]``'s alphas (possibly a sample); ``n`` the group's
    full count of fitted layers, ``share_2_4``/``share_2_6`` exact shares over all of them.
    """

    names: tuple[str, ...]
    values: tuple[np.ndarray, ...]
    n: np.ndarray
    share_2_4: np.ndarray
    share_2_6: np.ndarray
    median: np.ndarray


def alpha_groups(groups: Sequence[str | None], alphas: np.ndarray, *,
                 max_groups: int = 25, order: Literal["count", "median", "name"] = "count",
                 ) -> AlphaGroups:
    """Group layer alphas (NaN = failed fit, dropped) and compute each group's band shares.

    Groups beyond ``max_groups`` (by count) are merged into ``"other"``; a NULL group is
    ``"(unknown)"``. This pure version serves small tables and tests; the report computes the
    same numbers in DuckDB for large lakes (``source.alpha_group_stats``).
    """
    a = np.asarray(alphas, dtype=np.float64)
    g = np.array(["(unknown)" if x is None else str(x) for x in groups], dtype=object)
    ok = np.isfinite(a)
    a, g = a[ok], g[ok]
    names, counts = np.unique(g, return_counts=True) if a.size else (np.array([]), np.array([]))
    keep = [str(n) for n, _ in sorted(zip(names, counts), key=lambda t: (-t[1], t[0]))]
    if len(keep) > max_groups:
        top = set(keep[: max_groups - 1])
        g = np.array([x if x in top else "other" for x in g], dtype=object)
        keep = keep[: max_groups - 1] + ["other"]
    vals = [a[g == name] for name in keep]
    med = np.array([np.median(v) for v in vals]) if vals else np.zeros(0)
    if order == "median":
        idx = np.argsort(med, kind="stable")
    elif order == "name":
        idx = np.argsort(np.array(keep, dtype=object), kind="stable")
    else:
        idx = np.arange(len(keep))
    keep = [keep[i] for i in idx]
    vals = [vals[i] for i in idx]
    return AlphaGroups(
        names=tuple(keep),
        values=tuple(vals),
        n=np.array([v.size for v in vals], dtype=np.int64),
        share_2_4=np.array([band_share(v, 2, 4) for v in vals]),
        share_2_6=np.array([band_share(v, 2, 6) for v in vals]),
        median=med[idx] if len(idx) else med,
    )


@dataclass(frozen=True)
class AlphaHistogram:
    """Every valid alpha of a lake, binned (exact counts, no sample), with exact band shares.

    ``counts[k]`` counts ``edges[k] ≤ α < edges[k+1]`` (last bin closed); ``n_below``/``n_above``
    the alphas outside ``[edges[0], edges[-1]]``; shares are over all of them.
    """

    edges: np.ndarray
    counts: np.ndarray
    n_below: int
    n_above: int
    share_2_4: float
    share_2_6: float

    @property
    def total(self) -> int:
        return int(self.counts.sum()) + self.n_below + self.n_above


# --------------------------------------------------------------------------------------------
# Model series: mean metric vs reported accuracy (seed 001)
# --------------------------------------------------------------------------------------------
_FAMILY_RE = re.compile(r"[A-Za-z]+")


def model_family(name: str) -> str:
    """The series a model belongs to: the leading letters of its name, lower-case.

    ``vgg11_bn`` → ``vgg``, ``resnet152`` → ``resnet``, ``google/vit-base`` → ``vit``,
    ``BertForMaskedLM`` → ``bertformaskedlm``. Digits end a family name, so VGG11…19 and
    ResNet18…152 form one series each, as in the seeds' figures.
    """
    base = name.rsplit("/", 1)[-1]
    m = _FAMILY_RE.search(base)
    return m.group(0).lower() if m else base.lower()


@dataclass(frozen=True)
class SeriesPoint:
    """One model in a series plot: ``x`` (e.g. accuracy) vs ``y`` (mean of a layer metric)."""

    label: str
    family: str
    x: float
    y: float
    n_layers: int


def series_points(labels: Sequence[str], layer_values: Sequence[np.ndarray],
                  xs: Sequence[float | None], *, families: Sequence[str] | None = None,
                  ) -> list[SeriesPoint]:
    """Mean of each model's layer metric (finite values only) against its x value.

    Models without an x value or without a single finite layer value are left out: a
    series plot compares models, it does not guess.
    """
    out: list[SeriesPoint] = []
    fams = list(families) if families is not None else [model_family(s) for s in labels]
    for label, vals, x, fam in zip(labels, layer_values, xs, fams):
        v = np.asarray(vals, dtype=np.float64)
        v = v[np.isfinite(v)]
        if x is None or not math.isfinite(float(x)) or v.size == 0:
            continue
        out.append(SeriesPoint(label=label, family=fam, x=float(x), y=float(v.mean()),
                               n_layers=int(v.size)))
    out.sort(key=lambda p: (p.family, p.x))
    return out


# --------------------------------------------------------------------------------------------
# One model's layers by depth
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerProfile:
    """Alpha of each analysed layer of one model in checkpoint order (depth).

    ``depth`` is 0-based among analysed layers; ``alpha`` NaN marks a failed fit.
    """

    depth: np.ndarray
    names: tuple[str, ...]
    kinds: tuple[str, ...]
    alpha: np.ndarray
    warnings: tuple[str | None, ...]


def layer_profile(layer_ids: Iterable[int | None], names: Sequence[str],
                  kinds: Sequence[str | None], alphas: Iterable[float | None],
                  warnings: Sequence[str | None]) -> LayerProfile:
    """Order layers by their position in the checkpoint (``layer_id``), then by name."""
    ids = [(-1 if i is None else int(i)) for i in layer_ids]
    order = sorted(range(len(ids)), key=lambda k: (ids[k], names[k]))
    a = np.array([np.nan if v is None else float(v) for v in alphas], dtype=np.float64)
    return LayerProfile(
        depth=np.arange(len(order)),
        names=tuple(names[k] for k in order),
        kinds=tuple((kinds[k] or "?") for k in order),
        alpha=a[order] if len(order) else a,
        warnings=tuple(warnings[k] for k in order),
    )
