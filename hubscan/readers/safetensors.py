"""safetensors files: a header we validate ourselves, then one tensor at a time via mmap.

Layout of the format (https://github.com/huggingface/safetensors):

    [8 bytes: N, unsigned little-endian] [N bytes: UTF-8 JSON header] [data section]

The header maps each tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}``
(offsets relative to the data section) plus an optional ``"__metadata__"`` of str → str.

Why parse it ourselves: a scanner reads files from strangers, and every later step trusts
the header (the HTTP reader plans byte ranges from it, ``load()`` maps byte spans). So every
rule is checked up front, *before any tensor is yielded*, and a violation is a
:class:`~hubscan.errors.MalformedCheckpoint` naming the tensor and the numbers involved.
:func:`parse_safetensors_header` is pure (bytes in, entries out) so the remote reader, which
gets the header through an HTTP Range request, applies exactly the same rules.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from ..dtypes import DTYPES, byte_size, torch_dtype, view_bytes_as
from ..errors import MalformedCheckpoint
from ..refs import TensorRef
from ._mmapio import read_range

__all__ = [
    "MAX_HEADER_BYTES",
    "PREFIX_BYTES",
    "SafetensorsEntry",
    "SafetensorsHeader",
    "header_length",
    "parse_safetensors_header",
    "read_safetensors_header",
    "read_safetensors",
    "load_safetensors_tensor",
]

log = logging.getLogger("hubscan.readers")

#: Bytes of the little-endian header-length prefix.
PREFIX_BYTES = 8
#: Largest header accepted; the safetensors library uses the same 100 MB bound. A real
#: header is ~100 bytes per tensor, so this allows ~1M tensors.
MAX_HEADER_BYTES = 100_000_000


@dataclass(frozen=True)
class SafetensorsEntry:
    """One validated header entry. ``begin``/``end`` are offsets into the *data section*."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


@dataclass(frozen=True)
class SafetensorsHeader:
    """A validated header of a local file: entries in offset order, and where data starts."""

    entries: tuple[SafetensorsEntry, ...]
    metadata: dict[str, str]
    header_length: int
    file_size: int

    @property
    def data_start(self) -> int:
        """Absolute file offset of the data section (``8 + N``)."""
        return PREFIX_BYTES + self.header_length

    @property
    def data_size(self) -> int:
        return self.file_size - self.data_start


