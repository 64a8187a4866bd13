"""MXFP4 (OCP microscaling FP4, gpt-oss): ``*_blocks`` (two E2M1 codes per byte) and
``*_scales`` (one E8M0 exponent per 32 values) → the float tensor.

Layout (transformers ``integrations/mxfp4.py``, ``convert_moe_packed_tensors``, "mostly
copied from the gpt-oss repo"): ``blocks`` uint8 ``(*prefix, G, 16)`` with the **low nibble
first**, ``scales`` uint8 ``(*prefix, G)``; value ``= FP4_VALUES[code] · 2^(scale − 127)``;
the ``G·32`` values of a row are the last axis, and transformers then swaps axes 1 and 2,
so gpt-oss's ``mlp.experts.gate_up_proj_blocks (E, 2·ff, G, 16)`` becomes the expert stack
``gate_up_proj (E, hidden, 2·ff)`` exactly as in the bf16 checkpoints.
"""

from __future__ import annotations

import torch

from ...errors import MalformedCheckpoint

__all__ = ["FP4_VALUES", "dequantize_mxfp4"]

#: E2M1 code → value (the OCP MX spec; transformers' ``FP4_VALUES``).
FP4_VALUES = (+0.0, +0.5, +1.0, +1.5, +2.0, +3.0, +4.0, +6.0,
              -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)


def dequantize_mxfp4(blocks: torch.Tensor, scales: torch.Tensor, *, transpose: bool = True,
                     name: str = "mxfp4 tensor") -> torch.Tensor:
    """The float32 tensor of an MXFP4 pair (see module doc).

    Args:
        transpose: swap axes 1 and 2 of the result as transformers does for gpt-oss expert
            stacks (only for a 3-D result; a 2-D result is ``(rows, G·32)``).

    Raises:
        MalformedCheckpoint: not uint8, ``blocks.shape[:-1] != scales.shape``, a NaN scale.
    """
    if blocks.dtype != torch.uint8 or scales.dtype not in (torch.uint8, getattr(torch, "float8_e8m0fnu", torch.uint8)):
        raise MalformedCheckpoint(f"{name}: MXFP4 blocks/scales must be uint8, got {blocks.dtype}/{scales.dtype}")
    scales = scales.view(torch.uint8)
    if blocks.dim() < 2 or tuple(blocks.shape[:-1]) != tuple(scales.shape):
        raise MalformedCheckpoint(f"{name}: blocks {list(blocks.shape)} and scales {list(scales.shape)} "
                                  "do not pair (blocks.shape[:-1] must equal scales.shape)")
    if bool((scales == 255).any()):
        raise MalformedCheckpoint(f"{name}: an E8M0 scale is NaN (255)")
    *prefix, G, B = blocks.shape
    lut = torch.tensor(FP4_VALUES, dtype=torch.float32)
    flat = blocks.reshape(-1, B)
    out = torch.empty(flat.shape[0], 2 * B, dtype=torch.float32)
    out[:, 0::2] = lut[(flat & 0x0F).to(torch.int64)]
    out[:, 1::2] = lut[(flat >> 4).to(torch.int64)]
    exp = scales.reshape(-1, 1).to(torch.int32) - 127
    out = torch.ldexp(out, exp)
    out = out.reshape(*prefix, G * 2 * B)
    if transpose and out.dim() == 3:
        out = out.transpose(1, 2).contiguous()
    return out
