"""Where models come from: enumerate them cheaply, pin each to a revision, open its tensors.

URI forms (``resolve``):

* ``hf://owner/name[@rev]`` — a Hugging Face Hub repo at a commit (default: ``main``'s);
* ``tv://resnet50[:IMAGENET1K_V2]`` — a torchvision builder and weight enum (globs allowed);
* ``hf-cache://[owner/name][@rev]`` — models already in the local HF cache;
* a path, ``file://`` path or glob — local checkpoints (file, shard index, folder, folders).

Sources register by scheme (``register_source``); each one implements ``ModelSource``:
``resolve(uri)``, ``list(**filters)``, ``open(ref, …)``.

Contracts for consumers of ``open_model``:

* tensors of all the model's weight files are yielded in file order;
  ``TensorRef.file`` equals the ``WeightFile.path`` of the file it came from;
* a file whose bytes do not match the hub's sha256/size raises ``IntegrityError`` *after*
  its last tensor and before any tensor of the next file: drop every result derived from
  that file (see ``hubscan.readers.stream``);
* errors are ``hubscan.errors`` classes (``GatedRepo``, ``NotFound``, ``RateLimited``,
  ``TransientFetchError``, ``MalformedCheckpoint``, ``UnsafeCheckpoint`` …).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from ..refs import ModelRef, TensorRef
from .base import FetchStats, ModelSource, is_weight_file, select_weight_files

__all__ = [
    "FetchStats",
    "ModelSource",
    "resolve",
    "list_models",
    "open_model",
    "get_source",
    "register_source",
    "source_schemes",
    "is_weight_file",
    "select_weight_files",
    "adapter_links",
    "tensor_lookup",
]

_FACTORIES: dict[str, Any] = {}
_INSTANCES: dict[str, ModelSource] = {}
#: ``ModelRef.source`` → the scheme whose ``open`` reads it.
_SOURCE_TO_SCHEME = {"hf": "hf", "tv": "tv", "local": "file"}


def register_source(scheme: str, factory: Any, *, source_name: str | None = None) -> None:
    """Register a source class/factory for ``scheme://`` URIs (third-party sources too).

    ``source_name`` is the ``ModelRef.source`` its refs carry, if ``open_model`` should
    route them to it.
    """
    _FACTORIES[scheme] = factory
    _INSTANCES.pop(scheme, None)
    if source_name:
        _SOURCE_TO_SCHEME[source_name] = scheme


def _builtin() -> None:
    if _FACTORIES:
        return
    from .hf import HfSource
    from .local import HfCacheSource, LocalSource
    from .torchvision import TorchvisionSource

    register_source("hf", HfSource)
    register_source("tv", TorchvisionSource)
    register_source("hf-cache", HfCacheSource)
    register_source("file", LocalSource)


def source_schemes() -> tuple[str, ...]:
    _builtin()
    return tuple(_FACTORIES)


def get_source(scheme: str) -> ModelSource:
    """The (shared) source object for a scheme: ``hf``, ``tv``, ``hf-cache``, ``file``."""
    _builtin()
    if scheme == "local":
        scheme = "file"
    if scheme not in _INSTANCES:
        if scheme not in _FACTORIES:
            raise ValueError(f"unknown source {scheme!r}; known: {', '.join(_FACTORIES)}")
        _INSTANCES[scheme] = _FACTORIES[scheme]()
    return _INSTANCES[scheme]


def _scheme_of(uri: str) -> str:
    _builtin()
    if "://" in uri:
        scheme = uri.split("://", 1)[0]
        if scheme in _FACTORIES:
            return scheme
        raise ValueError(f"unknown URI scheme {scheme!r} in {uri!r}; known: {', '.join(_FACTORIES)}")
    return "file"


def resolve(uri: str, **kw: Any) -> list[ModelRef]:
    """The models a URI names, pinned to immutable revisions — no weight bytes fetched.

    Example:
        >>> resolve("tv://resnet18")[0].revision            # doctest: +SKIP
        'IMAGENET1K_V1-f37072fd'
    """
    return get_source(_scheme_of(uri)).resolve(uri, **kw)


def list_models(source: str, **filters: Any) -> Iterator[ModelRef]:
    """A source's catalogue: ``list_models("hf", author="acme", limit=100)``,
    ``list_models("tv", family="vgg")``, ``list_models("local", path="ckpts/")``,
    ``list_models("hf-cache")``. Filters are the source's ``list`` keywords."""
    return get_source(source).list(**filters)


def open_model(
    ref: ModelRef,
    *,
    allow_bin: bool = True,
    stats: FetchStats | None = None,
    files: Sequence[str] | None = None,
) -> Iterator[TensorRef]:
    """Every tensor of ``ref``'s weight files, streamed (hf) or read locally (tv, local).

    Args:
        allow_bin: read pickled ``.bin/.pt/.pth`` weights (only ever via
            ``torch.load(weights_only=True)``; remote pickles are downloaded whole first).
        stats: receives request counts, bytes fetched, retries, resumes, notes.
        files: only these weight files (names or globs).
    """
    _builtin()
    scheme = _SOURCE_TO_SCHEME.get(ref.source, ref.source)
    return get_source(scheme).open(ref, allow_bin=allow_bin, stats=stats, files=files)


def adapter_links(ref: ModelRef, *, stats: FetchStats | None = None) -> tuple[Any, ...]:
    """The base an adapter repo's ``adapter_config.json`` names, for sources that read it only
    when a model is analysed (the Hub: 1 small request; local folders read it when resolved,
    so their ``ref.bases`` already hold it)."""
    _builtin()
    scheme = _SOURCE_TO_SCHEME.get(ref.source, ref.source)
    fetch = getattr(get_source(scheme), "adapter_links", None)
    return tuple(fetch(ref, stats=stats)) if fetch is not None else ()


def tensor_lookup(ref: ModelRef, *, wanted: Any = None, allow_bin: bool = False,
                  stats: FetchStats | None = None) -> Any:
    """A ``TensorLookup``: ``ref``'s tensors by name, each read on demand (Range reads on the
    Hub, mmap locally) — the base model's side of fine-tune deltas (see ``sources.lookup``)."""
    from .lookup import TensorLookup

    _builtin()
    return TensorLookup(ref, wanted=wanted, allow_bin=allow_bin, stats=stats, opener=open_model,
                        hf=get_source("hf") if ref.source == "hf" else None)