def header_length(prefix: bytes, *, file_size: int | None = None,
                  max_header_bytes: int = MAX_HEADER_BYTES) -> int:
    """Decode and bound-check the 8-byte header-length prefix.

    Args:
        prefix: at least the first 8 bytes of the file.
        file_size: total file size when known (local file, HTTP Content-Length); the header
            must fit inside it.
        max_header_bytes: sanity cap on the header size.

    Raises:
        MalformedCheckpoint: fewer than 8 bytes, a zero length, a length above the cap or one
            that does not fit in the file.
    """
    if len(prefix) < PREFIX_BYTES:
        raise MalformedCheckpoint(
            f"file is {len(prefix)} bytes; a safetensors file starts with an 8-byte header length"
        )
    (n,) = struct.unpack("<Q", prefix[:PREFIX_BYTES])
    hint = ""
    if prefix[:2] == b"PK":
        hint = " (the file starts like a zip archive: a torch .bin/.pt, not safetensors?)"
    elif prefix[:1] == b"\x80":
        hint = " (the file starts like a pickle: a legacy torch file, not safetensors?)"
    if n < 2:  # "{}" is the smallest valid header
        raise MalformedCheckpoint(f"header length is {n}; the smallest valid header is 2 bytes{hint}")
    if n > max_header_bytes:
        raise MalformedCheckpoint(
            f"header length {n} exceeds the {max_header_bytes}-byte limit{hint}"
        )
    if file_size is not None and n > file_size - PREFIX_BYTES:
        raise MalformedCheckpoint(
            f"header length {n} exceeds the file: only {max(file_size - PREFIX_BYTES, 0)} bytes "
            f"follow the 8-byte prefix (truncated file?){hint}"
        )
    return n


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """``json`` hook: a repeated key could hide a tensor behind another, so it is an error."""
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise MalformedCheckpoint(f"header JSON repeats the key {key!r}")
        out[key] = value
    return out


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _entry(name: str, raw: object, data_size: int | None) -> SafetensorsEntry:
    """Validate one tensor entry of the header (everything but overlaps)."""
    where = f"tensor {name!r}"
    if not isinstance(raw, dict):
        raise MalformedCheckpoint(f"{where}: entry is {type(raw).__name__}, expected an object")
    missing = [k for k in ("dtype", "shape", "data_offsets") if k not in raw]
    if missing:
        raise MalformedCheckpoint(f"{where}: missing {', '.join(missing)}")
    dtype, shape, offsets = raw["dtype"], raw["shape"], raw["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        known = ", ".join(sorted(DTYPES))
        raise MalformedCheckpoint(f"{where}: unknown dtype {dtype!r} (known: {known})")
    if not isinstance(shape, list) or not all(_is_int(s) and s >= 0 for s in shape):
        raise MalformedCheckpoint(f"{where}: shape {shape!r} is not a list of non-negative integers")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(_is_int(o) for o in offsets)):
        raise MalformedCheckpoint(f"{where}: data_offsets {offsets!r} is not [begin, end] integers")
    begin, end = offsets
    if not 0 <= begin <= end:
        raise MalformedCheckpoint(f"{where}: data_offsets [{begin}, {end}] need 0 <= begin <= end")
    if data_size is not None and end > data_size:
        raise MalformedCheckpoint(
            f"{where}: data_offsets [{begin}, {end}] run past the data section, which holds "
            f"{data_size} bytes (offsets out of range, or a truncated file)"
        )
    try:
        expected = byte_size(dtype, shape)
    except MalformedCheckpoint as exc:
        raise MalformedCheckpoint(f"{where}: {exc}") from None
    if expected != end - begin:
        raise MalformedCheckpoint(
            f"{where}: shape {shape} of {dtype} needs {expected} bytes but data_offsets "
            f"[{begin}, {end}] span {end - begin}"
        )
    return SafetensorsEntry(name, dtype, tuple(shape), begin, end)


