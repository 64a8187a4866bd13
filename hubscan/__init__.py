"""hubscan — heavy-tailed spectral analysis of model hubs into a Parquet lake.

Public Python API (imported lazily, so ``import hubscan`` stays cheap and a CLI call only
pays for what it uses; ``dir(hubscan)`` and notebook completion list every name):

- ``analyze(path_or_module, convention="ww", **options) -> pyarrow.Table`` — one row per
  weight matrix, the ``layers`` columns (a weightwatcher-like call for notebooks).
- ``deltas(model, base) -> pyarrow.Table`` — how far each matrix moved from the base's
  (weightwatcher ``distances()`` raw/euclidean/CKA; ``esd=True``: the fit of ``W − W_base``).
- ``fit_power_law(evals, fitter="ww", ...) -> PowerLawFit`` and ``fit_power_law_batch``;
  ``k_select``, ``ks_curve``.
- ``distribution_compare`` — power law vs alternatives (METHOD.md §4);
  ``pareto_calibration`` — the estimator's bias on Pareto samples.
- ``read_checkpoint(path)`` — a checkpoint's tensors, one in memory at a time.
- ``Lake(uri)`` — write, query (DuckDB) and maintain a lake.
- ``AnalysisOptions``, ``ModelRef``, ``TensorRef``, ``WeightFile`` and the error tree in
  ``hubscan.errors``.

Where everything else lives: docs/architecture.md.
"""

import importlib as _importlib
import typing as _typing

__version__ = "0.1.0"

#: public name → the module that defines it
_LAZY = {
    "analyze": "hubscan.api",
    "deltas": "hubscan.api",
    "fit_power_law": "hubscan.esd.powerlaw.fit",
    "fit_power_law_batch": "hubscan.esd.powerlaw.fit",
    "PowerLawFit": "hubscan.esd.powerlaw.fit",
    "k_select": "hubscan.esd.powerlaw.fit",
    "ks_curve": "hubscan.esd.powerlaw.fit",
    "distribution_compare": "hubscan.esd.compare",
    "pareto_calibration": "hubscan.esd.calibration",
    "read_checkpoint": "hubscan.readers",
    "Lake": "hubscan.lake",
    "AnalysisOptions": "hubscan.options",
    "ModelRef": "hubscan.refs",
    "TensorRef": "hubscan.refs",
    "WeightFile": "hubscan.refs",
    "errors": "hubscan.errors",
}

__all__ = [
    "AnalysisOptions", "Lake", "ModelRef", "PowerLawFit", "TensorRef", "WeightFile", "analyze", "deltas",
    "distribution_compare", "errors", "fit_power_law", "fit_power_law_batch", "k_select",
    "ks_curve", "pareto_calibration", "read_checkpoint", "__version__",
]

if _typing.TYPE_CHECKING:  # static analysers and IDEs see the real objects
    from . import errors
    from .api import analyze, deltas
    from .esd.calibration import pareto_calibration
    from .esd.compare import distribution_compare
    from .esd.powerlaw.fit import (
        PowerLawFit,
        fit_power_law,
        fit_power_law_batch,
        k_select,
        ks_curve,
    )
    from .lake import Lake
    from .options import AnalysisOptions
    from .readers import read_checkpoint
    from .refs import ModelRef, TensorRef, WeightFile


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hubscan' has no attribute {name!r}")
    mod = _importlib.import_module(module)
    value = mod if name == "errors" else getattr(mod, name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(__all__) | {n for n in globals() if n.startswith("__")})
