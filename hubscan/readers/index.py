"""Sharded checkpoints: ``model.safetensors.index.json`` (or ``pytorch_model.bin.index.json``).

The index is ``{"metadata": {"total_size": …}, "weight_map": {tensor name: shard file}}``.
It is input from strangers like any header: shard names are checked not to escape the
checkpoint's folder (``../../etc/passwd``, absolute paths), every listed tensor must really
be in the shard that claims it, and a tensor name may appear in one shard only. Every
shard's header is validated before the first tensor is yielded.

:func:`parse_index` is pure, so the remote reader applies the same rules to an index it
downloaded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import MalformedCheckpoint, NotFound
from ..refs import TensorRef

__all__ = ["ShardIndex", "parse_index", "read_index", "read_sharded", "merge_file_refs"]

#: An index is a small JSON file; anything larger is not one.
MAX_INDEX_BYTES = 64_000_000


@dataclass(frozen=True)
class ShardIndex:
    """A validated shard index.

    Attributes:
        weight_map: tensor name → shard file name (relative to the index's folder).
        shards: the distinct shard names, sorted (``model-00001-of-00003…`` first), which
            is the order files are read in.
        metadata: the index's ``metadata`` object (``total_size`` …), as given.
    """

    weight_map: dict[str, str]
    shards: tuple[str, ...]
    metadata: dict[str, object] = field(default_factory=dict)


def _safe_shard_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise MalformedCheckpoint(f"index: shard name {name!r} is not a non-empty string")
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or "\\" in name or "\x00" in name:
        raise MalformedCheckpoint(
            f"index: shard name {name!r} points outside the checkpoint folder"
        )
    return name


def parse_index(data: bytes | str) -> ShardIndex:
    """Validate the JSON text of a shard index.

    Raises:
        MalformedCheckpoint: not a JSON object, no/empty ``weight_map``, non-string names,
            or a shard name that is absolute or contains ``..``.
    """
    if len(data) > MAX_INDEX_BYTES:
        raise MalformedCheckpoint(f"index: {len(data)} bytes exceeds {MAX_INDEX_BYTES}")
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise MalformedCheckpoint(f"index is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(obj, dict):
        raise MalformedCheckpoint(f"index JSON is a {type(obj).__name__}, expected an object")
    weight_map = obj.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise MalformedCheckpoint("index has no weight_map object (or it is empty)")
    checked = {}
    for tensor, shard in weight_map.items():
        checked[tensor] = _safe_shard_name(shard)
    metadata = obj.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise MalformedCheckpoint("index metadata is not an object")
    return ShardIndex(checked, tuple(sorted(set(checked.values()))), metadata)


def read_index(path: str | os.PathLike[str]) -> ShardIndex:
    """Read and validate a local index file (errors are prefixed with its path)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"{path}: no such file") from None
    try:
        return parse_index(data)
    except MalformedCheckpoint as exc:
        raise MalformedCheckpoint(f"{path}: {exc}") from None


def merge_file_refs(per_file: list[tuple[Path, list[TensorRef]]]) -> list[TensorRef]:
    """Concatenate the refs of several files of one checkpoint; a name may occur once."""
    seen: dict[str, Path] = {}
    out: list[TensorRef] = []
    for path, refs in per_file:
        for ref in refs:
            if ref.name in seen:
                raise MalformedCheckpoint(
                    f"tensor {ref.name!r} appears in both {seen[ref.name]} and {path}"
                )
            seen[ref.name] = path
            out.append(ref)
    return out


def read_sharded(index_path: str | os.PathLike[str],
                 open_file: Callable[[Path], Iterator[TensorRef]], *,
                 notes: list[str] | None = None) -> Iterator[TensorRef]:
    """Validate an index and all its shards now; yield every shard's tensors lazily.

    Args:
        index_path: the ``*.index.json`` file; shard names are relative to its folder.
        open_file: opens one shard (validating it) and returns its refs — the per-format
            reader, chosen by the caller.
        notes: receives non-fatal findings (tensors a shard has beyond the weight map).

    Raises:
        MalformedCheckpoint: bad index, a missing shard, a tensor the index places in a
            shard that lacks it, or a name present in two shards.
    """
    index_path = Path(index_path)
    index = read_index(index_path)
    folder = index_path.parent
    per_file: list[tuple[Path, list[TensorRef]]] = []
    for shard in index.shards:
        path = folder / shard
        if not path.is_file():
            raise MalformedCheckpoint(f"{index_path}: shard {shard!r} is missing (incomplete download?)")
        per_file.append((path, list(open_file(path))))
    refs = merge_file_refs(per_file)
    where = {ref.name: ref.file for ref in refs}
    for tensor, shard in index.weight_map.items():
        if tensor not in where:
            raise MalformedCheckpoint(f"{index_path}: tensor {tensor!r} is not in shard {shard!r}")
        if where[tensor] != str(folder / shard):
            raise MalformedCheckpoint(
                f"{index_path}: tensor {tensor!r} is mapped to {shard!r} "
                f"but found in {Path(where[tensor]).name!r}"
            )
    extra = [name for name in where if name not in index.weight_map]
    if extra and notes is not None:
        notes.append(f"{index_path}: {len(extra)} tensors in shards but not in weight_map "
                     f"(read anyway): {', '.join(repr(e) for e in extra[:8])}")
    return iter(refs)
