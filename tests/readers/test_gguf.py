"""GGUF: hubscan's header parser and reader against ``gguf.GGUFReader`` + ``gguf.quants``
on files written by ``gguf.GGUFWriter`` (issue 13), names mapped back to HF modules, and
hostile files refused with the tensor named."""

from __future__ import annotations

import pickle
import struct

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")

from hubscan.errors import CheckpointError, MalformedCheckpoint
from hubscan.readers.gguf import (
    hf_name_map,
    parse_gguf_header,
    read_gguf,
    read_gguf_header,
)
from hubscan.testing.quantized import quantize_q4_k, write_gguf

T = gguf.GGMLQuantizationType
#: types ``gguf.quants.quantize`` writes from floats
QUANTIZABLE = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "MXFP4"]
#: types only dequantised by gguf-py: written as raw blocks (sane f16 scales, random codes)
RAW_ONLY = ["Q2_K", "Q3_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS", "IQ2_XXS", "IQ3_S", "TQ2_0"]


def _matrix(rows=64, cols=256, seed=0):
    return np.random.default_rng(seed).standard_t(3, (rows, cols)).astype(np.float32)


def _raw_blocks(qtype: str, rows: int, cols: int, seed: int) -> np.ndarray:
    block, size = gguf.GGML_QUANT_SIZES[T[qtype]]
    raw = np.random.default_rng(seed).integers(0, 256, (rows, cols // block, size), dtype=np.uint8)
    # the f16 super-block scale sits at the start (IQ*/Q2_K/Q3_K …: ``d`` first; Q6_K: last)
    d = np.frombuffer(np.float16(0.01).tobytes(), np.uint8)
    at = size - 2 if qtype == "Q6_K" else 0
    raw[..., at:at + 2] = d
    return raw.reshape(rows, -1)


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "model-Q4_K_M.gguf"
    wr = gguf.GGUFWriter(str(path), "llama")
    wr.add_block_count(2)
    wr.add_name("tiny")
    wr.add_array("tokenizer.ggml.tokens", ["a", "b", "ccc"])
    expect = {}
    wr.add_tensor("token_embd.weight", _matrix(512, 64).astype(np.float16))
    wr.add_tensor("output_norm.weight", np.ones(64, np.float32))
    for i, qtype in enumerate(QUANTIZABLE + ["Q4_K"] + RAW_ONLY):
        name = f"blk.{i % 2}.x{i}.weight"
        w = _matrix(64, 256, i)
        if qtype in ("F32", "F16"):
            wr.add_tensor(name, w if qtype == "F32" else w.astype(np.float16))
        else:
            data = (quantize_q4_k(w)[0] if qtype == "Q4_K" else
                    _raw_blocks(qtype, 64, 256, i) if qtype in RAW_ONLY else gguf.quants.quantize(w, T[qtype]))
            wr.add_tensor(name, data, raw_shape=data.shape, raw_dtype=T[qtype])
        expect[name] = qtype
    for name in ("blk.0.attn_q.weight", "blk.1.ffn_down.weight", "output.weight"):
        w = _matrix(64, 256, 99)
        data = gguf.quants.quantize(w, T.Q8_0)
        wr.add_tensor(name, data, raw_shape=data.shape, raw_dtype=T.Q8_0)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    return path, expect


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # random blocks: some f16 fields are NaN/inf
def test_every_tensor_equals_gguf_reader(gguf_file):
    path, expect = gguf_file
    ref = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    ours = list(read_gguf(path))
    assert len(ours) == len(ref)
    for t in ours:
        r = ref[t.quant.original_name]
        assert t.quant.method == f"gguf:{r.tensor_type.name}" and t.quant.source_format == "gguf"
        assert t.shape == tuple(int(d) for d in reversed(r.shape))          # GGML ne reversed
        want = gguf.quants.dequantize(r.data, r.tensor_type).reshape(t.shape)
        got = t.load()
        assert got.dtype == torch.float32
        np.testing.assert_array_equal(got.numpy(), want)                   # NaN == NaN for raw blocks
        assert t.offset == r.data_offset and t.nbytes == r.n_bytes
    types = {t.quant.original_name: t.quant.method for t in ours}
    for name, qtype in expect.items():
        assert types[name] == f"gguf:{qtype}"


def test_q4_k_packer_matches_gguf_dequantize():
    w = _matrix(32, 512, 5)
    data, deq = quantize_q4_k(w)
    np.testing.assert_array_equal(gguf.quants.dequantize(data, T.Q4_K), deq)
    assert np.abs(deq - w).max() < 0.2 * np.abs(w).max()


def test_names_map_to_hf_modules_and_keep_the_gguf_name(gguf_file):
    path, _ = gguf_file
    by_gguf = {t.quant.original_name: t.name for t in read_gguf(path)}
    assert by_gguf["token_embd.weight"] == "model.embed_tokens.weight"
    assert by_gguf["blk.0.attn_q.weight"] == "model.layers.0.self_attn.q_proj.weight"
    assert by_gguf["blk.1.ffn_down.weight"] == "model.layers.1.mlp.down_proj.weight"
    assert by_gguf["output.weight"] == "lm_head.weight"
    assert by_gguf["output_norm.weight"] == "model.norm.weight"
    assert by_gguf["blk.0.x0.weight"] == "blk.0.x0.weight"                  # unknown to the map: kept
    assert next(t.name for t in read_gguf(path, map_names=False)) == "token_embd.weight"
    assert hf_name_map("gpt2", 1)["blk.0.attn_qkv"] == "transformer.h.0.attn.c_attn"
    assert hf_name_map("no-such-arch", 3) == {}


def test_header_metadata_and_pickled_refs(gguf_file):
    path, _ = gguf_file
    h = read_gguf_header(path)
    assert h.architecture == "llama" and h.block_count == 2 and h.alignment == 32
    assert h.metadata["general.name"] == "tiny"
    assert h.metadata["tokenizer.ggml.tokens"] == ("array", 3)
    t = next(r for r in read_gguf(path) if r.quant.packed_dtype == "Q8_0")
    clone = pickle.loads(pickle.dumps(t))
    assert torch.equal(clone.load(), t.load())


def test_write_gguf_helper_round_trips(tmp_path):
    w = _matrix(64, 256, 7)
    p = write_gguf(tmp_path / "m.gguf", {"blk.0.attn_q.weight": (w, "Q8_0"), "blk.0.ffn_up.weight": (w, "Q4_K"),
                                         "token_embd.weight": (w, "F16")}, arch="llama", block_count=1)
    refs = {t.name: t for t in read_gguf(p)}
    q8 = refs["model.layers.0.self_attn.q_proj.weight"].load().numpy()
    assert np.abs(q8 - w).max() < 0.01 * np.abs(w).max()
    np.testing.assert_array_equal(refs["model.layers.0.mlp.up_proj.weight"].load().numpy(), quantize_q4_k(w)[1])


# ------------------------------------------------------------------------------ hostile files


def _s(text: str) -> bytes:
    b = text.encode()
    return struct.pack("<Q", len(b)) + b


def _gguf(tensors, *, data: bytes = b"", kv=(), version=3, n_tensors=None, n_kv=None, align=32) -> bytes:
    """A GGUF file by hand: ``tensors`` = [(name, dims, type id, offset)]."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors) if n_tensors is None else n_tensors,
                                len(kv) if n_kv is None else n_kv)
    for key, vtype, payload in kv:
        out += _s(key) + struct.pack("<I", vtype) + payload
    for name, dims, gtype, offset in tensors:
        out += _s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", gtype, offset)
    out += b"\0" * (-len(out) % align)
    return out + data


def _f32(n):
    return np.arange(n, dtype=np.float32).tobytes()


def _write(tmp_path, content: bytes, name="x.gguf"):
    p = tmp_path / name
    p.write_bytes(content)
    return p


def test_a_handmade_file_reads(tmp_path):
    p = _write(tmp_path, _gguf([("a.weight", (4, 2), 0, 0), ("b.weight", (8,), 0, 32)],
                               data=_f32(8) + _f32(8)))
    refs = list(read_gguf(p))
    assert [r.shape for r in refs] == [(2, 4), (8,)]
    assert torch.equal(refs[0].load(), torch.arange(8, dtype=torch.float32).view(2, 4))


@pytest.mark.parametrize("content,match", [
    (b"GGUX" + b"\0" * 20, "not a GGUF file"),
    (_gguf([], version=1), "version 1"),
    (_gguf([], n_tensors=10**9), "claims"),
    (_gguf([("a.weight", (4, 2), 0, 0)], data=_f32(4)), r"'a.weight'.*needs bytes \[0, 32\).*holds 16"),
    (_gguf([("a.weight", (4, 2), 0, 64)], data=_f32(8)), r"'a.weight'.*lying offset"),
    (_gguf([("a.weight", (4, 2), 0, 0), ("b.weight", (4, 2), 0, 0)], data=_f32(16)), "overlap"),
    (_gguf([("a.weight", (4, 2), 0, 4)], data=_f32(16)), "not aligned"),
    (_gguf([("a.weight", (20, 2), 8, 0)], data=b"\0" * 64), "not a multiple of the Q8_0 block size 32"),
    (_gguf([("a.weight", (4, 0), 0, 0)]), "out of range"),
    (_gguf([("a.weight", (4, 2, 1, 1, 1), 0, 0)]), "dimensions"),
    (_gguf([("a.weight", (4, 2), 0, 0)])[:40], "truncated|ended|lying length"),
    (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 2**40), "string length|lying length"),
    (_gguf([], kv=[("general.alignment", 4, struct.pack("<I", 3))]), "alignment"),
    (_gguf([], kv=[("k", 9, struct.pack("<IQ", 6, 2**30))]), "array of 1073741824 elements exceeds"),
    (_gguf([], kv=[("k", 9, struct.pack("<IQ", 6, 2**20))]), "lying length"),
    (_gguf([], kv=[("k", 77, b"")]), "unknown value type"),
])
def test_hostile_headers_are_refused_naming_the_problem(tmp_path, content, match):
    p = _write(tmp_path, content)
    with pytest.raises(MalformedCheckpoint, match=match):
        list(read_gguf(p))


def test_unknown_type_fails_only_that_tensor(tmp_path):
    notes: list[str] = []
    p = _write(tmp_path, _gguf([("a.weight", (4, 2), 0, 0), ("odd.weight", (4, 2), 4242, 32)], data=_f32(8) + b"\0" * 32))
    refs = {r.name: r for r in read_gguf(p, notes=notes)}
    assert refs["a.weight"].load().shape == (2, 4)
    with pytest.raises(CheckpointError, match="'odd.weight': unknown GGML type id 4242"):
        refs["odd.weight"].load()
    assert any("4242" in n for n in notes)


def test_header_parser_is_pure_over_a_byte_stream(gguf_file):
    path, _ = gguf_file
    raw = path.read_bytes()
    pos = 0

    def read(n):
        nonlocal pos
        chunk = raw[pos:pos + n]
        pos += n
        return chunk

    h = parse_gguf_header(read, file_size=len(raw))
    assert h.data_start == read_gguf_header(path).data_start and pos <= h.data_start
