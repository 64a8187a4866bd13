"""A model's ``layers`` rows → the ``models`` table's summary columns (METHOD.md §5).

One function, so that the worker (``analysis.model``), the engine (a model whose files were
partly reused from the lake) and re-fits (``engine.refit``) summarise with the very same
rules; the SQL views compute the same means from the layer table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..esd.phases import is_over_trained

__all__ = ["model_summary"]

def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def model_summary(rows: Iterable[Mapping[str, Any]], *, exclude_final_layer: bool = False) -> dict[str, Any]:
    """The ``models`` table's summary columns from a model's ``layers`` rows.

    Means over *successful fits* (``status = "ok"``) for the alpha-dependent metrics, over
    all analysed matrices (``ok`` + ``fit-failed``) for the others; ``ww_alpha_mean`` is
    weightwatcher's ``get_summary()["alpha"]``: the plain mean over analysed matrices with a
    failed fit counted as −1. Shares of alpha in [2, 6] and [2, 4] (seed 000: "80–90 % of
    exponents lie between 2 and 4") and warning counts complete it (``n_over_trained``:
    weightwatcher's ``over-trained`` on layers whose phase is not random-like).

    Args:
        rows: layer rows (dicts with the ``layers`` column names).
        exclude_final_layer: leave out the analysed matrix with the largest ``layer_id`` (the
            classifier, which the seeds exclude for VGG).
    """
    rows = list(rows)
    analysed = [r for r in rows if r.get("status") in ("ok", "fit-failed")]
    if exclude_final_layer and analysed:
        last = max(analysed, key=lambda r: (r.get("layer_id") is not None, r.get("layer_id") or 0))
        analysed = [r for r in analysed if r is not last]
    fitted = [r for r in analysed if r.get("status") == "ok" and r.get("alpha") is not None]
    alphas = [float(r["alpha"]) for r in fitted]

    def col(name: str, over: list[Mapping[str, Any]]) -> list[float]:
        return [float(r[name]) for r in over if r.get(name) is not None and np.isfinite(r[name])]

    def warned(label: str) -> int:
        return sum(1 for r in analysed if label in (r.get("warning") or "").split(","))

    # Not weightwatcher's bare α < 2: a random-like layer is never called over-trained
    # (esd.phases.is_over_trained; the SQL views count the same way).
    n_over = sum(1 for r in analysed if is_over_trained(r.get("warning"), r.get("phase")))

    return {
        "n_tensors": len(rows),
        "n_analysed": len([r for r in rows if r.get("status") in ("ok", "fit-failed")]),
        "n_skipped": sum(1 for r in rows if r.get("status") == "skipped"),
        "n_failed": sum(1 for r in rows if r.get("status") == "error"),
        "alpha_mean": _mean(alphas),
        "alpha_median": float(np.median(alphas)) if alphas else None,
        "alpha_weighted_mean": _mean(col("alpha_weighted", fitted)),
        "log_norm_mean": _mean(col("log_norm", analysed)),
        "log_spectral_norm_mean": _mean(col("log_spectral_norm", analysed)),
        "log_alpha_norm_mean": _mean(col("log_alpha_norm", fitted)),
        "stable_rank_mean": _mean(col("stable_rank", analysed)),
        "ww_alpha_mean": _mean([float(r["alpha"]) if r.get("status") == "ok" and r.get("alpha") is not None
                                else -1.0 for r in analysed]),
        "frac_alpha_2_6": (sum(2 <= a <= 6 for a in alphas) / len(alphas)) if alphas else None,
        "frac_alpha_2_4": (sum(2 <= a <= 4 for a in alphas) / len(alphas)) if alphas else None,
        "n_over_trained": n_over,
        "n_under_trained": warned("under-trained"),
    }


