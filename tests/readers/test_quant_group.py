"""Grouping: a quantised checkpoint's stored tensors become one logical float tensor per
module weight, companions consumed; broken groups fail their own layer, not the file."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from hubscan.analysis.tensors import analyze_tensors
from hubscan.errors import MalformedCheckpoint
from hubscan.options import AnalysisOptions
from hubscan.readers import read_checkpoint
from hubscan.readers.quant import Assembler, group_tensors, plan_groups, quant_config
from hubscan.testing.quantized import LAYOUTS, make_quantized_model

METHOD = {"gptq": "gptq", "awq": "awq", "bnb-nf4": "bnb-nf4", "bnb-int8": "bnb-int8", "mlx": "mlx",
          "fp8-block": "fp8-block", "compressed-tensors": "compressed-tensors", "mxfp4": "mxfp4"}
COMPANIONS = ("qzeros", "scales", "g_idx", "qweight", "absmax", "quant_map", "quant_state", "SCB", "biases",
              "weight_scale", "weight_scale_inv", "weight_packed", "weight_shape", "_blocks", "_scales")


@pytest.fixture(scope="module", params=LAYOUTS)
def model(request, tmp_path_factory):
    path, expect = make_quantized_model(tmp_path_factory.mktemp(request.param), request.param, width=128)
    return request.param, path, expect, json.loads((path / "config.json").read_text())


def _logical(path, config):
    """Through ``read_checkpoint`` (which reads the folder's config.json) when ``config`` is
    the folder's, else the stored tensors grouped with the given config (``None``: names only)."""
    if config is not None and config == json.loads((path / "config.json").read_text()):
        return list(read_checkpoint(path))
    return list(group_tensors(read_checkpoint(path, dequantize=False), config))


def test_each_group_is_one_float_tensor_named_as_the_module(model):
    layout, path, expect, config = model
    refs = _logical(path, config)
    by_name = {r.name: r for r in refs}
    assert set(expect) <= set(by_name)
    for name, want in expect.items():
        r = by_name[name]
        assert r.dtype == "F32" and r.shape == tuple(want.shape)
        assert r.quant.method == METHOD[layout] and r.quant.source_format == "safetensors"
        assert r.quant.bits in (4, 8) and len(r.quant.parts) >= 2
        got = r.load()
        assert got.dtype == torch.float32 and torch.equal(got, want)
    stored = load_file(str(path / "model.safetensors"))
    consumed = {p for r in refs if r.quant for p in r.quant.parts}
    assert {r.name for r in refs if r.quant is None} | consumed == set(stored)     # nothing lost
    assert not any(r.name.endswith(COMPANIONS) for r in refs if r.quant is None)   # nothing left over
    assert by_name["model.embed_tokens.weight"].quant is None


def test_layouts_are_recognised_without_a_config(model):
    """Names, dtypes and shapes suffice (MLX falls back to its defaults, 4 bits in groups of
    64, which the fixture uses); an FP8 matrix of one 128×128 block reads as per-tensor,
    the same numbers."""
    layout, path, expect, _ = model
    refs = {r.name: r for r in _logical(path, None)}
    for name, want in expect.items():
        assert refs[name].quant.method in ({METHOD[layout], "fp8"} if layout == "fp8-block" else {METHOD[layout]})
        assert torch.equal(refs[name].load(), want)


def test_logical_refs_pickle(model):
    _, path, expect, config = model
    r = next(r for r in _logical(path, config) if r.name in expect)
    clone = pickle.loads(pickle.dumps(r))
    assert clone.quant == r.quant and torch.equal(clone.load(), r.load())


def _rewrite(path, drop=(), replace=None):
    sd = load_file(str(path / "model.safetensors"))
    for k in drop:
        sd.pop(k)
    sd.update(replace or {})
    save_file(sd, str(path / "model.safetensors"))


def test_missing_companion_fails_that_layer_and_the_rest_is_analysed(tmp_path):
    path, _ = make_quantized_model(tmp_path, "gptq", width=128)
    _rewrite(path, drop=["model.layers.0.self_attn.q_proj.scales"])
    config = json.loads((path / "config.json").read_text())
    refs = _logical(path, config)
    broken = next(r for r in refs if r.name == "model.layers.0.self_attn.q_proj.weight")
    with pytest.raises(MalformedCheckpoint, match=r"q_proj.weight: gptq companion tensor missing: "
                                                  r"model.layers.0.self_attn.q_proj.scales"):
        broken.load()
    rows = {lr.row["tensor"]: lr.row for lr in analyze_tensors(refs, AnalysisOptions(mp_fit=False))}
    assert rows["model.layers.0.self_attn.q_proj.weight"]["status"] == "error"
    assert "scales" in rows["model.layers.0.self_attn.q_proj.weight"]["message"]
    assert rows["model.layers.0.mlp.up_proj.weight"]["status"] == "ok"
    assert rows["model.layers.1.self_attn.q_proj.weight"]["status"] == "ok"


def test_scales_of_the_wrong_shape_and_garbage_quant_state(tmp_path):
    path, _ = make_quantized_model(tmp_path / "a", "awq", width=128)
    sc = "model.layers.1.mlp.up_proj.scales"
    _rewrite(path, replace={sc: torch.ones(3, 7, dtype=torch.float16)})
    refs = {r.name: r for r in _logical(path, None)}
    with pytest.raises(MalformedCheckpoint, match="model.layers.1.mlp.up_proj.weight: scales has shape"):
        refs["model.layers.1.mlp.up_proj.weight"].load()
    assert refs["model.layers.0.mlp.up_proj.weight"].load().shape == (256, 128)

    path, _ = make_quantized_model(tmp_path / "b", "bnb-nf4", width=128)
    key = "model.layers.0.self_attn.q_proj.weight.quant_state.bitsandbytes__nf4"
    _rewrite(path, replace={key: torch.tensor(list(b"{not json"), dtype=torch.uint8)})
    refs = {r.name: r for r in _logical(path, None)}
    with pytest.raises(MalformedCheckpoint, match="q_proj.weight: quant_state is not JSON"):
        refs["model.layers.0.self_attn.q_proj.weight"].load()
    rows = {lr.row["tensor"]: lr.row for lr in analyze_tensors(refs.values(), AnalysisOptions(mp_fit=False))}
    assert rows["model.layers.0.self_attn.q_proj.weight"]["error_class"] == "MalformedCheckpoint"
    assert rows["model.layers.1.self_attn.q_proj.weight"]["status"] == "ok"


def test_assembler_yields_a_group_when_its_last_part_arrives(tmp_path):
    path, expect = make_quantized_model(tmp_path, "gptq", width=128)
    stored = list(read_checkpoint(path, dequantize=False))
    plans = plan_groups([(r.name, r.shape, r.dtype) for r in stored], quant_config(None))
    assert {p.name for p in plans} == set(expect)
    asm = Assembler(plans)
    # a streaming order in which one group's parts are far apart: held until complete
    order = sorted(stored, key=lambda r: (not r.name.endswith("qweight"), r.name))
    out, held = [], []
    for r in order:
        out.extend(asm.feed(r))
        held.append(asm.held_bytes)
    out.extend(asm.close())
    assert {r.name for r in out if r.quant} == set(expect)
    assert max(held) > 0 and held[-1] == 0
    for r in out:
        if r.quant:
            assert torch.equal(r.load(), expect[r.name])


def test_an_incomplete_stream_becomes_failing_refs(tmp_path):
    path, _ = make_quantized_model(tmp_path, "mlx", width=128)
    stored = list(read_checkpoint(path, dequantize=False))
    config = json.loads((path / "config.json").read_text())
    asm = Assembler(plan_groups([(r.name, r.shape, r.dtype) for r in stored], config))
    for r in stored:
        if not r.name.endswith("layers.1.mlp.up_proj.biases"):
            asm.feed(r)
    (left,) = asm.close()
    assert left.name == "model.layers.1.mlp.up_proj.weight"
    with pytest.raises(MalformedCheckpoint, match="mlx companion tensor missing: model.layers.1.mlp.up_proj.biases"):
        left.load()
