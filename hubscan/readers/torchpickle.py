"""Pickled torch checkpoints (``.bin``/``.pt``/``.pth``), read without ever running their code.

A pickle is a program: unpickling an untrusted file can execute anything (``__reduce__``
→ ``os.system``). The only loader used here is ``torch.load(weights_only=True)``, whose
restricted unpickler accepts tensors, storages, containers and primitives and *refuses*
any other global before calling it. A refusal becomes :class:`~hubscan.errors.UnsafeCheckpoint`
naming the global; there is no "trusted" switch, because a scanner has no trusted input.

Memory: zip-format files (every ``torch.save`` since 1.6) are opened with ``mmap=True``, so
opening reads only the pickle, not the storages. Each storage's byte offset in the zip
(storages are stored uncompressed) is then located and checked, torch's whole-file mapping
is released, and ``load()`` reads just that tensor's bytes through a short-lived mmap, as
for safetensors — a full read costs one tensor of memory, not the file. Legacy (pre-1.6)
pickles cannot be mapped; they are still read through the restricted unpickler, but whole
into memory (they are old and small in practice). TorchScript archives contain code and are
refused.

Training checkpoints wrap the weights (``{"state_dict": …, "optimizer": …, "epoch": 3}``):
known wrapper keys are unwrapped, nested dicts flattened to dotted names, and entries that
are not tensors are ignored with a note.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import re
import struct
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..dtypes import DTYPES, byte_size, dtype_name, torch_dtype, view_bytes_as
from ..errors import MalformedCheckpoint, NotFound, UnsafeCheckpoint
from ..refs import TensorRef
from ._mmapio import read_range

__all__ = ["WRAPPER_KEYS", "safe_torch_load", "read_torch_pickle", "PickleTensorLoader", "StorageSpan"]

log = logging.getLogger("hubscan.readers")

#: Keys under which training code nests the weights, tried in this order when the top
#: level holds no tensor itself (PyTorch Lightning, torchvision references, timm, DeepSpeed…).
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network",
                "model_ema", "ema", "params")

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"
_REFUSED = re.compile(r"Unsupported (?:global|class): (?:GLOBAL )?([^\s]+)")


def _kind(path: Path) -> str:
    """``zip`` (mmap-able torch.save), ``legacy`` (a bare pickle stream) or ``unknown``."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head == _ZIP_MAGIC:
        return "zip"
    if head[:1] == _PICKLE_PROTO:
        return "legacy"
    return "unknown"


