"""What a checkpoint path means, and reading it: one file, a shard index, or a folder.

A user (or the local source) hands us a path. This module decides which files make up the
checkpoint — following the rules ``transformers`` uses for a model folder, so we analyse
what a user's ``from_pretrained`` would load — and chains the per-format readers.

Folder rules, first match wins; the safetensors group is tried before the pickle group
(``.bin`` next to ``.safetensors`` is the same weights in the unsafe format):

1. the standard index (``model.safetensors.index.json`` / ``pytorch_model.bin.index.json``);
2. the standard single file (``model.safetensors`` / ``pytorch_model.bin``);
3. every other ``*.index.json`` of that format;
4. every file of that format, by name (Trainer side files such as ``training_args.bin``,
   ``optimizer.pt``, ``rng_state.pth`` are not weights and are left out).

After both groups, a folder of GGUF files (llama.cpp) is read through ONE quantisation
level, the most preferred (``readers.gguf.GGUF_TYPE_PREFERENCE``: full precision, then
the finest quantisation), all of its shards.

Quantised safetensors (GPTQ, AWQ, bitsandbytes, MLX, FP8 with scales, compressed-tensors,
MXFP4) come out as one logical float tensor per module weight (``readers.quant``), with
the folder's ``config.json`` supplying bits and group sizes.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import MalformedCheckpoint, NotFound, UnsafeCheckpoint
from ..refs import TensorRef
from .gguf import choose_gguf_files, read_gguf
from .index import merge_file_refs, read_index, read_sharded
from .quant import group_tensors
from .safetensors import MAX_HEADER_BYTES, read_safetensors
from .torchpickle import read_torch_pickle

__all__ = [
    "Format",
    "CheckpointLayout",
    "SAFETENSORS_SUFFIXES",
    "PICKLE_SUFFIXES",
    "file_format",
    "checkpoint_layout",
    "checkpoint_files",
    "read_checkpoint",
    "read_file",
    "folder_config",
    "GGUF_SUFFIXES",
]

Format = Literal["safetensors", "pickle", "gguf"]

SAFETENSORS_SUFFIXES = (".safetensors",)
GGUF_SUFFIXES = (".gguf",)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth")
_NON_WEIGHTS = re.compile(
    r"^(training_args\.bin|optimizer\.(pt|bin)|scheduler\.(pt|bin)|scaler\.pt"
    r"|rng_state(_\d+)?\.pth|trainer_state\.pt)$"
)


@dataclass(frozen=True)
class CheckpointLayout:
    """The files one checkpoint consists of.

    Attributes:
        files: weight files, in reading order (shards in index order).
        indexes: the shard index files used (empty for unsharded checkpoints).
        format: ``safetensors`` or ``pickle`` (of the first file; a checkpoint is one format).
    """

    files: tuple[Path, ...]
    indexes: tuple[Path, ...]
    format: Format


def file_format(path: str | os.PathLike[str]) -> Format:
    """A weight file's format: by suffix, else by its first bytes (HF cache blobs have none).

    Raises:
        MalformedCheckpoint: neither safetensors nor a torch zip/pickle.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        return "safetensors"
    if suffix in PICKLE_SUFFIXES:
        return "pickle"
    if suffix in GGUF_SUFFIXES:
        return "gguf"
    with open(path, "rb") as f:
        head = f.read(9)
    if head[:4] == b"GGUF":
        return "gguf"
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        return "pickle"
    if len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= MAX_HEADER_BYTES:
        return "safetensors"
    raise MalformedCheckpoint(f"{path}: not a safetensors, GGUF or torch checkpoint file")


def _is_index(path: Path) -> bool:
    return path.name.endswith(".index.json")


def _index_format(path: Path) -> Format:
    stem = path.name.removesuffix(".index.json").lower()
    return "safetensors" if stem.endswith(SAFETENSORS_SUFFIXES) else "pickle"


def _from_indexes(indexes: list[Path]) -> CheckpointLayout:
    files: list[Path] = []
    for idx in indexes:
        for shard in read_index(idx).shards:
            path = idx.parent / shard
            if not path.is_file():
                raise MalformedCheckpoint(f"{idx}: shard {shard!r} is missing (incomplete download?)")
            if path not in files:
                files.append(path)
    return CheckpointLayout(tuple(files), tuple(indexes), _index_format(indexes[0]))


def _folder_group(folder: Path, fmt: Format, names: list[str]) -> CheckpointLayout | None:
    std_index, std_file = {
        "safetensors": ("model.safetensors.index.json", "model.safetensors"),
        "pickle": ("pytorch_model.bin.index.json", "pytorch_model.bin"),
    }[fmt]
    suffixes = SAFETENSORS_SUFFIXES if fmt == "safetensors" else PICKLE_SUFFIXES
    if std_index in names:
        return _from_indexes([folder / std_index])
    if std_file in names:
        return CheckpointLayout((folder / std_file,), (), fmt)
    indexes = [folder / n for n in names
               if n.endswith(".index.json") and _index_format(folder / n) == fmt]
    if indexes:
        return _from_indexes(indexes)
    files = [folder / n for n in names
             if n.lower().endswith(suffixes) and not _NON_WEIGHTS.match(n)
             and (folder / n).is_file()]
    return CheckpointLayout(tuple(files), (), fmt) if files else None


