"""The "5+1 phases of training" and the heavy-tailed universality class (seed 001).

Martin & Mahoney (JMLR 2021, "Implicit self-regularization in deep neural networks")
sort a layer's ESD into five phases of increasing self-regularisation plus one pathology:
random-like → bleeding-out → bulk+spikes → bulk-decay → heavy-tailed, and rank-collapse.
The paper describes them by eye; weightwatcher ships no classifier. This module states an
explicit, scale-free rule on top of the MP bulk fit (``mp.py``) and the power-law fit, so
that a lake of millions of layers can be grouped by phase in SQL.

The rule, applied in this order (``λ`` the ESD, ``λ₊ = bulk_max`` the fitted MP edge,
*outliers* the eigenvalues above ``bulk_max_tw`` — i.e. the ``num_spikes`` of the MP fit):

1. ``rank-collapse`` — at least ``RANK_COLLAPSE_FRACTION`` (10 %) of the eigenvalues are
   zero to float32 precision: ``σ ≤ σ_max · M · eps_f32`` (weights are stored in ≤ 32 bits,
   so smaller singular values are rounding noise). Seed 001: "large mass at or near 0".
2. ``random-like`` — no outliers: the MP law explains the whole ESD.
3. ``bulk+spikes`` — every outlier is at least ``SPIKE_GAP`` (1.5) × ``λ₊``: an MP bulk plus
   separated spikes (the Tikhonov-like phase; planted low-rank signal lands here).
4. ``heavy-tailed`` — the outliers continue the bulk (no gap), the tail reaches past
   ``SPIKE_GAP · λ₊`` and the power-law fit succeeded with ``alpha ≤ 6``.
5. ``bleeding-out`` — a few outliers (≤ ``BLEED_FRACTION`` = 1 % of the eigenvalues) all
   just past the edge (``λ_max < SPIKE_GAP · λ₊``).
6. ``bulk-decay`` — anything else with outliers: mass leaks continuously past a smeared
   edge, but no power-law tail (alpha > 6, or no fit).

``ht_class`` is given for ``heavy-tailed`` layers only: ``very`` (alpha < 2),
``moderately`` (2 ≤ alpha < 4), ``weakly`` (4 ≤ alpha ≤ 6) — the paper's universality
classes in terms of the fitted ESD exponent.

Where the thresholds come from (measured on 1000×500 test matrices, see tests): Gaussian
matrices have no outliers; planted spikes sit ≥ 1.8 λ₊ with a gap; heavy-tailed entries
(Pareto/Student-t, μ ≤ 3) have outliers starting at 1.05–1.3 λ₊ and reaching 2–400 λ₊;
smeared bulks (column variances spread ×3–×100) put 2–7 % of the eigenvalues within
1.5 λ₊ with alpha 8–11; weak spikes just above the BBP threshold give 1–3 outliers
within 1.1 λ₊.

``poor-fit`` (a ``warning``, not a phase): the power-law tail has fewer than
``POOR_FIT_MIN_TAIL`` (10) points — weightwatcher's "fingers", spurious large alphas — or its
KS distance exceeds the asymptotic 5 % Kolmogorov critical value ``1.358/√n_tail``.

What a person is told (:func:`human_warning`): the ``warning`` column keeps weightwatcher's
labels for parity, but weightwatcher's ``over-trained`` only means "fitted α < 2". On a
``random-like`` layer the MP law explains every eigenvalue — there is no tail beyond the
bulk for α to describe, and a small α there is the fit wandering into the bulk's noise, not
a sign of over-training. So the model and architecture summaries and the report never call
a random-like layer over-trained; every other label is shown as weightwatcher gives it.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from .mp import MPFit

__all__ = [
    "Phase",
    "HTClass",
    "PHASES",
    "near_zero_fraction",
    "is_rank_collapsed",
    "classify_phase",
    "ht_class",
    "is_poor_fit",
    "human_warning",
    "is_over_trained",
    "RANK_COLLAPSE_FRACTION",
    "SPIKE_GAP",
    "BLEED_FRACTION",
    "POOR_FIT_MIN_TAIL",
    "KS_CRITICAL_5PCT",
]

Phase = Literal["random-like", "bleeding-out", "bulk+spikes", "bulk-decay", "heavy-tailed", "rank-collapse"]
HTClass = Literal["very", "moderately", "weakly"]
PHASES: tuple[str, ...] = (
    "random-like", "bleeding-out", "bulk+spikes", "bulk-decay", "heavy-tailed", "rank-collapse",
)

RANK_COLLAPSE_FRACTION = 0.10
SPIKE_GAP = 1.5
BLEED_FRACTION = 0.01
POOR_FIT_MIN_TAIL = 10
KS_CRITICAL_5PCT = 1.358
_MAX_HT_ALPHA = 6.0
_EPS32 = float(np.finfo(np.float32).eps)


def near_zero_fraction(evals: np.ndarray, M: int) -> float:
    """Share of eigenvalues that are zero to float32 precision: ``σ ≤ σ_max·M·eps_f32``."""
    evals = np.asarray(evals, dtype=np.float64)
    if evals.size == 0:
        return 0.0
    sv = np.sqrt(np.clip(evals, 0.0, None))
    return float(np.count_nonzero(sv <= sv.max() * M * _EPS32)) / evals.size


def is_rank_collapsed(evals: np.ndarray, M: int) -> bool:
    """Rank collapse: ≥ 10 % of the spectrum is numerically zero (phase and warning)."""
    return near_zero_fraction(evals, M) >= RANK_COLLAPSE_FRACTION


def classify_phase(
    evals: np.ndarray,
    *,
    M: int,
    mp: MPFit | None,
    alpha: float | None,
) -> Phase | None:
    """The phase of one layer's ESD by the rule in the module docstring.

    Args:
        evals: the layer's eigenvalues (any scale; the rule is scale-free).
        M: the layer's ``M`` (one slice's), for the float32 zero tolerance.
        mp: its MP fit (``mp.fit_mp``); ``None`` or failed → only rank-collapse is decidable.
        alpha: the power-law exponent, ``None``/NaN when the fit failed.

    Returns:
        The phase, or ``None`` when the MP fit is missing and the layer is not collapsed.
    """
    evals = np.asarray(evals, dtype=np.float64)
    if is_rank_collapsed(evals, M):
        return "rank-collapse"
    if mp is None or mp.status != "ok" or not (mp.bulk_max > 0):
        return None
    outliers = evals[evals > mp.bulk_max_tw]
    if outliers.size == 0:
        return "random-like"
    lam_max = float(evals.max())
    if outliers.min() >= SPIKE_GAP * mp.bulk_max:
        return "bulk+spikes"
    has_alpha = alpha is not None and math.isfinite(alpha)
    if lam_max >= SPIKE_GAP * mp.bulk_max and has_alpha and alpha <= _MAX_HT_ALPHA:
        return "heavy-tailed"
    if lam_max < SPIKE_GAP * mp.bulk_max and outliers.size <= BLEED_FRACTION * evals.size:
        return "bleeding-out"
    return "bulk-decay"


def ht_class(alpha: float | None, phase: str | None = "heavy-tailed") -> HTClass | None:
    """Universality class of a heavy-tailed layer: very (<2), moderately (2–4), weakly (4–6)."""
    if phase != "heavy-tailed" or alpha is None or not math.isfinite(alpha) or alpha > _MAX_HT_ALPHA:
        return None
    if alpha < 2.0:
        return "very"
    if alpha < 4.0:
        return "moderately"
    return "weakly"


def is_poor_fit(*, D: float, n_tail: int) -> bool:
    """A power-law fit not to trust: a tiny tail ("finger") or D above the 5 % KS value."""
    if n_tail < POOR_FIT_MIN_TAIL:
        return True
    return bool(D > KS_CRITICAL_5PCT / math.sqrt(n_tail))


def is_over_trained(warning: str | None, phase: str | None) -> bool:
    """Whether a person should be told this layer is over-trained: weightwatcher says so
    (``over-trained`` in ``warning``) and the ESD is not random-like (module docstring).

    The lake's SQL says the same (``schemas/views.sql``: ``n_over_trained``; the report)."""
    return "over-trained" in (warning or "").split(",") and phase != "random-like"


def human_warning(warning: str | None, phase: str | None) -> str | None:
    """``warning`` as summaries and reports show it: the same comma-joined labels, without
    ``over-trained`` on a random-like layer (module docstring). ``None`` when nothing is left."""
    labels = [w for w in (warning or "").split(",") if w]
    if "over-trained" in labels and not is_over_trained(warning, phase):
        labels.remove("over-trained")
    return ",".join(labels) or None
