"""What analysing one model produces: the rows of every lake table for that unit of work.

A ``ModelResult`` is the unit the engine hands to the lake writer. It is complete or it is
not written: the writer puts each table's rows in one file per unit with a deterministic
name, so a retried unit overwrites its own files and the views never show a row twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["LayerResult", "ModelResult"]


@dataclass
class LayerResult:
    """One tensor's outcome: a ``layers`` row (column → value) and, if analysed, its ESD.

    ``row`` holds the ``layers`` schema columns that the analysis knows (tensor, longname,
    kind, shape, status, metrics …); the pipeline adds file_sha256, analysis_version,
    model_key and written_at.
    """

    row: dict[str, Any]
    evals: np.ndarray | None = None  # float64, ascending; None when skipped/failed


@dataclass
class ModelResult:
    """All rows one model contributes to the lake (see ``schemas/*.json``)."""

    model: dict[str, Any]
    model_files: list[dict[str, Any]] = field(default_factory=list)
    layers: list[dict[str, Any]] = field(default_factory=list)
    spectra: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    lineage: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    deltas: list[dict[str, Any]] = field(default_factory=list)
    source: str = "local"
    scan_date: str = ""  # YYYY-MM-DD partition value

    @property
    def model_key(self) -> str:
        return self.model["model_key"]
