"""Independent reference dequantisers for the layouts whose own library cannot run here.

GPTQ's reference (GPTQModel ``BaseQuantLinear.dequantize_weight``) and AWQ's (AutoAWQ
``awq/utils/packing_utils.py``) sit in packages that need CUDA builds to install; their
published code is reproduced here — not imported from hubscan — so the tests compare
hubscan's dequantisers with an implementation written from the references' source.
"""

from __future__ import annotations

import torch

# ---------------------------------------------------------------- AutoAWQ 0.2.9, packing_utils.py
AWQ_REVERSE_ORDER = [0, 4, 1, 5, 2, 6, 3, 7]


def _unpack_awq(qweight: torch.Tensor, qzeros: torch.Tensor, bits: int):
    shifts = torch.arange(0, 32, bits)
    iweights = torch.bitwise_right_shift(qweight[:, :, None], shifts[None, None, :]).to(torch.int8)
    iweights = iweights.view(iweights.shape[0], -1)
    izeros = torch.bitwise_right_shift(qzeros[:, :, None], shifts[None, None, :]).to(torch.int8)
    izeros = izeros.view(izeros.shape[0], -1)
    return iweights, izeros


def _reverse_awq_order(iweights: torch.Tensor, izeros: torch.Tensor, bits: int):
    order = torch.arange(iweights.shape[-1], dtype=torch.int32).view(-1, 32 // bits)
    order = order[:, AWQ_REVERSE_ORDER].view(-1)
    return iweights[:, order], izeros[:, order]


def awq_dequantize_gemm(qweight, qzeros, scales, bits: int, group_size: int) -> torch.Tensor:
    """AutoAWQ ``dequantize_gemm`` (returns ``(in, out)``, as AutoAWQ does)."""
    iweight, izeros = _unpack_awq(qweight, qzeros, bits)
    iweight, izeros = _reverse_awq_order(iweight, izeros, bits)
    iweight = torch.bitwise_and(iweight, (2 ** bits) - 1)
    izeros = torch.bitwise_and(izeros, (2 ** bits) - 1)
    scales = scales.repeat_interleave(group_size, dim=0)
    izeros = izeros.repeat_interleave(group_size, dim=0)
    return (iweight - izeros) * scales


# ---------------------------------------------------------------- GPTQModel 7.7, qlinear/__init__.py
def gptq_dequantize_weight(qweight, qzeros, scales, g_idx, bits: int, *, v1: bool) -> torch.Tensor:
    """GPTQModel ``dequantize_weight`` for 2/3/4/8 bits (returns ``(in, out)``); a v1
    checkpoint's zero points get AutoGPTQ's ``zeros + 1``."""
    maxq = 2 ** bits - 1
    if bits in (2, 4, 8):
        pack = 32 // bits
        wf = torch.arange(0, 32, bits, dtype=torch.int32)
        zeros = torch.bitwise_right_shift(qzeros.unsqueeze(2).expand(-1, -1, pack), wf.unsqueeze(0)).to(torch.int16)
        zeros = torch.bitwise_and(zeros, maxq).reshape(qzeros.shape[0], -1)[:, : scales.shape[1]]
        weight = torch.bitwise_and(
            torch.bitwise_right_shift(qweight.unsqueeze(1).expand(-1, pack, -1), wf.unsqueeze(-1)).to(torch.int16), maxq)
        weight = weight.reshape(weight.shape[0] * weight.shape[1], weight.shape[2])
    else:  # 3 bits: 32 codes in 3 words, two codes straddling word boundaries
        wf = torch.tensor([[0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 0],
                           [0, 1, 4, 7, 10, 13, 16, 19, 22, 25, 28, 31],
                           [0, 2, 5, 8, 11, 14, 17, 20, 23, 26, 29, 0]], dtype=torch.int32).reshape(1, 3, 12)
        wz = wf.unsqueeze(0)                                   # (1, 1, 3, 12)
        zeros = qzeros.reshape(qzeros.shape[0], qzeros.shape[1] // 3, 3, 1).expand(-1, -1, -1, 12)
        zeros = torch.bitwise_right_shift(zeros, wz)
        zeros[:, :, 0, 10] = (zeros[:, :, 0, 10] & 0x3) | ((zeros[:, :, 1, 0] << 2) & 0x4)
        zeros[:, :, 1, 11] = (zeros[:, :, 1, 11] & 0x1) | ((zeros[:, :, 2, 0] << 1) & 0x6)
        zeros = zeros & 0x7
        zeros = torch.cat([zeros[:, :, 0, :11], zeros[:, :, 1, 1:12], zeros[:, :, 2, 1:11]], dim=2)
        zeros = zeros.reshape(scales.shape)
        ww = wf.unsqueeze(-1)                                  # (1, 3, 12, 1)
        weight = qweight.reshape(qweight.shape[0] // 3, 3, 1, qweight.shape[1]).expand(-1, -1, 12, -1)
        weight = torch.bitwise_right_shift(weight, ww) & 0x7
        weight[:, 0, 10] = (weight[:, 0, 10] & 0x3) | ((weight[:, 1, 0] << 2) & 0x4)
        weight[:, 1, 11] = (weight[:, 1, 11] & 0x1) | ((weight[:, 2, 0] << 1) & 0x6)
        weight = weight & 0x7
        weight = torch.cat([weight[:, 0, :11], weight[:, 1, 1:12], weight[:, 2, 1:11]], dim=1)
        weight = weight.reshape(weight.shape[0] * weight.shape[1], weight.shape[2])
    if v1:
        zeros = zeros + 1
    g = g_idx.long()
    return scales[g] * (weight - zeros[g])
