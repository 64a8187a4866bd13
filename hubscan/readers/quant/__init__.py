"""Quantised checkpoints → plain float tensors, one logical tensor at a time.

A quantised weight is stored as a *group*: packed integer codes plus companions (scales,
zero points, group indices, absmax, a JSON quant state …). This package turns each group
into ONE ``TensorRef`` named as the module weight (``….q_proj.weight``), with its logical
shape, ``dtype = "F32"`` and a :class:`~hubscan.refs.QuantInfo`; its ``load()`` dequantises
just that tensor, so memory stays at one dequantised tensor and everything downstream
(layer rules, eigen-solves) sees ordinary matrices.

Modules, one per format family, each pure (tensors in, float32 tensor out, no I/O) and
citing the implementation it follows:

- :mod:`.gptq` — GPTQ v1/v2 zero points, ``g_idx`` (GPTQModel ``dequantize_weight``);
- :mod:`.awq` — AWQ GEMM packing order (AutoAWQ ``packing_utils.dequantize_gemm``);
- :mod:`.bnb` — bitsandbytes nf4/fp4 with nested absmax, LLM.int8 ``SCB``;
- :mod:`.mlx` — MLX affine ``weight``/``scales``/``biases``;
- :mod:`.fp8` — FP8 with per-tensor/channel/group/block scales (DeepSeek-V3, compressed-tensors);
- :mod:`.ctensors` — compressed-tensors ``pack-quantized``;
- :mod:`.mxfp4` — MXFP4 ``_blocks``/``_scales`` (gpt-oss);
- :mod:`.group` — which stored tensors form a group, and assembling groups from a stream;
- :mod:`.config` — what ``config.json`` says (``quantization_config``, ``quantization``).

GGUF files are read by :mod:`hubscan.readers.gguf` (through the ``gguf`` package).
"""

from __future__ import annotations

from .awq import dequantize_awq
from .bnb import dequantize_bnb_4bit, dequantize_bnb_int8, parse_quant_state
from .config import QuantConfig, quant_config
from .ctensors import dequantize_pack_quantized
from .fp8 import dequantize_fp8
from .gptq import dequantize_gptq
from .group import Assembler, GroupPlan, group_tensors, plan_groups
from .mlx import dequantize_mlx
from .mxfp4 import dequantize_mxfp4

__all__ = [
    "Assembler",
    "GroupPlan",
    "QuantConfig",
    "dequantize_awq",
    "dequantize_bnb_4bit",
    "dequantize_bnb_int8",
    "dequantize_fp8",
    "dequantize_gptq",
    "dequantize_mlx",
    "dequantize_mxfp4",
    "dequantize_pack_quantized",
    "group_tensors",
    "parse_quant_state",
    "plan_groups",
    "quant_config",
]
