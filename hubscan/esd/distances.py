"""Distances between two versions of one layer: weightwatcher 0.7.7's ``distances()`` methods.

A fine-tune and its base model share tensor names and shapes; how far each layer moved is
the first thing to look at. weightwatcher's ``WeightWatcher.distances(model_1, model_2,
method=…)`` reports, per layer, ``delta_W`` (and ``delta_b`` for biases) by one of:

- ``raw``: ``‖W₁ − W₂‖_F`` of the whole stored tensors (Conv2d: all four dimensions);
- ``euclidean``: ``‖W₁ − W₂‖_F`` of each of the layer's matrices (``WWLayer.Wmats``: one for a
  dense layer, the ``kh·kw`` slices of a Conv2d), averaged over the matrices;
- ``cka``: ``‖W₁ᵀW₂‖_F / √(‖W₁ᵀW₁‖_F · ‖W₂W₂ᵀ‖_F)`` per matrix (uncentred, as its source says;
  ``1e-6`` is added to a denominator below ``1e-6``), averaged over the matrices. The two
  norms are taken of the smaller Gram matrix (``‖W₂W₂ᵀ‖_F = ‖W₂ᵀW₂‖_F``): weightwatcher forms
  the ``N×N`` one, in float32, which for MiniLM's word embedding is 3.7 GB and 0.8 % off.

These functions take the tensors as stored and slice them exactly as weightwatcher builds
``Wmats`` — dense, embedding and GPT-2 ``Conv1D`` weights as stored (no transpose: CKA is not
transpose-invariant), Conv2d slices ``W[:, :, i, j]`` in ``i·kw + j`` order, each transposed to
be tall — so the numbers equal weightwatcher's (in float64; weightwatcher computes in the
weights' float32, which differs at ~1e-7 relative). weightwatcher's ``distances`` applies no
Conv2d ``1/√2`` scaling; neither do these.

Deliberate difference: 3-D weights (``nn.Conv1d``) are cut into their ``k`` slices like
Conv2d (weightwatcher passes the 3-D array to ``np.dot``, which is not a matrix product).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

__all__ = ["METHODS", "Method", "layer_distance", "matrix_distance", "raw_distance", "ww_matrices"]

Method = Literal["raw", "euclidean", "cka"]
METHODS: tuple[str, ...] = ("raw", "euclidean", "cka")
#: weightwatcher's floor on the CKA denominator.
CKA_FLOOR = 1e-6


def _f64(t) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        t = torch.as_tensor(np.asarray(t))
    return t.detach().to(torch.float64)


def ww_matrices(tensor, *, kind: str) -> torch.Tensor:
    """The matrices weightwatcher's ``Wmats`` holds for a stored tensor, as ``(k, a, b)``.

    ``kind`` is ``layers.LayerMatrix.kind`` (``dense``, ``embedding``, ``conv1d``, ``conv2d``);
    2-D tensors are one matrix as stored, 4-D ``(out, in, kh, kw)`` give ``kh·kw`` slices and
    3-D ``(out, in, k)`` give ``k`` slices, each transposed when it is wider than tall.
    """
    W = _f64(tensor)
    if W.dim() == 2:
        return W.unsqueeze(0)
    if W.dim() == 3:
        S = W.permute(2, 0, 1)
    elif W.dim() == 4:
        S = W.reshape(W.shape[0], W.shape[1], -1).permute(2, 0, 1)
    else:
        raise ValueError(f"{kind} weight of {W.dim()} dimensions has no weightwatcher matrices")
    if S.shape[1] < S.shape[2]:
        S = S.transpose(1, 2)
    return S


def raw_distance(t1, t2) -> float:
    """``‖T₁ − T₂‖_F`` of two whole tensors (weightwatcher ``method='raw'``; also its ``delta_b``)."""
    a, b = _f64(t1), _f64(t2)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    return float(torch.linalg.vector_norm(a - b))


def _gram_norm(A: torch.Tensor) -> torch.Tensor:
    """``‖AᵀA‖_F = ‖AAᵀ‖_F`` from the smaller Gram matrix (weightwatcher forms ``W₂W₂ᵀ``: for a
    30522×384 embedding a 30522² matrix, 3.7 GB in its float32)."""
    G = A.mT @ A if A.shape[-2] >= A.shape[-1] else A @ A.mT
    return torch.linalg.matrix_norm(G)


def matrix_distance(W1, W2, method: Method = "euclidean") -> torch.Tensor:
    """weightwatcher ``matrix_distance`` for a batch of matrix pairs ``(k, a, b)`` → ``(k,)``."""
    A, B = _f64(W1), _f64(W2)
    if A.shape != B.shape:
        raise ValueError(f"shapes differ: {tuple(A.shape)} vs {tuple(B.shape)}")
    if A.dim() == 2:
        A, B = A.unsqueeze(0), B.unsqueeze(0)
    if method in ("raw", "euclidean"):
        return torch.linalg.matrix_norm(A - B)
    if method == "cka":
        num = torch.linalg.matrix_norm(A.mT @ B)
        n1 = _gram_norm(A)
        n2 = _gram_norm(B)
        den = torch.sqrt(n1 * n2)
        den = torch.where(den < CKA_FLOOR, den + CKA_FLOOR, den)
        return num / den
    raise ValueError(f"method must be one of {METHODS}, not {method!r}")


def layer_distance(t1, t2, *, method: Method, kind: str = "dense") -> float:
    """``delta_W`` of one layer, as weightwatcher's ``distances(…, method=method)`` (pool=True).

    Args:
        t1, t2: the layer's stored weight tensors in the two models (same shape).
        method: ``raw`` (whole tensors), ``euclidean`` or ``cka`` (per matrix, averaged).
        kind: the layer kind (``layers.LayerMatrix.kind``); it decides the slicing.
    """
    if method == "raw":
        return raw_distance(t1, t2)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    d = matrix_distance(ww_matrices(t1, kind=kind), ww_matrices(t2, kind=kind), method)
    return float(d.sum() / d.numel())
