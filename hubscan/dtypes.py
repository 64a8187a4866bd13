"""One vocabulary of tensor dtypes for every reader: the safetensors spellings.

Layer rules (METHOD.md §1) decide "analyse or skip" from the dtype string alone, so a
``.bin`` and a ``.safetensors`` copy of the same model must report the same string.
The safetensors format names are the lingua franca (the Hub's own metadata uses them), so
torch dtypes are translated to them here, once. Torch dtypes the safetensors format cannot
express (quantized ``qint8`` …, ``complex128``) get hubscan names in the same style
(``QINT8``, ``C128``); the analysis skips every non-float dtype anyway.

Sizes are kept in *bits* because the format has sub-byte types (``F4``, ``F6_*``): their
byte span is ``numel × bits / 8`` and must come out whole.
"""

from __future__ import annotations

import math
import mmap
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .errors import CheckpointError, MalformedCheckpoint

__all__ = [
    "DtypeInfo",
    "DTYPES",
    "FLOAT_DTYPES",
    "dtype_info",
    "is_float_dtype",
    "byte_size",
    "torch_dtype",
    "dtype_name",
    "tensor_from_bytes",
    "view_bytes_as",
    "new_byte_tensor",
]


@dataclass(frozen=True)
class DtypeInfo:
    """A safetensors dtype: its width and its torch counterpart (``None``: none exists)."""

    name: str
    bits: int
    torch: torch.dtype | None
    is_float: bool


def _t(attr: str) -> torch.dtype | None:
    """A torch dtype by attribute name, or ``None`` on a torch build without it."""
    return getattr(torch, attr, None)


# Every dtype of the safetensors format (safetensors 0.8 ``Dtype`` enum). A name not in this
# table makes a header malformed.
DTYPES: dict[str, DtypeInfo] = {
    info.name: info
    for info in (
        DtypeInfo("BOOL", 8, torch.bool, False),
        DtypeInfo("U8", 8, torch.uint8, False),
        DtypeInfo("I8", 8, torch.int8, False),
        DtypeInfo("U16", 16, _t("uint16"), False),
        DtypeInfo("I16", 16, torch.int16, False),
        DtypeInfo("U32", 32, _t("uint32"), False),
        DtypeInfo("I32", 32, torch.int32, False),
        DtypeInfo("U64", 64, _t("uint64"), False),
        DtypeInfo("I64", 64, torch.int64, False),
        DtypeInfo("F16", 16, torch.float16, True),
        DtypeInfo("BF16", 16, torch.bfloat16, True),
        DtypeInfo("F32", 32, torch.float32, True),
        DtypeInfo("F64", 64, torch.float64, True),
        DtypeInfo("C64", 64, torch.complex64, False),
        DtypeInfo("F8_E4M3", 8, _t("float8_e4m3fn"), True),
        DtypeInfo("F8_E5M2", 8, _t("float8_e5m2"), True),
        DtypeInfo("F8_E4M3FNUZ", 8, _t("float8_e4m3fnuz"), True),
        DtypeInfo("F8_E5M2FNUZ", 8, _t("float8_e5m2fnuz"), True),
        # E8M0 is a shared *scale* format (MX block scaling), not weights: not "float" here.
        DtypeInfo("F8_E8M0", 8, _t("float8_e8m0fnu"), False),
        # Sub-byte, packed: no element-wise torch dtype; reported, never loaded.
        DtypeInfo("F4", 4, None, False),
        DtypeInfo("F6_E2M3", 6, None, False),
        DtypeInfo("F6_E3M2", 6, None, False),
    )
}

#: Dtypes whose tensors are weight matrices the spectral analysis can use (after upcasting).
FLOAT_DTYPES: frozenset[str] = frozenset(n for n, i in DTYPES.items() if i.is_float)

# torch dtypes with no safetensors spelling: hubscan names in the same style.
_EXTRA_TORCH_NAMES: dict[torch.dtype, str] = {
    dt: name
    for name, dt in (
        ("C128", _t("complex128")),
        ("C32", _t("complex32")),
        ("QINT8", _t("qint8")),
        ("QUINT8", _t("quint8")),
        ("QINT32", _t("qint32")),
        ("QUINT4X2", _t("quint4x2")),
        ("QUINT2X4", _t("quint2x4")),
        ("F4_X2", _t("float4_e2m1fn_x2")),
    )
    if dt is not None
}

_TORCH_TO_NAME: dict[torch.dtype, str] = {
    **{i.torch: n for n, i in DTYPES.items() if i.torch is not None},
    **_EXTRA_TORCH_NAMES,
}