def parse_safetensors_header(header_bytes: bytes, data_size: int | None, *,
                             notes: list[str] | None = None,
                             ) -> tuple[list[SafetensorsEntry], dict[str, str]]:
    """Validate a safetensors JSON header; the pure core every safetensors reader shares.

    Rules: valid UTF-8; a JSON object without repeated keys; ``__metadata__``, if present,
    maps str → str; every other key is a tensor with a known dtype, a shape of non-negative
    ints and ``data_offsets`` ``[begin, end]`` with ``0 <= begin <= end <= data_size``;
    ``numel × dtype size == end − begin``; no two byte spans overlap. Gaps between spans and
    bytes after the last one are legal for us (the library rejects them) and are *noted*.

    Args:
        header_bytes: the ``N`` header bytes (without the 8-byte prefix).
        data_size: bytes in the data section (file size − 8 − N), or ``None`` when unknown
            (then the range check waits for the bytes themselves).
        notes: a list to which non-fatal findings (gaps, trailing bytes) are appended.

    Returns:
        ``(entries, metadata)`` with entries sorted by offset — the order a sequential
        reader meets them in.

    Raises:
        MalformedCheckpoint: the first rule broken, naming the tensor and the numbers.

    Example:
        >>> parse_safetensors_header(b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', 8)
        ([SafetensorsEntry(name='w', dtype='F32', shape=(2,), begin=0, end=8)], {})
    """
    if len(header_bytes) > MAX_HEADER_BYTES:
        raise MalformedCheckpoint(f"header of {len(header_bytes)} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        text = bytes(header_bytes).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedCheckpoint(f"header is not valid UTF-8: {exc}") from None
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates)
    except MalformedCheckpoint:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, int-digits limit, nesting
        raise MalformedCheckpoint(f"header is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(header, dict):
        raise MalformedCheckpoint(f"header JSON is a {type(header).__name__}, expected an object")

    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise MalformedCheckpoint("__metadata__ must map strings to strings")

    entries = sorted((_entry(name, raw, data_size) for name, raw in header.items()),
                     key=lambda e: (e.begin, e.end))
    cursor, previous = 0, None
    gaps = 0
    for e in entries:
        if e.begin < cursor:
            raise MalformedCheckpoint(
                f"tensor {e.name!r} bytes [{e.begin}, {e.end}] overlap tensor "
                f"{previous.name!r} bytes [{previous.begin}, {previous.end}]"  # type: ignore[union-attr]
            )
        gaps += e.begin - cursor
        cursor, previous = e.end, e
    if notes is not None:
        if gaps:
            notes.append(f"safetensors: {gaps} unused bytes between tensors")
        if data_size is not None and data_size > cursor:
            notes.append(f"safetensors: {data_size - cursor} bytes after the last tensor")
    return entries, metadata


def read_safetensors_header(path: str | os.PathLike[str], *,
                            notes: list[str] | None = None) -> SafetensorsHeader:
    """Read and validate the header of a local safetensors file (reads only the header).

    Raises:
        MalformedCheckpoint: any rule of :func:`parse_safetensors_header`, or a bad prefix;
            the message starts with the file's path.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            n = header_length(f.read(PREFIX_BYTES), file_size=size)
            header_bytes = f.read(n)
        entries, metadata = parse_safetensors_header(header_bytes, size - PREFIX_BYTES - n,
                                                     notes=notes)
    except MalformedCheckpoint as exc:
        raise MalformedCheckpoint(f"{path}: {exc}") from None
    return SafetensorsHeader(tuple(entries), metadata, n, size)


def load_safetensors_tensor(path: str, data_start: int, entry: SafetensorsEntry,
                            file_size: int | None = None) -> torch.Tensor:
    """One tensor of a local file, in its stored dtype, copied out of a short-lived mmap.

    Only the pages of this tensor are mapped (and only while copying), so memory stays at
    one tensor whatever the file size, and the file can be closed, moved or deleted after.

    Args:
        path, data_start, entry: where the bytes are (from :func:`read_safetensors_header`).
        file_size: the size seen when the header was validated; a file that changed size
            since is refused rather than mapped (mapping past a shrunken end is a SIGBUS).

    Raises:
        MalformedCheckpoint: the file changed size or is shorter than the tensor's span.
        CheckpointError: a packed sub-byte dtype (``F4``, ``F6_*``) that torch cannot hold.
    """
    torch_dtype(entry.dtype)
    raw = read_range(path, data_start + entry.begin, entry.nbytes, file_size=file_size,
                     what=f"tensor {entry.name!r}")
    return view_bytes_as(raw, entry.dtype, entry.shape)


def read_safetensors(path: str | os.PathLike[str], *,
                     notes: list[str] | None = None) -> Iterator[TensorRef]:
    """Validate a safetensors file's header now; yield its tensors (offset order) lazily.

    Validation happens in this call, so a malformed file raises before anything is
    yielded. ``TensorRef.load`` is a picklable ``functools.partial`` (no open handle), so
    refs can travel to another process and load there.
    """
    header = read_safetensors_header(path, notes=notes)
    file = str(path)
    refs = [
        TensorRef(
            name=e.name,
            shape=e.shape,
            dtype=e.dtype,
            file=file,
            load=functools.partial(load_safetensors_tensor, file, header.data_start, e,
                                   header.file_size),
            offset=header.data_start + e.begin,
            nbytes=e.nbytes,
        )
        for e in header.entries
    ]
    return iter(refs)
