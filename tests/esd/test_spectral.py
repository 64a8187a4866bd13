"""Every per-layer metric against an independent numpy float64 SVD (METHOD.md §2–§3).

The reference below is written from METHOD.md with numpy only (``np.linalg.svd`` per slice,
formulas spelled out), not through hubscan.esd.spectral, so a shared bug cannot hide.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers.pytorch_utils import Conv1D

from hubscan.errors import MatrixError
from hubscan.esd.layers import classify
from hubscan.esd.spectral import (
    eigenvalues,
    entropy,
    layer_metrics,
    matrix_rank,
    resolve_device,
    warning_label,
)
from hubscan.options import AnalysisOptions

OPTS = AnalysisOptions()
EPS = np.finfo(np.float64).eps


def reference(weight: np.ndarray, kind: str, convention: str, alpha: float) -> dict:
    """METHOD.md §2–§3 in plain numpy: slices → SVD → pooled evals → columns."""
    w = weight.astype(np.float64)
    if kind == "conv2d":
        mats = [w[:, :, i, j] for i in range(w.shape[2]) for j in range(w.shape[3])]
    elif kind == "conv1d":
        mats = [w[:, :, k] for k in range(w.shape[2])]
    else:
        mats = [w]
    N = max(mats[0].shape)
    scale = 1.0
    if convention == "ww" and kind == "conv2d":
        scale = 1 / math.sqrt(2)
    svs = [np.linalg.svd(m * scale, compute_uv=False) for m in mats]
    if convention == "seed":
        svs = [s / math.sqrt(N) for s in svs]
    ev = np.sort(np.concatenate([s**2 for s in svs]))
    allsv = np.sqrt(ev)
    rank = int(np.sum(allsv > allsv.max() * N * EPS))
    p = ev / ev.sum() + 1e-10
    return {
        "num_evals": ev.size,
        "sv_max": max(s.max() for s in svs),
        "sv_min": max(s.min() for s in svs),
        "rank_loss": sum(len(s) - int(np.sum(s > s.max() * N * EPS)) for s in svs),
        "weak_rank_loss": int(np.sum(ev < 1e-6)),
        "lambda_max": ev.max(),
        "norm": ev.sum(),
        "log_norm": np.log10(ev.sum()),
        "spectral_norm": ev.max(),
        "log_spectral_norm": np.log10(ev.max()),
        "alpha_weighted": alpha * np.log10(ev.max()),
        "log_alpha_norm": np.log10(np.sum(ev**alpha)),
        "stable_rank": ev.sum() / ev.max(),
        "matrix_rank": rank,
        "entropy": -np.sum(p * np.log(p)) / np.log(rank + 1e-10),
        "evals": ev,
    }


def layer_weights():
    """(tensor name, stored weight) for Linear, Conv2d, GPT-2 Conv1D, Embedding, Conv1d."""
    torch.manual_seed(3)
    lin = torch.nn.Linear(96, 40)
    conv = torch.nn.Conv2d(12, 20, 3)
    c1d = Conv1D(72, 48)  # stores (in=48, out=72)
    emb = torch.nn.Embedding(300, 32)
    conv1 = torch.nn.Conv1d(10, 16, 5)
    heavy = torch.from_numpy(np.random.default_rng(3).standard_t(2.5, (200, 80)).astype(np.float32))
    return [
        ("lin.weight", lin.weight.detach()),
        ("conv.weight", conv.weight.detach()),
        ("h.0.attn.c_attn.weight", c1d.weight.detach()),
        ("embeddings.word_embeddings.weight", emb.weight.detach()),
        ("conv1.weight", conv1.weight.detach()),
        ("heavy.weight", heavy),
    ]


@pytest.mark.parametrize("convention", ["ww", "seed"])
@pytest.mark.parametrize("name, weight", layer_weights(), ids=lambda x: x if isinstance(x, str) else "")
def test_every_metric_equals_numpy_svd(name, weight, convention):
    lm = classify(name, weight.shape, weight.dtype, options=OPTS)
    spec = eigenvalues(weight, lm, convention=convention, device="cpu")
    alpha = 3.7
    got = layer_metrics(spec, alpha=alpha)
    ref = reference(weight.numpy(), lm.kind, convention, alpha)
    np.testing.assert_allclose(spec.evals, ref["evals"], rtol=1e-10, atol=1e-13 * ref["lambda_max"])
    assert np.all(np.diff(spec.evals) >= 0) and spec.evals.dtype == np.float64
    for col in ("num_evals", "rank_loss", "weak_rank_loss", "matrix_rank"):
        assert got[col] == ref[col], col
    for col in ("sv_max", "sv_min", "lambda_max", "norm", "log_norm", "spectral_norm",
                "log_spectral_norm", "alpha_weighted", "log_alpha_norm", "stable_rank", "entropy"):
        assert got[col] == pytest.approx(ref[col], rel=1e-10), col


def test_conventions_relate_by_scale():
    w = torch.randn(64, 32, 3, 3, generator=torch.Generator().manual_seed(1))
    lm = classify("c.weight", w.shape, w.dtype, options=OPTS)
    ww = eigenvalues(w, lm, convention="ww", device="cpu").evals
    seed = eigenvalues(w, lm, convention="seed", device="cpu").evals
    # ww: conv weights × 1/√2 → evals halved; seed: σ²/N with N = 64
    np.testing.assert_allclose(ww * 2 / 64, seed, rtol=1e-12)


def test_rank_columns_on_rank_deficient_matrix():
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((120, 10)) @ rng.standard_normal((10, 60))).astype(np.float64)
    t = torch.from_numpy(w)
    lm = classify("lr.weight", t.shape, t.dtype, options=OPTS)
    spec = eigenvalues(t, lm, device="cpu")
    m = layer_metrics(spec, alpha=2.0)
    assert m["matrix_rank"] == 10 == np.linalg.matrix_rank(w)
    assert spec.rank_loss == 50
    # Gram + eigvalsh cannot see this: its "zero" eigenvalues are rounding noise far above
    # the rank tolerance — why SVD is the default.
    gram = eigenvalues(t, lm, device="cpu", method="gram")
    assert layer_metrics(gram, alpha=2.0)["matrix_rank"] > 10
    np.testing.assert_allclose(gram.evals[-10:], spec.evals[-10:], rtol=1e-10)


def test_gram_path_accuracy_on_the_tail():
    w = torch.from_numpy(np.random.default_rng(1).standard_t(3, (400, 200)))
    lm = classify("x.weight", w.shape, w.dtype, options=OPTS)
    svd = eigenvalues(w, lm, device="cpu").evals
    gram = eigenvalues(w, lm, device="cpu", method="gram").evals
    # the top half of the spectrum (where the power-law tail lives) agrees to ~1e-13
    np.testing.assert_allclose(gram[100:], svd[100:], rtol=1e-11)


@pytest.mark.parametrize("bad, msg", [
    (torch.full((16, 16), float("nan")), "NaN"),
    (torch.tensor([[1.0, float("inf")]] * 10), "NaN/Inf"),
    (torch.zeros(16, 16), "all-zero"),
])
def test_unusable_matrices_raise_matrix_error(bad, msg):
    lm = classify("x.weight", bad.shape, bad.dtype, options=AnalysisOptions(min_evals=1))
    with pytest.raises(MatrixError, match=msg):
        eigenvalues(bad, lm, device="cpu")


def test_half_precision_is_upcast():
    w = torch.randn(32, 16, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    lm = classify("x.weight", w.shape, "BF16", options=OPTS)
    got = eigenvalues(w, lm, device="cpu").evals
    ref = np.sort(np.linalg.svd(w.float().numpy().astype(np.float64), compute_uv=False) ** 2)
    np.testing.assert_allclose(got, ref, rtol=1e-10)


def test_metric_helpers_edge_cases():
    assert matrix_rank(np.array([1.0, 1e-20, 0.0]), 3) == 1
    # rank 1: weightwatcher's epsilons keep it finite (and far outside [0, 1]) instead of
    # dividing by ln(1) = 0
    p = np.array([1.0, 0.0, 0.0]) + 1e-10
    expected = -np.sum(p * np.log(p)) / np.log(1 + 1e-10)
    assert entropy(np.array([4.0, 0.0, 0.0]), 3) == pytest.approx(expected, rel=1e-6)
    assert expected > 10
    # no alpha → alpha-dependent columns NULL, the rest still there
    w = torch.randn(20, 10, generator=torch.Generator().manual_seed(0))
    spec = eigenvalues(w, classify("x.weight", w.shape, w.dtype, options=OPTS), device="cpu")
    m = layer_metrics(spec, alpha=None)
    assert m["alpha_weighted"] is None and m["log_alpha_norm"] is None and m["norm"] > 0


def test_warning_labels():
    assert warning_label(1.5, fit_ok=True) == "over-trained"
    assert warning_label(2.0, fit_ok=True) is None
    assert warning_label(6.0, fit_ok=True) is None
    assert warning_label(6.01, fit_ok=True) == "under-trained"
    assert warning_label(None, fit_ok=False) == "failed"
    assert warning_label(7.0, fit_ok=True, rank_collapse=True, poor_fit=True) == "under-trained,rank-collapse,poor-fit"
    assert warning_label(None, fit_ok=False, poor_fit=True) == "failed"


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
