"""Tensor name + shape → LayerMatrix or Skip (METHOD.md §1, weightwatcher 0.7.7 rules)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from transformers.pytorch_utils import Conv1D

from hubscan.errors import MatrixError
from hubscan.esd.layers import (
    LayerMatrix,
    Skip,
    classify,
    longname_of,
    module_kind,
    slices,
)
from hubscan.options import AnalysisOptions

OPTS = AnalysisOptions()


def test_dense_dims_and_longname():
    lm = classify("encoder.layer.0.attention.self.query.weight", (384, 1536), "F32", options=OPTS)
    assert isinstance(lm, LayerMatrix)
    assert (lm.kind, lm.N, lm.M, lm.rf, lm.num_evals) == ("dense", 1536, 384, 1, 384)
    assert lm.Q == pytest.approx(4.0)
    assert lm.longname == "encoder.layer.0.attention.self.query"
    assert not lm.transposed


def test_conv2d_pools_kernel_positions():
    lm = classify("features.3.weight", (64, 32, 3, 3), "BF16", options=OPTS)
    assert (lm.kind, lm.rows, lm.cols, lm.N, lm.M, lm.rf, lm.num_evals) == ("conv2d", 64, 32, 64, 32, 9, 288)
    # out < in: N/M are still ordered (weightwatcher may report them swapped, see docs)
    lm = classify("x.weight", (16, 32, 2, 2), "F16", options=OPTS)
    assert (lm.N, lm.M, lm.rf, lm.num_evals) == (32, 16, 4, 64)


def test_conv1d_3d_is_k_slices():
    lm = classify("conv.weight", (48, 24, 5), "F32", options=OPTS)
    assert (lm.kind, lm.rows, lm.cols, lm.rf, lm.num_evals) == ("conv1d", 48, 24, 5, 120)


def test_gpt2_conv1d_orientation():
    lm = classify("h.0.attn.c_attn.weight", (768, 2304), "F32", options=OPTS)
    assert lm.kind == "dense" and lm.transposed and (lm.rows, lm.cols) == (768, 2304)
    lm = classify("h.0.attn.c_attn.weight", (768, 2304), "F32", options=OPTS, config={"model_type": "gpt2"})
    assert lm.transposed
    lm = classify("h.0.attn.c_attn.weight", (768, 2304), "F32", options=OPTS, config={"model_type": "bert"})
    assert not lm.transposed
    # module type decides for in-memory modules
    assert classify("proj.weight", (64, 96), "F32", options=OPTS, module="conv1d").transposed


@pytest.mark.parametrize("name", [
    "embeddings.word_embeddings.weight", "transformer.wte.weight", "model.embed_tokens.weight",
    "embeddings.position_embeddings.weight", "shared.weight",
])
def test_embedding_by_name(name):
    assert classify(name, (1000, 64), "F32", options=OPTS).kind == "embedding"


def test_embedding_by_config_and_module_not_lm_head():
    assert classify("tok.weight", (500, 32), "F32", options=OPTS, config={"vocab_size": 500}).kind == "embedding"
    assert classify("lm_head.weight", (500, 32), "F32", options=OPTS, config={"vocab_size": 500}).kind == "dense"
    assert classify("gpt_neox.embed_out.weight", (500, 32), "F32", options=OPTS).kind == "dense"
    assert classify("anything.weight", (500, 32), "F32", options=OPTS, module="embedding").kind == "embedding"


@pytest.mark.parametrize("name, shape, dtype, reason", [
    ("ln.bias", (384,), "F32", "1-D"),
    ("scale", (), "F32", "scalar"),
    ("embeddings.position_ids", (1, 512), "I64", "I64"),
    ("q.weight", (64, 64), "I8", "I8"),
    ("q.weight", (64, 64), "U8", "U8"),
    ("q.weight", (64, 64), "F4", "F4"),
    ("q.weight", (64, 64), "F8_E8M0", "F8_E8M0"),
    ("attn.in_proj_weight", (192, 64), "F32", "module weight"),
    ("cls_token", (1, 1, 64), "F32", "module weight"),
    ("c3d.weight", (8, 8, 3, 3, 3), "F32", "5-D"),
    ("small.weight", (5, 4), "F32", "num_evals 4 < min_evals 8"),
    ("tt.weight", (2, 384), "F32", "num_evals 2 < min_evals 8"),
    ("big.weight", (20000, 16000), "F32", "num_evals 16000 > max_evals 15000"),
    ("vocab.weight", (60000, 512), "F32", "N 60000 > max_N 50000"),
])
def test_skips_carry_reasons(name, shape, dtype, reason):
    s = classify(name, shape, dtype, options=OPTS)
    assert isinstance(s, Skip), s
    assert reason in s.reason
    assert s.longname == longname_of(name)


def test_size_rules_follow_options_and_keep_dims():
    s = classify("small.weight", (5, 4), "F32", options=OPTS)
    assert s.kind == "dense" and s.lm is not None and (s.lm.N, s.lm.M) == (5, 4)
    assert isinstance(classify("small.weight", (5, 4), "F32", options=AnalysisOptions(min_evals=4)), LayerMatrix)
    assert isinstance(classify("c.weight", (4, 4, 3, 3), "F32", options=OPTS), LayerMatrix)  # 4·9 ≥ 8
    assert isinstance(classify("big.weight", (20000, 16000), "F32",
                               options=AnalysisOptions(max_evals=20000)), LayerMatrix)
    s = classify("c.weight", (2000, 1000, 4, 4), "F32", options=OPTS)  # 1000·16 > 15000
    assert isinstance(s, Skip) and "16000" in s.reason


def test_layers_include_and_module_skips():
    opts = AnalysisOptions(layers_include=r"attention")
    assert isinstance(classify("encoder.dense.weight", (64, 64), "F32", options=opts), Skip)
    assert isinstance(classify("x.attention.q.weight", (64, 64), "F32", options=opts), LayerMatrix)
    assert "norm" in classify("ln.weight", (64, 64), "F32", options=OPTS, module="norm").reason
    assert isinstance(classify("m.weight", (64, 64, 3), "F32", options=OPTS, module="dense"), Skip)


def test_empty_tensor_is_a_matrix_error():
    with pytest.raises(MatrixError, match="empty"):
        classify("e.weight", (0, 16), "F32", options=OPTS)


def test_torch_dtypes_accepted():
    assert isinstance(classify("a.weight", (16, 16), torch.bfloat16, options=OPTS), LayerMatrix)
    assert isinstance(classify("a.weight", (16, 16), torch.int8, options=OPTS), Skip)


def test_slices_match_manual_indexing():
    g = torch.Generator().manual_seed(0)
    w4 = torch.randn(6, 5, 2, 3, generator=g)
    lm = classify("c.weight", w4.shape, "F32", options=OPTS)
    s = slices(w4, lm)
    assert s.shape == (6, 6, 5)
    for i in range(2):
        for j in range(3):
            assert torch.equal(s[i * 3 + j], w4[:, :, i, j])
    w3 = torch.randn(7, 4, 3, generator=g)
    s = slices(w3, classify("c.weight", w3.shape, "F32", options=OPTS))
    assert all(torch.equal(s[k], w3[:, :, k]) for k in range(3))
    w2 = torch.randn(9, 8, generator=g)
    assert torch.equal(slices(w2, classify("d.weight", w2.shape, "F32", options=OPTS))[0], w2)
    with pytest.raises(MatrixError):
        slices(torch.zeros(3, 3), lm)


def test_module_kind_follows_weightwatcher():
    assert module_kind(nn.Linear(3, 4)) == "dense"
    assert module_kind(nn.Conv2d(3, 4, 3)) == "conv2d"
    assert module_kind(nn.Conv1d(3, 4, 3)) == "conv1d"
    assert module_kind(Conv1D(4, 3)) == "conv1d"  # GPT-2: by class path
    assert module_kind(nn.Embedding(10, 4)) == "embedding"
    assert module_kind(nn.LayerNorm(4)) == "norm"
    assert module_kind(nn.ConvTranspose2d(3, 4, 3)) == "unknown"
    assert module_kind(nn.MultiheadAttention(8, 2).out_proj) == "dense"
