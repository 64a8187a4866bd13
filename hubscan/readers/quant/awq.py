"""AWQ checkpoints (AutoAWQ ``WQLinear_GEMM``, ``version = "gemm"``): ``qweight``,
``qzeros``, ``scales`` → the float weight ``(out, in)``.

Layout (AutoAWQ ``awq/utils/packing_utils.py``: ``unpack_awq``, ``reverse_awq_order``,
``dequantize_gemm``; ``awq/modules/linear/gemm.py`` packs with ``AWQ_ORDER``):

- ``qweight``: int32 ``(in, out·bits/32)`` packed along dim 1, but within each word the 8
  columns are stored in the order ``[0, 2, 4, 6, 1, 3, 5, 7]`` (the GEMM kernel's
  interleave); unpacking takes slot ``[0, 4, 1, 5, 2, 6, 3, 7][c]`` for column ``c``;
- ``qzeros``: int32 ``(in/group, out·bits/32)``, same packing;
- ``scales``: float ``(in/group, out)``.

``W[i, j] = (q[i, j] − z[i // g, j]) · s[i // g, j]``; the module weight is ``Wᵀ``.
The GEMV layout (``version = "gemv"``) packs differently and is refused by the caller.
"""

from __future__ import annotations

import torch

from ...errors import MalformedCheckpoint
from ._bits import unpack_codes
from ._check import expect_float, expect_int, expect_shape

__all__ = ["AWQ_ORDER", "AWQ_REVERSE_ORDER", "dequantize_awq"]

AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
AWQ_REVERSE_ORDER = (0, 4, 1, 5, 2, 6, 3, 7)


def _unpack_awq(words: torch.Tensor, bits: int, what: str) -> torch.Tensor:
    per = 32 // bits
    codes = unpack_codes(words, bits, words.shape[1] * per, dim=1, what=what)
    order = torch.arange(codes.shape[1]).view(-1, per)[:, list(AWQ_REVERSE_ORDER)].reshape(-1)
    return codes[:, order]


def dequantize_awq(qweight: torch.Tensor, qzeros: torch.Tensor, scales: torch.Tensor, *,
                   bits: int = 4, group_size: int, name: str = "awq weight") -> torch.Tensor:
    """The float32 weight ``(out, in)`` of one AWQ GEMM layer (see module doc).

    Raises:
        MalformedCheckpoint: not 4-bit, or shapes that contradict the layout.
    """
    if bits != 4:
        raise MalformedCheckpoint(f"{name}: AWQ GEMM packing is defined for 4 bits, not {bits}")
    qweight = expect_int(qweight, name=name, part="qweight")
    qzeros = expect_int(qzeros, name=name, part="qzeros")
    s = expect_float(scales, name=name, part="scales")
    if qweight.dim() != 2 or s.dim() != 2:
        raise MalformedCheckpoint(f"{name}: qweight and scales must be 2-D")
    n_in, out = qweight.shape[0], qweight.shape[1] * 32 // bits
    gs = n_in if not group_size or group_size < 0 else group_size
    groups = -(-n_in // gs)
    expect_shape(s, (groups, out), name=name, part="scales")
    expect_shape(qzeros, (groups, qweight.shape[1]), name=name, part="qzeros")
    q = _unpack_awq(qweight, bits, f"{name} qweight")
    z = _unpack_awq(qzeros, bits, f"{name} qzeros")
    g = torch.arange(n_in) // gs
    w = (q - z[g]).to(torch.float32) * s[g]
    return w.t().contiguous()
