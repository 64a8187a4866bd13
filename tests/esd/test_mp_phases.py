"""MP bulk fit (weightwatcher parity + RMT), power-law alphas of known ensembles, phases.

Random-matrix facts the numbers must show (issue 3): Gaussian matrices of several aspect
ratios have their bulk edge at the MP λ+ = σ²(1+1/√Q)² and no spikes; planted rank-k
signals above the BBP threshold give exactly k spikes; Pareto / Student-t entries give
heavy-tailed alphas in the range RMT predicts (Martin & Mahoney 2021: α ≈ 1 + μ/2 for
tail index μ < 2, α rising through 2–6 for 2 < μ < 4).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hubscan.esd.layers import classify
from hubscan.esd.mp import fit_mp, kde_linear
from hubscan.esd.phases import (
    classify_phase,
    ht_class,
    is_poor_fit,
    is_rank_collapsed,
    near_zero_fraction,
)
from hubscan.esd.powerlaw.fit import fit_power_law
from hubscan.esd.spectral import eigenvalues
from hubscan.options import AnalysisOptions

OPTS = AnalysisOptions()


def esd(w: np.ndarray, convention: str = "ww"):
    t = torch.from_numpy(np.ascontiguousarray(w))
    lm = classify("x.weight", t.shape, t.dtype, options=OPTS)
    return lm, eigenvalues(t, lm, convention=convention, device="cpu").evals


def analyse(w: np.ndarray):
    lm, ev = esd(w)
    mp = fit_mp(ev, Q=lm.Q, M=lm.M)
    fit = fit_power_law(ev, fitter="ww")
    phase = classify_phase(ev, M=lm.M, mp=mp, alpha=fit.alpha if fit.ok else None)
    return lm, ev, mp, fit, phase


def planted(rng, n, m, k, strength):
    """Gaussian noise + rank-k signal with singular values strength × the BBP scale."""
    u = np.linalg.qr(rng.standard_normal((n, k)))[0]
    v = np.linalg.qr(rng.standard_normal((m, k)))[0]
    return rng.standard_normal((n, m)) + strength * (n * m) ** 0.25 * u @ v.T


# --- weightwatcher parity of the MP fit -----------------------------------------------------


@pytest.fixture(scope="module")
def ww_watcher():
    ww = pytest.importorskip("weightwatcher")
    import logging

    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    return ww.WeightWatcher()


@pytest.mark.parametrize("shape", [(256, 128), (200, 200), (300, 60)])
@pytest.mark.parametrize("family", ["gauss", "spikes", "student", "pareto"])
def test_mp_fit_equals_weightwatcher(ww_watcher, shape, family):
    rng = np.random.default_rng(hash((shape, family)) % 2**32)
    n, m = shape
    w = {
        "gauss": lambda: rng.standard_normal(shape),
        "spikes": lambda: planted(rng, n, m, 3, 3.0),
        "student": lambda: rng.standard_t(3, shape),
        "pareto": lambda: rng.pareto(1.5, shape) * rng.choice([-1, 1], shape),
    }[family]()
    ev = np.sort(np.linalg.svd(w, compute_uv=False) ** 2)
    ref = ww_watcher.mp_fit(ev, n, m, 1, "x", 0, 0, False, False, "", "b", 0.5, True, ev)
    num_spikes, sigma_mp, mp_softrank, bulk_min, bulk_max, w_scale = ref
    got = fit_mp(ev, Q=n / m, M=m)
    assert got.num_spikes == num_spikes
    for ours, theirs in [(got.sigma_mp, sigma_mp), (got.mp_softrank, mp_softrank),
                         (got.bulk_min, bulk_min), (got.bulk_max, bulk_max), (got.w_scale, w_scale)]:
        assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12)


def test_kde_equals_sklearn():
    sk = pytest.importorskip("sklearn.neighbors")
    data = np.random.default_rng(0).chisquare(2, 700)
    x = np.linspace(0, data.max() + 0.5, 1000)
    ref = np.exp(sk.KernelDensity(kernel="linear", bandwidth=0.1).fit(data[:, None]).score_samples(x[:, None]))
    np.testing.assert_allclose(kde_linear(data, x), ref, rtol=1e-12, atol=1e-14)


def test_mp_fit_never_raises():
    assert fit_mp(np.zeros(10), Q=2.0, M=10).status == "failed"
    assert fit_mp(np.array([]), Q=1.0, M=1).status == "failed"


# --- RMT: Gaussian bulk, planted spikes ------------------------------------------------------


@pytest.mark.parametrize("n, m", [(1000, 500), (600, 600), (1000, 250), (800, 100)])
def test_gaussian_bulk_edge_is_mp_lambda_plus(n, m):
    rng = np.random.default_rng(n + m)
    sigma = 0.05
    lm, ev = esd(sigma * rng.standard_normal((n, m)), convention="seed")  # λ = σ²/N
    lam_plus = sigma**2 * (1 + 1 / math.sqrt(lm.Q)) ** 2
    # largest eigenvalue: at the edge up to Tracy–Widom fluctuations (∝ N^-2/3 ≈ 1 %)
    assert ev.max() == pytest.approx(lam_plus, rel=0.04)
    mp = fit_mp(ev, Q=lm.Q, M=lm.M)
    assert mp.bulk_max == pytest.approx(lam_plus, rel=0.06)
    assert mp.num_spikes == 0
    fit = fit_power_law(ev, fitter="ww")
    assert fit.alpha > 4.0  # no heavy tail (the ww fitter sees the MP edge as a steep slope)
    assert classify_phase(ev, M=lm.M, mp=mp, alpha=fit.alpha) == "random-like"


@pytest.mark.parametrize("k", [1, 3, 8])
def test_planted_spikes_are_counted(k):
    rng = np.random.default_rng(10 + k)
    lm, ev, mp, fit, phase = analyse(planted(rng, 1000, 400, k, 3.0))
    assert mp.num_spikes == k
    assert phase == "bulk+spikes"


def test_weak_spikes_bleed_out():
    rng = np.random.default_rng(7)
    lm, ev, mp, fit, phase = analyse(planted(rng, 1000, 500, 20, 1.2))
    assert 0 < mp.num_spikes <= 5
    assert ev.max() < 1.5 * mp.bulk_max
    assert phase == "bleeding-out"


# --- heavy tails -------------------------------------------------------------------------------


@pytest.mark.parametrize("mu, lo, hi, cls", [
    (1.0, 1.2, 1.8, "very"),         # RMT: α ≈ 1 + μ/2 = 1.5
    (1.5, 1.5, 2.1, "very"),         # α ≈ 1.75
    (2.5, 2.0, 4.0, "moderately"),
])
def test_pareto_entries_give_heavy_tailed_alpha(mu, lo, hi, cls):
    rng = np.random.default_rng(int(mu * 10))
    w = rng.pareto(mu, (1000, 500)) * rng.choice([-1, 1], (1000, 500))
    lm, ev, mp, fit, phase = analyse(w)
    assert lo <= fit.alpha <= hi
    assert phase == "heavy-tailed" and ht_class(fit.alpha, phase) == cls


@pytest.mark.parametrize("nu, lo, hi", [(2, 2.0, 3.5), (2.5, 3.0, 5.5)])  # ν = 3 is already at the weak edge
def test_student_t_entries(nu, lo, hi):
    lm, ev, mp, fit, phase = analyse(np.random.default_rng(int(nu * 2)).standard_t(nu, (1000, 500)))
    assert lo <= fit.alpha <= hi
    assert phase == "heavy-tailed"


def test_pareto_alpha_decreases_with_tail_index():
    rng = np.random.default_rng(5)
    alphas = [analyse(rng.pareto(mu, (800, 400)) * rng.choice([-1, 1], (800, 400)))[3].alpha
              for mu in (1.0, 1.5, 2.5)]
    assert alphas == sorted(alphas)


# --- the other phases -------------------------------------------------------------------------


def test_low_rank_is_rank_collapse():
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((600, 20)) @ rng.standard_normal((20, 300))).astype(np.float32)
    lm, ev, mp, fit, phase = analyse(w.astype(np.float64))
    assert near_zero_fraction(ev, lm.M) == pytest.approx(280 / 300)
    assert is_rank_collapsed(ev, lm.M)
    assert phase == "rank-collapse"
    # a few dead columns are not a collapse
    g = rng.standard_normal((600, 300))
    g[:, :10] = 0
    assert not is_rank_collapsed(esd(g)[1], 300)


def test_smeared_bulk_is_bulk_decay():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((1000, 500)) * np.sqrt(rng.uniform(1, 9, 500))
    lm, ev, mp, fit, phase = analyse(w)
    assert mp.num_spikes > 0.01 * ev.size
    assert fit.alpha > 6
    assert phase == "bulk-decay"


def test_phase_needs_mp_fit_unless_collapsed():
    ev = esd(np.random.default_rng(0).standard_normal((100, 50)))[1]
    assert classify_phase(ev, M=50, mp=None, alpha=3.0) is None


def test_ht_class_boundaries_and_poor_fit():
    assert [ht_class(a) for a in (1.9, 2.0, 3.99, 4.0, 6.0, 6.1)] == \
        ["very", "moderately", "moderately", "weakly", "weakly", None]
    assert ht_class(3.0, "bulk+spikes") is None and ht_class(None) is None
    assert is_poor_fit(D=0.01, n_tail=9)            # a "finger"
    assert not is_poor_fit(D=0.1, n_tail=100)       # 0.1 < 1.358/10
    assert is_poor_fit(D=0.2, n_tail=100)
