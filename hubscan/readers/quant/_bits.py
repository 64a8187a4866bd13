"""Integer codes packed into 32-bit words, low bits first: the one packing every format shares.

GPTQ, AWQ, MLX and compressed-tensors all store ``b``-bit codes as a little-endian bit
stream cut into 32-bit words: code ``k`` of a run occupies bits ``[k·b, (k+1)·b)`` of the
stream. For ``b`` ∈ {1, 2, 4, 8} a code never straddles a word and word ``w`` holds codes
``w·32/b …``; for 3, 5, 6 or 7 bits codes cross word boundaries (GPTQ's 3-bit layout packs
32 codes into 3 words, compressed-tensors packs 32 codes into ``b`` words). One function
reads both cases, along any axis, so each format module only says *which* axis and order.

Pure functions: integer tensors in, integer tensors out; no I/O.
"""

from __future__ import annotations

import torch

from ...errors import MalformedCheckpoint

__all__ = ["pack_codes", "unpack_codes"]


def _as_words(words: torch.Tensor, what: str) -> torch.Tensor:
    if words.dtype in (torch.int32, getattr(torch, "uint32", torch.int32)):
        return words.view(torch.int32) if words.dtype != torch.int32 else words
    raise MalformedCheckpoint(f"{what}: packed codes must be 32-bit integers, got {words.dtype}")


def unpack_codes(words: torch.Tensor, bits: int, count: int, *, dim: int, what: str = "tensor") -> torch.Tensor:
    """The ``count`` unsigned ``bits``-bit codes packed along ``dim`` of ``words``.

    Args:
        words: ``int32``/``uint32`` tensor; along ``dim`` each line is one bit stream.
        bits: code width, 1 … 8.
        count: codes per line (the logical length of ``dim``); at most ``words × 32 / bits``.
        dim: the packed axis.
        what: names the tensor in errors.

    Returns:
        ``int32`` tensor, ``words`` with ``dim`` replaced by ``count``, values in ``[0, 2^bits)``.

    Raises:
        MalformedCheckpoint: a width outside 1 … 8, or fewer packed bits than ``count`` codes need.
    """
    if not 1 <= bits <= 8:
        raise MalformedCheckpoint(f"{what}: {bits}-bit codes are not supported (1 … 8)")
    words = _as_words(words, what)
    dim = dim % words.dim()
    n_words = words.shape[dim]
    if count * bits > n_words * 32:
        raise MalformedCheckpoint(
            f"{what}: {count} codes of {bits} bits need {-(-count * bits // 32)} words along "
            f"dim {dim}, the tensor has {n_words}")
    w = words.movedim(dim, -1)
    mask = (1 << bits) - 1
    if 32 % bits == 0:
        per = 32 // bits
        shifts = torch.arange(0, 32, bits, dtype=torch.int32)
        codes = (w.unsqueeze(-1) >> shifts) & mask          # (..., n_words, per)
        codes = codes.reshape(*w.shape[:-1], n_words * per)[..., :count]
    else:
        # Codes straddle words: read the stream bit by bit (3/5/6/7-bit layouts are rare).
        as_bytes = w.contiguous().view(torch.uint8)          # little-endian words
        bit_idx = torch.arange(8, dtype=torch.uint8)
        stream = ((as_bytes.unsqueeze(-1) >> bit_idx) & 1).reshape(*w.shape[:-1], -1)
        stream = stream[..., : count * bits].reshape(*w.shape[:-1], count, bits).to(torch.int32)
        weights = (1 << torch.arange(bits, dtype=torch.int32))
        codes = (stream * weights).sum(-1, dtype=torch.int32)
    return codes.to(torch.int32).movedim(-1, dim).contiguous()


def pack_codes(codes: torch.Tensor, bits: int, *, dim: int) -> torch.Tensor:
    """Inverse of :func:`unpack_codes`: pack unsigned codes along ``dim`` into ``int32`` words.

    The stream is zero-padded to whole words. Used by the test packers
    (``hubscan.testing.quantized``); readers never pack.
    """
    if not 1 <= bits <= 8:
        raise ValueError(f"{bits}-bit codes are not supported (1 … 8)")
    c = codes.to(torch.int64).movedim(dim, -1)
    if c.numel() and (int(c.min()) < 0 or int(c.max()) >= 1 << bits):
        raise ValueError(f"codes out of range for {bits} bits")
    count = c.shape[-1]
    n_words = -(-count * bits // 32)
    lead = c.shape[:-1]
    bit_idx = torch.arange(bits, dtype=torch.int64)
    stream = ((c.unsqueeze(-1) >> bit_idx) & 1).reshape(*lead, count * bits)
    pad = n_words * 32 - count * bits
    if pad:
        stream = torch.nn.functional.pad(stream, (0, pad))
    stream = stream.reshape(*lead, n_words, 32)
    words = (stream << torch.arange(32, dtype=torch.int64)).sum(-1)
    words = torch.where(words >= 1 << 31, words - (1 << 32), words).to(torch.int32)
    return words.movedim(-1, dim).contiguous()
