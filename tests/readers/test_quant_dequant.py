"""Each dequantiser equals an independent reference, bit for bit where the reference is
deterministic (issue 13).

References: bitsandbytes' own CPU kernels (``quantize_4bit``/``dequantize_4bit``,
``int8_vectorwise_*``), MLX's ``mx.quantize``/``mx.dequantize``, compressed-tensors'
``PackedQuantizationCompressor`` and ``dequantize``, transformers' MXFP4
``convert_moe_packed_tensors`` and FP8 ``_dequantize_fp8_weight``; GPTQModel's and AutoAWQ's
published dequantisation code reproduced in ``tests/readers/oracles.py`` (their packages
need CUDA builds). Inputs are packed both by the reference library (where it can quantise)
and by hubscan's own packers (``hubscan.testing.quantized``), from known float matrices.
"""

from __future__ import annotations

import contextlib
import importlib
import os

import numpy as np
import pytest
import torch

from hubscan.errors import MalformedCheckpoint
from hubscan.readers.quant import (
    dequantize_awq,
    dequantize_bnb_4bit,
    dequantize_bnb_int8,
    dequantize_fp8,
    dequantize_gptq,
    dequantize_mlx,
    dequantize_mxfp4,
    dequantize_pack_quantized,
    parse_quant_state,
)
from hubscan.readers.quant._bits import pack_codes, unpack_codes
from hubscan.testing import quantized as Q

from . import oracles


def _w(rows: int = 96, cols: int = 256, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))


@contextlib.contextmanager
def _offline():
    """bitsandbytes may ask the Hub for a CPU kernel at import; tests never touch the network."""
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old


def _import(name: str):
    with _offline():
        try:
            return importlib.import_module(name)
        except ImportError:
            pytest.skip(f"{name} is not installed (test extra)")


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 6, 7, 8])
def test_bit_streams_round_trip(bits):
    codes = torch.randint(0, 1 << bits, (5, 77), generator=torch.Generator().manual_seed(bits))
    for dim in (0, 1):
        c = codes if dim == 1 else codes.t().contiguous()
        words = pack_codes(c, bits, dim=dim)
        assert words.dtype == torch.int32
        assert torch.equal(unpack_codes(words, bits, c.shape[dim], dim=dim), c.to(torch.int32))
    with pytest.raises(MalformedCheckpoint, match="need"):
        unpack_codes(pack_codes(codes, bits, dim=1), bits, 10_000, dim=1)


# ------------------------------------------------------------------------------ GPTQ / AWQ


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("desc_act", [False, True])
@pytest.mark.parametrize("zero_point", ["v1", "v2"])
def test_gptq_equals_gptqmodel_formula(bits, desc_act, zero_point):
    w = _w()
    ent, deq = Q.pack_gptq(w, bits=bits, group_size=32, desc_act=desc_act, zero_point=zero_point)
    ours = dequantize_gptq(ent["qweight"], ent["qzeros"], ent["scales"], ent["g_idx"], bits=bits,
                           group_size=32, zero_point=zero_point)
    ref = oracles.gptq_dequantize_weight(ent["qweight"], ent["qzeros"], ent["scales"].float(), ent["g_idx"],
                                         bits, v1=zero_point == "v1").t()
    assert torch.equal(ours, ref)
    assert torch.equal(ours, deq)
    if not desc_act:  # without g_idx the groups are i // group_size
        assert torch.equal(dequantize_gptq(ent["qweight"], ent["qzeros"], ent["scales"], None, bits=bits,
                                           group_size=32, zero_point=zero_point), ref)


def test_gptq_random_words_equal_the_formula():
    """Arbitrary packed words (every bit pattern, negative int32 included), not just ours."""
    g = torch.Generator().manual_seed(1)
    qweight = torch.randint(-2**31, 2**31 - 1, (32, 64), generator=g, dtype=torch.int64).to(torch.int32)
    qzeros = torch.randint(-2**31, 2**31 - 1, (4, 8), generator=g, dtype=torch.int64).to(torch.int32)
    scales = torch.rand(4, 64, generator=g).half()
    g_idx = torch.arange(256, dtype=torch.int32) // 64
    ours = dequantize_gptq(qweight, qzeros, scales, g_idx, bits=4, group_size=64)
    ref = oracles.gptq_dequantize_weight(qweight, qzeros, scales.float(), g_idx, 4, v1=True).t()
    assert torch.equal(ours, ref)


