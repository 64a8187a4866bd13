"""Eigenvalues of weight matrices and the per-layer metrics (METHOD.md §2–§3).

Pure functions on tensors and arrays: no I/O. The eigen-solve runs in torch on the best
device (``cuda`` when available) in float64; everything downstream is numpy float64.

Why SVD and not Gram + ``eigvalsh``: weightwatcher computes singular values (scipy
``gesdd`` in float64 on CPU), and two of its columns live at the *bottom* of the spectrum —
``matrix_rank``/``rank_loss`` compare singular values with ``sv_max·N·eps``. Forming
``WᵀW`` squares the condition number, so eigenvalues below ``eps·λ_max`` come out as
rounding noise (measured: relative error 5e-10 on the smallest eigenvalue of a 384×384
Gaussian matrix, vs 7e-15 for float64 SVD) and the rank of a rank-deficient matrix is lost.
The tail that the power-law fit uses is accurate either way, so ``method="gram"`` is
offered for speed (≈2–4× faster on CPU) when the rank columns do not matter.

Conventions (METHOD.md §0, §2):

- ``ww`` — ``evals = σ²`` of each slice, no ``1/N``; Conv2d weights are first multiplied by
  ``1/√2`` (weightwatcher ``conv2d_norm=True``, ``conv2d_count = 1``), so every Conv2d
  column (``sv_max``, ``norm`` …) is on that scale, as in weightwatcher. (Our Conv1d
  handling is our own; it is not rescaled, as weightwatcher's rule is for Conv2d.)
- ``seed`` — ``evals = σ²/N`` (eigenvalues of ``WᵀW/N``), no conv scaling; ``sv_max`` and
  ``sv_min`` are singular values of ``W/√N``, so that ``sv_max² = lambda_max`` holds in both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from ..errors import MatrixError
from .layers import LayerMatrix, slices

__all__ = [
    "Spectrum",
    "resolve_device",
    "check_matrix",
    "eigenvalues",
    "lora_singular_values",
    "lora_spectrum",
    "layer_metrics",
    "norm",
    "log_norm",
    "spectral_norm",
    "log_spectral_norm",
    "alpha_weighted",
    "log_alpha_norm",
    "stable_rank",
    "matrix_rank",
    "rank_loss",
    "weak_rank_loss",
    "entropy",
    "num_pl_spikes",
    "fit_threshold",
    "warning_label",
    "WEAK_RANK_LOSS_TOLERANCE",
    "EVALS_THRESH",
    "ENTROPY_EPSILON",
    "OVER_TRAINED_THRESH",
    "UNDER_TRAINED_THRESH",
]

#: weightwatcher ``WEAK_RANK_LOSS_TOLERANCE``: eigenvalues below it count as weak rank loss.
WEAK_RANK_LOSS_TOLERANCE = 1e-6
#: weightwatcher ``EVALS_THRESH``: the power-law fit sees only eigenvalues above it (``ww``).
EVALS_THRESH = 1e-5
#: weightwatcher ``EPSILON`` (float64 path) added to p and to the rank in ``matrix_entropy``.
ENTROPY_EPSILON = 1e-10
#: weightwatcher warning thresholds (strict inequalities).
OVER_TRAINED_THRESH = 2.0
UNDER_TRAINED_THRESH = 6.0
#: ``ww`` Conv2d weight scale: ``sqrt(conv2d_count / 2)`` with ``conv2d_count = 1``.
CONV2D_NORM = math.sqrt(1 / 2.0)


@dataclass(frozen=True)
class Spectrum:
    """The pooled eigenvalues of one layer plus the per-slice facts the metrics need.

    Attributes:
        evals: all ``num_evals`` eigenvalues, float64, ascending, on the convention's scale.
        N: the layer's ``N`` (sets the rank tolerance ``sv_max·N·eps``).
        sv_max: largest singular value over slices (``sqrt(lambda_max)``).
        sv_min: the largest of the slices' smallest singular values (weightwatcher's
            ``max(min_sv, min(sv))`` accumulation).
        rank_loss: ``Σ_slices (M − #(sv > max(sv_slice)·N·eps))``.
        device: where the eigen-solve ran.
    """

    evals: np.ndarray
    N: int
    sv_max: float
    sv_min: float
    rank_loss: int
    device: str = "cpu"


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto``/``None`` → ``cuda`` when torch sees a GPU, else ``cpu``; others as given."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def check_matrix(tensor: torch.Tensor, name: str = "") -> None:
    """Refuse what has no spectrum: empty, NaN/Inf, or all-zero weights (``MatrixError``).

    One float64 reduction decides: ``Σ|w|`` is NaN/Inf exactly when some entry is (float64
    cannot overflow on any real weight tensor) and 0 exactly when all entries are.
    """
    label = f"{name}: " if name else ""
    if tensor.numel() == 0:
        raise MatrixError(f"{label}empty tensor of shape {tuple(tensor.shape)}")
    total = float(tensor.abs().sum(dtype=torch.float64))
    if not math.isfinite(total):
        n_bad = int((~torch.isfinite(tensor)).sum())
        raise MatrixError(f"{label}{n_bad} NaN/Inf values in tensor of shape {tuple(tensor.shape)}")
    if total == 0.0:
        raise MatrixError(f"{label}all-zero matrix of shape {tuple(tensor.shape)}")


def eigenvalues(
    tensor: torch.Tensor,
    lm: LayerMatrix,
    *,
    convention: Literal["ww", "seed"] = "ww",
    device: str | torch.device | None = "auto",
    method: Literal["svd", "gram"] = "svd",
) -> Spectrum:
    """The pooled ESD of one layer, all slices solved in one batched call.

    Args:
        tensor: the stored weight tensor (any float dtype; upcast to float64 here).
        lm: its classification (``layers.classify``).
        convention: ``ww`` (σ², Conv2d×1/√2) or ``seed`` (σ²/N).
        device: ``auto`` | ``cpu`` | ``cuda`` …
        method: ``svd`` (singular values, exact, default) or ``gram`` (``eigvalsh`` of the
            smaller Gram matrix; cheaper, inaccurate below ``eps·λ_max``).

    Returns:
        ``Spectrum`` with ``evals`` ascending float64 (``M·rf`` values).

    Raises:
        MatrixError: empty, non-finite or all-zero tensor.
    """
    if tensor.numel() == 0:
        raise MatrixError(f"{lm.tensor}: empty tensor of shape {tuple(tensor.shape)}")
    dev = resolve_device(device)
    W = slices(tensor, lm).to(device=dev, dtype=torch.float64)
    check_matrix(W, lm.tensor)  # on the float64 copy: one pass over the weights
    if convention == "ww" and lm.kind == "conv2d":
        # Same operation as weightwatcher (float32 weights × float64 scalar, then SVD), so
        # the rounding matches too.
        W = W * CONV2D_NORM
    with torch.no_grad():
        if method == "svd":
            sv = torch.linalg.svdvals(W)  # (rf, M), descending
        elif method == "gram":
            G = W.mT @ W if lm.rows >= lm.cols else W @ W.mT
            ev = torch.linalg.eigvalsh(G).clamp_min_(0.0)
            sv = ev.sqrt().flip(-1)
        else:
            raise ValueError(f"method must be 'svd' or 'gram', not {method!r}")
    sv = sv.cpu().numpy()  # (rf, M) float64
    del W

    if convention == "seed":
        sv = sv / math.sqrt(lm.N)
    elif convention != "ww":
        raise ValueError(f"convention must be 'ww' or 'seed', not {convention!r}")

    evals = np.sort((sv * sv).ravel())
    eps = np.finfo(np.float64).eps
    slice_max = sv.max(axis=1, keepdims=True)
    ranks = np.count_nonzero(sv > slice_max * lm.N * eps, axis=1)
    return Spectrum(
        evals=evals,
        N=lm.N,
        sv_max=float(sv.max()),
        sv_min=float(sv.min(axis=1).max()),
        rank_loss=int(sv.shape[1] * sv.shape[0] - ranks.sum()),
        device=str(dev),
    )


def lora_singular_values(A: torch.Tensor, B: torch.Tensor, scale: float = 1.0) -> np.ndarray:
    """The singular values of ``ΔW = scale · B · A`` from the rank-r factors, without forming
    the ``out × in`` product (weightwatcher ``peft=True`` forms it and runs a truncated SVD).

    ``B = Q_B R_B`` and ``Aᵀ = Q_A R_A`` (reduced QR, float64), so
    ``B·A = Q_B (R_B R_Aᵀ) Q_Aᵀ`` with orthonormal ``Q``'s: the singular values of ``ΔW`` are
    those of the ``r × r`` matrix ``scale · R_B R_Aᵀ``. Cost ``O((out + in)·r²)``.

    Args:
        A: ``(r, in)`` — PEFT's ``lora_A.weight``.
        B: ``(out, r)`` — PEFT's ``lora_B.weight``.

    Returns:
        ``min(r, out, in)`` singular values, descending, float64.
    """
    A64 = A.to(torch.float64)
    B64 = B.to(torch.float64)
    if A64.dim() != 2 or B64.dim() != 2 or A64.shape[0] != B64.shape[1]:
        raise MatrixError(f"LoRA factors A {list(A.shape)} and B {list(B.shape)} do not multiply")
    check_matrix(A64, "lora_A")
    check_matrix(B64, "lora_B")
    with torch.no_grad():
        _, r_b = torch.linalg.qr(B64, mode="reduced")          # (k_b, r)
        _, r_a = torch.linalg.qr(A64.mT, mode="reduced")       # (k_a, r)
        core = (r_b @ r_a.mT) * float(scale)                    # (k_b, k_a)
        sv = torch.linalg.svdvals(core)
    return sv.numpy()


def lora_spectrum(A: torch.Tensor, B: torch.Tensor, lm: LayerMatrix, *, scale: float = 1.0,
                  convention: Literal["ww", "seed"] = "ww") -> Spectrum:
    """The ESD of a LoRA layer (``lm.kind == "lora"``): the ``r`` non-zero eigenvalues of
    ``ΔWᵀΔW`` (``σ²``; ``σ²/N`` for ``seed``) from :func:`lora_singular_values`."""
    sv = lora_singular_values(A, B, scale)[: lm.num_evals]
    if convention == "seed":
        sv = sv / math.sqrt(lm.N)
    elif convention != "ww":
        raise ValueError(f"convention must be 'ww' or 'seed', not {convention!r}")
    if not np.any(sv > 0):
        raise MatrixError(f"{lm.tensor}: ΔW = s·B·A is zero (an untrained adapter: lora_B is all zeros?)")
    eps = np.finfo(np.float64).eps
    rank = int(np.count_nonzero(sv > sv.max() * lm.N * eps))
    return Spectrum(evals=np.sort(sv * sv), N=lm.N, sv_max=float(sv.max()), sv_min=float(sv.min()),
                    rank_loss=int(sv.size - rank), device="cpu")


# --- one function per formula (METHOD.md §3; weightwatcher names) -------------------------


def norm(evals: np.ndarray) -> float:
    """``Σ λ`` — the squared Frobenius norm on the convention's scale."""
    return float(np.sum(evals))


def log_norm(evals: np.ndarray) -> float:
    """``log10(norm)``."""
    return float(np.log10(norm(evals)))


def spectral_norm(evals: np.ndarray) -> float:
    """``λ_max`` (weightwatcher's ``spectral_norm`` is the largest *eigenvalue*)."""
    return float(np.max(evals))


def log_spectral_norm(evals: np.ndarray) -> float:
    """``log10(λ_max)``."""
    return float(np.log10(spectral_norm(evals)))


def alpha_weighted(alpha: float, evals: np.ndarray) -> float:
    """``α · log10(λ_max)``."""
    return float(alpha * log_spectral_norm(evals))


def log_alpha_norm(alpha: float, evals: np.ndarray) -> float:
    """``log10 Σ_all λ^α`` — over *all* eigenvalues, not just the tail (weightwatcher)."""
    with np.errstate(divide="ignore", over="ignore"):
        return float(np.log10(np.sum(evals**alpha)))


def stable_rank(evals: np.ndarray) -> float:
    """``norm / spectral_norm``."""
    return norm(evals) / spectral_norm(evals)


def matrix_rank(sv: np.ndarray, N: int) -> int:
    """``#(sv > max(sv)·N·eps)`` — weightwatcher ``matrix_rank`` (numpy's rule, with N)."""
    sv = np.asarray(sv, dtype=np.float64)
    return int(np.count_nonzero(sv > np.max(sv) * N * np.finfo(sv.dtype).eps))


def rank_loss(sv: np.ndarray, N: int) -> int:
    """``len(sv) − matrix_rank(sv, N)`` for one slice (the layer sums it over slices)."""
    return int(len(sv) - matrix_rank(sv, N))


def weak_rank_loss(evals: np.ndarray, tol: float = WEAK_RANK_LOSS_TOLERANCE) -> int:
    """``#(λ < tol)`` on the convention's scale (weightwatcher ``tolerance=1e-6``)."""
    return int(np.count_nonzero(evals < tol))


def entropy(evals: np.ndarray, N: int) -> float:
    """weightwatcher ``matrix_entropy``: ``−Σ p ln p / ln(rank)``, ``p = λ/Σλ + 1e-10``.

    The epsilon (weightwatcher's float64 ``EPSILON``) is added to every ``p`` and to the
    rank, exactly as weightwatcher does, so a rank-1 matrix gives a huge value rather than
    a division by zero.
    """
    sv = np.sqrt(evals)
    rank = matrix_rank(sv, N) + ENTROPY_EPSILON
    ev = sv * sv
    p = ev / np.sum(ev) + ENTROPY_EPSILON
    return float(-np.sum(p * np.log(p)) / np.log(rank))


def num_pl_spikes(evals: np.ndarray, xmin: float) -> int:
    """``#(λ ≥ xmin)`` — the power-law tail size (seed 002's LSA "K")."""
    return int(np.count_nonzero(evals >= xmin))


def fit_threshold(convention: str) -> float | None:
    """Eigenvalues the fit ignores: ``λ ≤ 1e-5`` for ``ww``; none for ``seed``.

    ``seed`` is ``powerlaw.Fit(evals, xmax=max(evals))`` on the σ²/N spectrum, which has no
    threshold of its own (powerlaw drops non-positive data only); the fit module applies
    that rule.
    """
    return EVALS_THRESH if convention == "ww" else None


def warning_label(
    alpha: float | None,
    *,
    fit_ok: bool,
    rank_collapse: bool = False,
    poor_fit: bool = False,
) -> str | None:
    """The ``warning`` column: comma-joined labels in a fixed order, or ``None``.

    ``failed`` (no power-law fit; weightwatcher would say ``over-trained`` with α = −1),
    else ``over-trained`` (α < 2) / ``under-trained`` (α > 6), then ``rank-collapse`` and
    ``poor-fit``. A single weightwatcher warning comes out exactly as weightwatcher spells it.
    """
    labels: list[str] = []
    if not fit_ok or alpha is None or not np.isfinite(alpha):
        labels.append("failed")
    elif alpha < OVER_TRAINED_THRESH:
        labels.append("over-trained")
    elif alpha > UNDER_TRAINED_THRESH:
        labels.append("under-trained")
    if rank_collapse:
        labels.append("rank-collapse")
    if poor_fit and fit_ok:
        labels.append("poor-fit")
    return ",".join(labels) or None


def layer_metrics(spec: Spectrum, *, alpha: float | None) -> dict[str, float | int | None]:
    """Every eigenvalue-derived column of the ``layers`` table for one layer.

    ``alpha`` is the fitted exponent, or ``None`` when the fit failed: then the columns
    that need it (``alpha_weighted``, ``log_alpha_norm``) are ``None`` — weightwatcher
    would compute them with α = −1.
    """
    ev = spec.evals
    have_alpha = alpha is not None and np.isfinite(alpha)
    return {
        "num_evals": int(ev.size),
        "sv_max": spec.sv_max,
        "sv_min": spec.sv_min,
        "rank_loss": spec.rank_loss,
        "weak_rank_loss": weak_rank_loss(ev),
        "lambda_max": spectral_norm(ev),
        "norm": norm(ev),
        "log_norm": log_norm(ev),
        "spectral_norm": spectral_norm(ev),
        "log_spectral_norm": log_spectral_norm(ev),
        "alpha_weighted": alpha_weighted(alpha, ev) if have_alpha else None,
        "log_alpha_norm": log_alpha_norm(alpha, ev) if have_alpha else None,
        "stable_rank": stable_rank(ev),
        "matrix_rank": matrix_rank(np.sqrt(ev), spec.N),
        "entropy": entropy(ev, spec.N),
    }
