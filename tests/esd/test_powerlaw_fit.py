"""hubscan.esd.powerlaw.fit: properties, options, the truncated fitter and the batched/pruned
search. Reference parity (weightwatcher, powerlaw) is in test_powerlaw_parity.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.optimize import minimize_scalar

from hubscan.errors import MatrixError
from hubscan.esd.powerlaw.fit import (
    PowerLawFit,
    fit_power_law,
    fit_power_law_batch,
    k_select,
    ks_curve,
)

FITTERS = ("ww", "seed", "truncated")
PROPS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _spectrum(rng, kind: str, n: int) -> np.ndarray:
    if kind == "pareto":
        return rng.pareto(1.5, size=n) + 1.0
    if kind == "t":
        W = rng.standard_t(3, size=(2 * n, n))
        return np.linalg.eigvalsh(W.T @ W / (2 * n))
    if kind == "mp":
        W = rng.standard_normal((2 * n, n))
        return np.linalg.eigvalsh(W.T @ W / (2 * n))
    if kind == "ties":
        return np.round(rng.pareto(1.2, size=n) + 1.0, 1)
    raise ValueError(kind)


positive = arrays(np.float64, st.integers(0, 60),
                  elements=st.floats(1e-3, 1e3, allow_nan=False, allow_infinity=False))


# --------------------------------------------------------------------------- properties


@PROPS
@given(arrays(np.float64, st.integers(0, 40), elements=st.floats(allow_nan=True, allow_infinity=True,
                                                                  width=64)),
       st.sampled_from(FITTERS))
def test_never_raises_on_any_input(x, fitter):
    """Any array, even NaN/Inf/negative/empty: a fit or a failed fit with a reason."""
    f = fit_power_law(x, fitter=fitter, device="cpu")
    assert f.status in ("ok", "failed")
    if f.ok:
        assert math.isfinite(f.alpha) and 0 <= f.D <= 1 and 2 <= f.n_tail <= f.n
    else:
        assert math.isnan(f.alpha) and f.reason


@PROPS
@given(positive, st.sampled_from(FITTERS), st.randoms(use_true_random=False))
def test_permutation_invariance(x, fitter, rnd):
    y = x.copy()
    rnd.shuffle(y)
    a, b = fit_power_law(x, fitter=fitter), fit_power_law(y, fitter=fitter)
    assert (a.status, a.reason, a.n_tail) == (b.status, b.reason, b.n_tail)
    np.testing.assert_array_equal([a.alpha, a.xmin, a.D, a.sigma], [b.alpha, b.xmin, b.D, b.sigma])


@PROPS
@given(positive, st.sampled_from(FITTERS), st.integers(-30, 30))
def test_scale_invariance(x, fitter, k):
    """Multiplying evals by c scales xmin (and xmax) by c; alpha and D do not change.
    (threshold=0 so that the ww threshold does not cut differently; c = 2^k keeps the data
    exact, only the logs round differently, hence the near-tie allowance.)"""
    c = 2.0 ** k
    a = fit_power_law(x, fitter=fitter, threshold=0.0, return_curve=True)
    b = fit_power_law(c * x, fitter=fitter, threshold=0.0, return_curve=True)
    assert a.status == b.status
    if not a.ok:
        return
    np.testing.assert_allclose(b.candidates_xmin, c * a.candidates_xmin, rtol=0, atol=0)
    np.testing.assert_allclose(b.candidates_D, a.candidates_D, rtol=0, atol=1e-9)
    if b.xmin != c * a.xmin:  # a floating-point tie between two candidates
        assert abs(a.D - b.D) < 1e-9
        return
    assert b.xmax == c * a.xmax
    assert b.alpha == pytest.approx(a.alpha, rel=1e-9)
    assert b.D == pytest.approx(a.D, abs=1e-9)


@pytest.mark.parametrize("fitter", FITTERS)
@pytest.mark.parametrize("n", [0, 1, 2, 5, 30])
def test_all_equal_values_fail_clearly(fitter, n):
    f = fit_power_law(np.full(n, 3.7), fitter=fitter)
    assert f.status == "failed" and math.isnan(f.alpha)
    assert ("equal" in f.reason) if n >= 2 else ("need 2" in f.reason)


@PROPS
@given(positive, st.sampled_from(FITTERS))
def test_fewer_points_than_min_tail(x, fitter):
    f = fit_power_law(x, fitter=fitter, min_tail=max(2, len(x) + 1))
    assert f.status == "failed" and f.reason


@pytest.mark.parametrize("fitter", FITTERS)
def test_min_tail_picks_the_best_admissible_candidate(fitter):
    rng = np.random.default_rng(3)
    x = _spectrum(rng, "t", 300)
    full = fit_power_law(x, fitter=fitter, return_curve=True)
    f = fit_power_law(x, fitter=fitter, min_tail=100)
    assert f.n_tail >= 100
    xs = np.sort(x[x > (1e-5 if fitter == "ww" else 0)])
    tails = len(xs) - np.searchsorted(xs, full.candidates_xmin, side="left")
    if fitter == "ww":  # WWFit candidates are positions: tails count from each position
        tails = len(xs) - np.arange(len(full.candidates_xmin))
    ok = tails >= 100
    best = np.flatnonzero(ok)[np.argmin(full.candidates_D[ok])]
    assert f.xmin == full.candidates_xmin[best] and f.D == pytest.approx(full.candidates_D[best], abs=1e-12)


def test_xmin_range_restricts_candidates():
    rng = np.random.default_rng(4)
    x = _spectrum(rng, "pareto", 400)
    lo, hi = np.quantile(x, [0.2, 0.5])
    f = fit_power_law(x, fitter="seed", xmin_range=(lo, hi), return_curve=True)
    assert f.candidates_xmin.min() >= lo and f.candidates_xmin.max() <= hi
    assert f.xmin == f.candidates_xmin[np.argmin(f.candidates_D)]


def test_xmax_value_clips_data_and_truncates_seed_model():
    rng = np.random.default_rng(5)
    x = _spectrum(rng, "pareto", 300)
    cut = float(np.quantile(x, 0.95))
    for fitter in FITTERS:
        f = fit_power_law(x, fitter=fitter, xmax=cut)
        assert f.ok and f.n == np.count_nonzero(x <= cut)
        assert f.xmax == (float(x[x <= cut].max()) if fitter == "ww" else cut)
    assert fit_power_law(x, fitter="seed", xmax="max").alpha == fit_power_law(x, fitter="seed").alpha


def test_threshold_is_the_ww_convention():
    """ww fits evals > 1e-5 (weightwatcher's caller does so); seed fits every positive value."""
    rng = np.random.default_rng(6)
    x = np.concatenate([_spectrum(rng, "t", 200), np.full(50, 1e-7)])
    assert fit_power_law(x, fitter="ww").n == 200
    assert fit_power_law(x, fitter="seed").n == 250
    assert fit_power_law(x, fitter="ww", threshold=0.0).n == 250


def test_small_n_path_and_fallback():
    """< 20 points: tails of >= 8 points, bias-corrected alpha (weightwatcher 0.7.7)."""
    rng = np.random.default_rng(8)
    x = rng.pareto(2.0, size=15) + 1
    f = fit_power_law(x, return_curve=True)
    assert f.n_tail >= 8 and len(f.candidates_xmin) == 15 - 8 + 1
    xs = np.sort(x)
    tail = xs[xs >= f.xmin]
    assert f.alpha == pytest.approx(1 + (len(tail) - 1) / np.log(tail / f.xmin).sum(), rel=1e-12)
    g = fit_power_law(x[:5])
    assert g.ok and g.n_tail == 5 and "fallback" in g.reason


# --------------------------------------------------------------------------- truncated fitter


def _trunc_loglik(alpha: float, tail: np.ndarray, xmin: float, xmax: float) -> float:
    """Independent log-likelihood of the power law truncated to [xmin, xmax] (numpy)."""
    if abs(alpha - 1.0) < 1e-12:
        Z = math.log(xmax / xmin)
    else:
        Z = (xmin ** (1 - alpha) - xmax ** (1 - alpha)) / (alpha - 1)
    return float(-alpha * np.log(tail).sum() - len(tail) * math.log(Z))


def _trunc_ks(alpha, xs, xmin, xmax):
    """powerlaw-style KS: unique values of the tail, empirical CDF = fraction strictly below."""
    tail = xs[xs >= xmin]
    u, first = np.unique(tail, return_index=True)
    if abs(alpha - 1) < 1e-12:
        T = np.log(u / xmin) / np.log(xmax / xmin)
    else:
        T = (1 - (u / xmin) ** (1 - alpha)) / (1 - (xmax / xmin) ** (1 - alpha))
    return float(np.max(np.abs(T - first / len(tail))))


def _scipy_mle(tail, xmin, xmax):
    res = minimize_scalar(lambda a: -_trunc_loglik(a, tail, xmin, xmax), bounds=(-20.0, 60.0),
                          method="bounded", options={"xatol": 1e-12})
    return res.x, -res.fun


@pytest.mark.parametrize("kind", ["pareto", "t", "mp", "ties"])
@pytest.mark.parametrize("n", [40, 150])
def test_truncated_is_the_mle_at_its_xmin(kind, n):
    """Our truncated MLE's log-likelihood >= scipy's direct maximisation − 1e-9."""
    rng = np.random.default_rng(n)
    x = _spectrum(rng, kind, n)
    f = fit_power_law(x, fitter="truncated")
    xs = np.sort(x[x > 0])
    tail = xs[xs >= f.xmin]
    a_scipy, ll_scipy = _scipy_mle(tail, f.xmin, f.xmax)
    assert _trunc_loglik(f.alpha, tail, f.xmin, f.xmax) >= ll_scipy - 1e-9
    assert f.alpha == pytest.approx(a_scipy, abs=1e-5)
    assert f.D == pytest.approx(_trunc_ks(f.alpha, xs, f.xmin, f.xmax), abs=1e-12)
    # sigma = 1/sqrt(Fisher information), here by finite differences of the log-likelihood
    h = 1e-4
    d2 = (_trunc_loglik(f.alpha + h, tail, f.xmin, f.xmax) - 2 * _trunc_loglik(f.alpha, tail, f.xmin, f.xmax)
          + _trunc_loglik(f.alpha - h, tail, f.xmin, f.xmax)) / h**2
    assert f.sigma == pytest.approx(1 / math.sqrt(-d2), rel=1e-4)


def test_truncated_brute_force_oracle():
    """The whole truncated fit against a brute-force loop: scipy MLE + numpy KS for every
    unique candidate, first argmin."""
    rng = np.random.default_rng(11)
    for kind in ("pareto", "t", "ties"):
        x = _spectrum(rng, kind, 60)
        xs = np.sort(x)
        cands = np.unique(xs)[:-1]
        Ds = []
        for xm in cands:
            a, _ = _scipy_mle(xs[xs >= xm], xm, xs[-1])
            Ds.append(_trunc_ks(a, xs, xm, xs[-1]))
        ours = fit_power_law(x, fitter="truncated", return_curve=True)
        np.testing.assert_array_equal(ours.candidates_xmin, cands)
        np.testing.assert_allclose(ours.candidates_D, Ds, atol=1e-6)
        assert ours.xmin == cands[int(np.argmin(Ds))]


def test_truncated_alpha_can_be_below_one():
    """A log-uniform sample is a truncated power law with alpha = 1: the MLE may be <= 1."""
    rng = np.random.default_rng(12)
    x = np.exp(rng.uniform(0, 5, size=2000))
    f = fit_power_law(x, fitter="truncated", xmin=1.0, xmax=math.exp(5))
    assert f.alpha == pytest.approx(1.0, abs=0.1)
    a, _ = _scipy_mle(np.sort(x), 1.0, math.exp(5))
    assert f.alpha == pytest.approx(a, abs=1e-6)


# --------------------------------------------------------------------------- batch and search


def _fields(f: PowerLawFit):
    return (f.status, f.reason, f.n_tail, f.n, repr(f.xmin), repr(f.xmax))  # repr: NaN == NaN


@pytest.mark.parametrize("fitter", FITTERS)
def test_batch_equals_single(fitter):
    """Ragged batches (with failures mixed in) give exactly the single-spectrum fits."""
    rng = np.random.default_rng(13)
    spectra = [_spectrum(rng, k, n) for k, n in
               [("t", 300), ("pareto", 50), ("mp", 120), ("ties", 700), ("pareto", 12), ("t", 40)]]
    spectra += [np.full(9, 2.0), np.array([]), np.array([1.0, np.nan])]
    batch = fit_power_law_batch(spectra, fitter=fitter)
    for x, f in zip(spectra, batch):
        g = fit_power_law(x, fitter=fitter)
        assert _fields(f) == _fields(g)
        if f.ok:
            assert f.alpha == g.alpha and f.D == pytest.approx(g.D, abs=1e-14)


@pytest.mark.parametrize("fitter", FITTERS)
def test_pruned_search_equals_exhaustive(fitter):
    """The lower-bound search returns the winner of the full D curve (first argmin)."""
    rng = np.random.default_rng(14)
    for kind, n in [("t", 400), ("mp", 500), ("pareto", 3000), ("ties", 1500), ("t", 1000)]:
        x = _spectrum(rng, kind, n)
        f = fit_power_law(x, fitter=fitter)
        full = fit_power_law(x, fitter=fitter, return_curve=True)
        k = int(np.argmin(full.candidates_D))
        assert f.xmin == full.candidates_xmin[k] == full.xmin
        assert f.D == pytest.approx(full.candidates_D[k], abs=1e-14)
        assert f.alpha == full.alpha


def _exact_fields(f: PowerLawFit) -> tuple:
    return (f.status, f.reason, f.n_tail, f.n, f.fitter,
            *(repr(v) for v in (f.alpha, f.xmin, f.xmax, f.sigma)))  # bit-exact, NaN == NaN


@pytest.mark.parametrize("fitter", ("ww", "seed"))
def test_compiled_cpu_path_equals_torch_path(fitter):
    """The compiled CPU search gives the torch path's fits — same candidates, alphas and
    tie-break, so xmin, alpha, sigma, n_tail bit for bit, and D to 1e-15 (libm's expm1 vs
    torch's) — on many spectra and with every option it takes: xmin_range, min_tail, xmax,
    threshold, weightwatcher's small-N path and its fallback, heavy duplicates (ties between
    candidates' D) and failures."""
    from hubscan.esd.powerlaw import fit as pl

    rng = np.random.default_rng(21)
    spectra = [_spectrum(rng, kind, n) for kind in ("pareto", "t", "mp", "ties")
               for n in (6, 15, 19, 40, 130, 600, 1500, 5000)]
    spectra += [np.round(rng.pareto(2.0, 300) + 1.0, 0), np.r_[np.ones(30), 2.0, 2.0],
                np.r_[np.linspace(1, 2, 40), np.full(5, 9.0)], np.full(9, 2.0)]
    option_sets = [{}, {"min_tail": 10}, {"xmin_range": (1.5, None)}, {"xmin_range": (None, 3.0)},
                   {"xmax": 20.0}, {"threshold": 1.2}, {"xmax": "max"}]
    cpu = torch.device("cpu")
    compared = 0
    for x in spectra:
        for kw in option_sets:
            opts = pl._options(fitter, None, kw.get("xmax"), kw.get("xmin_range"),
                               kw.get("min_tail"), kw.get("threshold"), False)
            prepared = pl._prepare(x, opts)
            if isinstance(prepared, PowerLawFit):
                continue
            fast = pl._fit_single_cpu(*prepared, opts)
            slow = pl._fit_group([prepared], opts, cpu)[0]
            assert _exact_fields(fast) == _exact_fields(slow), (len(x), kw)
            if fast.ok:
                assert fast.D == pytest.approx(slow.D, rel=0, abs=1e-15)  # ulps of F ~ 1
            else:
                assert math.isnan(fast.D) and math.isnan(slow.D)
            # and the public calls, single and batched, are the compiled path's fit
            for f in (fit_power_law(x, fitter=fitter, device="cpu", **kw),
                      fit_power_law_batch([x, x[::-1]], fitter=fitter, device="cpu", **kw)[1]):
                assert _exact_fields(f) == _exact_fields(fast) and repr(f.D) == repr(fast.D)
            compared += 1
    assert compared > 180


def test_compiled_search_is_the_exhaustive_argmin():
    """``ks_kernel.search`` on its own: against D computed for every candidate in numpy, with
    exact ties planted (duplicated tails) and for both empirical-CDF conventions."""
    from hubscan.esd.powerlaw.kernel import search

    def select(L, E, ci, n, beta):  # the untruncated model: den unused
        return search(L, L if E is None else E, E is not None, ci, n, beta, beta, False)

    rng = np.random.default_rng(23)
    checked = 0
    for kind, n in [("t", 300), ("mp", 800), ("pareto", 2000), ("ties", 900), ("t", 60)]:
        x = np.sort(_spectrum(rng, kind, n))
        x = x[x > 0]
        N = len(x)
        L = np.log(x)
        first = np.maximum.accumulate(np.where(np.r_[True, x[1:] != x[:-1]], np.arange(N), 0))
        for use_E in (False, True):
            ci = np.flatnonzero(np.r_[True, x[1:] != x[:-1]] & (x < x[-1])) if use_E else np.arange(N - 1)
            nt = (N - ci).astype(float)
            S = np.array([np.sum(L[i:] - L[i]) for i in ci])
            beta = nt / S
            D = np.empty(len(ci))
            for p, i in enumerate(ci):
                k = np.arange(N - i)
                emp = (first[i:] - i) / nt[p] if use_E else k * (1.0 / nt[p])
                with np.errstate(invalid="ignore"):
                    F = -np.expm1((L[i:] - L[i]) * -beta[p])
                D[p] = np.max(np.abs(np.where(np.isnan(F), 0.0, F) - emp))
            w, d = select(L, first.astype(float) if use_E else None, ci, nt, beta)
            ref = int(np.argmin(D))
            if abs(D[w] - D[ref]) > 1e-15:  # not a floating-point tie: the same candidate
                assert w == ref, (kind, n, use_E)
            assert d == pytest.approx(D[ref], abs=1e-15)
            checked += 1
    # planted exact ties: the same candidate listed twice -> the first listed wins
    L = np.log(np.sort(rng.pareto(2.0, 500) + 1.0))
    ci = np.arange(len(L) - 1)
    nt = (len(L) - ci).astype(float)
    beta = nt / np.array([np.sum(L[i:] - L[i]) for i in ci])
    w, d = select(L, None, ci, nt, beta)
    for order, expect in (([w, w, 3], 0), ([3, w, w], 1), ([w + 1, w, 3, w], 1)):
        sel = np.array(order)
        assert select(L, None, ci[sel], nt[sel], beta[sel]) == (expect, d)
    assert checked == 10


def test_cpu_dispatch(monkeypatch):
    """On CPU the ww/seed scans (single or batched) take the compiled search; return_curve, a
    fixed xmin and the truncated fitter stay on the torch path."""
    from hubscan.esd.powerlaw import fit as pl

    calls = []
    real = pl._fit_group
    monkeypatch.setattr(pl, "_fit_group", lambda *a: calls.append(len(a[0])) or real(*a))
    x = np.random.default_rng(22).pareto(2.0, 500) + 1.0
    fit_power_law(x, fitter="ww", device="cpu")
    fit_power_law(x, fitter="seed", device="cpu")
    fit_power_law_batch([x, x * 1.01], fitter="ww", device="cpu")
    assert calls == []
    fit_power_law(x, fitter="truncated", device="cpu")
    fit_power_law(x, fitter="ww", device="cpu", return_curve=True)
    fit_power_law(x, fitter="seed", device="cpu", xmin=2.0)
    assert calls == [1, 1, 1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("fitter", FITTERS)
def test_cuda_equals_cpu(fitter):
    rng = np.random.default_rng(15)
    spectra = [_spectrum(rng, k, n) for k, n in [("t", 300), ("pareto", 2000), ("ties", 500)]]
    for a, b in zip(fit_power_law_batch(spectra, fitter=fitter, device="cpu"),
                    fit_power_law_batch(spectra, fitter=fitter, device="cuda")):
        assert a.xmin == b.xmin and a.alpha == pytest.approx(b.alpha, rel=1e-12)
        assert a.D == pytest.approx(b.D, abs=1e-12)


def test_options_are_validated():
    with pytest.raises(ValueError):
        fit_power_law([1.0, 2.0], fitter="powerlaw")
    with pytest.raises(ValueError):
        fit_power_law([1.0, 2.0], xmin=1.0, xmin_range=(0.5, 2))
    with pytest.raises(ValueError):
        fit_power_law([1.0, 2.0], xmax="min")
    with pytest.raises(ValueError):
        fit_power_law([1.0, 2.0], min_tail=1)


# --------------------------------------------------------------------------- helpers


def test_ks_curve_and_k_select_on_tfidf():
    """Seed 002: K = eigenvalues >= xmin of a TF-IDF correlation spectrum; the D curve's
    minimum is the fit's xmin."""
    rng = np.random.default_rng(16)
    docs, vocab = 400, 300
    word_p = 1.0 / np.arange(1, vocab + 1) ** 1.1
    counts = rng.poisson(30 * word_p[None, :] / word_p.sum() * rng.gamma(2, 1, (docs, 1)) * 10)
    tf = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    idf = np.log((1 + docs) / (1 + (counts > 0).sum(0))) + 1
    X = tf * idf
    evals = np.linalg.svd(X, compute_uv=False) ** 2
    xs, Ds = ks_curve(evals)
    fit = fit_power_law(evals)
    assert xs[np.argmin(Ds)] == fit.xmin
    K = k_select(evals)
    assert K == np.count_nonzero(evals >= fit.xmin) and 0 < K < len(evals)
    with pytest.raises(MatrixError):
        k_select(np.ones(10))
    assert ks_curve(np.ones(10))[0].size == 0


def test_warm_up_compiles_the_cpu_search_for_the_types_fits_use():
    """Workers call warm_up() at start; afterwards a fit must not trigger a new compile."""
    from hubscan.esd.powerlaw import kernel as ks_kernel
    from hubscan.esd.powerlaw.fit import warm_up

    warm_up()
    before = (len(ks_kernel.search.signatures), len(ks_kernel.tail_table.signatures))
    assert before[0] >= 1 and before[1] >= 1
    x = np.random.default_rng(24).pareto(2.0, 700) + 1.0
    for fitter in ("ww", "seed"):
        fit_power_law(x, fitter=fitter, device="cpu")
        fit_power_law_batch([x, x[:100]], fitter=fitter, device="cpu", min_tail=5)
    assert (len(ks_kernel.search.signatures), len(ks_kernel.tail_table.signatures)) == before
