"""Do spectral metrics rank models by reported quality? Rank correlations with permutation p-values.

The seeds' claim (METHOD.md §7): within a model series, smaller mean alpha (and log-norm) goes
with better test accuracy — so the metrics could rank models without test data. The lake's
``quality_correlations`` view computes, per group (a family, or a base model with its
fine-tunes), per model-level metric (``model_metrics``: mean alpha, alpha_weighted,
log_norm, log_alpha_norm, over all layers and without the last FC layer) and per reported
metric (``model_evals``), Spearman's rho and Kendall's tau-b in DuckDB. What SQL cannot do
well is the significance: this module adds a two-sided **permutation p-value** for each,
from the view's points (``quality_points``):

- exact for n ≤ ``exact_up_to`` (every one of the n! pairings; n = 8 is 40,320), else
- ``permutations`` random pairings from a seeded generator (reproducible), with the usual
  ``(1 + #{|stat*| ≥ |stat|}) / (1 + B)`` so that p is never 0;
- except Kendall's tau for groups larger than ``kendall_permutations_up_to`` (200): a
  pairing costs O(n²) there, so its p-value is the normal approximation with tie
  corrections (``scipy.stats.kendalltau(method="asymptotic")``'s variance), and
  ``p_kendall_method`` says so. Spearman's pairings cost O(n) and stay permutations.

Both statistics are recomputed here from the points with the view's definitions (average
ranks; tau-b with scipy's tie counts); a test checks view, this module and scipy agree.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

__all__ = ["Correlation", "correlations", "spearman", "kendall_tau_b", "permutation_p",
           "kendall_p_asymptotic", "PARTITION"]

#: The columns that identify one correlation (a group × metric × reported metric).
PARTITION = ("group_kind", "group_name", "analysis_version", "variant", "metric", "task",
             "dataset", "dataset_config", "dataset_split", "eval_metric")


@dataclass(frozen=True)
class Correlation:
    """One row of ``quality_correlations`` with its permutation p-values.

    ``p_spearman``/``p_kendall`` are None when the statistic is (a side is constant);
    ``permutations`` is 0 when the p-values are exact (all n! pairings).
    """

    group_kind: str
    group_name: str
    analysis_version: str
    variant: str
    metric: str
    task: str | None
    dataset: str | None
    dataset_config: str | None
    dataset_split: str | None
    eval_metric: str
    n: int
    spearman: float | None
    kendall: float | None
    pearson: float | None
    p_spearman: float | None
    p_kendall: float | None
    permutations: int
    p_kendall_method: str = "permutation"  # exact | permutation | asymptotic

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def _avg_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (the view's ``rank() + (count − 1)/2``)."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    ranks = np.empty(len(x), dtype=np.float64)
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and xs[j + 1] == xs[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho: Pearson's r of the average ranks; None if a side is constant."""
    rx, ry = _avg_ranks(np.asarray(x, float)), _avg_ranks(np.asarray(y, float))
    return _pearson(rx, ry)


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    a, b = a - a.mean(), b - b.mean()
    den = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / den if den > 0 else None


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b (``scipy.stats.kendalltau``'s default); None if a side is constant."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    sx, sy = np.sign(x[:, None] - x[None, :]), np.sign(y[:, None] - y[None, :])
    iu = np.triu_indices(len(x), 1)
    s = float((sx * sy)[iu].sum())
    n0 = len(iu[0])
    tx, ty = int((sx[iu] == 0).sum()), int((sy[iu] == 0).sum())
    den = math.sqrt(float(n0 - tx) * float(n0 - ty))
    return s / den if den > 0 else None


def kendall_p_asymptotic(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Two-sided p of Kendall's tau from the normal approximation of (concordant −
    discordant) with tie corrections — the variance ``scipy.stats.kendalltau`` uses for
    ``method="asymptotic"``. None when a side is constant."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    if n < 3:
        return None

    def ties(v: np.ndarray) -> tuple[int, float, float]:
        _, cnt = np.unique(v, return_counts=True)
        cnt = cnt[cnt > 1].astype(np.float64)
        return (int((cnt * (cnt - 1) // 2).sum()), float((cnt * (cnt - 1) * (cnt - 2)).sum()),
                float((cnt * (cnt - 1) * (2 * cnt + 5)).sum()))

    xtie, x0, x1 = ties(x)
    ytie, y0, y1 = ties(y)
    tot = n * (n - 1) // 2
    if xtie == tot or ytie == tot:
        return None
    s = _concordance(x, y)
    m = n * (n - 1.0)
    var = (m * (2 * n + 5) - x1 - y1) / 18 + (2 * xtie * ytie) / m + x0 * y0 / (9 * m * (n - 2))
    return float(math.erfc(abs(s) / math.sqrt(var) / math.sqrt(2.0)))


def _concordance(x: np.ndarray, y: np.ndarray) -> float:
    """Σ_{i<j} sign(x_i − x_j)·sign(y_i − y_j), in row blocks (memory O(n·block))."""
    total = 0.0
    for i in range(0, len(x), 256):
        sx = np.sign(x[i:i + 256, None] - x[None, :])
        sy = np.sign(y[i:i + 256, None] - y[None, :])
        total += float((sx * sy).sum())
    return total / 2.0  # every pair counted twice (i, j) and (j, i); the diagonal is 0


def permutation_p(x: Sequence[float], y: Sequence[float], *, permutations: int = 9999, seed: int = 0,
                  exact_up_to: int = 8, kendall_permutations_up_to: int = 200,
                  ) -> tuple[float | None, float | None, int]:
    """Two-sided permutation p-values of Spearman's rho and Kendall's tau-b.

    Returns ``(p_spearman, p_kendall, B)`` with ``B = 0`` for the exact test. Pairings are
    permutations of ``y`` against ``x``; a pairing counts when its |statistic| is at least the
    observed one (to 1e-12, so ties with the observed value count, as they must). Above
    ``kendall_permutations_up_to`` models Kendall's p is ``kendall_p_asymptotic``.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    rx, ry = _avg_ranks(x), _avg_ranks(y)
    rho = _pearson(rx, ry)
    if n > kendall_permutations_up_to:
        p_r, _, b = _spearman_only(rx, ry, rho, permutations=permutations, seed=seed)
        return p_r, kendall_p_asymptotic(x, y), b
    tau = kendall_tau_b(x, y)
    if n < 2 or (rho is None and tau is None):
        return None, None, 0
    if n <= exact_up_to:
        perms = np.array(list(itertools.permutations(range(n))), dtype=np.int64)
        B, exact = len(perms), True
    else:
        rng = np.random.default_rng(seed)
        perms = np.argsort(rng.random((permutations, n)), axis=1)
        B, exact = permutations, False
    # Spearman: rho(π) = centred rx · centred ry[π] / (|rx| |ry|)
    cx, cy = rx - rx.mean(), ry - ry.mean()
    den = math.sqrt(float(cx @ cx) * float(cy @ cy))
    sx = np.sign(x[:, None] - x[None, :])
    sy = np.sign(y[:, None] - y[None, :])
    iu = np.triu_indices(n, 1)
    n0 = len(iu[0])
    kden = math.sqrt(float(n0 - int((sx[iu] == 0).sum())) * float(n0 - int((sy[iu] == 0).sum())))
    hits_r = hits_t = 0
    sx_u = sx[iu]
    for chunk in range(0, B, 512):
        P = perms[chunk:chunk + 512]
        if rho is not None and den > 0:
            r = (cy[P] @ cx) / den
            hits_r += int((np.abs(r) >= abs(rho) - 1e-12).sum())
        if tau is not None and kden > 0:
            # sy permuted on both axes: sy[π_i, π_j] for i < j
            spi = sy[P[:, iu[0]], P[:, iu[1]]]
            t = (spi * sx_u).sum(axis=1) / kden
            hits_t += int((np.abs(t) >= abs(tau) - 1e-12).sum())
    if exact:
        p_r = hits_r / B if rho is not None else None
        p_t = hits_t / B if tau is not None else None
        return p_r, p_t, 0
    p_r = (1 + hits_r) / (1 + B) if rho is not None else None
    p_t = (1 + hits_t) / (1 + B) if tau is not None else None
    return p_r, p_t, B


def _spearman_only(rx: np.ndarray, ry: np.ndarray, rho: float | None, *, permutations: int,
                   seed: int) -> tuple[float | None, None, int]:
    """The random-pairing p of Spearman's rho alone (large groups)."""
    if rho is None:
        return None, None, permutations
    rng = np.random.default_rng(seed)
    cx, cy = rx - rx.mean(), ry - ry.mean()
    den = math.sqrt(float(cx @ cx) * float(cy @ cy))
    hits = 0
    for chunk in range(0, permutations, 512):
        b = min(512, permutations - chunk)
        P = np.argsort(rng.random((b, len(rx))), axis=1)
        hits += int((np.abs((cy[P] @ cx) / den) >= abs(rho) - 1e-12).sum())
    return (1 + hits) / (1 + permutations), None, permutations


def correlations(con: Any, *, where: str | None = None, permutations: int = 9999, seed: int = 0,
                 exact_up_to: int = 8, min_n: int = 3,
                 kendall_permutations_up_to: int = 200) -> list[Correlation]:
    """Every row of ``quality_correlations`` (optionally filtered by ``where``, SQL on its
    columns), with permutation p-values from ``quality_points``; ordered by group, metric.

    Args:
        con: an open connection with the lake views (``Lake.connect()``), or a ``Lake``.
        permutations, seed, exact_up_to: see ``permutation_p``.
        min_n: groups with fewer models are left out (the view keeps n ≥ 3).
    """
    own = False
    if hasattr(con, "connect") and not hasattr(con, "execute"):
        con, own = con.connect(), True
    try:
        flt = f"WHERE ({where})" if where else ""
        rows = _rows(con, f"""SELECT * FROM quality_correlations {flt}
                              ORDER BY group_kind, group_name, analysis_version, variant, metric,
                                       eval_metric, task NULLS FIRST, dataset NULLS FIRST,
                                       dataset_config NULLS FIRST, dataset_split NULLS FIRST""")
        rows = [r for r in rows if r["n"] >= min_n]
        if not rows:
            return []
        points = _rows(con, "SELECT * FROM quality_points")
    finally:
        if own:
            con.close()
    by_part: dict[tuple, tuple[list[float], list[float]]] = {}
    for p in points:
        xs, ys = by_part.setdefault(tuple(p[c] for c in PARTITION), ([], []))
        xs.append(p["metric_value"])
        ys.append(p["eval_value"])
    out = []
    for r in rows:
        xs, ys = by_part.get(tuple(r[c] for c in PARTITION), ([], []))
        p_r, p_t, b = permutation_p(xs, ys, permutations=permutations, seed=seed,
                                    exact_up_to=exact_up_to,
                                    kendall_permutations_up_to=kendall_permutations_up_to)
        method = ("asymptotic" if len(xs) > kendall_permutations_up_to
                  else "exact" if b == 0 else "permutation")
        out.append(Correlation(**{c: r[c] for c in PARTITION}, n=int(r["n"]),
                               spearman=_num(r["spearman"]), kendall=_num(r["kendall"]),
                               pearson=_num(r["pearson"]), p_spearman=p_r, p_kendall=p_t,
                               permutations=b, p_kendall_method=method))
    return out


def _num(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _rows(con: Any, sql: str) -> list[dict[str, Any]]:
    rel = con.sql(sql)
    fetch = getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table
    return fetch().to_pylist()
