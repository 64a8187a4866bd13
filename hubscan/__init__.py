"""hubscan — heavy-tailed spectral analysis of model hubs into a Parquet lake.

Public Python API (imported lazily, so ``import hubscan`` stays cheap and a CLI call only
pays for what it uses):

- ``analyze(path_or_module, convention="ww", **options) -> pyarrow.Table`` — one row per
  weight matrix, the ``layers`` columns (a weightwatcher-like call for notebooks).
- ``fit_power_law(evals, fitter="ww", ...) -> PowerLawFit`` and ``fit_power_law_batch``.
- ``distribution_compare`` — power law vs alternatives (METHOD.md §4).
- ``Lake(uri)`` — write, query (DuckDB) and maintain a lake.
- ``AnalysisOptions``, ``ModelRef``, ``TensorRef`` and the error tree in ``hubscan.errors``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "analyze": "hubscan.analysis",
    "fit_power_law": "hubscan.powerlaw_fit",
    "fit_power_law_batch": "hubscan.powerlaw_fit",
    "PowerLawFit": "hubscan.powerlaw_fit",
    "k_select": "hubscan.powerlaw_fit",
    "ks_curve": "hubscan.powerlaw_fit",
    "distribution_compare": "hubscan.compare",
    "pareto_calibration": "hubscan.calibration",
    "read_checkpoint": "hubscan.readers",
    "Lake": "hubscan.lake",
    "AnalysisOptions": "hubscan.options",
    "ModelRef": "hubscan.refs",
    "TensorRef": "hubscan.refs",
    "WeightFile": "hubscan.refs",
    "errors": "hubscan.errors",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hubscan' has no attribute {name!r}")
    mod = importlib.import_module(module)
    return mod if name == "errors" else getattr(mod, name)
