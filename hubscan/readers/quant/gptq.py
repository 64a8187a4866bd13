"""GPTQ checkpoints (AutoGPTQ / GPTQModel ``QuantLinear`` state dicts): ``qweight``,
``qzeros``, ``scales`` and optionally ``g_idx`` → the float weight ``(out, in)``.

Layout (GPTQModel ``gptqmodel/nn_modules/qlinear/__init__.py``, ``BaseQuantLinear.
dequantize_weight`` and ``pack_block``; transformers loads these through it):

- ``qweight``: int32 ``(in·bits/32, out)`` — codes of input row ``i`` packed along dim 0,
  low bits first (3-bit codes straddle words: 32 rows in 3 words);
- ``qzeros``: int32 ``(groups, out·bits/32)`` — zero points packed along dim 1;
- ``scales``: float ``(groups, out)``;
- ``g_idx``: int32 ``(in,)`` — the group of each input row (``desc_act=True`` permutes
  them); absent or trivial means ``i // group_size``.

``W[i, j] = scales[g[i], j] · (q[i, j] − z[g[i], j])`` and the module weight is ``Wᵀ``.
**v1** checkpoints (``checkpoint_format = "gptq"``, the default) stored ``z − 1``, so the
zero point is the stored code + 1 (AutoGPTQ's ``zeros + 1``, GPTQModel's v1 → v2
conversion); **v2** (``gptq_v2``) stores ``z`` itself.
"""

from __future__ import annotations

import torch

from ...errors import MalformedCheckpoint
from ._bits import unpack_codes
from ._check import expect_float, expect_int, expect_shape

__all__ = ["dequantize_gptq"]


def dequantize_gptq(qweight: torch.Tensor, qzeros: torch.Tensor, scales: torch.Tensor,
                    g_idx: torch.Tensor | None = None, *, bits: int, group_size: int | None,
                    zero_point: str = "v1", name: str = "gptq weight") -> torch.Tensor:
    """The float32 weight ``(out, in)`` of one GPTQ ``QuantLinear`` (see module doc).

    Args:
        bits: 2, 3, 4 or 8.
        group_size: input rows per group; ``None``/``-1`` → one group.
        zero_point: ``v1`` (stored zero + 1) or ``v2`` (stored zero).

    Raises:
        MalformedCheckpoint: shapes or dtypes that contradict the layout, a ``g_idx`` out
            of range; the message names the tensor.
    """
    if bits not in (2, 3, 4, 8):
        raise MalformedCheckpoint(f"{name}: GPTQ with {bits} bits is not a GPTQ layout (2, 3, 4, 8)")
    if zero_point not in ("v1", "v2"):
        raise MalformedCheckpoint(f"{name}: unknown GPTQ zero-point format {zero_point!r}")
    qweight = expect_int(qweight, name=name, part="qweight")
    qzeros = expect_int(qzeros, name=name, part="qzeros")
    s = expect_float(scales, name=name, part="scales")
    if qweight.dim() != 2 or s.dim() != 2:
        raise MalformedCheckpoint(f"{name}: qweight and scales must be 2-D")
    out = qweight.shape[1]
    n_in = qweight.shape[0] * 32 // bits
    if g_idx is not None:
        n_in = int(g_idx.numel())
    groups = s.shape[0]
    expect_shape(s, (groups, out), name=name, part="scales")
    expect_shape(qzeros, (groups, -(-out * bits // 32)), name=name, part="qzeros")
    q = unpack_codes(qweight, bits, n_in, dim=0, what=f"{name} qweight")        # (in, out)
    z = unpack_codes(qzeros, bits, out, dim=1, what=f"{name} qzeros")           # (groups, out)
    if zero_point == "v1":
        z = z + 1
    if g_idx is not None:
        g = expect_int(g_idx, name=name, part="g_idx").to(torch.int64).reshape(-1)
        if g.numel() and (int(g.min()) < 0 or int(g.max()) >= groups):
            raise MalformedCheckpoint(f"{name}: g_idx values in [{int(g.min())}, {int(g.max())}] "
                                      f"do not index {groups} groups")
    else:
        gs = n_in if not group_size or group_size < 0 else group_size
        if -(-n_in // gs) != groups:
            raise MalformedCheckpoint(f"{name}: {n_in} input rows in groups of {gs} make "
                                      f"{-(-n_in // gs)} groups, scales have {groups}")
        g = torch.arange(n_in) // gs
    w = s[g] * (q - z[g]).to(torch.float32)                                    # (in, out)
    return w.t().contiguous()
