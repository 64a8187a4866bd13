"""Shape and dtype checks shared by the dequantisers: a file from a stranger is checked
before its numbers are trusted, and a violation names the tensor (``MalformedCheckpoint``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ...errors import MalformedCheckpoint

__all__ = ["expect_float", "expect_int", "expect_shape"]


def expect_shape(t: torch.Tensor, shape: Sequence[int], *, name: str, part: str) -> None:
    """``t.shape == shape`` or a ``MalformedCheckpoint`` naming the tensor and the part."""
    if tuple(t.shape) != tuple(int(s) for s in shape):
        raise MalformedCheckpoint(
            f"{name}: {part} has shape {list(t.shape)}, the layout needs {list(shape)}")


def expect_float(t: torch.Tensor, *, name: str, part: str) -> torch.Tensor:
    """``t`` as float32 (scales, biases); integer or packed dtypes are an error."""
    if not t.is_floating_point():
        raise MalformedCheckpoint(f"{name}: {part} must be a float tensor, got {t.dtype}")
    return t.to(torch.float32)


def expect_int(t: torch.Tensor, *, name: str, part: str) -> torch.Tensor:
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise MalformedCheckpoint(f"{name}: {part} must be an integer tensor, got {t.dtype}")
    return t
