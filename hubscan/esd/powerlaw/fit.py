"""Exact power-law fits of eigenvalue tails, every xmin candidate scored at once (METHOD.md §4).

Both references loop over xmin candidates in Python and recompute each candidate's tail from
scratch: weightwatcher 0.7.7's ``WWFit`` (convention ``ww``) and ``powerlaw`` 1.5
``Fit(evals, xmax=max(evals))`` (convention ``seed``), which also runs Nelder–Mead per
candidate. This module computes the *same* numbers (same candidate set, same KS definition,
same first-index tie-break, so the same xmin), for a whole batch of spectra in one torch
call, in float64, on CUDA when there is one:

- every candidate's MLE from suffix sums in O(n) per spectrum (``search.tail_log_sums``);
- ``truncated``: the true MLE of the power law truncated to [xmin, xmax] for all candidates
  together (a safeguarded vectorised Newton solve, ``_solve_truncated``);
- KS distances with the references' exact definitions, but not all of them: D at a few
  points of a tail is a *lower bound* of its D, so all candidates are bounded cheaply and
  exact D is computed only, in order of increasing bound, for candidates whose bound does
  not exceed the best exact D found so far (``search.select_xmin``). The winner is
  exactly the reference's; the D-vs-xmin curve (``return_curve=True``) is computed in full.
- on CPU the ``ww``/``seed`` scans skip torch: ``_fit_single_cpu`` fits each spectrum with
  a compiled search that stops every tail's KS scan at its first deviation above the best D
  (``kernel.search``): same winner, no per-operator overhead (dispatch rule:
  ``_cpu_kernel_path``; docs/fitting.md, Speed).

The three fitters (see docs/fitting.md):

``ww``        weightwatcher 0.7.7 ``WWFit``: sorted data, candidates = every value but the
              largest (duplicates kept), ``alpha = 1 + n / Σ ln(x/xmin)``, D against the
              untruncated CDF at every tail point with empirical CDF ``j/n``; fewer than 20
              points → 0.7.7's small-N path (tails ≥ 8 points, ``alpha = 1 + (n-1)/Σ ln``,
              first argmin of D — its ``D − 0.868/√n`` objective is overridden by
              ``WWFit.__init__``). Data: ``evals > 1e-5`` (the threshold weightwatcher's
              caller applies; here ``threshold``).
``seed``      powerlaw 1.5 ``Fit(evals, xmax=max(evals))``: candidates = unique values but the
              largest, the same untruncated alpha, D = max(D+, D−) against the CDF truncated
              at xmax, at the unique values, empirical CDF = fraction of the tail strictly below.
``truncated`` the MLE of the power law truncated to [xmin, xmax], with the seed fitter's
              candidates and KS points against its own (truncated) CDF.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import torch

from ...errors import MatrixError
from .search import (
    Batch,
    Candidates,
    make_batch,
    select_xmin,
    tail_log_sums,
    torch_inplace,
)

__all__ = [
    "PowerLawFit",
    "Fitter",
    "FITTERS",
    "WW_EVALS_THRESHOLD",
    "fit_power_law",
    "fit_power_law_batch",
    "k_select",
    "ks_curve",
    "default_threshold",
    "resolve_device",
    "warm_up",
]

Fitter = Literal["ww", "seed", "truncated"]
FITTERS: tuple[str, ...] = ("ww", "seed", "truncated")

#: weightwatcher's ``EVALS_THRESH``: its ``fit_powerlaw`` fits ``evals[evals > 1e-5]``.
WW_EVALS_THRESHOLD = 1e-5
#: weightwatcher 0.7.7 ``SMALL_N_CUTOFF``: fewer points than this → the small-N path.
WW_SMALL_N_CUTOFF = 20
#: weightwatcher 0.7.7 ``fit_powerlaw_smallN(k_min=8)``: minimum tail size on that path.
WW_SMALL_N_MIN_TAIL = 8
#: weightwatcher 0.7.7 small-N path skips tails with ``Σ ln(x/xmin) <= 1e-12``.
WW_SMALL_N_MIN_LOGSUM = 1e-12

@dataclass(frozen=True, eq=False)
class PowerLawFit:
    """One power-law fit of a spectrum's tail (METHOD.md §4).

    Attributes:
        alpha: fitted exponent of the density ``p(x) ∝ x^-alpha``; NaN when the fit failed.
        xmin, xmax: the tail's bounds. ``xmax`` is the largest value used (``ww``) or the
            truncation point of the model (``seed``, ``truncated``).
        D: Kolmogorov–Smirnov distance of the chosen tail, as the fitter defines it.
        sigma: standard error of alpha (``(alpha − 1)/√n_tail``; Fisher information for
            ``truncated``).
        n_tail: number of data points in [xmin, xmax].
        n: number of data points the fit saw (after ``threshold`` and ``xmax``).
        fitter: ``ww``, ``seed`` or ``truncated``.
        status: ``ok`` or ``failed``; ``reason`` says why it failed (or notes the small-N
            fallback of weightwatcher when it was used).
        candidates_xmin, candidates_D: every xmin candidate and its D, in increasing xmin
            order (only with ``return_curve=True``): the KS-vs-xmin curve of seed 002.
    """

    alpha: float
    xmin: float
    xmax: float
    D: float
    sigma: float
    n_tail: int
    n: int
    fitter: str
    status: Literal["ok", "failed"]
    reason: str | None = None
    candidates_xmin: np.ndarray | None = None
    candidates_D: np.ndarray | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class _Options:
    fitter: str
    xmin: float | None
    xmax: float | str | None
    xmin_range: tuple[float | None, float | None] | None
    min_tail: int | None
    threshold: float
    return_curve: bool

    @property
    def unique_points(self) -> bool:
        """powerlaw scores unique values only; WWFit every value (duplicates kept)."""
        return self.fitter != "ww"


def default_threshold(fitter: str) -> float:
    """The data threshold a fitter uses when none is given: ``x > threshold`` is fitted.

    ``ww`` fits ``evals > 1e-5`` because weightwatcher's ``fit_powerlaw`` filters its input so
    before calling ``WWFit`` (the filter is the caller's in weightwatcher; it is part of the
    ``ww`` convention here so that every caller gets it). ``seed``/``truncated`` fit every
    positive value: the seeds pass all eigenvalues to ``powerlaw.Fit``, whose ``σ²/N`` scale
    makes an absolute 1e-5 meaningless. Non-positive values are always dropped (no log).
    """
    return WW_EVALS_THRESHOLD if fitter == "ww" else 0.0


def _options(fitter, xmin, xmax, xmin_range, min_tail, threshold, return_curve) -> _Options:
    if fitter not in FITTERS:
        raise ValueError(f"fitter must be one of {FITTERS}, not {fitter!r}")
    if xmin is not None:
        xmin = float(xmin)
        if not (xmin > 0 and math.isfinite(xmin)):
            raise ValueError(f"xmin must be a positive finite number, not {xmin!r}")
        if xmin_range is not None:
            raise ValueError("give either xmin (fixed) or xmin_range, not both")
    if xmax is not None and xmax != "max":
        if isinstance(xmax, str):
            raise ValueError(f"xmax must be None, 'max' or a number, not {xmax!r}")
        xmax = float(xmax)
        if not xmax > 0:
            raise ValueError(f"xmax must be positive, not {xmax!r}")
    if xmin_range is not None:
        lo, hi = xmin_range
        xmin_range = (None if lo is None else float(lo), None if hi is None else float(hi))
    if min_tail is not None:
        min_tail = int(min_tail)
        if min_tail < 2:
            raise ValueError("min_tail must be >= 2 (a tail needs two points)")
    threshold = default_threshold(fitter) if threshold is None else float(threshold)
    return _Options(fitter, xmin, xmax, xmin_range, min_tail, threshold, bool(return_curve))


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"`` → CUDA when available, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# --------------------------------------------------------------------------- public API


def fit_power_law(
    evals,
    *,
    fitter: Fitter = "ww",
    xmin: float | None = None,
    xmax: float | Literal["max"] | None = None,
    xmin_range: tuple[float | None, float | None] | None = None,
    min_tail: int | None = None,
    threshold: float | None = None,
    return_curve: bool = False,
    device: str | torch.device | None = None,
    convention: Fitter | None = None,
) -> PowerLawFit:
    """Fit a power law to the tail of one spectrum, choosing xmin by minimum KS distance.

    Args:
        evals: eigenvalues (any order, any array-like); only ``x > threshold`` are fitted.
        fitter: ``ww`` (weightwatcher 0.7.7, default), ``seed`` (powerlaw 1.5 with
            ``xmax=max``) or ``truncated`` (MLE of the power law truncated to [xmin, xmax]).
        xmin: fit at this fixed xmin (tail = values ≥ xmin) instead of scanning candidates.
        xmax: ``None`` (``ww``: no upper cut; ``seed``/``truncated``: the largest value),
            ``"max"`` (the largest value) or a number (values above it are dropped; for
            ``seed``/``truncated`` also the truncation point of the model). The ``ww`` model
            is never truncated: as in weightwatcher, xmax only clips data.
        xmin_range: ``(lo, hi)``; only candidates with ``lo <= xmin <= hi`` (either may be None).
        min_tail: only candidates whose tail has at least this many points (weightwatcher has
            no minimum, so tiny tails can win with spurious large alphas: "fingers").
        threshold: fit ``evals > threshold``; default ``default_threshold(fitter)``.
        return_curve: also return every candidate's D (``candidates_xmin``/``candidates_D``).
        device: torch device; default CUDA when available, else CPU.
        convention: alias of ``fitter`` (``ww`` | ``seed`` | ``truncated``), the spelling of
            ``AnalysisOptions.convention``; when given it wins.

    Returns:
        A ``PowerLawFit``. Never raises for empty, tiny, constant or otherwise degenerate data:
        the fit is ``status="failed"`` with alpha NaN and a ``reason``.

    Example:
        >>> fit = fit_power_law(np.random.default_rng(0).pareto(2.0, 1000) + 1)
        >>> round(fit.alpha, 1)
        3.0
    """
    return fit_power_law_batch(
        [evals], fitter=convention or fitter, xmin=xmin, xmax=xmax, xmin_range=xmin_range,
        min_tail=min_tail, threshold=threshold, return_curve=return_curve, device=device,
    )[0]


def fit_power_law_batch(
    spectra: Sequence,
    *,
    fitter: Fitter = "ww",
    xmin: float | None = None,
    xmax: float | Literal["max"] | None = None,
    xmin_range: tuple[float | None, float | None] | None = None,
    min_tail: int | None = None,
    threshold: float | None = None,
    return_curve: bool = False,
    device: str | torch.device | None = None,
) -> list[PowerLawFit]:
    """``fit_power_law`` for many spectra in one batched computation (same options for all).

    Ragged lengths are padded and masked: a conv layer's slices or a whole model's layers go
    through one set of torch kernels, which is what makes the GPU (and the CPU's vector
    units) pay. Results are identical to fitting each spectrum alone.
    """
    opts = _options(fitter, xmin, xmax, xmin_range, min_tail, threshold, return_curve)
    dev = resolve_device(device)
    prepared = [_prepare(e, opts) for e in spectra]
    results: list[PowerLawFit | None] = [p if isinstance(p, PowerLawFit) else None for p in prepared]
    todo = [k for k, p in enumerate(prepared) if not isinstance(p, PowerLawFit)]
    if _cpu_kernel_path(opts, dev):  # spectrum by spectrum: nothing to pad or group
        for k in todo:
            results[k] = _fit_single_cpu(*prepared[k], opts)
        return results  # type: ignore[return-value]
    # Group by length so that one very long spectrum does not pad a batch of short ones.
    todo.sort(key=lambda k: len(prepared[k][0]))
    start = 0
    while start < len(todo):
        n_shortest = len(prepared[todo[start]][0])
        stop = start + 1
        while stop < len(todo) and len(prepared[todo[stop]][0]) <= max(2 * n_shortest, 64):
            stop += 1
        group = todo[start:stop]
        fits = _fit_group([prepared[k] for k in group], opts, dev)
        for k, f in zip(group, fits):
            results[k] = f
        start = stop
    return results  # type: ignore[return-value]


def warm_up() -> None:
    """Compile (or load from numba's cache) the CPU search now: ~2 s cold, ~0.5 s cached.

    Workers call it at start, with their imports, so that the cost is not paid inside the
    first model's deadline and concurrent first fits do not wait on one compile.
    """
    fit_power_law(np.geomspace(1.0, 100.0, 64), fitter="ww", device="cpu")
    fit_power_law(np.geomspace(1.0, 100.0, 64), fitter="seed", device="cpu")


def ks_curve(evals, **options) -> tuple[np.ndarray, np.ndarray]:
    """The KS distance D of every xmin candidate (seed 002's convex "D vs xmin" plot).

    Takes ``fit_power_law``'s options. Returns ``(xmins, Ds)`` in increasing xmin order;
    both empty when no fit is possible.
    """
    options["return_curve"] = True
    fit = fit_power_law(evals, **options)
    if fit.candidates_xmin is None:
        return np.empty(0), np.empty(0)
    return fit.candidates_xmin, fit.candidates_D


def k_select(evals, **options) -> int:
    """LSA K-selection (seed 002): K = number of eigenvalues ≥ the fitted xmin.

    Works on any spectrum (e.g. the squared singular values of a TF-IDF matrix). Takes
    ``fit_power_law``'s options; counts over *all* given values, as weightwatcher's
    ``num_pl_spikes`` does.

    Raises:
        MatrixError: no power law can be fitted (the fit's reason is in the message).
    """
    fit = fit_power_law(evals, **options)
    if not fit.ok:
        raise MatrixError(f"no power-law fit, so no K: {fit.reason}")
    x = np.asarray(evals, dtype=np.float64).ravel()
    return int(np.count_nonzero(x >= fit.xmin))


# --------------------------------------------------------------------------- preparation


def _failed(opts: _Options, reason: str, n: int = 0) -> PowerLawFit:
    nan = float("nan")
    return PowerLawFit(alpha=nan, xmin=nan, xmax=nan, D=nan, sigma=nan, n_tail=0, n=n,
                       fitter=opts.fitter, status="failed", reason=reason)


def _prepare(evals, opts: _Options):
    """Sorted float64 data the fitter sees, and the model's xmax; or a failed fit."""
    try:
        x = np.asarray(evals, dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        return _failed(opts, f"evals are not numeric: {exc}")
    if not np.isfinite(x).all():
        return _failed(opts, "non-finite eigenvalues (NaN/Inf)")
    x = x[x > max(opts.threshold, 0.0)]
    if isinstance(opts.xmax, float):
        x = x[x <= opts.xmax]
    x = np.sort(x)
    n = len(x)
    if n < 2:
        return _failed(opts, f"{n} value(s) above threshold {opts.threshold:g}: need 2", n)
    if x[0] == x[-1]:
        return _failed(opts, "all values are equal: no tail to fit", n)
    if opts.fitter == "ww":
        xmax_model = float("inf")
    else:
        xmax_model = opts.xmax if isinstance(opts.xmax, float) else float(x[-1])
    return x, xmax_model


# --------------------------------------------------------------------------- the batched fit


def _h(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``h(z) = 1/z − 1/(e^z − 1)`` (mean of ``t/u`` under the truncated exponential) and h'."""
    small = z.abs() < 1e-2
    zs = torch.where(small, torch.ones_like(z), z)  # keep the direct branch finite
    h_big = 1.0 / zs - 1.0 / torch.expm1(zs)
    dh_big = -1.0 / (zs * zs) + 0.25 / torch.sinh(0.5 * zs) ** 2
    z2 = z * z
    h_small = 0.5 - z / 12.0 + z * z2 / 720.0 - z * z2 * z2 / 30240.0
    dh_small = -1.0 / 12.0 + z2 / 240.0 - z2 * z2 / 6048.0
    return torch.where(small, h_small, h_big), torch.where(small, dh_small, dh_big)


def _solve_truncated(r: torch.Tensor, iters: int = 100) -> torch.Tensor:
    """Solve ``h(z) = r`` for every entry (``0 < r < 1``): the truncated power law's MLE.

    With ``t = ln(x/xmin)`` on ``[0, u]``, a power law truncated to [xmin, xmax] is a
    truncated exponential in t with rate ``β = alpha − 1`` (any real β). Its MLE matches the
    mean: ``E_β[t]/u = h(βu) = t̄/u``. h decreases from 1 to 0 with ``h(−z) = 1 − h(z)``, so
    solve for ``z ≥ 0`` at ``s = min(r, 1 − r)`` in the bracket ``[0, 1/s]`` with Newton steps,
    bisecting whenever Newton leaves the bracket; return ``z = βu``.
    """
    s = torch.minimum(r, 1.0 - r).clamp(min=1e-300)
    sign = torch.where(r <= 0.5, 1.0, -1.0).to(r.dtype)
    lo = torch.zeros_like(s)
    hi = 1.0 / s
    z = torch.minimum(12.0 * (0.5 - s), 0.5 * hi)  # the series' root near s = 1/2; inside the bracket
    active = torch.ones_like(s, dtype=torch.bool)
    for _ in range(iters):
        hz, dh = _h(z)
        f = hz - s  # decreasing in z
        lo = torch.where(f > 0, z, lo)
        hi = torch.where(f <= 0, z, hi)
        znew = z - f / dh
        converged = (f == 0) | ((znew - z).abs() <= 4e-16 * z.abs())  # at the root, to rounding
        out = ~((znew > lo) & (znew < hi))
        znew = torch.where(out, 0.5 * (lo + hi), znew)
        znew = torch.where(converged, z, znew)
        converged |= hi - lo <= 4e-16 * hi
        # Freeze converged entries: each entry's iterates then do not depend on the batch.
        z = torch.where(active, znew, z)
        active &= ~converged
        if not bool(active.any()):
            break
    return sign * z


def _admissible(mask, X, n_i, S, opts: _Options, small_n):
    """Apply ``xmin_range``, ``min_tail`` and weightwatcher's small-N rule (tails >= 8
    points, Σ ln > 1e-12) to a (B, W) candidate mask. Array-module agnostic: the torch path
    passes tensors, the compiled CPU path (1, n) numpy arrays — one set of rules."""
    if opts.xmin_range is not None:
        lo, hi = opts.xmin_range
        if lo is not None:
            mask &= X >= lo
        if hi is not None:
            mask &= X <= hi
    if opts.min_tail is not None:
        mask &= n_i >= opts.min_tail
    if opts.fitter == "ww" and bool(small_n.any()):
        k_min = max(WW_SMALL_N_MIN_TAIL, opts.min_tail or 0)
        sn = small_n[:, None]
        mask &= ~sn | ((n_i >= k_min) & (S > WW_SMALL_N_MIN_LOGSUM))
    return mask


def _candidates(batch: Batch, opts: _Options, small_n: torch.Tensor) -> Candidates:
    """The admissible xmin candidates of every spectrum, their alphas and model CDFs.

    Candidate sets are the references': ww every sorted value but the largest (duplicates
    kept), seed/truncated every unique value but the largest; then ``xmin_range``,
    ``min_tail`` and weightwatcher's small-N rule (tails >= 8 points, Σ ln > 1e-12).
    """
    X, N = batch.X, batch.N
    dev = X.device
    W = batch.width
    L = batch.L[:, :W]
    idx = torch.arange(W, device=dev)
    n_i = (N[:, None] - idx).to(torch.float64)
    S = tail_log_sums(batch)
    Lxm = L
    if opts.xmin is not None:
        # One candidate per spectrum: the first value ≥ xmin; the model's xmin is the given one.
        i0 = torch.searchsorted(X, torch.full((X.shape[0], 1), opts.xmin, dtype=X.dtype, device=dev))
        mask = (idx[None, :] == i0) & (n_i >= max(2, opts.min_tail or 2))
        lxm = math.log(opts.xmin)
        S = S + n_i * (L - lxm)
        Lxm = torch.full_like(L, lxm)
        mask &= S > 0
    else:
        if opts.unique_points:
            last = X.gather(1, (N - 1)[:, None])
            mask = batch.is_first & (X < last)
        else:
            mask = idx[None, :] <= (N[:, None] - 2)
        mask = _admissible(mask, X, n_i, S, opts, small_n)
    mask &= idx[None, :] < N[:, None]

    b, i = mask.nonzero(as_tuple=True)
    n = n_i[b, i]
    s = S[b, i]
    lxm = Lxm[b, i]
    if opts.fitter == "truncated":
        u = batch.Lxmax[b] - lxm
        z = _solve_truncated((s / n) / u)
        beta = z / u
        den = -torch.expm1(-z)
    else:
        smalln = small_n[b] if opts.fitter == "ww" and opts.xmin is None else torch.zeros_like(b, dtype=torch.bool)
        beta = torch.where(smalln, (n - 1.0) / s, n / s)  # s = 0 (constant tail) → inf
        if opts.fitter == "seed":
            u = batch.Lxmax[b] - lxm
            den = -torch.expm1(-beta * u)
        else:
            u = torch.full_like(n, math.inf)
            den = torch.ones_like(n)
    return Candidates(b=b, i=i, n=n, beta=beta, Lxm=lxm, den=den, u=u, truncated=opts.fitter != "ww")


def _cpu_kernel_path(opts: _Options, dev: torch.device) -> bool:
    """Dispatch rule: on CPU the ``ww``/``seed`` xmin scans use the compiled search.

    Per spectrum, it stops each tail's KS scan at the first deviation above the best D, which
    a batch of array operations cannot do; the batched torch search pays ~1 ms of operator
    overhead per call and computes blocks of deviations a compiled loop skips
    (docs/fitting.md, Speed). CUDA keeps torch (batches are what a GPU needs); so do the
    options the compiled path does not implement (``truncated``, a fixed ``xmin``,
    ``return_curve``, which needs every candidate's D anyway).
    """
    return (dev.type == "cpu" and opts.fitter in ("ww", "seed") and opts.xmin is None
            and not opts.return_curve)


def _fit_single_cpu(x: np.ndarray, xmax_model: float, opts: _Options) -> PowerLawFit:
    """``_fit_group`` for one prepared spectrum, with the same candidate rules
    (``_admissible``), alphas, KS definitions and tie-break — so the same xmin and alpha, bit
    for bit, and D to the last bit or two (the compiled ``expm1`` is libm's, torch's is its
    own vectorised one).

    Logs and the truncation denominators use torch's kernels, as the torch path does.
    """
    from .kernel import (  # numba compiles or loads its cache
        candidate_alphas,
        search,
        tail_table,
    )

    N = len(x)
    L = torch_inplace(x.copy(), "log_")
    S, first, mask = tail_table(x, L, opts.unique_points)
    small_n = N < WW_SMALL_N_CUTOFF
    if small_n or opts.xmin_range is not None or opts.min_tail is not None:
        n_i = N - np.arange(N, dtype=np.float64)
        mask = _admissible(mask[None, :], x[None, :], n_i[None, :], S[None, :], opts,
                           np.array([small_n]))[0]
    ci, n, beta = candidate_alphas(S, mask, small_n and opts.fitter == "ww")
    u = None
    den = beta  # unused by the untruncated (ww) model
    if opts.fitter == "seed":
        u = math.log(xmax_model) - L[ci]
        den = -torch_inplace(-beta * u, "expm1_")
    w, D = search(L, first, opts.unique_points, ci, n, beta, den, opts.fitter == "seed")
    xmax = float(x[-1]) if opts.fitter == "ww" else float(xmax_model)
    winner = None if w < 0 else (int(ci[w]), float(n[w]), float(beta[w]), float(D),
                                 math.inf if u is None else float(u[w]))
    return _result(x, N, xmax, opts, small_n, winner)


def _fit_group(items, opts: _Options, dev: torch.device) -> list[PowerLawFit]:
    batch = make_batch([x for x, _ in items], [xm for _, xm in items], dev, unique=opts.unique_points)
    B = batch.X.shape[0]
    small_n = batch.N < WW_SMALL_N_CUTOFF
    c = _candidates(batch, opts, small_n)
    winner, Dex = select_xmin(batch, c, exhaustive=opts.return_curve)
    P = len(c)

    out: list[PowerLawFit] = []
    winner_l = winner.tolist()
    cb = c.b.cpu().numpy()
    cols = {k: getattr(c, k).cpu().numpy() for k in ("i", "n", "beta", "Lxm", "u")}
    Dex_np = Dex.cpu().numpy()
    Xc = batch.X.cpu().numpy()
    Nl = batch.N.tolist()
    for bidx in range(B):
        n_b = Nl[bidx]
        x = Xc[bidx, :n_b]
        xmax = float(x[-1]) if opts.fitter == "ww" else float(items[bidx][1])
        curve_x = curve_D = None
        if opts.return_curve:
            sel = cb == bidx
            curve_x = np.exp(cols["Lxm"][sel]) if opts.xmin is not None else x[cols["i"][sel]]
            curve_D = Dex_np[sel]
        w = winner_l[bidx]
        if w >= P:
            out.append(_result(x, n_b, xmax, opts, bool(small_n[bidx]), None, curve_x, curve_D))
            continue
        winner = (int(cols["i"][w]), float(cols["n"][w]), float(cols["beta"][w]),
                  float(Dex_np[w]), float(cols["u"][w]))
        out.append(_result(x, n_b, xmax, opts, bool(small_n[bidx]), winner, curve_x, curve_D))
    return out


def _result(x: np.ndarray, n_b: int, xmax: float, opts: _Options, small_n: bool, winner,
            curve_x=None, curve_D=None) -> PowerLawFit:
    """The fit of one spectrum from its winning candidate ``(i, n_tail, beta, D, u)``, or
    None when it has no admissible candidate (then weightwatcher's small-N fallback or a
    failed fit). Shared by the torch and compiled CPU paths, so both report alike."""
    if winner is None:
        # weightwatcher's fallback ignores options it does not have: with a range or a
        # minimum tail, no admissible candidate means no fit.
        if (opts.fitter == "ww" and opts.xmin is None and opts.xmin_range is None
                and opts.min_tail is None and small_n):
            return _ww_small_n_fallback(x, opts, n_b, curve_x, curve_D)
        return _failed(opts, _no_candidate_reason(opts), n_b)
    i, n, beta, D, u = winner
    if not (math.isfinite(beta) and math.isfinite(D)):
        return _failed(opts, "degenerate tail (constant values): alpha is infinite", n_b)
    if opts.fitter == "truncated":
        _, dh = _h(torch.tensor([beta * u], dtype=torch.float64))
        var = -float(dh[0])  # Var(t/u) under the fitted model
        sigma = 1.0 / (u * math.sqrt(n * var))
    else:
        sigma = beta / math.sqrt(n)
    xmin = opts.xmin if opts.xmin is not None else float(x[i])
    return PowerLawFit(alpha=1.0 + beta, xmin=xmin, xmax=xmax, D=D, sigma=sigma,
                       n_tail=int(n), n=n_b, fitter=opts.fitter, status="ok",
                       candidates_xmin=curve_x, candidates_D=curve_D)


def _no_candidate_reason(opts: _Options) -> str:
    if opts.xmin is not None:
        return f"fewer than 2 distinct values >= xmin={opts.xmin:g}"
    if opts.xmin_range is not None or opts.min_tail is not None:
        return "no xmin candidate satisfies xmin_range/min_tail"
    return "fewer than 2 distinct values: no xmin candidate"


def _ww_small_n_fallback(x: np.ndarray, opts: _Options, n_b: int, curve_x, curve_D) -> PowerLawFit:
    """weightwatcher 0.7.7's small-N fallback: no tail of ≥ 8 points → the whole spectrum.

    Reproduces ``fit_powerlaw_smallN`` (alpha = 1 + (n − 1)/Σ ln(x/x_0), D at every point)
    except sigma, which the reference leaves at ``−1/√n`` (computed before alpha is set);
    here it is ``(alpha − 1)/√n``. A constant spectrum was rejected earlier (reference:
    alpha = 1, D = 1).
    """
    n = len(x)
    logs = np.log(x / x[0])
    s = float(logs.sum())
    if s <= WW_SMALL_N_MIN_LOGSUM:
        return _failed(opts, "small-N fallback: degenerate spectrum", n_b)
    beta = (n - 1.0) / s
    F = -np.expm1(-beta * logs)
    D = float(np.max(np.abs(F - np.arange(n) / n)))
    return PowerLawFit(alpha=1.0 + beta, xmin=float(x[0]), xmax=float(x[-1]), D=D,
                       sigma=beta / math.sqrt(n), n_tail=n, n=n_b, fitter=opts.fitter, status="ok",
                       reason=f"weightwatcher small-N fallback: no tail of >= {WW_SMALL_N_MIN_TAIL} "
                              "points, the whole spectrum is the tail",
                       candidates_xmin=curve_x, candidates_D=curve_D)