def test_awq_equals_autoawq_dequantize_gemm():
    w = _w()
    ent, deq = Q.pack_awq(w, group_size=64)
    ours = dequantize_awq(ent["qweight"], ent["qzeros"], ent["scales"], group_size=64)
    ref = oracles.awq_dequantize_gemm(ent["qweight"], ent["qzeros"], ent["scales"].float(), 4, 64).t()
    assert torch.equal(ours, ref)
    assert torch.equal(ours, deq)
    g = torch.Generator().manual_seed(2)
    qw = torch.randint(-2**31, 2**31 - 1, (128, 12), generator=g, dtype=torch.int64).to(torch.int32)
    qz = torch.randint(-2**31, 2**31 - 1, (2, 12), generator=g, dtype=torch.int64).to(torch.int32)
    sc = torch.rand(2, 96, generator=g).half()
    assert torch.equal(dequantize_awq(qw, qz, sc, group_size=64),
                       oracles.awq_dequantize_gemm(qw, qz, sc.float(), 4, 64).t())


# ------------------------------------------------------------------------------ bitsandbytes


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
@pytest.mark.parametrize("nested", [False, True])
def test_bnb_4bit_equals_bitsandbytes(quant_type, nested):
    F = _import("bitsandbytes.functional")
    w = _w(64, 200)  # 12800 elements: the last absmax block is full, the nested one is not
    packed, state = F.quantize_4bit(w, blocksize=64, quant_type=quant_type, compress_statistics=nested)
    ref = F.dequantize_4bit(packed, state)
    d = state.as_dict(packed=True)
    qs = parse_quant_state(d[f"quant_state.bitsandbytes__{quant_type}"], name="w")
    ours = dequantize_bnb_4bit(packed, d["absmax"], d["quant_map"], qs, nested_absmax=d.get("nested_absmax"),
                               nested_quant_map=d.get("nested_quant_map"), name="w")
    assert ours.shape == ref.shape and torch.equal(ours, ref)


def test_bnb_4bit_our_packer_reads_back_through_bitsandbytes():
    F = _import("bitsandbytes.functional")
    w = _w(64, 200)
    ent, deq = Q.pack_bnb_4bit(w, nested=True)
    qs = {k.removeprefix("weight."): v for k, v in ent.items() if k != "weight"}
    state = F.QuantState.from_dict(qs, device=torch.device("cpu"))
    ref = F.dequantize_4bit(ent["weight"], state)
    st = parse_quant_state(ent["weight.quant_state.bitsandbytes__nf4"], name="w")
    ours = dequantize_bnb_4bit(ent["weight"], ent["weight.absmax"], ent["weight.quant_map"], st,
                               nested_absmax=ent["weight.nested_absmax"],
                               nested_quant_map=ent["weight.nested_quant_map"], name="w")
    assert torch.equal(ours, ref)
    assert torch.allclose(ours, deq, rtol=0, atol=1e-6)


def test_bnb_int8_equals_bitsandbytes():
    F = _import("bitsandbytes.functional")
    w = _w()
    q, scb, _ = F.int8_vectorwise_quant(w)
    ref = F.int8_vectorwise_dequant(q, scb)
    assert torch.equal(dequantize_bnb_int8(q, scb), ref)
    ent, deq = Q.pack_bnb_int8(w)
    ours = dequantize_bnb_int8(ent["weight"], ent["SCB"])
    assert torch.equal(ours, F.int8_vectorwise_dequant(ent["weight"], ent["SCB"])) and torch.equal(ours, deq)


# ------------------------------------------------------------------------------ MLX


@pytest.mark.parametrize("bits,group_size", [(2, 64), (3, 64), (4, 32), (4, 64), (4, 128), (5, 64), (6, 64), (8, 64)])
def test_mlx_equals_mx_dequantize(bits, group_size):
    mx = _import("mlx.core")
    w = _w(64, 256).numpy()
    q, s, b = mx.quantize(mx.array(w), group_size=group_size, bits=bits)
    ref = np.array(mx.dequantize(q, s, b, group_size=group_size, bits=bits))
    ours = dequantize_mlx(torch.from_numpy(np.array(q).view(np.int32)), torch.from_numpy(np.array(s)),
                          torch.from_numpy(np.array(b)), bits=bits, group_size=group_size).numpy()
    np.testing.assert_array_equal(ours, ref)
    ent, deq = Q.pack_mlx(torch.from_numpy(w), bits=bits, group_size=group_size)
    ref2 = np.array(mx.dequantize(mx.array(ent["weight"].numpy()), mx.array(ent["scales"].float().numpy()),
                                  mx.array(ent["biases"].float().numpy()), group_size=group_size, bits=bits))
    np.testing.assert_array_equal(deq.numpy(), ref2)


