"""MLX checkpoints (``mlx.nn.QuantizedLinear`` / ``QuantizedEmbedding``, saved by mlx-lm):
``weight`` (uint32 codes), ``scales``, ``biases`` → the float weight ``(out, in)``.

Layout (MLX ``mlx/ops.cpp`` ``quantize``/``dequantize``, affine mode; mlx-lm writes
``config.json["quantization"] = {"group_size": 64, "bits": 4}`` plus per-module overrides
keyed by module path):

- ``weight``: uint32 ``(out, in·bits/32)`` — each row a little-endian bit stream of
  ``bits``-bit codes (3/5/6-bit codes straddle words);
- ``scales``, ``biases``: float ``(out, in/group_size)``.

``W[r, c] = scales[r, c // g] · q[r, c] + biases[r, c // g]``.
"""

from __future__ import annotations

import torch

from ...errors import MalformedCheckpoint
from ._bits import unpack_codes
from ._check import expect_float, expect_shape

__all__ = ["dequantize_mlx"]


def dequantize_mlx(weight: torch.Tensor, scales: torch.Tensor, biases: torch.Tensor, *,
                   bits: int, group_size: int, name: str = "mlx weight") -> torch.Tensor:
    """The float32 weight ``(out, in)`` of one MLX quantised layer (see module doc).

    Raises:
        MalformedCheckpoint: shapes that contradict ``bits``/``group_size``, naming the tensor.
    """
    if weight.dim() != 2 or scales.dim() != 2:
        raise MalformedCheckpoint(f"{name}: MLX weight and scales must be 2-D")
    if group_size <= 0 or bits not in (2, 3, 4, 5, 6, 8):
        raise MalformedCheckpoint(f"{name}: MLX bits={bits}, group_size={group_size} is not a layout")
    out, words = weight.shape
    n_in = words * 32 // bits
    if n_in % group_size:
        raise MalformedCheckpoint(f"{name}: {n_in} columns are not whole groups of {group_size}")
    s = expect_float(scales, name=name, part="scales")
    b = expect_float(biases, name=name, part="biases")
    expect_shape(s, (out, n_in // group_size), name=name, part="scales")
    expect_shape(b, (out, n_in // group_size), name=name, part="biases")
    q = unpack_codes(weight, bits, n_in, dim=1, what=f"{name} weight").to(torch.float32)
    q = q.view(out, n_in // group_size, group_size)
    return (s.unsqueeze(-1) * q + b.unsqueeze(-1)).reshape(out, n_in)
