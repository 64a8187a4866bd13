"""Checkpoint bytes → ``TensorRef``s, one tensor in memory at a time.

Entry points:

- :func:`read_checkpoint` — any local checkpoint (file, shard index, folder).
- :func:`checkpoint_files` — the files a checkpoint consists of (for hashing).
- :func:`parse_safetensors_header`, :func:`header_length`, :func:`parse_index`,
  :func:`tensor_from_bytes` — the pure pieces a remote (HTTP) reader reuses, so that
  local and remote files obey one set of validation rules.

Safety policy (docs/readers.md): headers are validated before anything is yielded;
pickles are only ever read through ``torch.load(weights_only=True)``; a file that would
need code to run is refused with :class:`~hubscan.errors.UnsafeCheckpoint`.
"""

from __future__ import annotations

from ..dtypes import (
    DTYPES,
    FLOAT_DTYPES,
    byte_size,
    dtype_name,
    is_float_dtype,
    new_byte_tensor,
    tensor_from_bytes,
    torch_dtype,
    view_bytes_as,
)
from .checkpoint import (
    PICKLE_SUFFIXES,
    SAFETENSORS_SUFFIXES,
    CheckpointLayout,
    checkpoint_files,
    checkpoint_layout,
    file_format,
    read_checkpoint,
)
from .index import ShardIndex, parse_index, read_index
from .safetensors import (
    MAX_HEADER_BYTES,
    PREFIX_BYTES,
    SafetensorsEntry,
    SafetensorsHeader,
    header_length,
    load_safetensors_tensor,
    parse_safetensors_header,
    read_safetensors,
    read_safetensors_header,
)
from .torchpickle import read_torch_pickle, safe_torch_load

__all__ = [
    "read_checkpoint",
    "checkpoint_files",
    "checkpoint_layout",
    "CheckpointLayout",
    "file_format",
    "SAFETENSORS_SUFFIXES",
    "PICKLE_SUFFIXES",
    # safetensors
    "parse_safetensors_header",
    "header_length",
    "read_safetensors_header",
    "read_safetensors",
    "load_safetensors_tensor",
    "SafetensorsEntry",
    "SafetensorsHeader",
    "MAX_HEADER_BYTES",
    "PREFIX_BYTES",
    # shard index
    "ShardIndex",
    "parse_index",
    "read_index",
    # torch pickles
    "read_torch_pickle",
    "safe_torch_load",
    # dtypes
    "DTYPES",
    "FLOAT_DTYPES",
    "is_float_dtype",
    "byte_size",
    "dtype_name",
    "torch_dtype",
    "tensor_from_bytes",
    "view_bytes_as",
    "new_byte_tensor",
]