# ------------------------------------------------------------------------------ FP8


@pytest.mark.parametrize("shape", [(256, 384), (200, 300)])
def test_fp8_block_equals_transformers(shape):
    fp8 = importlib.import_module("transformers.integrations.finegrained_fp8")
    w = _w(*shape)
    ent, deq = Q.pack_fp8(w, granularity="block", block=(128, 128))
    ours, gran = dequantize_fp8(ent["weight"], ent["weight_scale_inv"], block=(128, 128))
    ref = fp8._dequantize_fp8_weight(ent["weight"], ent["weight_scale_inv"], [128, 128], torch.float32)
    assert gran == "block" and torch.equal(ours, ref) and torch.equal(ours, deq)
    assert torch.equal(dequantize_fp8(ent["weight"], ent["weight_scale_inv"])[0], ref)  # 128x128 by default


@pytest.mark.parametrize("granularity", ["tensor", "channel"])
def test_fp8_scaled_equals_compressed_tensors(granularity):
    ct = _import("compressed_tensors.quantization")
    fwd = importlib.import_module("compressed_tensors.quantization.lifecycle.forward")
    w = _w()
    ent, deq = Q.pack_fp8(w, granularity=granularity, scale_name="weight_scale")
    args = ct.QuantizationArgs(num_bits=8, type="float", symmetric=True, strategy=granularity)
    ref = fwd.dequantize(x_q=ent["weight"], scale=ent["weight_scale"], args=args, dtype=torch.float32)
    ours, gran = dequantize_fp8(ent["weight"], ent["weight_scale"])
    assert gran == granularity and torch.equal(ours, ref) and torch.equal(ours, deq)


def test_fp8_ue8m0_block_scales():
    w = torch.randn(256, 256).to(torch.float8_e4m3fn)
    e = torch.randint(120, 134, (2, 2), dtype=torch.uint8)
    ours, _ = dequantize_fp8(w, e.view(torch.float8_e8m0fnu))
    expect = w.float() * torch.ldexp(torch.ones(2, 2), e.int() - 127).repeat_interleave(128, 0).repeat_interleave(128, 1)
    assert torch.equal(ours, expect)


# ------------------------------------------------------------------------------ compressed-tensors


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("symmetric,strategy", [(True, "group"), (False, "group"), (True, "channel")])
def test_pack_quantized_equals_compressed_tensors(bits, symmetric, strategy):
    ct = _import("compressed_tensors.quantization")
    comp = importlib.import_module("compressed_tensors.compressors.pack_quantized.base")
    utils = importlib.import_module("compressed_tensors.quantization.utils")
    w = _w(64, 256)
    gs = 64 if strategy == "group" else None
    args = ct.QuantizationArgs(num_bits=bits, type="int", symmetric=symmetric, strategy=strategy, group_size=gs)
    scheme = ct.QuantizationScheme(targets=["Linear"], weights=args)
    g = w.view(64, -1, gs) if gs else w.view(64, 1, -1)
    scale, zp = utils.calculate_qparams(g.amin(-1), g.amax(-1), args)
    sd = {"weight": w, "weight_scale": scale}
    if not symmetric:
        sd["weight_zero_point"] = zp
    packed = comp.PackedQuantizationCompressor.compress(sd, scheme)
    ref = comp.PackedQuantizationCompressor.decompress(dict(packed), scheme)["weight"].float()
    ours = dequantize_pack_quantized(packed["weight_packed"], packed["weight_scale"], packed["weight_shape"],
                                     bits=bits, zero_point=packed.get("weight_zero_point"))
    assert torch.equal(ours, ref)


