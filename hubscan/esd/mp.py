"""Marchenko–Pastur bulk fit: weightwatcher 0.7.7's ``mp_fit``, same numbers, faster.

Random-matrix theory says the ESD of an ``N×M`` matrix of i.i.d. entries with variance σ²
follows the Marchenko–Pastur law on ``[σ²(1−1/√Q)², σ²(1+1/√Q)²]``. Eigenvalues past the
upper edge (plus a Tracy–Widom margin) are *spikes*: structure that training put there.
weightwatcher fits σ per layer and reports ``sigma_mp``, ``bulk_max``, ``bulk_min``,
``num_spikes`` and ``mp_softrank``; the "5+1 phases" (``phases.py``) build on it.

weightwatcher's procedure (``WeightWatcher.mp_fit`` + ``RMT_Util.fit_density_with_range``),
reproduced step by step:

1. rescale the ESD to mean 1: ``λ' = λ · n / Σλ`` (``W_scale² = n / Σλ``);
2. a kernel density estimate of ``λ'`` (linear kernel, bandwidth 0.1) on 1000 points of
   ``[0, max λ' + 0.5]``; grid points where it is below 0.01 are dropped;
3. σ by brute force over ``[0.05 s, 2 s)`` in steps of ``0.01 s`` (``s`` is the σ that would
   put the MP edge at ``max λ'``), polished by Nelder–Mead (scipy ``brute``'s default
   ``finish=fmin``), minimising ``Σ (ρ_MP(x; σ, Q) − KDE(x))²``; a σ whose MP support
   misses the KDE peak, or whose edge is past the grid, costs 1000 per point;
   for ``Q = 1`` the fit is on singular values against weightwatcher's quarter-circle
   density (which, as in weightwatcher, does not depend on σ);
4. ``bulk_max = (σ(1+1/√Q))²``, ``bulk_min = (σ(1−1/√Q))²``, Tracy–Widom margin
   ``TW = Q^{-1/2} bulk_max^{2/3} M^{-2/3}``, ``num_spikes = #(λ' > bulk_max + √TW)``,
   ``mp_softrank = bulk_max / max λ'``; ``bulk_max``/``bulk_min`` are scaled back to the
   ESD's own scale, ``sigma_mp`` stays on the mean-1 scale (as in weightwatcher).

The one change is speed: weightwatcher refits the KDE (sklearn) for every σ it tries; the
KDE does not depend on σ, so it is computed once here, in numpy. ``bulk_max_tw`` (the spike
cut) is reported too, which weightwatcher computes but does not return.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import optimize

__all__ = ["MPFit", "fit_mp", "kde_linear", "mp_density", "quarter_circle_density", "KDE_BANDWIDTH"]

#: weightwatcher's KDE bandwidth on the mean-1 scale.
KDE_BANDWIDTH = 0.1
_KDE_POINTS = 1000
_DENSITY_FLOOR = 0.01
_PENALTY = 1000.0


@dataclass(frozen=True)
class MPFit:
    """Result of the MP bulk fit (weightwatcher column names).

    Attributes:
        sigma_mp: fitted σ on the mean-1 scale.
        bulk_max, bulk_min: MP edges on the ESD's own scale.
        bulk_max_tw: ``bulk_max + √TW`` on the ESD's own scale — eigenvalues above are spikes.
        num_spikes: ``#(λ > bulk_max_tw)``.
        mp_softrank: ``bulk_max / λ_max`` (scale-free).
        w_scale: ``sqrt(n / Σλ)``, weightwatcher's ``W_scale``.
        status: ``ok``, or ``failed`` (then the numbers are NaN/−1; weightwatcher gives −1).
        reason: why it failed.
    """

    sigma_mp: float
    bulk_max: float
    bulk_min: float
    bulk_max_tw: float
    num_spikes: int
    mp_softrank: float
    w_scale: float
    status: str = "ok"
    reason: str | None = None


def kde_linear(data: np.ndarray, x: np.ndarray, bandwidth: float = KDE_BANDWIDTH) -> np.ndarray:
    """Linear-kernel density estimate of 1-D ``data`` at ``x`` (sklearn ``KernelDensity``).

    ``f(x) = (1 / (n h)) Σ_i max(0, 1 − |x − x_i| / h)`` — the kernel integrates to one.
    Evaluated exactly (no tree approximation), in blocks to bound memory.
    """
    data = np.asarray(data, dtype=np.float64).ravel()
    x = np.asarray(x, dtype=np.float64).ravel()
    out = np.empty_like(x)
    block = max(1, 4_000_000 // max(1, data.size))
    for s in range(0, x.size, block):
        d = np.abs(x[s : s + block, None] - data[None, :])
        out[s : s + block] = np.where(d < bandwidth, 1.0 - d / bandwidth, 0.0).sum(axis=1)
    return out / (data.size * bandwidth)


def mp_density(x: np.ndarray, Q: float, sigma: float) -> np.ndarray:
    """weightwatcher ``marchenko_pastur_fun``: MP density, NaN/Inf outside support → 0/huge."""
    y = 1 / Q
    b = np.power(sigma * (1 + np.sqrt(1 / Q)), 2)
    a = np.power(sigma * (1 - np.sqrt(1 / Q)), 2)
    with np.errstate(all="ignore"):
        return np.nan_to_num((1 / (2 * np.pi * sigma * sigma * x * y)) * np.sqrt((b - x) * (x - a)))


def quarter_circle_density(x: np.ndarray, sigma: float) -> np.ndarray:
    """weightwatcher ``quarter_circle_fun`` (singular values of a square matrix)."""
    with np.errstate(all="ignore"):
        return np.nan_to_num((1 / (np.pi * sigma * sigma)) * np.sqrt(4 - x**2))


class _Residual:
    """weightwatcher ``resid_mp(allresid=False)`` with the KDE computed once."""

    def __init__(self, to_fit: np.ndarray, Q: float, bw: float) -> None:
        self.Q = Q
        xde = np.linspace(0, np.max(to_fit) + 0.5, _KDE_POINTS)
        yde = kde_linear(to_fit, xde, bw)
        good = yde > _DENSITY_FLOOR
        self.n_bad = int(np.count_nonzero(yde < _DENSITY_FLOOR))
        self.xde, self.yde = xde[good], yde[good]
        if self.xde.size == 0:
            raise ValueError("KDE is below the density floor everywhere")
        self.x_peak = self.xde[np.argmax(self.yde)]
        self.x_top = np.max(self.xde)

    def __call__(self, p: np.ndarray) -> float:
        sigma = p  # a shape-(1,) array, as scipy passes it
        if self.Q == 1:
            resid = quarter_circle_density(self.xde, sigma) - self.yde
        else:
            b = np.power(sigma * (1 + np.sqrt(1 / self.Q)), 2)
            a = np.power(sigma * (1 - np.sqrt(1 / self.Q)), 2)
            if bool(np.any((b < self.x_peak) | (b > self.x_top) | (a > self.x_peak))):
                resid = np.zeros(len(self.yde)) + _PENALTY
            else:
                resid = mp_density(self.xde, self.Q, sigma) - self.yde
        resid = np.concatenate((resid, np.zeros(self.n_bad)))
        return np.sum(resid**2)


def _fit_sigma(to_plot: np.ndarray, Q: float, bw: float) -> float:
    """weightwatcher ``fit_density_with_range``: brute-force σ grid + Nelder–Mead polish."""
    scale = math.sqrt(np.max(to_plot) / np.square(1.0 + 1.0 / np.sqrt(Q)))
    sigma_range = (slice(0.05 * scale, 2.0 * scale, 0.01 * scale),)
    to_fit = np.sqrt(to_plot) if Q == 1 else to_plot
    resid = _Residual(to_fit, Q, bw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = optimize.brute(resid, sigma_range, full_output=True)
    return float(np.asarray(out[0]).ravel()[0])


def fit_mp(evals: np.ndarray, *, Q: float, M: int, bandwidth: float = KDE_BANDWIDTH) -> MPFit:
    """Fit the MP bulk of one layer's ESD, as weightwatcher ``analyze(mp_fit=True)``.

    Args:
        evals: all eigenvalues of the layer (any scale; zeros included).
        Q: the layer's aspect ratio ``N/M``.
        M: the layer's ``M`` (one slice's; it sets the Tracy–Widom margin).
        bandwidth: KDE bandwidth on the mean-1 scale (weightwatcher: 0.1).

    Returns:
        ``MPFit``; ``status="failed"`` (never an exception) when no fit is possible.
    """
    evals = np.asarray(evals, dtype=np.float64)
    try:
        total = float(np.sum(evals))
        if evals.size == 0 or not np.isfinite(total) or total <= 0:
            raise ValueError("no positive spectral mass")
        w_scale = math.sqrt(evals.size) / math.sqrt(total)
        to_plot = (w_scale * w_scale) * evals
        lambda_max = float(np.max(to_plot))
        s1 = _fit_sigma(to_plot, Q, bandwidth)
        bulk_max = (s1 * (1 + 1 / np.sqrt(Q))) ** 2
        bulk_min = (s1 * (1 - 1 / np.sqrt(Q))) ** 2
        tw = 1 / np.sqrt(Q) * np.power(bulk_max, 2 / 3) * np.power(M, -2 / 3)
        bulk_max_tw = bulk_max + np.sqrt(tw)
        num_spikes = int(np.count_nonzero(to_plot > bulk_max_tw))
        w2 = w_scale * w_scale
        return MPFit(
            sigma_mp=s1,
            bulk_max=float(bulk_max / w2),
            bulk_min=float(bulk_min / w2),
            bulk_max_tw=float(bulk_max_tw / w2),
            num_spikes=num_spikes,
            mp_softrank=float(bulk_max / lambda_max),
            w_scale=w_scale,
        )
    except (ValueError, RuntimeError, FloatingPointError, ZeroDivisionError) as exc:
        nan = float("nan")
        return MPFit(nan, nan, nan, nan, -1, nan, nan, status="failed", reason=str(exc))
