"""Analysis options, and the analysis version that makes results reproducible and idempotent.

Every row in the lake records the ``analysis_version`` it was computed with. It is derived
from the code's ``ANALYSIS_CODE_VERSION`` (bump it when a metric or a fix changes numbers)
and from the options that change numbers, so two runs with different options never
overwrite each other and an incremental scan knows what it already has.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Literal

from .refs import short_hash

__all__ = ["AnalysisOptions", "DeltaOptions", "DISTANCE_METHODS", "Convention", "ANALYSIS_CODE_VERSION"]

#: Bump when any computed number changes for the same options (new metric, bug fix).
ANALYSIS_CODE_VERSION = "1"

Convention = Literal["ww", "seed"]


@dataclass(frozen=True, kw_only=True)
class AnalysisOptions:
    """What to compute for each weight matrix (METHOD.md §0–§4).

    Defaults reproduce ``weightwatcher`` 0.7.7 ``analyze()`` (convention ``ww``).

    Attributes:
        convention: ``ww`` (σ², weightwatcher fitter) or ``seed`` (σ²/N, powerlaw 1.5 with
            ``xmax=max(evals)``). Recorded in every row.
        fitter: override the convention's power-law fitter (``ww``, ``seed``, ``truncated``).
        min_evals, max_evals, max_N: weightwatcher's skip rules (0.7.7 defaults).
        min_tail: minimum tail size for xmin candidates (None = weightwatcher behaviour).
        fix_fingers: ``None`` or ``"clip_xmax"`` (weightwatcher option).
        mp_fit: fit the Marchenko–Pastur bulk (sigma_mp, bulk_max, num_spikes, mp_softrank).
        compare: likelihood-ratio comparison against alternative distributions.
        keep_spectra: write eigenvalues to the ``spectra`` table.
        device: ``auto`` (cuda when available), ``cpu`` or ``cuda``.
        layers_include: optional regex; only matching tensor names are analysed.
    """

    convention: Convention = "ww"
    fitter: Literal["ww", "seed", "truncated"] | None = None
    min_evals: int = 8
    max_evals: int = 15000
    max_N: int = 50000
    min_tail: int | None = None
    fix_fingers: Literal["clip_xmax"] | None = None
    mp_fit: bool = True
    compare: bool = True
    keep_spectra: bool = True
    device: str = "auto"
    layers_include: str | None = None

    def __post_init__(self) -> None:
        if self.convention not in ("ww", "seed"):
            raise ValueError(f"convention must be 'ww' or 'seed', not {self.convention!r}")
        if self.fitter not in (None, "ww", "seed", "truncated"):
            raise ValueError(f"fitter must be ww|seed|truncated, not {self.fitter!r}")
        if self.min_evals < 1 or self.max_evals < self.min_evals:
            raise ValueError("need 1 <= min_evals <= max_evals")

    @property
    def effective_fitter(self) -> str:
        return self.fitter or self.convention

    def numeric_dict(self) -> dict:
        """The options that change computed numbers (``device``/``keep_spectra`` do not)."""
        d = dataclasses.asdict(self)
        for k in ("device", "keep_spectra"):
            d.pop(k)
        return d

    @property
    def analysis_version(self) -> str:
        """``<code version>-<convention>-<hash of numeric options>``, e.g. ``1-ww-3fa2c1d0``."""
        digest = short_hash(json.dumps(self.numeric_dict(), sort_keys=True), 8)
        return f"{ANALYSIS_CODE_VERSION}-{self.convention}-{digest}"


#: weightwatcher ``distances()`` methods (``hubscan.esd.distances``).
DISTANCE_METHODS = ("raw", "euclidean", "cka")


@dataclass(frozen=True, kw_only=True)
class DeltaOptions:
    """Fine-tune deltas: what is computed for a model whose base model is known (a spec's
    ``[deltas]`` table; docs/metrics.md "Fine-tune deltas").

    Not part of ``analysis_version``: the layer rows of a model do not depend on them, so
    turning deltas on never re-keys (or re-downloads) what the lake holds.

    Attributes:
        distances: read the base's same-named tensors (Range reads, never the whole base) and
            write a ``deltas`` row per matrix with weightwatcher's ``distances()``.
        methods: which of ``raw``, ``euclidean``, ``cka``. ``raw``/``euclidean`` cost one pass
            over the weights; ``cka`` one matrix product per matrix (about an eigen-solve).
        esd: also the ESD and power-law fit of ``W − W_base`` (weightwatcher ``base_model=``):
            one more eigen-solve per matrix.
    """

    distances: bool = False
    methods: tuple[str, ...] = ("raw", "euclidean")
    esd: bool = False

    def __post_init__(self) -> None:
        methods = tuple(self.methods)
        bad = [m for m in methods if m not in DISTANCE_METHODS]
        if bad or not methods:
            raise ValueError(f"methods must be a non-empty subset of {DISTANCE_METHODS}, not {list(self.methods)}")
        object.__setattr__(self, "methods", methods)

    @property
    def enabled(self) -> bool:
        return self.distances or self.esd