def test_pack_quantized_our_packer_reads_back_through_compressed_tensors():
    ct = _import("compressed_tensors.quantization")
    comp = importlib.import_module("compressed_tensors.compressors.pack_quantized.base")
    for symmetric in (True, False):
        ent, deq = Q.pack_pack_quantized(_w(64, 256), bits=4, group_size=64, symmetric=symmetric)
        args = ct.QuantizationArgs(num_bits=4, type="int", symmetric=symmetric, strategy="group", group_size=64)
        scheme = ct.QuantizationScheme(targets=["Linear"], weights=args)
        sd = {k: (v.float() if k == "weight_scale" else v) for k, v in ent.items()}
        ref = comp.PackedQuantizationCompressor.decompress(sd, scheme)["weight"].float()
        ours = dequantize_pack_quantized(ent["weight_packed"], ent["weight_scale"], ent["weight_shape"], bits=4,
                                         zero_point=ent.get("weight_zero_point"))
        assert torch.equal(ours, ref) and torch.equal(ours, deq)


# ------------------------------------------------------------------------------ MXFP4


def test_mxfp4_equals_transformers():
    mx4 = importlib.import_module("transformers.integrations.mxfp4")
    g = torch.Generator().manual_seed(3)
    blocks = torch.randint(0, 256, (3, 64, 4, 16), generator=g, dtype=torch.int64).to(torch.uint8)
    scales = torch.randint(110, 140, (3, 64, 4), generator=g, dtype=torch.int64).to(torch.uint8)
    ref = mx4.convert_moe_packed_tensors(blocks, scales, dtype=torch.float32)
    ours = dequantize_mxfp4(blocks, scales)
    assert ours.shape == (3, 128, 64) and torch.equal(ours, ref)
    ent, deq = Q.pack_mxfp4(torch.randn(2, 96, 64, generator=g))
    assert torch.equal(dequantize_mxfp4(ent["blocks"], ent["scales"]),
                       mx4.convert_moe_packed_tensors(ent["blocks"], ent["scales"], dtype=torch.float32))
    assert torch.equal(dequantize_mxfp4(ent["blocks"], ent["scales"]), deq)


# ------------------------------------------------------------------------------ bad companions


def test_wrong_shapes_name_the_tensor():
    ent, _ = Q.pack_gptq(_w(), bits=4, group_size=32)
    with pytest.raises(MalformedCheckpoint, match=r"layer\.q: scales has shape"):
        dequantize_gptq(ent["qweight"], ent["qzeros"], ent["scales"][:, :-1], None, bits=4, group_size=32, name="layer.q")
    with pytest.raises(MalformedCheckpoint, match=r"layer\.q: g_idx"):
        dequantize_gptq(ent["qweight"], ent["qzeros"], ent["scales"], ent["g_idx"] + 100, bits=4, group_size=32,
                        name="layer.q")
    ent, _ = Q.pack_mlx(_w(64, 256))
    with pytest.raises(MalformedCheckpoint, match="m.w: biases"):
        dequantize_mlx(ent["weight"], ent["scales"], ent["biases"][:, :2], bits=4, group_size=64, name="m.w")
    ent, _ = Q.pack_fp8(_w(256, 256))
    with pytest.raises(MalformedCheckpoint, match="f.w: .*fits no FP8 layout"):
        dequantize_fp8(ent["weight"], torch.ones(3, 5), name="f.w")
    with pytest.raises(MalformedCheckpoint, match="x: blocks"):
        dequantize_mxfp4(torch.zeros(2, 4, 2, 16, dtype=torch.uint8), torch.zeros(2, 4, 3, dtype=torch.uint8), name="x")


@pytest.mark.parametrize("payload,match", [
    (b"\xff\xfe", "not JSON"),
    (b"[1, 2]", "expected an object"),
    (b'{"quant_type": "nf5", "blocksize": 64, "dtype": "float32", "shape": [4, 4]}', "quant_type"),
    (b'{"quant_type": "nf4", "blocksize": -1, "dtype": "float32", "shape": [4, 4]}', "blocksize"),
    (b'{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [4, "x"]}', "shape"),
    (b'{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [4, 4], "nested_blocksize": 256}',
     "nested"),
])
def test_garbage_quant_state(payload, match):
    with pytest.raises(MalformedCheckpoint, match=f"mod.weight: .*{match}"):
        parse_quant_state(torch.tensor(list(payload), dtype=torch.uint8), name="mod.weight")
