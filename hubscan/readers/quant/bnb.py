"""bitsandbytes checkpoints: 4-bit (``nf4``/``fp4``, with nested quantisation of the
absmax) and LLM.int8 (``SCB``) → the float weight.

4-bit layout (bitsandbytes ``functional.py``: ``QuantState.as_dict(packed=True)`` /
``from_dict``, ``dequantize_4bit``; ``backends/default/ops.py``: the reference CPU kernel),
for a module weight ``X.weight``:

- ``X.weight``: uint8 ``(⌈n/2⌉, 1)`` — two 4-bit codes per byte, the **first in the high
  nibble**; ``n = prod(shape)`` elements of the row-major weight;
- ``X.weight.absmax``: float32 ``(⌈n/blocksize⌉,)`` — one scale per block; with nested
  quantisation (``compress_statistics``) uint8 codes of an 8-bit blockwise quantisation;
- ``X.weight.quant_map``: float32 ``(16,)`` — the NF4 / FP4 code book;
- nested only: ``X.weight.nested_absmax`` float32, ``X.weight.nested_quant_map`` float32
  ``(256,)``; the absmax is ``nested_quant_map[code] · nested_absmax[block] + nested_offset``;
- ``X.weight.quant_state.bitsandbytes__nf4`` (or ``__fp4``): uint8 bytes of a JSON object
  ``{quant_type, blocksize, dtype, shape[, nested_blocksize, nested_dtype, nested_offset]}``.

``W.flat[k] = quant_map[code_k] · absmax[k // blocksize]``, reshaped to ``shape``.

LLM.int8 (``Linear8bitLt``): ``X.weight`` int8 ``(out, in)`` and ``X.SCB`` float32 ``(out,)``,
``W = q · SCB / 127`` row-wise (bitsandbytes ``int8_vectorwise_dequant``, which multiplies
by the float32 constant ``1/127``; so do we, for bit-equality).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import torch

from ...errors import MalformedCheckpoint
from ._check import expect_float, expect_int, expect_shape

__all__ = [
    "INT8_SCALE",
    "QuantState4bit",
    "dequantize_bnb_4bit",
    "dequantize_bnb_int8",
    "parse_quant_state",
]

#: bitsandbytes' ``int8_vectorwise_dequant`` constant (float32 nearest to 1/127).
INT8_SCALE = 7.874015718698502e-3
_MAX_STATE_BYTES = 1 << 16
_DTYPES = {"float32", "float16", "bfloat16", "float64"}


@dataclass(frozen=True)
class QuantState4bit:
    """The non-tensor half of a bitsandbytes 4-bit ``QuantState``, validated."""

    quant_type: str
    blocksize: int
    dtype: str
    shape: tuple[int, ...]
    nested_blocksize: int | None = None
    nested_offset: float | None = None


def _pos_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def parse_quant_state(raw: torch.Tensor, *, name: str) -> QuantState4bit:
    """Decode and validate the ``quant_state.bitsandbytes__*`` JSON tensor.

    Raises:
        MalformedCheckpoint: not UTF-8 JSON, unknown keys' values, a non-positive block
            size, a shape that is not a list of positive ints — naming the tensor.
    """
    if raw.dtype != torch.uint8 or raw.dim() != 1 or raw.numel() > _MAX_STATE_BYTES:
        raise MalformedCheckpoint(f"{name}: quant_state must be a 1-D uint8 JSON tensor "
                                  f"(< {_MAX_STATE_BYTES} bytes), got {raw.dtype}{list(raw.shape)}")
    try:
        obj = json.loads(bytes(raw.numpy()).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedCheckpoint(f"{name}: quant_state is not JSON ({str(exc)[:80]})") from None
    if not isinstance(obj, dict):
        raise MalformedCheckpoint(f"{name}: quant_state JSON is {type(obj).__name__}, expected an object")
    qt, bs, dt, shape = obj.get("quant_type"), obj.get("blocksize"), obj.get("dtype"), obj.get("shape")
    if qt not in ("nf4", "fp4"):
        raise MalformedCheckpoint(f"{name}: quant_state quant_type {qt!r} is not nf4 or fp4")
    if not _pos_int(bs):
        raise MalformedCheckpoint(f"{name}: quant_state blocksize {bs!r} is not a positive integer")
    if dt not in _DTYPES:
        raise MalformedCheckpoint(f"{name}: quant_state dtype {dt!r} is not one of {sorted(_DTYPES)}")
    if not isinstance(shape, list) or not shape or not all(_pos_int(s) for s in shape):
        raise MalformedCheckpoint(f"{name}: quant_state shape {shape!r} is not a list of positive integers")
    nbs, off = obj.get("nested_blocksize"), obj.get("nested_offset")
    nested = nbs is not None or off is not None
    if nested and (not _pos_int(nbs) or not isinstance(off, (int, float)) or isinstance(off, bool)
                   or not math.isfinite(off)):
        raise MalformedCheckpoint(f"{name}: nested quant_state needs a positive nested_blocksize "
                                      f"and a finite nested_offset, got {nbs!r}, {off!r}")
    return QuantState4bit(qt, bs, dt, tuple(shape), nbs, None if off is None else float(off))


def _blockwise(codes: torch.Tensor, code_book: torch.Tensor, absmax: torch.Tensor,
               blocksize: int) -> torch.Tensor:
    """``code_book[codes] · absmax[k // blocksize]`` over the flat codes (bnb's CPU kernel)."""
    vals = code_book[codes.to(torch.int64)]
    n = vals.numel()
    full = n - n % blocksize
    out = torch.empty(n, dtype=torch.float32)
    out[:full] = (vals[:full].view(-1, blocksize) * absmax[: full // blocksize].view(-1, 1)).reshape(full)
    if full < n:
        out[full:] = vals[full:] * absmax[full // blocksize]
    return out


def dequantize_bnb_4bit(weight: torch.Tensor, absmax: torch.Tensor, quant_map: torch.Tensor,
                        state: QuantState4bit, *, nested_absmax: torch.Tensor | None = None,
                        nested_quant_map: torch.Tensor | None = None,
                        name: str = "bnb weight") -> torch.Tensor:
    """The float32 weight of shape ``state.shape`` (see module doc).

    Raises:
        MalformedCheckpoint: companions of the wrong size or dtype, a nested state without its
            nested tensors — naming the tensor.
    """
    n = math.prod(state.shape)
    packed = weight.reshape(-1)
    if packed.dtype != torch.uint8:
        packed = packed.contiguous().view(torch.uint8)   # bnb's quant_storage may be wider
    if packed.numel() != -(-n // 2):
        raise MalformedCheckpoint(f"{name}: {packed.numel()} packed bytes hold {2 * packed.numel()} "
                                  f"codes, the shape {list(state.shape)} needs {n}")
    qm = expect_float(quant_map, name=name, part="quant_map").reshape(-1)
    expect_shape(qm, (16,), name=name, part="quant_map")
    n_blocks = -(-n // state.blocksize)
    if state.nested_blocksize is not None:
        if nested_absmax is None or nested_quant_map is None:
            raise MalformedCheckpoint(f"{name}: nested quant_state without nested_absmax/nested_quant_map")
        codes = expect_int(absmax, name=name, part="absmax").reshape(-1)
        expect_shape(codes, (n_blocks,), name=name, part="absmax")
        nqm = expect_float(nested_quant_map, name=name, part="nested_quant_map").reshape(-1)
        expect_shape(nqm, (256,), name=name, part="nested_quant_map")
        nab = expect_float(nested_absmax, name=name, part="nested_absmax").reshape(-1)
        expect_shape(nab, (-(-n_blocks // state.nested_blocksize),), name=name, part="nested_absmax")
        scale = _blockwise(codes, nqm, nab, state.nested_blocksize)
        scale += state.nested_offset
    else:
        scale = expect_float(absmax, name=name, part="absmax").reshape(-1)
        expect_shape(scale, (n_blocks,), name=name, part="absmax")
    codes4 = torch.empty(packed.numel() * 2, dtype=torch.int64)
    codes4[0::2] = (packed >> 4).to(torch.int64)
    codes4[1::2] = (packed & 0xF).to(torch.int64)
    return _blockwise(codes4[:n], qm, scale, state.blocksize).reshape(state.shape)


def dequantize_bnb_int8(weight: torch.Tensor, scb: torch.Tensor, *, name: str = "bnb weight") -> torch.Tensor:
    """The float32 weight ``(out, in)`` of an LLM.int8 layer: ``q · SCB[:, None] · (1/127)``."""
    if weight.dtype != torch.int8 or weight.dim() != 2:
        raise MalformedCheckpoint(f"{name}: LLM.int8 weight must be a 2-D int8 tensor, got "
                                  f"{weight.dtype}{list(weight.shape)}")
    s = expect_float(scb, name=name, part="SCB").reshape(-1)
    expect_shape(s, (weight.shape[0],), name=name, part="SCB")
    return weight.to(torch.float32) * s.view(-1, 1) * INT8_SCALE
