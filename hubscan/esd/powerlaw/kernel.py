"""The xmin search for one spectrum on CPU, compiled (numba): exact, and mostly skipped.

Why a compiled loop and not the batched torch search (``search.select_xmin``): on a CPU the
KS scan of a tail can stop at the first point whose deviation already exceeds the best D found
so far, and the next candidate can be tested first at the point where the last one failed.
That per-element early exit is what makes the search cheap (a 1024-point spectrum needs a few
hundred deviations instead of 10^6), and it cannot be expressed as a few large array
operations: in numpy or torch each of the ~100 small operations it would take costs
microseconds of call overhead, which was the floor of the previous numpy path (0.3 ms at
n = 1024, docs/fitting.md, Speed). Compiled, the whole search is a few tens of microseconds.
CUDA and the other fits keep the batched torch search; both compute the same definitions.

The search (``search``), for candidates ``p`` (tail start ``ci[p]``, size ``n[p]``, model
``F(t) = −expm1(−β t)/den``, ``t = ln(x/xmin)``):

1. bound every candidate by its deviation at the middle of its tail (D at any point is a
   lower bound of D);
2. compute the exact D of the best-bounded candidate: the first "best", and the point where
   it peaked; bound every still-live candidate again at that point;
3. visit the live candidates best-bound-first (bucketed, no sort); test each at the last
   four points where scans failed; else scan its tail starting at the last failure point,
   stopping as soon as the running maximum exceeds ``best + SLACK``.

A candidate is dropped only when some deviation of its own exceeds ``best + SLACK`` — its D is
then larger than the winner's — and every other candidate's D is computed in full, so the
winner is exactly the first candidate of minimal D (the references' ``argmin``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["search", "tail_table", "candidate_alphas", "SLACK"]

#: A candidate is dropped when one of its deviations exceeds best D + SLACK: candidates within
#: SLACK of the best are computed in full, so near-ties are decided on exact D with the
#: references' first-index rule.
SLACK = 1e-12
# Live candidates are visited in this many buckets of increasing bound (best-first, no sort).
BUCKETS = 64
# Points where recent scans failed, tried first on every candidate.
HINTS = 4


def _compiled(**options):
    """``njit(nogil=True)`` with numba's on-disk cache (compiling costs ~2 s per process, loading
    ~0.5 s) — or without it where numba finds no writable cache location (a read-only install
    and no writable home; numba raises at decoration time), so import never fails on that."""
    def wrap(fn):
        try:
            return njit(cache=True, nogil=True, **options)(fn)
        except RuntimeError:
            return njit(cache=False, nogil=True, **options)(fn)
    return wrap


@_compiled()
def tail_table(x, L, unique):
    """For each point i of the sorted data ``x`` (logs ``L``): ``S_i = Σ_{j≥i} ln(x_j/x_i)``,
    the index of the first occurrence of ``x_i``'s value, and whether i is an xmin candidate
    of the references (ww: every point but the last; ``unique``, powerlaw: first occurrences
    below the maximum).

    ``S`` is ``search.tail_log_sums``'s suffix sum of ``(n−1−i)·(L_{i+1} − L_i)``, with the
    same additions in the same order, so the same bits: one loop here instead of the ~10
    numpy calls (a third of a small fit's time) it took before.
    """
    N = x.shape[0]
    S = np.empty(N)
    first = np.empty(N)
    cand = np.empty(N, np.bool_)
    acc = 0.0
    S[N - 1] = 0.0
    for i in range(N - 2, -1, -1):
        acc += (L[i + 1] - L[i]) * float(N - 1 - i)
        S[i] = acc
    for i in range(N):
        is_first = i == 0 or x[i] != x[i - 1]
        first[i] = i if is_first else first[i - 1]
        cand[i] = (is_first and x[i] < x[N - 1]) if unique else i <= N - 2
    return S, first, cand


@_compiled()
def candidate_alphas(S, mask, reduced):
    """The candidates ``ci`` (indices where ``mask``), their tail sizes ``n = N − ci`` and
    ``β = alpha − 1 = n/S`` (``(n − 1)/S`` when ``reduced``: weightwatcher's small-N rule);
    ``S = 0`` (a constant tail) gives ``β = inf``. One loop instead of five numpy calls."""
    N = S.shape[0]
    P = 0
    for i in range(N):
        if mask[i]:
            P += 1
    ci = np.empty(P, np.int64)
    n = np.empty(P)
    beta = np.empty(P)
    p = 0
    for i in range(N):
        if mask[i]:
            ci[p] = i
            n[p] = float(N - i)
            num = n[p] - 1.0 if reduced else n[p]
            beta[p] = num / S[i] if S[i] != 0.0 else math.inf
            p += 1
    return ci, n, beta


@_compiled(inline="always")
def _dev(L, E, use_E, i, n, lxm, beta, den, use_den, k):
    """``|F(t_j) − emp_j|`` at point ``j = i + k`` of candidate ``i``'s tail, with the torch
    path's operations (``search._deviation_max``): ``t = L_j − ln xmin``,
    ``F = −expm1(t·(−β))/den`` (0 at t = 0 when β = inf: a constant tail), empirical CDF
    ``k·(1/n)`` (weightwatcher: every point) or ``(E_j − i)/n`` (powerlaw: the first
    occurrence of x_j's value)."""
    j = i + k
    t = L[j] - lxm
    if math.isinf(beta):
        F = 0.0 if t <= 0.0 else 1.0
    else:
        F = -math.expm1(t * -beta)
    if use_den:
        F = F / den
    if use_E:
        e = (E[j] - i) / n
    else:
        e = k * (1.0 / n)
    return abs(F - e)


@_compiled()
def _scan(L, E, use_E, i, n, beta, den, use_den, lim, start):
    """Max deviation over the tail of candidate ``i`` (visited from point ``start`` on, then
    wrapping around), and where it is reached; stops early, returning ``dead=True``, once the
    running maximum exceeds ``lim``."""
    m = int(n)
    lxm = L[i]
    run = -1.0
    arg = 0
    k0 = start - i if i <= start < i + m else 0
    for kk in range(m):
        k = kk + k0
        if k >= m:
            k -= m
        d = _dev(L, E, use_E, i, n, lxm, beta, den, use_den, k)
        if d > run:
            run = d
            arg = k
            if run > lim:
                return run, i + arg, True
    return run, i + arg, False


@_compiled()
def search(L, E, use_E, ci, n, beta, den, use_den):
    """``(p, D)``: the position in the candidate arrays of the first candidate of minimal KS
    distance, and that D (``(-1, nan)`` without candidates).

    ``L``: sorted log data; ``E``: first-occurrence index of each value (used when
    ``use_E``); ``ci``, ``n``, ``beta``, ``den`` (used when ``use_den``): each candidate's
    tail start, tail size (float), ``alpha − 1`` and CDF normaliser. See the module docstring.
    """
    P = ci.shape[0]
    if P == 0:
        return -1, math.nan
    bound = np.empty(P)
    for p in range(P):
        i = ci[p]
        bound[p] = _dev(L, E, use_E, i, n[p], L[i], beta[p], den[p], use_den, int(n[p]) // 2)
    p0 = np.argmin(bound)
    best, hint, _ = _scan(L, E, use_E, ci[p0], n[p0], beta[p0], den[p0], use_den, math.inf,
                          np.int64(-1))
    winner = p0
    bound[p0] = math.inf  # done
    lim = best + SLACK
    lo = math.inf
    live = 0
    for p in range(P):
        if bound[p] > lim:
            continue
        i = ci[p]
        if i <= hint < i + int(n[p]):
            d = _dev(L, E, use_E, i, n[p], L[i], beta[p], den[p], use_den, hint - i)
            if d > bound[p]:
                bound[p] = d
        if bound[p] <= lim:
            live += 1
            lo = min(lo, bound[p])
    if live == 0:
        return winner, best
    # live candidates in buckets of increasing bound (a counting sort)
    width = (lim - lo) / BUCKETS
    bucket = np.empty(P, np.int64)
    start = np.zeros(BUCKETS + 1, np.int64)
    for p in range(P):
        if bound[p] <= lim:
            b = min(int((bound[p] - lo) / width), BUCKETS - 1) if width > 0 else 0
            bucket[p] = b
            start[b + 1] += 1
    for b in range(BUCKETS):
        start[b + 1] += start[b]
    order = np.empty(live, np.int64)
    for p in range(P):
        if bound[p] <= lim:
            order[start[bucket[p]]] = p
            start[bucket[p]] += 1
    hints = np.full(HINTS, -1, np.int64)
    hints[0] = hint
    for q in range(live):
        p = order[q]
        lim = best + SLACK
        if bound[p] > lim:
            continue
        i = ci[p]
        m = int(n[p])
        failed = False
        for h in range(HINTS):
            j = hints[h]
            if i <= j < i + m and _dev(L, E, use_E, i, n[p], L[i], beta[p], den[p], use_den,
                                       j - i) > lim:
                failed = True
                break
        if failed:
            continue
        run, arg, dead = _scan(L, E, use_E, i, n[p], beta[p], den[p], use_den, lim, hints[0])
        if arg != hints[0]:
            for h in range(HINTS - 1, 0, -1):
                hints[h] = hints[h - 1]
            hints[0] = arg
        if not dead and (run < best or (run == best and p < winner)):
            best = run
            winner = p
    return winner, best