def safe_torch_load(path: str | os.PathLike[str]) -> Any:
    """``torch.load(weights_only=True, mmap=…, map_location="cpu")`` with our error classes.

    Raises:
        UnsafeCheckpoint: the pickle needs a global outside torch's weights-only allowlist
            (the global is named; it was *not* called), or the file is a TorchScript archive.
        MalformedCheckpoint: not a torch checkpoint, truncated, or otherwise unreadable.
        NotFound: the file does not exist.
    """
    path = Path(path)
    try:
        kind = _kind(path)
    except FileNotFoundError:
        raise NotFound(f"{path}: no such file") from None
    if kind == "unknown":
        raise MalformedCheckpoint(
            f"{path}: not a torch checkpoint (neither a torch.save zip archive nor a pickle)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # protocol / TypedStorage chatter, not news
            return torch.load(path, weights_only=True, mmap=(kind == "zip"), map_location="cpu")
    except pickle.UnpicklingError as exc:
        refused = _REFUSED.search(str(exc))
        if refused:
            raise UnsafeCheckpoint(
                f"{path}: refused: loading it would need full unpickling (it calls "
                f"{refused.group(1)}, outside torch's weights-only allowlist); only "
                "torch.load(weights_only=True) is allowed, and the code was not run"
            ) from None
        raise MalformedCheckpoint(f"{path}: unreadable pickle: {_first_line(exc)}") from None
    except RuntimeError as exc:
        if "TorchScript" in str(exc):
            raise UnsafeCheckpoint(
                f"{path}: refused: a TorchScript archive contains code; "
                "only plain state dicts are read"
            ) from None
        raise MalformedCheckpoint(f"{path}: unreadable torch checkpoint: {_first_line(exc)}") from None
    except Exception as exc:  # torch.load on hostile bytes raises a zoo of types
        raise MalformedCheckpoint(
            f"{path}: unreadable torch checkpoint: {type(exc).__name__}: {_first_line(exc)}"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


@dataclass(frozen=True)
class StorageSpan:
    """Where a tensor's bytes are in a torch zip file, so it can be read like a safetensors
    tensor: the storage record's file offset and the view's geometry (elements)."""

    record_offset: int
    storage_nbytes: int
    storage_offset: int
    stride: tuple[int, ...]


def _zip_records(path: Path) -> dict[int, int]:
    """File offset → size of every uncompressed ``…/data/…`` record (torch's storages)."""
    records: dict[int, int] = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as f:
        for info in zf.infolist():
            if "/data/" not in info.filename or info.compress_type != zipfile.ZIP_STORED:
                continue
            f.seek(info.header_offset)
            local = f.read(30)
            if len(local) < 30 or local[:4] != _ZIP_MAGIC:
                continue
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            if info.file_size:
                records[info.header_offset + 30 + name_len + extra_len] = info.file_size
    return records


def _storage_offsets(path: Path, tensors: list[torch.Tensor]) -> dict[int, int]:
    """Storage data pointer → file offset of its record, for the tensors of an mmap'd zip.

    ``torch.load(mmap=True)`` maps the whole file once and slices every storage out of it at
    its record's offset, so ``pointer − record offset`` is one constant for all storages.
    Find it and check it against *every* storage (pointer and size); on any doubt return
    ``{}`` and the caller copies from torch's mapping instead.
    """
    storages = {}
    for t in tensors:
        s = t.untyped_storage()
        if s.nbytes():
            storages[s.data_ptr()] = s.nbytes()
    if not storages:
        return {}
    try:
        records = _zip_records(path)
    except Exception:  # zipfile on odd archives: BadZipFile, NotImplementedError, …
        return {}  # torch could read it, so fall back to copying from torch's mapping
    first = min(storages)
    for candidate in sorted(records)[:64]:
        base = first - candidate
        if all(records.get(ptr - base) == nbytes for ptr, nbytes in storages.items()):
            return {ptr: ptr - base for ptr in storages}
    return {}


class PickleTensorLoader:
    """``TensorRef.load`` for a pickled checkpoint: a contiguous copy of one tensor.

    Zip-format files: the tensor's bytes are located in the file when it is opened
    (:class:`StorageSpan`) and read through a short-lived mmap of just that range, exactly
    like safetensors tensors — memory stays at one tensor over a full read. Otherwise
    (legacy pickles, quantized dtypes) it holds the tensor torch loaded and copies it.
    Pickling the loader (to ship a ``TensorRef`` to another process) keeps only the
    location; the receiver reads the span, or re-opens the file through
    :func:`safe_torch_load` and walks ``keys``.
    """

    __slots__ = ("path", "keys", "span", "dtype", "shape", "file_size", "_tensor")

    def __init__(self, path: str, keys: tuple[Any, ...], span: StorageSpan | None = None,
                 dtype: str | None = None, shape: tuple[int, ...] = (),
                 file_size: int | None = None, tensor: torch.Tensor | None = None) -> None:
        self.path, self.keys, self.span = path, keys, span
        self.dtype, self.shape, self.file_size = dtype, shape, file_size
        self._tensor = tensor

    def __call__(self) -> torch.Tensor:
        if self.span is not None and self.dtype is not None:
            return _read_span(self.path, self.span, self.dtype, self.shape, self.file_size,
                              what=f"tensor {'.'.join(map(str, self.keys))!r}")
        tensor, self._tensor = self._tensor, None  # drop our reference: free the memory
        if tensor is None:
            obj = safe_torch_load(self.path)
            for key in self.keys:
                obj = obj[key]
            tensor = obj
        return tensor.detach().clone(memory_format=torch.contiguous_format)

    def __reduce__(self) -> tuple[Any, ...]:
        return (PickleTensorLoader,
                (self.path, self.keys, self.span, self.dtype, self.shape, self.file_size))

    def __repr__(self) -> str:
        return f"PickleTensorLoader({self.path!r}, {self.keys!r})"


def _read_span(path: str, span: StorageSpan, dtype: str, shape: tuple[int, ...],
               file_size: int | None, *, what: str) -> torch.Tensor:
    itemsize = byte_size(dtype, (1,))
    if math.prod(shape) == 0:
        return torch.empty(shape, dtype=torch_dtype(dtype))
    extent = 1 + sum((n - 1) * st for n, st in zip(shape, span.stride))
    if (span.storage_offset + extent) * itemsize > span.storage_nbytes:
        raise MalformedCheckpoint(f"{path}: {what} reaches past its storage")
    raw = read_range(path, span.record_offset + span.storage_offset * itemsize,
                     extent * itemsize, file_size=file_size, what=what)
    flat = view_bytes_as(raw, dtype, (extent,))
    return flat.as_strided(shape, span.stride).contiguous()


def _unwrap(obj: Any, notes: list[str]) -> tuple[Any, tuple[Any, ...]]:
    """Descend through wrapper keys while the current level holds no tensor."""
    keys: tuple[Any, ...] = ()
    while isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        key = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if key is None:
            break
        others = [str(k) for k in obj if k != key]
        notes.append(
            f"unwrapped {key!r}" + (f"; ignored {_names(others)}" if others else "")
        )
        obj, keys = obj[key], keys + (key,)
    return obj, keys


def _names(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def read_torch_pickle(path: str | os.PathLike[str], *,
                      notes: list[str] | None = None) -> Iterator[TensorRef]:
    """Open a pickled checkpoint safely now; yield its tensors lazily.

    The file is opened (restricted unpickling, storages mapped, not read) in this call, so
    an unsafe or malformed file raises before anything is yielded. Names are the state-dict
    keys below any unwrapped wrapper, nested dicts joined with ``.``.

    Raises:
        UnsafeCheckpoint, MalformedCheckpoint, NotFound: see :func:`safe_torch_load`;
            ``MalformedCheckpoint`` also when the top level is not a dict.
    """
    notes = notes if notes is not None else []
    file = str(path)
    kind = _kind(Path(path))
    obj = safe_torch_load(path)
    if not isinstance(obj, Mapping):
        raise MalformedCheckpoint(
            f"{file}: top-level object is a {type(obj).__name__}, not a state dict"
        )
    local_notes: list[str] = []
    root, root_keys = _unwrap(obj, local_notes)
    ignored: list[str] = []

    def walk(node: Mapping[Any, Any], keys: tuple[Any, ...], prefix: str) -> None:
        for k, v in node.items():
            name = f"{prefix}{k}"
            if isinstance(v, torch.Tensor):
                if v.layout != torch.strided:
                    ignored.append(f"{name} ({v.layout})")
                    continue
                found.append((name, keys + (k,), v))
            elif isinstance(v, Mapping):
                walk(v, keys + (k,), f"{name}.")
            else:
                ignored.append(f"{name} ({type(v).__name__})")

    found: list[tuple[str, tuple[Any, ...], torch.Tensor]] = []
    walk(root, root_keys, "")
    del obj, root
    # Zip files: locate every storage in the file, then let torch's mapping go.
    offsets = _storage_offsets(Path(path), [t for _, _, t in found]) if kind == "zip" else {}
    file_size = os.path.getsize(path)
    refs = []
    for name, keys, t in found:
        dtype = dtype_name(t.dtype)
        info = DTYPES.get(dtype)
        span = None
        if info is not None and info.torch is not None and (
                t.numel() == 0 or t.untyped_storage().data_ptr() in offsets):
            span = StorageSpan(offsets.get(t.untyped_storage().data_ptr(), 0),
                               t.untyped_storage().nbytes(), t.storage_offset(), tuple(t.stride()))
        offset = None
        if span is not None and t.numel() and t.is_contiguous():
            offset = span.record_offset + span.storage_offset * t.element_size()
        refs.append(TensorRef(
            name=name,
            shape=tuple(t.shape),
            dtype=dtype,
            file=file,
            load=PickleTensorLoader(file, keys, span, dtype, tuple(t.shape), file_size,
                                    tensor=None if span is not None else t),
            offset=offset,
            nbytes=t.numel() * t.element_size(),
        ))
    found.clear()
    t = None  # the last loop tensor would otherwise keep torch's whole-file mapping alive
    if ignored:
        local_notes.append(f"ignored {len(ignored)} non-tensor entries: {_names(ignored)}")
    if not refs:
        local_notes.append("no tensors found")
    for note in local_notes:
        log.info("%s: %s", file, note)
        notes.append(f"{file}: {note}")
    return iter(refs)
