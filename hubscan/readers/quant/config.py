"""What a model's ``config.json`` says about quantisation, read once and validated.

transformers writes ``quantization_config`` (``quant_method`` = ``gptq`` | ``awq`` |
``bitsandbytes`` | ``fp8`` | ``compressed-tensors`` | ``mxfp4`` …); mlx-lm writes
``quantization = {"group_size": 64, "bits": 4, "<module path>": {...}}``. Tensor names and
shapes decide the layout when no config is at hand (``hubscan.readers.quant.group``);
the config supplies what the tensors cannot say (bits, group size, zero-point format,
block size) and is preferred where both speak.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["QuantConfig", "quant_config"]


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


@dataclass(frozen=True)
class QuantConfig:
    """The quantisation facts of one model (all optional: ``None`` = not stated).

    Attributes:
        method: ``quant_method`` as written (lower case), or ``mlx`` for an mlx-lm config.
        bits: weight bits (GPTQ/AWQ ``bits``, MLX ``bits``, compressed-tensors ``num_bits``).
        group_size: weights per scale; ``-1`` in GPTQ configs means one group.
        zero_point: GPTQ ``v1`` (``checkpoint_format = "gptq"``, the default) or ``v2``.
        awq_version: AWQ ``version`` (``gemm``, ``gemv`` …).
        block: FP8 ``weight_block_size`` as ``(rows, cols)``.
        ct_format: compressed-tensors ``format`` (``pack-quantized``, ``float-quantized`` …).
        mlx_overrides: per-module ``(path, bits, group_size)`` of an mlx-lm config.
    """

    method: str | None = None
    bits: int | None = None
    group_size: int | None = None
    zero_point: str = "v1"
    awq_version: str | None = None
    block: tuple[int, int] | None = None
    ct_format: str | None = None
    mlx_overrides: tuple[tuple[str, int, int], ...] = ()

    def mlx_params(self, module: str) -> tuple[int, int]:
        """``(bits, group_size)`` of one MLX module: its override, else the global pair,
        else MLX's defaults (4 bits, groups of 64)."""
        for path, bits, gs in self.mlx_overrides:
            if path == module:
                return bits, gs
        return self.bits or 4, self.group_size or 64


def _compressed_tensors(qc: Mapping[str, Any]) -> tuple[int | None, int | None, str | None]:
    """bits, group size and format of the first weight scheme of a compressed-tensors config."""
    fmt = qc.get("format") if isinstance(qc.get("format"), str) else None
    groups = qc.get("config_groups")
    if isinstance(groups, Mapping):
        for g in groups.values():
            w = g.get("weights") if isinstance(g, Mapping) else None
            if isinstance(w, Mapping):
                fmt = g.get("format", fmt) if isinstance(g.get("format", fmt), str) else fmt
                return _int(w.get("num_bits")), _int(w.get("group_size")), fmt
    return None, None, fmt


def quant_config(config: Mapping[str, Any] | None) -> QuantConfig:
    """The quantisation facts of a ``config.json`` (an empty record when it has none).

    Malformed entries are ignored field by field — a wrong config must not hide the
    weights; the tensors' own shapes are checked at dequantisation anyway.
    """
    if not isinstance(config, Mapping):
        return QuantConfig()
    qc = config.get("quantization_config")
    if isinstance(qc, Mapping):
        method = str(qc.get("quant_method") or "").lower() or None
        if method == "compressed-tensors":
            bits, gs, fmt = _compressed_tensors(qc)
            return QuantConfig(method=method, bits=bits, group_size=gs, ct_format=fmt)
        block = qc.get("weight_block_size")
        block_t = (tuple(block) if isinstance(block, (list, tuple)) and len(block) == 2
                   and all(_int(b) and b > 0 for b in block) else None)
        fmt = str(qc.get("checkpoint_format") or "gptq").lower()
        return QuantConfig(
            method=method, bits=_int(qc.get("bits")), group_size=_int(qc.get("group_size")),
            zero_point="v2" if fmt == "gptq_v2" else "v1",
            awq_version=str(qc.get("version")).lower() if qc.get("version") else None,
            block=block_t,  # type: ignore[arg-type]
        )
    q = config.get("quantization")
    if isinstance(q, Mapping):
        overrides = tuple(
            (k, _int(v.get("bits")) or 4, _int(v.get("group_size")) or 64)
            for k, v in q.items() if isinstance(v, Mapping)
        )
        return QuantConfig(method="mlx", bits=_int(q.get("bits")), group_size=_int(q.get("group_size")),
                           mlx_overrides=overrides)
    return QuantConfig()
