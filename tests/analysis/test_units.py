"""MoE experts, LoRA adapters and tied weights become the right rows (issue 13)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hubscan.analysis.tensors import analyze_tensors
from hubscan.api import analyze
from hubscan.esd.layers import expert_stack, lora_role, lora_scale
from hubscan.esd.spectral import lora_singular_values
from hubscan.options import AnalysisOptions
from hubscan.readers import read_checkpoint
from hubscan.refs import TensorRef
from hubscan.testing.adapters import make_lora_adapter, make_moe_model, make_tied_model
from hubscan.testing.quantized import make_quantized_model

OPTS = AnalysisOptions(mp_fit=False, compare=False)


def _rows(path, **kw):
    return {r["tensor"]: r for r in analyze(path, mp_fit=False, compare=False, **kw).to_pylist()}


def _alone(name: str, w: torch.Tensor) -> dict:
    (lr,) = analyze_tensors([TensorRef(name, tuple(w.shape), "F32", "", load=lambda: w)], OPTS)
    return lr.row


# ------------------------------------------------------------------------------ MoE


def test_an_expert_stack_is_one_row_per_expert_equal_to_the_2d_analysis(tmp_path):
    path, expect = make_moe_model(tmp_path, layout="stacked", experts=4)
    rows = _rows(path)
    stacked = {k: v for k, v in rows.items() if "experts." in k}
    assert set(stacked) == set(expect)  # 4 experts × (gate, up, down), never one pooled conv1d row
    for name, (e, w) in expect.items():
        r = stacked[name]
        assert r["expert"] == e and r["kind"] == "dense" and r["status"] == "ok"
        ref = _alone("x.weight", w)
        assert (r["N"], r["M"], r["rf"]) == (ref["N"], ref["M"], 1)
        for col in ("alpha", "xmin", "log_norm", "lambda_max", "stable_rank", "matrix_rank"):
            assert r[col] == ref[col], (name, col)
    assert stacked["model.layers.0.mlp.experts.gate_up_proj[2].up"]["longname"] == "model.layers.0.mlp.experts.2.up_proj"
    assert rows["model.layers.0.mlp.router.weight"]["expert"] is None  # the router is a dense row


def test_per_expert_tensors_get_the_expert_column(tmp_path):
    path, expect = make_moe_model(tmp_path, layout="per_expert", experts=3)
    rows = _rows(path)
    for name, (e, _) in expect.items():
        assert rows[name]["expert"] == e and rows[name]["status"] == "ok"
    assert rows["model.layers.0.block_sparse_moe.gate.weight"]["expert"] is None


def test_mxfp4_expert_stacks_are_dequantised_then_split(tmp_path):
    path, expect = make_quantized_model(tmp_path, "mxfp4", width=128, experts=4)
    rows = _rows(path)
    config = json.loads((path / "config.json").read_text())
    stack = expert_stack("model.layers.0.mlp.experts.gate_up_proj", (4, 128, 256), config)
    assert stack.split == "interleave"
    for e in range(4):
        for part, sl in (("gate", slice(0, None, 2)), ("up", slice(1, None, 2))):
            r = rows[f"model.layers.0.mlp.experts.gate_up_proj[{e}].{part}"]
            assert r["quant_method"] == "mxfp4" and r["bits"] == 4 and r["expert"] == e
            ref = _alone("x.weight", expect["model.layers.0.mlp.experts.gate_up_proj"][e][:, sl].contiguous())
            assert r["alpha"] == ref["alpha"] and r["log_norm"] == ref["log_norm"]


def test_expert_stack_rules():
    assert expert_stack("m.mlp.experts.down_proj", (8, 64, 32), {"num_local_experts": 8}).split is None
    assert expert_stack("m.mlp.experts.down_proj", (8, 64, 32), {"num_local_experts": 4}) is None
    assert expert_stack("m.mlp.experts.gate_up_proj", (8, 192, 64), {"intermediate_size": 96}).split == "halves"
    assert expert_stack("m.conv.weight", (8, 64, 3), None) is None


# ------------------------------------------------------------------------------ LoRA


@pytest.mark.parametrize("r,out,n_in", [(8, 300, 200), (16, 128, 512), (4, 64, 64)])
def test_lora_singular_values_equal_the_dense_svd(r, out, n_in):
    g = torch.Generator().manual_seed(r)
    a, b = torch.randn(r, n_in, generator=g), torch.randn(out, r, generator=g)
    scale = 32.0 / r
    ours = lora_singular_values(a, b, scale)
    dense = np.linalg.svd(scale * (b.double() @ a.double()).numpy(), compute_uv=False)[:r]
    np.testing.assert_allclose(ours, dense, rtol=1e-10)


@pytest.mark.parametrize("rslora", [False, True])
def test_an_adapter_is_one_lora_row_per_module(tmp_path, rslora):
    path, factors = make_lora_adapter(tmp_path, r=16, alpha=32, use_rslora=rslora, dora=True)
    rows = _rows(path)
    lora = {r["longname"]: r for r in rows.values() if r["kind"] == "lora"}
    assert set(lora) == set(factors)
    scale = 32 / (np.sqrt(16) if rslora else 16)
    for module, (a, b) in factors.items():
        r = lora[module]
        assert r["tensor"] == f"{module}.weight" and r["status"] == "ok"
        assert r["lora_rank"] == 16 and r["lora_scale"] == pytest.approx(scale)
        assert r["base_model"] == "hubscan-demo/tiny-llama" and r["num_evals"] == 16
        sv = np.linalg.svd(scale * (b.double() @ a.double()).numpy(), compute_uv=False)[:16]
        assert r["lambda_max"] == pytest.approx(sv[0] ** 2, rel=1e-10)
        assert r["norm"] == pytest.approx(float((sv ** 2).sum()), rel=1e-10)
    dora = [r for r in rows.values() if "lora_magnitude_vector" in r["tensor"]]
    assert dora and all(r["status"] == "skipped" and "DoRA" in r["skip_reason"] for r in dora)
    assert not any(r["tensor"].endswith(("lora_A.weight", "lora_B.weight")) for r in rows.values())


def test_a_lora_factor_without_its_partner_fails_its_row(tmp_path):
    from safetensors.torch import load_file, save_file

    path, _ = make_lora_adapter(tmp_path, layers=1)
    sd = load_file(str(path / "adapter_model.safetensors"))
    sd.pop("base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight")
    save_file(sd, str(path / "adapter_model.safetensors"))
    rows = _rows(path)
    bad = rows["base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight"]
    assert bad["status"] == "error" and "without its lora_B" in bad["message"]
    assert rows["model.layers.0.self_attn.q_proj.weight"]["status"] == "ok"


def test_lora_rules():
    assert lora_role("base_model.model.a.b.lora_A.default.weight").module == "a.b"
    assert lora_role("x.lora_embedding_B").factor == "B"
    assert lora_role("x.weight") is None
    assert lora_scale({"lora_alpha": 16}, 8) == 2.0
    assert lora_scale({"lora_alpha": 16, "use_rslora": True}, 16) == 4.0
    assert lora_scale(None, 8) == 1.0


# ------------------------------------------------------------------------------ ties and storage columns


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_a_tied_head_is_analysed_once(tmp_path, fmt):
    """Shared storage (.bin) is seen from the offsets; a byte copy (safetensors, which sorts
    lm_head first) from the content hash under tie_word_embeddings: the second is tied."""
    rows = _rows(make_tied_model(tmp_path, fmt=fmt))
    pair = [rows["lm_head.weight"], rows["model.embed_tokens.weight"]]
    (first,) = [r for r in pair if r["status"] == "ok"]
    (second,) = [r for r in pair if r["status"] == "skipped"]
    assert second["tied_to"] == first["tensor"] and first["tied_to"] is None
    assert "analysed once" in second["skip_reason"] and second["N"] == first["N"]
    assert second["source_format"] == ("pytorch" if fmt == "bin" else "safetensors")


def test_untied_equal_shapes_are_both_analysed(tmp_path):
    rows = _rows(make_tied_model(tmp_path, tie=False))
    assert rows["lm_head.weight"]["status"] == "ok" and rows["lm_head.weight"]["tied_to"] is None


def test_rows_say_how_weights_were_stored(tmp_path):
    path, _ = make_quantized_model(tmp_path / "q", "gptq", width=128)
    rows = _rows(path)
    q = rows["model.layers.0.self_attn.q_proj.weight"]
    assert (q["source_format"], q["quant_method"], q["bits"], q["group_size"]) == ("safetensors", "gptq", 4, 64)
    assert q["dtype"] == "F32" and q["status"] == "ok"
    e = rows["model.embed_tokens.weight"]
    assert (e["quant_method"], e["bits"], e["gguf_name"]) == ("none", 32, None)
    assert not any(t.endswith((".qzeros", ".scales", ".g_idx")) for t in rows)
    assert len(list(read_checkpoint(path))) == len(rows)
