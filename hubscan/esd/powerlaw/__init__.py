"""Exact power-law fits of eigenvalue tails (METHOD.md §4), as one sub-package.

- ``fit``    the fitters (``ww``, ``seed``, ``truncated``): ``fit_power_law``,
             ``fit_power_law_batch``, ``PowerLawFit``, ``k_select``, ``ks_curve``
- ``search`` the batched xmin search in torch (CPU and CUDA): lower bounds + early stop
- ``kernel`` the compiled (numba) CPU search for one spectrum: same winner, no operator
             overhead

docs/fitting.md gives the parity and speed of each.
"""

from __future__ import annotations

from .fit import (
    PowerLawFit,
    default_threshold,
    fit_power_law,
    fit_power_law_batch,
    k_select,
    ks_curve,
    warm_up,
)

__all__ = ["PowerLawFit", "default_threshold", "fit_power_law", "fit_power_law_batch",
           "k_select", "ks_curve", "warm_up"]
