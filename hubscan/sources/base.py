"""What every source shares: the interface, fetch accounting, and which files are weights.

A *source* turns a URI into ``ModelRef``s (cheaply: no weight bytes) and later opens one
``ModelRef`` as a stream of ``TensorRef``s. Sources register by URI scheme in
``hubscan.sources`` (``hf``, ``tv``, ``hf-cache``, ``file``), like fsspec backends.
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Protocol, runtime_checkable

from ..refs import ModelRef, TensorRef

__all__ = [
    "FetchStats",
    "ModelSource",
    "SAFETENSORS_SUFFIX",
    "PICKLE_SUFFIXES",
    "is_weight_file",
    "select_weight_files",
    "matches_files",
]

SAFETENSORS_SUFFIX = ".safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth")


@dataclass
class FetchStats:
    """What fetching a model cost: requests per rate-limit class, bytes, retries.

    One instance per unit of work (the engine passes it to ``open_model`` and records it in
    the ``models`` row). Updated from the thread that fetches; ``add`` merges instances.

    Attributes:
        api_calls: ``/api/…`` requests sent (the Hub's scarce ``api`` quota).
        resolve_calls: ``/{repo}/resolve/…`` requests sent (the ``resolve`` quota).
        other_calls: requests to other URLs (CDN redirects, torchvision mirrors).
        bytes_fetched: response body bytes received (all attempts, partial ones included).
        retries: requests repeated after a 429/5xx/reset/cut.
        range_requests: ranged reads (header reads, resumes, subsets), counted once per
            logical request even when it is redirected to a CDN.
        resumes: streams continued from the last complete tensor after a cut.
        files_verified: files whose sha256 was checked against the hub's metadata.
        cache_hits: files read from a local cache instead of the network.
        notes: facts worth a line in the ``models`` row (e.g. "pickle downloaded whole").
    """

    api_calls: int = 0
    resolve_calls: int = 0
    other_calls: int = 0
    bytes_fetched: int = 0
    retries: int = 0
    range_requests: int = 0
    resumes: int = 0
    files_verified: int = 0
    cache_hits: int = 0
    notes: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count_call(self, call_class: str) -> None:
        with self._lock:
            if call_class == "api":
                self.api_calls += 1
            elif call_class == "resolve":
                self.resolve_calls += 1
            else:
                self.other_calls += 1

    def add_bytes(self, n: int) -> None:
        with self._lock:
            self.bytes_fetched += n

    def bump(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def add(self, other: FetchStats) -> None:
        for f in self.as_dict():
            self.bump(f, getattr(other, f))
        self.notes.extend(other.notes)

    def as_dict(self) -> dict[str, int]:
        """The counters (not the notes), e.g. for a JSON column or a benchmark file."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if not f.name.startswith("_") and f.name != "notes"}


@runtime_checkable
class ModelSource(Protocol):
    """One backend: ``resolve`` URIs, ``list`` a catalogue, ``open`` a model's tensors."""

    scheme: str

    def resolve(self, uri: str, **kw) -> list[ModelRef]: ...

    def list(self, **filters) -> Iterator[ModelRef]: ...

    def open(
        self,
        ref: ModelRef,
        *,
        allow_bin: bool = True,
        stats: FetchStats | None = None,
        files: Sequence[str] | None = None,
    ) -> Iterator[TensorRef]: ...


# Files that carry weights but are not "the model" (optimizer/training state, adapters we
# cannot attach, ONNX/TF/Flax duplicates are excluded by suffix already).
_NOT_MODEL = ("optimizer", "scheduler", "training_args", "rng_state", "scaler")


def is_weight_file(path: str, *, allow_bin: bool = True) -> bool:
    """Whether a repo path is a weight file hubscan reads (safetensors, or pickles if allowed)."""
    name = path.rsplit("/", 1)[-1].lower()
    if any(name.startswith(p) for p in _NOT_MODEL):
        return False
    if name.endswith(SAFETENSORS_SUFFIX):
        return True
    return allow_bin and name.endswith(PICKLE_SUFFIXES)


def select_weight_files(paths: Iterable[str], *, allow_bin: bool = True) -> list[str]:
    """The weight files of one repo listing, in reading order.

    Why a rule and not "every weight file": repos often ship the same weights twice
    (``model.safetensors`` and ``pytorch_model.bin``; shards and a consolidated copy in a
    sub-folder; ONNX exports). Reading both doubles the bytes for no new information. So:
    top-level safetensors if any; else top-level pickles (when allowed); else the same rule
    one folder down (diffusers layouts put each component in its own folder).
    """
    paths = sorted(set(paths))
    top = [p for p in paths if "/" not in p]
    for group in (top, [p for p in paths if p.count("/") == 1]):
        st = [p for p in group if is_weight_file(p, allow_bin=False)]
        if st:
            return st
        if allow_bin:
            pk = [p for p in group if is_weight_file(p, allow_bin=True)]
            if pk:
                return pk
    return []


def matches_files(path: str, patterns: Sequence[str] | None) -> bool:
    """``files=`` filter of ``open_model``: exact names or fnmatch globs; ``None`` = all."""
    if patterns is None:
        return True
    return any(path == p or fnmatch.fnmatchcase(path, p) for p in patterns)