def dtype_info(name: str) -> DtypeInfo:
    """The table entry of a safetensors dtype name; ``MalformedCheckpoint`` if unknown."""
    try:
        return DTYPES[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(DTYPES))
        raise MalformedCheckpoint(f"unknown dtype {name!r} (known: {known})") from None


def is_float_dtype(name: str) -> bool:
    """Whether tensors of this dtype are analysed (F64/F32/F16/BF16/F8_*)."""
    return name in FLOAT_DTYPES


def byte_size(name: str, shape: Sequence[int]) -> int:
    """Bytes a tensor of ``shape`` occupies: ``numel × bits / 8`` (must be whole)."""
    bits = dtype_info(name).bits * math.prod(shape)
    if bits % 8:
        raise MalformedCheckpoint(
            f"{name} tensor of shape {tuple(shape)} is {bits} bits, not a whole number of bytes"
        )
    return bits // 8


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of a safetensors name; ``CheckpointError`` where torch has none."""
    info = dtype_info(name)
    if info.torch is None:
        raise CheckpointError(
            f"dtype {name} has no element-wise torch dtype (packed sub-byte format); "
            "such tensors are reported but cannot be loaded"
        )
    return info.torch


def dtype_name(dtype: torch.dtype) -> str:
    """The safetensors spelling of a torch dtype (hubscan names for the few it lacks)."""
    try:
        return _TORCH_TO_NAME[dtype]
    except KeyError:
        return str(dtype).removeprefix("torch.").upper()


#: From this size up, tensor memory is its own anonymous mmap (see :func:`new_byte_tensor`).
OWN_MAPPING_BYTES = 1 << 20


def new_byte_tensor(n: int) -> torch.Tensor:
    """A writable 1-D ``uint8`` tensor of ``n`` bytes whose memory goes back to the OS when
    the last tensor viewing it dies.

    Why not ``torch.empty``: glibc's *dynamic* mmap threshold moves up after the first large
    free, so later tensor-sized buffers come from the heap, and a loop of load → analyse →
    drop grows RSS by about one tensor per iteration (measured: +16 MiB per 16 MiB tensor).
    An anonymous mmap per large buffer is unmapped deterministically, keeping "one tensor in
    memory" true over a whole scan. Small buffers use the ordinary allocator.
    """
    if n < OWN_MAPPING_BYTES:
        return torch.empty(n, dtype=torch.uint8)
    buf = mmap.mmap(-1, n)  # page-aligned, zero-filled lazily; freed with the tensor
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.frombuffer(buf, dtype=torch.uint8)


def tensor_from_bytes(buf: bytes | bytearray | memoryview, name: str, shape: Sequence[int]) -> torch.Tensor:
    """A fresh, writable, contiguous tensor holding ``buf`` reinterpreted as ``name``/``shape``.

    The bytes are copied into memory torch allocated (aligned, owned), so the source buffer
    (a network chunk, a slice of an mmap) can be released immediately. Little-endian data is
    assumed, as the safetensors format specifies.

    Raises:
        MalformedCheckpoint: ``len(buf)`` differs from the size the dtype and shape imply.
        CheckpointError: the dtype has no torch counterpart.
    """
    torch_dtype(name)  # fail on packed dtypes before copying anything
    src = np.frombuffer(buf, dtype=np.uint8)
    raw = new_byte_tensor(src.size)
    if src.size:
        raw.numpy()[:] = src  # the one copy
    del src
    return view_bytes_as(raw, name, shape)


def view_bytes_as(raw: torch.Tensor, name: str, shape: Sequence[int]) -> torch.Tensor:
    """Reinterpret a 1-D ``uint8`` tensor as dtype ``name`` and ``shape`` (no copy).

    Raises:
        MalformedCheckpoint: the byte count differs from what dtype and shape imply.
        CheckpointError: the dtype has no torch counterpart.
    """
    dt = torch_dtype(name)
    shape = tuple(int(s) for s in shape)
    expected = byte_size(name, shape)
    if raw.dtype != torch.uint8 or raw.dim() != 1 or raw.numel() != expected:
        raise MalformedCheckpoint(
            f"{name}{list(shape)} needs {expected} bytes, got {raw.numel() * raw.element_size()}"
        )
    if dt is torch.bool:
        # A byte other than 0/1 read as torch.bool is undefined behaviour: normalise.
        return (raw != 0).reshape(shape)
    return raw.view(dt).reshape(shape)