def checkpoint_layout(path: str | os.PathLike[str]) -> CheckpointLayout:
    """Which files make up the checkpoint at ``path`` (a file, an index, or a folder).

    Raises:
        NotFound: the path does not exist, or a folder holds no weight file.
        MalformedCheckpoint: an index that is invalid or lists a missing shard.
    """
    path = Path(path)
    if path.is_dir():
        names = sorted(p.name for p in path.iterdir())
        for fmt in ("safetensors", "pickle"):
            layout = _folder_group(path, fmt, names)  # type: ignore[arg-type]
            if layout is not None:
                return layout
        ggufs = choose_gguf_files([n for n in names if (path / n).is_file()])
        if ggufs:
            return CheckpointLayout(tuple(path / n for n in ggufs), (), "gguf")
        raise NotFound(
            f"{path}: no weight files (*.safetensors, *.bin, *.pt, *.pth, *.gguf or a shard index)"
        )
    if not path.is_file():
        raise NotFound(f"{path}: no such file or folder")
    if _is_index(path):
        return _from_indexes([path])
    return CheckpointLayout((path,), (), file_format(path))


def checkpoint_files(path: str | os.PathLike[str]) -> list[Path]:
    """The weight files of the checkpoint at ``path``, in reading order.

    ``str(p)`` of each is exactly the ``TensorRef.file`` of the tensors read from it, so a
    source can hash these files and join the hashes to the tensors.
    """
    return list(checkpoint_layout(path).files)


def read_file(path: Path, *, allow_pickle: bool = True,
              notes: list[str] | None = None) -> Iterator[TensorRef]:
    """Open one weight file with the reader of its format (validating it now)."""
    fmt = file_format(path)
    if fmt == "safetensors":
        return read_safetensors(path, notes=notes)
    if fmt == "gguf":
        return read_gguf(path, notes=notes)
    if not allow_pickle:
        raise UnsafeCheckpoint(
            f"{path}: pickle checkpoints are disabled (allow_pickle=False); "
            "only safetensors files are read"
        )
    return read_torch_pickle(path, notes=notes)


def read_checkpoint(path: str | os.PathLike[str], *, allow_pickle: bool = True,
                    notes: list[str] | None = None, config: Mapping[str, Any] | None = None,
                    dequantize: bool = True) -> Iterator[TensorRef]:
    """Every tensor of a checkpoint, one ``TensorRef`` at a time; nothing loaded yet.

    ``path`` is a ``.safetensors`` file, a ``.bin``/``.pt``/``.pth`` torch file, a ``.gguf``
    file, a shard index (``*.index.json``), or a folder (see the module docstring for which
    files count). Every file's header (or restricted unpickling, for torch files) is
    validated *in this call*, so a bad checkpoint raises before anything is yielded; a ref's
    ``load()`` then reads just that tensor, in its stored dtype — except quantised weights,
    which come out as one logical float32 tensor per module (``TensorRef.quant`` says how
    they were stored) whose ``load()`` dequantises, and GGUF tensors, always float32.

    Args:
        allow_pickle: read ``.bin/.pt/.pth`` files (always through
            ``torch.load(weights_only=True)``); ``False`` refuses them outright.
        notes: a list that receives non-fatal findings (wrappers unwrapped, non-tensor
            entries ignored, gaps in a safetensors data section).
        config: the model's ``config.json`` (quantisation facts); read from the folder
            (or the file's folder) when not given.
        dequantize: group quantised tensors into logical float tensors (``False``: the
            stored tensors as they are, packed codes and companions).

    Raises:
        MalformedCheckpoint: a header, index or pickle that is inconsistent or unreadable.
        UnsafeCheckpoint: a pickle that would need full unpickling, a TorchScript archive,
            or any pickle when ``allow_pickle=False``.
        NotFound: the path does not exist or holds no weights.

    Example:
        >>> for t in read_checkpoint("bert-tiny/"):          # doctest: +SKIP
        ...     print(t.name, t.shape, t.dtype)
        ...     w = t.load()                                 # one tensor in memory
    """
    layout = checkpoint_layout(path)
    if layout.indexes:
        per_index = []
        for idx in layout.indexes:
            refs = list(read_sharded(
                idx, lambda p: read_file(p, allow_pickle=allow_pickle, notes=notes), notes=notes))
            per_index.append((idx, refs))
        merged = merge_file_refs(per_index)
    else:
        per_file = [(p, list(read_file(p, allow_pickle=allow_pickle, notes=notes)))
                    for p in layout.files]
        merged = merge_file_refs(per_file)
    if not dequantize or layout.format == "gguf":
        return iter(merged)
    if config is None:
        config = folder_config(Path(path))
    return group_tensors(merged, config)


def folder_config(path: Path) -> dict[str, Any] | None:
    """The ``config.json`` beside a checkpoint (a folder's, or a file's folder's), if valid."""
    root = path if path.is_dir() else path.parent
    cfg = root / "config.json"
    if not cfg.is_file() or cfg.stat().st_size > 16 << 20:
        return None
    try:
        obj = json.loads(cfg.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None
