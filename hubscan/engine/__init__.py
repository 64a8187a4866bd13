"""Run many models: the scan driver and its executors (local threads, Ray actors).

``run_scan(spec)`` plans a spec (``plan``), runs its models on an executor (``local`` or
``ray_exec``) and writes each result to the lake (``scan``). Imported lazily: ``import
hubscan.engine`` does not import Ray.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "run_scan": "hubscan.engine.scan",
    "ScanSummary": "hubscan.engine.scan",
    "ScanProgress": "hubscan.engine.scan",
    "plan_scan": "hubscan.engine.plan",
    "Plan": "hubscan.engine.plan",
    "LocalExecutor": "hubscan.engine.local",
    "RayExecutor": "hubscan.engine.ray_exec",
    "Task": "hubscan.engine.base",
    "Outcome": "hubscan.engine.base",
    "WorkerConfig": "hubscan.engine.base",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hubscan.engine' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
