"""A model's tensors by name, read on demand — the base model's side of a fine-tune delta.

A fine-tune streams past one tensor at a time; for each of its matrices the base model's
same-named matrix is needed *now*, and nothing else of the base. So a ``TensorLookup``
indexes the base's weight files by their headers and reads each asked tensor alone:

- **Hub files not on disk**: the safetensors header by one Range request, then the wanted
  tensors by Range reads that continue one response while asked in file order
  (``readers.stream.RangedFile``) — a base is never downloaded whole when only distances are
  asked. Pickled base weights (``.bin``) cannot be read by range: they are downloaded once
  (``allow_bin``) or the lookup has no tensors from them;
- **local folders, the HF cache, torchvision's cache**: the local readers, whose ``load()``
  copies one tensor out of a short-lived mmap (pickles: ``torch.load(weights_only=True,
  mmap=True)``).

Memory: one base tensor at a time (the caller drops it after use), plus headers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import UnsafeCheckpoint
from ..refs import ModelRef, TensorRef
from .base import SAFETENSORS_SUFFIX, FetchStats

__all__ = ["TensorLookup", "Wanted"]

#: ``f(name, shape, dtype) -> bool``: the tensors a caller will ask for (for read planning).
Wanted = Callable[[str, tuple[int, ...], str], bool]


class TensorLookup:
    """``lookup.get(name)`` → the base's tensor (a loaded ``TensorRef``) or None if it has none.

    Files are indexed lazily, on the first ``get``: a base whose fine-tune shares no tensor
    costs nothing. ``close()`` ends open responses and removes downloaded pickles.

    Args:
        ref: the model to read (``hf``, ``tv`` or ``local``).
        wanted: the tensors that will be asked for (``Wanted``); remote reads are planned
            around them.
        allow_bin: read pickled weights (remote ones are then downloaded whole).
        stats: counts requests and bytes.
        opener: ``open_model`` (reads tv/local files, whose ``load()`` is a lazy mmap copy).
        hf: the ``HfSource`` (its endpoint, and which files it has on disk).
    """

    def __init__(self, ref: ModelRef, *, wanted: Wanted | None = None, allow_bin: bool = False,
                 stats: FetchStats | None = None, opener: Callable[..., Iterator[TensorRef]],
                 hf: Any = None) -> None:
        self.ref = ref
        self._open = opener
        self._hf = hf
        self.wanted = wanted
        self.allow_bin = allow_bin
        self.stats = stats
        self._index: dict[str, tuple[Any, str]] | None = None  # name -> (reader, file)
        self._ranged: list[Any] = []
        self._tmp: list[Path] = []
        self.notes: list[str] = []

    def __enter__(self) -> "TensorLookup":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- index

    def _build(self) -> dict[str, tuple[Any, str]]:
        index: dict[str, tuple[Any, str]] = {}
        for wf in self.ref.files:
            for name, reader in self._file_readers(wf):
                index.setdefault(name, (reader, wf.path))
        return index

    def _file_readers(self, wf: Any) -> Iterator[tuple[str, Any]]:
        ref = self.ref
        if ref.source == "hf":
            hf = self._hf
            local = hf.local_path(ref, wf)
            if local is not None:
                yield from self._local(local, wf.path)
                return
            from ..readers.stream import RemoteFile
            from .hf import resolve_url

            rf = RemoteFile(url=wf.url or resolve_url(ref.repo_id, ref.revision, wf.path, endpoint=hf.endpoint),
                            path=wf.path, size=wf.size, sha256=wf.sha256, revision=ref.revision)
            if wf.path.endswith(SAFETENSORS_SUFFIX):
                from ..readers.stream import RangedFile

                ranged = RangedFile(rf, wanted=self.wanted, stats=self.stats)
                self._ranged.append(ranged)
                for name in ranged.names():
                    yield name, ("ranged", ranged)
                return
            if not self.allow_bin:
                self.notes.append(f"{ref.uri}: {wf.path} is a pickle and allow_bin is off: no base tensors from it")
                return
            from ..readers.stream import download_file

            tmp = download_file(rf, stats=self.stats)
            self._tmp.append(tmp)
            yield from self._local(tmp, wf.path)
            return
        if not self.allow_bin and not wf.path.endswith(SAFETENSORS_SUFFIX):
            raise UnsafeCheckpoint(f"{ref.uri}: {wf.path} is a pickle; pickles are disabled (allow_bin=False)")
        for t in self._open(ref, allow_bin=self.allow_bin, stats=self.stats, files=[wf.path]):
            yield t.name, ("local", t)

    def _local(self, path: Path, name: str) -> Iterator[tuple[str, Any]]:
        from ..readers import read_checkpoint

        for t in read_checkpoint(path, allow_pickle=self.allow_bin):
            yield t.name, ("local", dataclasses.replace(t, file=name))

    # -- reads

    def names(self) -> set[str]:
        if self._index is None:
            self._index = self._build()
        return set(self._index)

    def get(self, name: str) -> TensorRef | None:
        """The base tensor named ``name`` (its ``load()`` returns it), or None."""
        if self._index is None:
            self._index = self._build()
        hit = self._index.get(name)
        if hit is None:
            return None
        (kind, obj), _file = hit
        if kind == "ranged":
            return obj.read(name)
        return obj

    def close(self) -> None:
        for r in self._ranged:
            r.close()
        for p in self._tmp:
            p.unlink(missing_ok=True)
        self._tmp.clear()
