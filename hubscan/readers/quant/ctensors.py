"""compressed-tensors ``pack-quantized`` checkpoints (llm-compressor's W4A16/W8A16 int
schemes): ``weight_packed``, ``weight_scale``, ``weight_shape`` [, ``weight_zero_point``,
``weight_g_idx``] → the float weight ``(out, in)``.

Layout (compressed-tensors ``compressors/pack_quantized/base.py``
``PackedQuantizationCompressor`` and ``helpers.py`` ``pack_to_int32``/``unpack_from_int32``;
``quantization/lifecycle/forward.py`` ``dequantize``):

- ``weight_packed``: int32 ``(out, ⌈in·bits/32⌉)`` — each row a dense little-endian bit
  stream of ``bits``-bit codes, stored with the offset ``2^(bits−1)`` (signed → unsigned);
- ``weight_shape``: int ``(2,)`` — the logical ``(out, in)``;
- ``weight_scale``: float ``(out, 1)`` (channel) or ``(out, ⌈in/group⌉)`` (group);
- ``weight_zero_point`` (asymmetric only): int32 packed along **dim 0**, same offset;
- ``weight_g_idx`` (activation ordering): int ``(in,)`` — the group of each column.

``W[r, c] = (q[r, c] − zp[r, g(c)]) · scale[r, g(c)]`` with signed ``q``/``zp``.
"""

from __future__ import annotations

import torch

from ...errors import MalformedCheckpoint
from ._bits import unpack_codes
from ._check import expect_float, expect_int

__all__ = ["dequantize_pack_quantized", "infer_pack_bits"]


def infer_pack_bits(packed_cols: int, n_in: int) -> int | None:
    """The code width that makes ``n_in`` codes fill exactly ``packed_cols`` words, if unique."""
    fits = [b for b in range(1, 9) if -(-n_in * b // 32) == packed_cols]
    return fits[0] if len(fits) == 1 else None


def dequantize_pack_quantized(packed: torch.Tensor, scale: torch.Tensor, shape: torch.Tensor | tuple[int, int],
                              *, bits: int, zero_point: torch.Tensor | None = None,
                              g_idx: torch.Tensor | None = None,
                              name: str = "compressed-tensors weight") -> torch.Tensor:
    """The float32 weight ``(out, in)`` (see module doc).

    Raises:
        MalformedCheckpoint: shapes that contradict the layout, naming the tensor.
    """
    packed = expect_int(packed, name=name, part="weight_packed")
    dims = [int(x) for x in (shape.reshape(-1).tolist() if isinstance(shape, torch.Tensor) else shape)]
    if len(dims) != 2 or min(dims) <= 0:
        raise MalformedCheckpoint(f"{name}: weight_shape {dims} is not a positive (out, in)")
    out, n_in = dims
    if packed.dim() != 2 or packed.shape[0] != out or packed.shape[1] != -(-n_in * bits // 32):
        raise MalformedCheckpoint(f"{name}: weight_packed {list(packed.shape)} does not hold "
                                  f"{out}x{n_in} codes of {bits} bits")
    s = expect_float(scale, name=name, part="weight_scale")
    if s.dim() == 1:
        s = s.view(-1, 1)
    if s.dim() != 2 or s.shape[0] not in (1, out):
        raise MalformedCheckpoint(f"{name}: weight_scale {list(scale.shape)} fits no layout of {out}x{n_in}")
    groups = s.shape[1]
    offset = 1 << (bits - 1)
    q = unpack_codes(packed, bits, n_in, dim=1, what=f"{name} weight_packed") - offset
    if g_idx is not None:
        g = expect_int(g_idx, name=name, part="weight_g_idx").to(torch.int64).reshape(-1)
        if g.numel() != n_in or (g.numel() and (int(g.min()) < 0 or int(g.max()) >= groups)):
            raise MalformedCheckpoint(f"{name}: weight_g_idx does not map {n_in} columns to {groups} groups")
    else:
        gs = -(-n_in // groups)
        if groups > 1 and -(-n_in // gs) != groups:
            raise MalformedCheckpoint(f"{name}: {groups} scale groups do not divide {n_in} columns")
        g = torch.arange(n_in) // gs
    zp = None
    if zero_point is not None:
        zp = unpack_codes(expect_int(zero_point, name=name, part="weight_zero_point"), bits, s.shape[0],
                          dim=0, what=f"{name} weight_zero_point") - offset
        if tuple(zp.shape) != tuple(s.shape):
            raise MalformedCheckpoint(f"{name}: weight_zero_point unpacks to {list(zp.shape)}, "
                                      f"weight_scale is {list(s.shape)}")
    qf = q.to(torch.float32)
    if zp is not None:
        qf = qf - zp[:, g].to(torch.float32)
    return qf * s[:, g]
