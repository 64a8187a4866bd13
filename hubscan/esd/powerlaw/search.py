"""The KS scan over xmin candidates: exact, batched, and mostly skipped (METHOD.md §4).

Every xmin candidate i of every spectrum b has a tail ``x[i:]`` of n points and a fitted
model CDF F. Its KS distance is

    D = max_j |F(x_j) − e_j / n|,   e_j = (index of x_j's KS point) − i,

with ``e_j = j − i`` for weightwatcher (every point, duplicates kept) and ``e_j`` = the first
occurrence of x_j's value minus i for powerlaw (CDF at unique values, fraction strictly
below). Computing every D costs O(n²) per spectrum, which is what the references do in a
Python loop. But the winner needs only the *minimum*, and D at any subset of points is a
lower bound of D. So:

1. bound every candidate with D at a few points of its own tail (quantiles of the tail,
   plus the first points, where KS maxima of mis-fitted tails sit);
2. compute exact D for the few live candidates with the smallest bounds (per spectrum),
   update the best D, and re-bound the rest at the points where the new exact maxima were
   reached (neighbouring tails peak at the same place);
3. repeat while some candidate's bound is <= the best exact D (+1e-12 of slack, so that a
   tie keeps the reference's first-index winner).

Candidates never computed exactly have D > best, so the winner is exactly the reference's.
All of it is torch, batched over spectra (padded to one width), the same code on CPU and CUDA.
On CPU the ``ww``/``seed`` scans use ``kernel.search`` instead: the same definitions in a
compiled per-spectrum loop that can stop each tail's scan early (its docstring says why).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Batch", "Candidates", "make_batch", "tail_log_sums", "exact_D", "select_xmin",
           "torch_inplace"]

# Spectra at most this long are scored exhaustively (bounding would not pay).
EXHAUSTIVE_WIDTH = 96
# Elements of one (candidates × points) block: memory stays O(n · chunk) and cache-sized.
BLOCK_ELEMENTS = 1 << 18
# Probe points of the second bound (survivors only): quantiles of each candidate's tail.
PROBE_QUANTILES = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 3 / 8, 1 / 2, 5 / 8, 3 / 4)
# Exact evaluations per spectrum in the second round (one in the first; doubling after).
FIRST_ROUND = 4
# Slack between a bound and an exact D computed by differently shaped kernels.
BOUND_SLACK = 1e-12


@dataclass
class Batch:
    """Sorted spectra padded to one width, with the tables every kernel shares."""

    X: torch.Tensor  # (B, W) ascending data; padding repeats each row's last value
    L: torch.Tensor  # (B, 2W) log X, padded again to the right so windows never run out
    E: torch.Tensor | None  # (B, 2W) float index of each value's first occurrence (unique mode)
    first: torch.Tensor  # (B, W) int index of the first occurrence of X[b, j]
    is_first: torch.Tensor  # (B, W)
    N: torch.Tensor  # (B,) lengths
    Lxmax: torch.Tensor  # (B,) log of the model's xmax (inf when the model is untruncated)

    @property
    def width(self) -> int:
        return self.X.shape[1]


def make_batch(xs: list[np.ndarray], xmaxs: list[float], dev: torch.device, unique: bool) -> Batch:
    B, W = len(xs), max(len(x) for x in xs)
    Xn = np.empty((B, W), dtype=np.float64)
    for b, x in enumerate(xs):
        Xn[b, : len(x)] = x
        Xn[b, len(x):] = x[-1]
    X = torch.from_numpy(Xn).to(dev)
    L = torch.log(X)
    idx = torch.arange(W, device=dev)
    is_first = torch.ones_like(X, dtype=torch.bool)
    is_first[:, 1:] = X[:, 1:] != X[:, :-1]
    first = torch.where(is_first, idx, torch.zeros_like(idx)).cummax(dim=1).values
    E = None
    if unique:
        E = torch.cat([first.to(torch.float64), torch.zeros_like(X)], dim=1)
    N = torch.tensor([len(x) for x in xs], dtype=torch.int64, device=dev)
    Lxmax = torch.tensor([math.log(v) if math.isfinite(v) else math.inf for v in xmaxs],
                         dtype=torch.float64, device=dev)
    return Batch(X=X, L=torch.cat([L, L[:, -1:].expand(B, W)], dim=1), E=E, first=first,
                 is_first=is_first, N=N, Lxmax=Lxmax)


def tail_log_sums(batch: Batch) -> torch.Tensor:
    """``S[b, i] = Σ_{j ≥ i} ln(x_j / x_i)`` for every candidate i, in O(n).

    ``S_i = S_{i+1} + (n − 1 − i)·(ln x_{i+1} − ln x_i)``: a suffix sum of non-negative
    terms, so no cancellation (the references subtract ``n ln x_i`` from ``Σ ln x_j``) and a
    constant tail gives exactly 0.
    """
    W = batch.width
    L = batch.L[:, :W]
    idx = torch.arange(W, device=L.device)
    dL = torch.zeros_like(L)
    dL[:, :-1] = L[:, 1:] - L[:, :-1]
    weight = (batch.N[:, None] - 1 - idx).clamp(min=0).to(L.dtype)
    return (dL * weight).flip(1).cumsum(1).flip(1)


@dataclass
class Candidates:
    """Every admissible (spectrum, xmin) pair, flattened, with its fitted model.

    The model CDF on a tail is ``F(t) = (1 − e^{−βt}) / den`` with ``t = ln(x/xmin)``,
    ``β = alpha − 1``; ``den = 1`` untruncated (ww) or ``1 − e^{−βu}``, ``u = ln(xmax/xmin)``.
    """

    b: torch.Tensor
    i: torch.Tensor
    n: torch.Tensor  # tail size (float64)
    beta: torch.Tensor
    Lxm: torch.Tensor  # log xmin of the model (the data value, or a fixed xmin)
    den: torch.Tensor
    u: torch.Tensor
    truncated: bool  # den != 1

    def __len__(self) -> int:
        return self.b.numel()


# --------------------------------------------------------------------------- kernels


def _deviation_max(c: Candidates, sel: torch.Tensor, t: torch.Tensor, emp: torch.Tensor,
                   invalid: torch.Tensor | None, with_arg: bool = True):
    """``max_k |F(t_k) − emp_k|`` per row, where ``t = ln(x/xmin)`` and ``emp`` (the
    empirical CDF) are (P, K) scratch buffers, overwritten. ``invalid`` marks points that
    are not in the tail. Returns the maxima (and where each is reached, with ``with_arg``).

    Everything is in place: fresh multi-MB temporaries cost more (page faults) than the
    arithmetic itself.
    """
    beta = c.beta[sel]
    special = bool(torch.isinf(beta).any()) or (c.truncated and bool((beta == 0).any()))
    if special:  # constant tail (β = inf): F = 0 at t = 0, not NaN; truncated β = 0: F = t/u
        at_zero = t <= 0
        linear = (t / c.u[sel][:, None]) if c.truncated else None
    F = t.mul_(beta.neg()[:, None]).expm1_().neg_()
    if c.truncated:
        F.div_(c.den[sel][:, None])
    if special:
        F.masked_fill_(at_zero, 0.0)
        if linear is not None:
            F = torch.where(beta[:, None] == 0, linear, F)
    dev = F.sub_(emp).abs_()
    if invalid is not None:
        dev.masked_fill_(invalid, -1.0)
    return dev.max(dim=1) if with_arg else dev.amax(dim=1)


def exact_D(batch: Batch, c: Candidates, sel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact D of the candidates ``sel`` and the point index where it is reached, computed
    over each whole tail in blocks of at most ``BLOCK_ELEMENTS`` (reused buffers)."""
    dev = batch.X.device
    P = sel.numel()
    D = torch.empty(P, dtype=torch.float64, device=dev)
    A = torch.empty(P, dtype=torch.int64, device=dev)
    if P == 0:
        return D, A
    n_sel = c.n[sel]
    order = torch.argsort(n_sel, descending=True)
    widths = n_sel[order].to(torch.int64).tolist()
    size = min(P * widths[0], max(BLOCK_ELEMENTS, widths[0]))
    buf_t = torch.empty(size, dtype=torch.float64, device=dev)
    buf_e = torch.empty(size, dtype=torch.float64, device=dev)
    buf_m = torch.empty(size, dtype=torch.bool, device=dev)
    row_len = batch.L.shape[1]
    Lflat = batch.L.reshape(-1)
    Eflat = batch.E.reshape(-1) if batch.E is not None else None
    start = 0
    while start < P:
        K = widths[start]
        rows = max(1, min(P - start, BLOCK_ELEMENTS // K))
        pos = order[start:start + rows]
        s = sel[pos]
        b, i, n = c.b[s], c.i[s], c.n[s]
        # row r is the window x[i_r : i_r + K] of its spectrum: one index_select from the
        # overlapping windows of the flattened spectra (rows are padded to 2W: no overrun)
        flat_rows = b * row_len + i
        t = buf_t[: rows * K].view(rows, K)
        torch.index_select(Lflat.unfold(0, K, 1), 0, flat_rows, out=t)
        t.sub_(c.Lxm[s][:, None])
        k = torch.arange(K, dtype=torch.float64, device=dev)
        emp = buf_e[: rows * K].view(rows, K)
        if Eflat is not None:
            torch.index_select(Eflat.unfold(0, K, 1), 0, flat_rows, out=emp)
            emp.sub_(i.to(torch.float64)[:, None]).div_(n[:, None])
        else:
            torch.mul(k[None, :], (1.0 / n)[:, None], out=emp)
        invalid = None
        if rows > 1 and not bool((n == K).all()):
            invalid = buf_m[: rows * K].view(rows, K)
            torch.ge(k[None, :], n[:, None], out=invalid)
        Dm, Am = _deviation_max(c, s, t, emp, invalid)
        D[pos], A[pos] = Dm, i + Am
        start += rows
    return D, A


def _probe_D(batch: Batch, c: Candidates, sel: torch.Tensor, J: torch.Tensor,
             valid: torch.Tensor | None = None) -> torch.Tensor:
    """D of the candidates ``sel`` at the point indices ``J`` (P, m): a lower bound of D.

    ``J`` must lie in ``[0, W)``; points outside a tail are given by ``valid`` (None: all
    inside). In unique mode points move to the first occurrence of their value, which
    stays inside the tail (seed/truncated candidates are first occurrences).
    """
    b = c.b[sel]
    if batch.E is not None:
        J = batch.first[b[:, None], J]
    t = batch.L.view(-1).take(J + (b * batch.L.shape[1])[:, None])
    t.sub_(c.Lxm[sel][:, None])
    emp = (J - c.i[sel][:, None]).to(torch.float64).div_(c.n[sel][:, None])
    invalid = None if valid is None else ~valid
    return _deviation_max(c, sel, t, emp, invalid, with_arg=False).clamp_(min=0.0)


@dataclass
class _Dense:
    """Candidate parameters in the (spectrum × position) layout; fillers where no candidate."""

    neg_beta: torch.Tensor
    beta: torch.Tensor
    lxm: torch.Tensor
    n: torch.Tensor
    den: torch.Tensor | None
    u: torch.Tensor | None
    special: bool
    idx: torch.Tensor  # (W,) float positions


def _dense(batch: Batch, c: Candidates) -> _Dense:
    dev = batch.X.device
    B, W = batch.X.shape

    def spread(values: torch.Tensor, fill: float) -> torch.Tensor:
        out = torch.full((B, W), fill, dtype=torch.float64, device=dev)
        out[c.b, c.i] = values
        return out

    beta = spread(c.beta, 1.0)
    special = bool(torch.isinf(c.beta).any()) or (c.truncated and bool((c.beta == 0).any()))
    return _Dense(neg_beta=beta.neg(), beta=beta, lxm=spread(c.Lxm, 0.0), n=spread(c.n, 1.0),
                  den=spread(c.den, 1.0) if c.truncated else None,
                  u=spread(c.u, 1.0) if special and c.truncated else None, special=special,
                  idx=torch.arange(W, dtype=torch.float64, device=dev))


def _dense_dev(d: _Dense, t: torch.Tensor, e: torch.Tensor, outside: torch.Tensor) -> torch.Tensor:
    """|F(t) − e/n| for every candidate at one point per candidate (t, e: (B, W) fresh)."""
    F = t.mul(d.neg_beta).expm1_().neg_()
    if d.den is not None:
        F.div_(d.den)
    if d.special:
        F = torch.where(t > 0, F, torch.zeros_like(F))
        if d.u is not None:
            F = torch.where(d.beta == 0, t / d.u, F)
    dev = F.sub_(e.div_(d.n)).abs_()
    return dev.masked_fill_(outside, 0.0)


def _offset_bounds(batch: Batch, d: _Dense) -> torch.Tensor:
    """Lower bounds of every candidate's D at its points ``i + o``, o = 1, 2, 4, …: in the
    dense layout point ``i + o`` of all candidates is one contiguous shifted slice."""
    W = batch.width
    bound = torch.zeros_like(d.n)
    for o in (2 ** k for k in range(32)):
        if o >= W:
            break
        t = batch.L[:, o:o + W] - d.lxm
        e = batch.E[:, o:o + W] - d.idx if batch.E is not None else torch.full_like(t, float(o))
        torch.maximum(bound, _dense_dev(d, t, e, d.n <= o), out=bound)
    return bound


def _point_bounds(batch: Batch, d: _Dense, points: torch.Tensor) -> torch.Tensor:
    """Lower bounds of every candidate's D at given absolute points, one per spectrum and
    column of ``points`` (B, m) (-1: none): a broadcast, no gather per candidate."""
    W = batch.width
    bound = torch.zeros_like(d.n)
    for k in range(points.shape[1]):
        j = points[:, k:k + 1]
        jc = j.clamp(min=0)
        t = batch.L[:, :W].gather(1, jc) - d.lxm
        if batch.E is not None:
            e = batch.E[:, :W].gather(1, jc) - d.idx
        else:
            e = jc.to(torch.float64) - d.idx
        outside = (j < 0) | (d.idx > jc)  # not a point of this tail (E >= i in unique mode)
        torch.maximum(bound, _dense_dev(d, t.expand_as(d.n).clone(), e, outside), out=bound)
    return bound


# --------------------------------------------------------------------------- the search


def select_xmin(batch: Batch, c: Candidates, *, exhaustive: bool = False):
    """The winner of every spectrum — the first candidate of minimal D, as the references'
    ``argmin`` — and the exact D of every candidate that needed it (inf for the others).

    Returns ``(winner, D)``: ``winner[b]`` is a position in ``c`` (``len(c)`` when the
    spectrum has no candidate).
    """
    dev = batch.X.device
    B = batch.X.shape[0]
    P = len(c)
    everything = torch.arange(P, device=dev)
    if exhaustive or batch.width <= EXHAUSTIVE_WIDTH:
        Dex, _ = exact_D(batch, c, everything)
    else:
        Dex = _pruned(batch, c, B)
    best = torch.full((B,), math.inf, dtype=torch.float64, device=dev).scatter_reduce(
        0, c.b, Dex, reduce="amin")
    tie = Dex == best[c.b]
    winner = torch.full((B,), P, dtype=torch.int64, device=dev).scatter_reduce(
        0, c.b, torch.where(tie, everything, torch.full_like(everything, P)), reduce="amin")
    return winner, Dex


def _pruned(batch: Batch, c: Candidates, B: int) -> torch.Tensor:
    """Exact D where needed (inf elsewhere)."""
    dev = batch.X.device
    P, W = len(c), batch.width
    Dex = torch.full((P,), math.inf, dtype=torch.float64, device=dev)
    d = _dense(batch, c)
    dense = torch.full((B, W), math.inf, dtype=torch.float64, device=dev)
    dense[c.b, c.i] = _offset_bounds(batch, d)[c.b, c.i]
    # Round 1: the smallest bound of every spectrum, computed exactly; then every candidate
    # is bounded at the points where those maxima were reached (and their neighbours).
    where = torch.full((B, W), P, dtype=torch.int64, device=dev)
    where[c.b, c.i] = torch.arange(P, device=dev)
    low, col = dense.min(dim=1)
    has = torch.isfinite(low)
    pick = where[torch.arange(B, device=dev), col][has]
    D, arg = exact_D(batch, c, pick)
    Dex[pick] = D
    points = torch.full((B, 1), -1, dtype=torch.int64, device=dev)
    points[has, 0] = arg
    points = torch.cat([points, torch.where(points >= 0, points + 1, points),
                        torch.where(points >= 1, points - 1, -1)], dim=1).clamp(max=W - 1)
    dense = torch.maximum(dense, _point_bounds(batch, d, points))
    bound = dense[c.b, c.i]
    bound[pick] = math.inf  # done
    best = torch.full((B,), math.inf, dtype=torch.float64, device=dev)
    best[c.b[pick]] = D
    live = torch.arange(P, device=dev)[bound <= best[c.b] + BOUND_SLACK]
    if live.numel():  # the survivors: bound again at quantiles of their own tails
        valid = torch.ones((live.numel(), len(PROBE_QUANTILES)), dtype=torch.bool, device=dev)
        bound[live] = torch.maximum(bound[live], _probe_D(batch, c, live, _quantile_points(c, live), valid))
    per_round = FIRST_ROUND
    while True:
        live = live[bound[live] <= best[c.b[live]] + BOUND_SLACK]
        if live.numel() == 0:
            return Dex
        # per spectrum, the per_round live candidates with the smallest bounds
        # (one sort on the key b + bound/2: bounds lie in [0, 1])
        order = torch.argsort(c.b[live].to(torch.float64) + 0.5 * bound[live])
        ranked = live[order]
        bs = c.b[ranked]
        counts = torch.bincount(bs, minlength=B)
        rank = torch.arange(ranked.numel(), device=dev) - (torch.cumsum(counts, 0) - counts)[bs]
        pick = ranked[rank < per_round]
        D, arg = exact_D(batch, c, pick)
        Dex[pick] = D
        bound[pick] = math.inf  # done
        best = best.scatter_reduce(0, c.b[pick], D, reduce="amin")
        live = live[bound[live] <= best[c.b[live]] + BOUND_SLACK]
        if live.numel() == 0:
            return Dex
        # re-bound the rest where the new maxima were reached (first 8 picks per spectrum)
        table = torch.full((B, 8), -1, dtype=torch.int64, device=dev)
        r = rank[rank < per_round]
        keep = r < 8
        table[c.b[pick][keep], r[keep]] = arg[keep]
        J = table[c.b[live]]
        valid = J >= c.i[live][:, None]
        bound[live] = torch.maximum(bound[live], _probe_D(batch, c, live, J.clamp(min=0), valid))
        per_round = min(2 * per_round, 256)


def _quantile_points(c: Candidates, sel: torch.Tensor) -> torch.Tensor:
    """Points at fixed quantiles of each candidate's own tail (always inside it)."""
    n = c.n[sel]
    q = torch.tensor(PROBE_QUANTILES, dtype=torch.float64, device=n.device)
    return c.i[sel][:, None] + (n[:, None] * q[None, :]).to(torch.int64)


# --------------------------------------------------------------------------- torch kernels on numpy arrays


# Elements per torch call on numpy arrays: torch's grain size, below which its elementwise
# kernels run on the calling thread (an OpenMP region on a busy 2-core machine stalled a
# 100 µs expm1 for milliseconds). Elementwise results do not depend on the chunking.
SERIAL_CHUNK = 32768


def torch_inplace(a: np.ndarray, op: str) -> np.ndarray:
    """torch's elementwise ``op`` (``"log_"``, ``"expm1_"``) in place on a contiguous numpy
    array, serially: the compiled CPU path takes its logs and truncation denominators from
    torch's kernels (numpy's differ in the last bit on some values), so that its alphas are
    bit-identical to the torch path's."""
    flat = a.reshape(-1)
    for s in range(0, flat.size, SERIAL_CHUNK):
        getattr(torch.from_numpy(flat[s:s + SERIAL_CHUNK]), op)()
    return a
