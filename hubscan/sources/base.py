"""What every source shares: the interface and which files are weights.

A *source* turns a URI into ``ModelRef``s (cheaply: no weight bytes) and later opens one
``ModelRef`` as a stream of ``TensorRef``s. Sources register by URI scheme in
``hubscan.sources`` (``hf``, ``tv``, ``hf-cache``, ``file``), like fsspec backends.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol, runtime_checkable

from ..net.stats import FetchStats  # re-exported: sources count into it
from ..refs import ModelRef, TensorRef

__all__ = [
    "FetchStats",
    "ModelSource",
    "SAFETENSORS_SUFFIX",
    "GGUF_SUFFIX",
    "PICKLE_SUFFIXES",
    "is_weight_file",
    "select_weight_files",
    "matches_files",
]

SAFETENSORS_SUFFIX = ".safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth")
GGUF_SUFFIX = ".gguf"


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
    """Whether a repo path is a weight file hubscan reads (safetensors, GGUF, or pickles if
    allowed). PEFT adapters (``adapter_model.safetensors``/``.bin``) are weight files."""
    name = path.rsplit("/", 1)[-1].lower()
    if any(name.startswith(p) for p in _NOT_MODEL):
        return False
    if name.endswith((SAFETENSORS_SUFFIX, GGUF_SUFFIX)):
        return True
    return allow_bin and name.endswith(PICKLE_SUFFIXES)


def select_weight_files(paths: Iterable[str], *, allow_bin: bool = True, gguf: str = "preferred") -> list[str]:
    """The weight files of one repo listing, in reading order.

    Why a rule and not "every weight file": repos often ship the same weights twice
    (``model.safetensors`` and ``pytorch_model.bin``; shards and a consolidated copy in a
    sub-folder; ONNX exports; one GGUF file per quantisation level). Reading both doubles
    the bytes for no new information. So: top-level safetensors if any; else top-level
    pickles (when allowed); else top-level GGUF files — the files of ONE quantisation level,
    the most preferred of ``readers.gguf.GGUF_TYPE_PREFERENCE`` (full precision, then the
    finest quantisation), or every level with ``gguf="all"``; else the same rule one folder
    down (diffusers layouts put each component in its own folder).
    """
    from ..readers.gguf import choose_gguf_files

    paths = sorted(set(paths))
    top = [p for p in paths if "/" not in p]
    for group in (top, [p for p in paths if p.count("/") == 1]):
        st = [p for p in group if is_weight_file(p, allow_bin=False) and not p.lower().endswith(GGUF_SUFFIX)]
        if st:
            return st
        if allow_bin:
            pk = [p for p in group if p.lower().endswith(PICKLE_SUFFIXES) and is_weight_file(p, allow_bin=True)]
            if pk:
                return pk
        gg = choose_gguf_files([p for p in group if is_weight_file(p)], all_levels=gguf == "all")
        if gg:
            return gg
    return []


def matches_files(path: str, patterns: Sequence[str] | None) -> bool:
    """``files=`` filter of ``open_model``: exact names or fnmatch globs; ``None`` = all."""
    if patterns is None:
        return True
    return any(path == p or fnmatch.fnmatchcase(path, p) for p in patterns)
