"""FP8 weights with scales: ``F8_E4M3``/``F8_E5M2`` codes × a per-tensor, per-channel,
per-group or per-block scale → the float weight.

Layouts:

- **block** (DeepSeek-V3, Qwen3-FP8; transformers ``integrations/finegrained_fp8.py``,
  ``_dequantize_fp8_weight``; ``quantization_config = {"quant_method": "fp8",
  "weight_block_size": [128, 128]}``): ``weight`` ``(out, in)`` and ``weight_scale_inv``
  float32 (or UE8M0) ``(⌈out/bn⌉, ⌈in/bk⌉)``; ``W[r, c] = w[r, c] · s[r // bn, c // bk]``
  (the "inverse" scale is multiplied, as in DeepSeek's ``weight_dequant``);
- **compressed-tensors float-quantized** (``compressed_tensors`` ``FloatQuantizationCompressor``
  / ``quantization/lifecycle/forward.py`` ``dequantize``): ``weight`` and ``weight_scale`` of
  shape ``()``/``(1,)`` (tensor), ``(out, 1)`` (channel), ``(out, in/g)`` (group) or
  ``(⌈out/bn⌉, ⌈in/bk⌉)`` (block); ``W = w · scale`` broadcast.

Which one a ``scale`` is follows from its shape and the block size of the config, so one
function covers both.
"""

from __future__ import annotations

import math

import torch

from ...errors import MalformedCheckpoint

__all__ = ["FP8_DTYPES", "dequantize_fp8", "fp8_granularity"]

FP8_DTYPES = tuple(d for d in (getattr(torch, "float8_e4m3fn", None), getattr(torch, "float8_e5m2", None),
                               getattr(torch, "float8_e4m3fnuz", None), getattr(torch, "float8_e5m2fnuz", None))
                   if d is not None)


def _scale_float(scale: torch.Tensor, name: str) -> torch.Tensor:
    e8m0 = getattr(torch, "float8_e8m0fnu", None)
    if scale.dtype == torch.uint8 or (e8m0 is not None and scale.dtype == e8m0):
        # UE8M0 exponents (MX scaling): 2^(e − 127); 255 is NaN in the format.
        e = scale.view(torch.uint8).to(torch.int32)
        if bool((e == 255).any()):
            raise MalformedCheckpoint(f"{name}: UE8M0 scale holds NaN (255)")
        return torch.ldexp(torch.ones_like(e, dtype=torch.float32), e - 127)
    if not scale.is_floating_point():
        raise MalformedCheckpoint(f"{name}: weight scale must be float or UE8M0, got {scale.dtype}")
    return scale.to(torch.float32)


def fp8_granularity(wshape: tuple[int, ...], sshape: tuple[int, ...],
                    block: tuple[int, int] | None = None) -> tuple[str, tuple[int, int] | None]:
    """How a scale of shape ``sshape`` covers an FP8 weight of shape ``wshape``:
    ``tensor``, ``channel``, ``group`` (along the input dim) or ``block``, and the block
    ``(rows, cols)`` for the last two.

    Raises:
        MalformedCheckpoint: no layout explains the shapes.
    """
    wshape, sshape = tuple(wshape), tuple(sshape)
    if len(wshape) not in (2, 3):
        raise MalformedCheckpoint(f"FP8 weight must be 2-D (or a 3-D expert stack), got {list(wshape)}")
    rows, cols = wshape[-2:]
    lead = wshape[:-2]
    if block is not None and sshape == (*lead, -(-rows // block[0]), -(-cols // block[1])):
        return ("group" if block[0] == 1 else "block"), tuple(block)  # type: ignore[return-value]
    if math.prod(sshape) == 1:
        return "tensor", None
    if sshape in ((*lead, rows, 1), (*lead, rows)) and rows > 1:
        return "channel", None
    if len(sshape) == len(wshape) and sshape[:-2] == lead:
        sr, sc = sshape[-2:]
        if block is None:
            block = (1, cols // sc) if sr == rows and sc and cols % sc == 0 else (128, 128)
        bn, bk = block
        if sr == -(-rows // bn) and sc == -(-cols // bk):
            return ("group" if bn == 1 else "block"), (bn, bk)
    raise MalformedCheckpoint(
        f"weight_scale of shape {list(sshape)} fits no FP8 layout of a {list(wshape)} weight"
        + (f" with {block[0]}x{block[1]} blocks" if block else ""))


def dequantize_fp8(weight: torch.Tensor, scale: torch.Tensor, *, block: tuple[int, int] | None = None,
                   name: str = "fp8 weight") -> tuple[torch.Tensor, str]:
    """The float32 weight and the scale granularity (``tensor``/``channel``/``group``/``block``).

    Args:
        weight: FP8 ``(out, in)`` (or ``(E, out, in)`` for expert stacks with block scales).
        scale: see module doc.
        block: ``(bn, bk)`` from the config's ``weight_block_size`` when known; a scale whose
            shape only a block layout explains is read as 128×128 blocks otherwise.

    Raises:
        MalformedCheckpoint: an FP8 dtype missing, or a scale shape no layout explains.
    """
    if weight.dtype not in FP8_DTYPES:
        raise MalformedCheckpoint(f"{name}: expected an FP8 weight, got {weight.dtype}")
    try:
        gran, blk = fp8_granularity(tuple(weight.shape), tuple(scale.shape), block)
    except MalformedCheckpoint as exc:
        raise MalformedCheckpoint(f"{name}: {exc}") from None
    s = _scale_float(scale, name)
    w = weight.to(torch.float32)
    rows, cols = w.shape[-2:]
    if gran == "tensor":
        return w * s.reshape(()), gran
    if gran == "channel":
        return w * s.reshape(*w.shape[:-1], 1), gran
    bn, bk = blk  # type: ignore[misc]
    s_full = s.repeat_interleave(bn, dim=-2)[..., :rows, :].repeat_interleave(bk, dim=-1)[..., :cols]
    return w * s_full, gran
