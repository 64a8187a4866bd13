"""Readers on good checkpoints (exact round trips, layouts, memory) and the generators
every other area's tests use."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import safetensors.torch as st
import torch

from hubscan.readers import (
    checkpoint_files,
    checkpoint_layout,
    dtype_name,
    parse_safetensors_header,
    read_checkpoint,
    read_safetensors_header,
)
from hubscan.refs import TensorRef
from hubscan.testing import checkpoints as ck


def raw_bytes(t: torch.Tensor) -> bytes:
    """Bit pattern of a tensor (NaN-safe equality, any dtype)."""
    t = t.contiguous().reshape(-1)
    return (t.to(torch.uint8) if t.dtype == torch.bool else t.view(torch.uint8)).numpy().tobytes()


def all_dtypes_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 5, generator=g) * 3
    return {
        "f64": base.double(), "f32": base, "f16": base.half(), "bf16": base.bfloat16(),
        "f8e4m3": base.to(torch.float8_e4m3fn), "f8e5m2": base.to(torch.float8_e5m2),
        "i64": torch.arange(12).reshape(3, 4), "i32": torch.arange(7, dtype=torch.int32),
        "i16": torch.arange(5, dtype=torch.int16), "i8": torch.arange(-3, 3, dtype=torch.int8),
        "u8": torch.arange(9, dtype=torch.uint8).reshape(3, 3), "bool": base > 0,
        "scalar": torch.tensor(2.5), "empty": torch.empty(0, 7), "row": torch.randn(1, 33, generator=g),
        "nan": torch.tensor([float("nan"), float("inf"), -0.0]),
    }


EXPECTED_DTYPE = {"f64": "F64", "f32": "F32", "f16": "F16", "bf16": "BF16", "f8e4m3": "F8_E4M3",
                  "f8e5m2": "F8_E5M2", "i64": "I64", "i32": "I32", "i16": "I16", "i8": "I8",
                  "u8": "U8", "bool": "BOOL", "scalar": "F32", "empty": "F32", "row": "F32",
                  "nan": "F32"}


# --------------------------------------------------------------------------- safetensors


def test_safetensors_round_trip_is_bit_identical_for_every_dtype(tmp_path):
    tensors = all_dtypes_tensors()
    path = ck.write_safetensors(tmp_path / "m.safetensors", tensors, metadata={"format": "pt"})
    reference = st.load_file(path)
    refs = list(read_checkpoint(path))
    assert sorted(r.name for r in refs) == sorted(tensors)
    file_bytes = path.read_bytes()
    for ref in refs:
        t = ref.load()
        assert isinstance(ref, TensorRef) and ref.file == str(path)
        assert ref.dtype == EXPECTED_DTYPE[ref.name]
        assert t.dtype == reference[ref.name].dtype
        assert tuple(t.shape) == ref.shape == tuple(reference[ref.name].shape)
        assert raw_bytes(t) == raw_bytes(reference[ref.name])
        # offset/nbytes point at exactly these bytes in the file
        assert file_bytes[ref.offset: ref.offset + ref.nbytes] == raw_bytes(t)
        assert t.is_contiguous() and (t.numel() == 0 or t.data_ptr() % 16 == 0)
    offsets = [r.offset for r in refs]
    assert offsets == sorted(offsets)  # file order: friendly to sequential reads


def test_loaded_tensor_outlives_the_file(tmp_path):
    path = ck.write_safetensors(tmp_path / "m.safetensors", {"w": ck.gaussian_matrix(8, 8)})
    (ref,) = read_checkpoint(path)
    t = ref.load()
    path.unlink()
    t.add_(1)  # writable, owned memory — not a view of a closed mmap
    np.testing.assert_allclose(t.numpy(), ck.gaussian_matrix(8, 8) + 1)


def test_parse_header_is_pure_and_reports_gaps():
    header = json.dumps({
        "__metadata__": {"format": "pt"},
        "b": {"dtype": "F16", "shape": [2], "data_offsets": [8, 12]},
        "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
    }).encode()
    notes: list[str] = []
    entries, meta = parse_safetensors_header(header, 20, notes=notes)
    assert [(e.name, e.begin, e.end, e.nbytes) for e in entries] == [("a", 0, 4, 4), ("b", 8, 12, 4)]
    assert meta == {"format": "pt"}
    assert notes == ["safetensors: 4 unused bytes between tensors",
                     "safetensors: 8 bytes after the last tensor"]
    # unknown data size (a streamed header): range checks wait for the bytes
    entries, _ = parse_safetensors_header(header, None)
    assert len(entries) == 2


def test_header_reader_reads_only_the_header(tmp_path):
    path = ck.write_safetensors(tmp_path / "m.safetensors", {"w": np.zeros((256, 256), np.float32)})
    h = read_safetensors_header(path)
    assert h.data_start == 8 + h.header_length and h.data_size == 256 * 256 * 4
    assert h.entries[0].shape == (256, 256) and h.metadata == {}


def test_refs_are_picklable_and_load_in_another_process(tmp_path):
    """Refs are descriptors (DESIGN.md): they travel to Ray workers and load there."""
    st_path = ck.write_safetensors(tmp_path / "m.safetensors", {"w": ck.gaussian_matrix(5, 3)})
    pt_path = tmp_path / "m.pt"
    torch.save({"model": {"w": torch.from_numpy(ck.gaussian_matrix(5, 3))}}, pt_path)
    blob = pickle.dumps([next(read_checkpoint(p)) for p in (st_path, pt_path)])
    code = ("import pickle,sys; refs = pickle.loads(sys.stdin.buffer.read()); "
            "sys.stdout.buffer.write(b''.join(r.load().numpy().tobytes() for r in refs))")
    out = subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True,
                         check=True).stdout
    assert out == ck.gaussian_matrix(5, 3).tobytes() * 2


# --------------------------------------------------------------------------- torch pickles


@pytest.mark.parametrize("wrap", [
    lambda sd: sd,
    lambda sd: {"state_dict": sd, "epoch": 7, "optimizer": {"lr": 0.1}},
    lambda sd: {"model": sd, "args": {"seed": 1}},
    lambda sd: {"module": sd},
    lambda sd: {"model": {"module": sd}},
])
def test_pickle_round_trip_and_unwrapping(tmp_path, wrap):
    sd = {k: v for k, v in all_dtypes_tensors().items()}
    path = tmp_path / "pytorch_model.bin"
    torch.save(wrap(sd), path)
    reference = torch.load(path, weights_only=True)
    while "state_dict" in reference or "model" in reference or "module" in reference:
        reference = reference.get("state_dict") or reference.get("model") or reference["module"]
    notes: list[str] = []
    refs = list(read_checkpoint(path, notes=notes))
    file_bytes = path.read_bytes()
    assert [r.name for r in refs] == list(sd)
    for ref in refs:
        t = ref.load()
        assert ref.dtype == EXPECTED_DTYPE[ref.name] == dtype_name(t.dtype)
        assert raw_bytes(t) == raw_bytes(reference[ref.name])
        assert ref.nbytes == t.numel() * t.element_size()
        if t.numel():  # located inside the zip: read like a safetensors tensor
            assert file_bytes[ref.offset: ref.offset + ref.nbytes] == raw_bytes(t)
    if wrap(sd) is not sd:
        assert any("unwrapped" in n for n in notes)


def test_pickle_nested_dicts_flatten_and_non_tensors_are_noted(tmp_path):
    path = tmp_path / "m.pt"
    torch.save({"encoder": {"w": torch.ones(2, 2), "layers": {"0": torch.zeros(3)}},
                "step": 10, "name": "x", "hist": [torch.ones(1)]}, path)
    notes: list[str] = []
    refs = {r.name: r for r in read_checkpoint(path, notes=notes)}
    assert set(refs) == {"encoder.w", "encoder.layers.0"}
    assert refs["encoder.layers.0"].load().tolist() == [0.0, 0.0, 0.0]
    (note,) = notes
    assert "ignored 3 non-tensor entries" in note and "'step (int)'" in note


def test_pickle_views_and_shared_storage(tmp_path):
    """Transposed views, slices of a shared storage and tied weights read back exactly."""
    base = torch.from_numpy(ck.gaussian_matrix(6, 8, seed=2))
    sd = {"t": base.T, "slice": base[2:4, 1:7], "tied_a": base, "tied_b": base,
          "step": base.reshape(-1)[::3]}
    path = tmp_path / "views.pt"
    torch.save(sd, path)
    for ref in read_checkpoint(path):
        t = ref.load()
        assert t.is_contiguous() and torch.equal(t, sd[ref.name]), ref.name
        assert (ref.offset is None) == (not sd[ref.name].is_contiguous())


def test_pickle_legacy_format_is_read(tmp_path):
    path = tmp_path / "old.bin"
    sd = {"w": torch.from_numpy(ck.gaussian_matrix(4, 6)), "b": torch.ones(4, dtype=torch.float16)}
    torch.save(sd, path, _use_new_zipfile_serialization=False)
    refs = {r.name: r for r in read_checkpoint(path)}
    assert raw_bytes(refs["w"].load()) == raw_bytes(sd["w"])
    assert refs["b"].dtype == "F16"


def test_pickle_quantized_and_sparse_tensors(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.quantize_per_tensor(torch.randn(4, 4), 0.1, 0, torch.qint8)
    path = tmp_path / "q.pt"
    torch.save({"q": q, "sp": torch.eye(3).to_sparse(), "w": torch.ones(2)}, path)
    notes: list[str] = []
    refs = {r.name: r for r in read_checkpoint(path, notes=notes)}
    assert refs["q"].dtype == "QINT8"  # reported with its dtype; the analysis skips it
    assert torch.equal(refs["q"].load().int_repr(), q.int_repr())
    assert "sp" not in refs and "sp (torch.sparse_coo)" in notes[0]


# --------------------------------------------------------------------------- layouts


def test_sharded_checkpoint_equals_unsharded(tmp_path):
    single = ck.make_demo_model(tmp_path / "one", "gpt2", seed=3)
    sharded = ck.make_sharded_model(tmp_path / "many", "gpt2", seed=3, shards=3)
    expected = st.load_file(single / "model.safetensors")
    shard_names = [f"model-0000{k}-of-00003.safetensors" for k in (1, 2, 3)]
    index = sharded / "model.safetensors.index.json"
    assert [p.name for p in checkpoint_files(sharded)] == shard_names
    assert checkpoint_files(index) == checkpoint_files(sharded)
    layout = checkpoint_layout(sharded)
    assert layout.indexes == (index,) and layout.format == "safetensors"
    for source in (sharded, index):
        refs = list(read_checkpoint(source))
        assert sorted(r.name for r in refs) == sorted(expected)
        assert {r.file for r in refs} == {str(sharded / n) for n in shard_names}
        for r in refs:
            assert raw_bytes(r.load()) == raw_bytes(expected[r.name])
    meta = json.loads(index.read_text())["metadata"]
    assert meta["total_size"] == sum(v.numel() * v.element_size() for v in expected.values())


def test_sharded_pickles(tmp_path):
    folder = ck.make_sharded_model(tmp_path, "mlp", shards=2, fmt="bin")
    assert [p.name for p in checkpoint_files(folder)] == [
        "pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"]
    ref_sd = ck.demo_state_dict("mlp")
    got = {r.name: r.load() for r in read_checkpoint(folder)}
    assert got.keys() == ref_sd.keys()
    assert all(torch.equal(got[k], ref_sd[k]) for k in got)


def test_folder_prefers_safetensors_over_bin(tmp_path):
    ck.write_safetensors(tmp_path / "model.safetensors", {"w": np.ones((2, 2), np.float32)})
    torch.save({"w": torch.zeros(2, 2)}, tmp_path / "pytorch_model.bin")
    torch.save({"x": 1}, tmp_path / "training_args.bin")
    assert checkpoint_files(tmp_path) == [tmp_path / "model.safetensors"]
    (ref,) = read_checkpoint(tmp_path)
    assert ref.load().tolist() == [[1.0, 1.0], [1.0, 1.0]]
    (tmp_path / "model.safetensors").unlink()
    assert checkpoint_files(tmp_path) == [tmp_path / "pytorch_model.bin"]
    (ref,) = read_checkpoint(tmp_path)
    assert ref.load().tolist() == [[0.0, 0.0], [0.0, 0.0]]


def test_folder_rules_standard_names_then_all_files(tmp_path):
    for name in ("b.safetensors", "a.safetensors"):
        ck.write_safetensors(tmp_path / name, {name[0]: np.ones(2, np.float32)})
    (tmp_path / "notes.txt").write_text("hi")
    assert [p.name for p in checkpoint_files(tmp_path)] == ["a.safetensors", "b.safetensors"]
    assert [r.name for r in read_checkpoint(tmp_path)] == ["a", "b"]
    # the standard file wins over variants (model.fp16.safetensors …), as in transformers
    ck.write_safetensors(tmp_path / "model.safetensors", {"m": np.ones(2, np.float32)})
    assert [p.name for p in checkpoint_files(tmp_path)] == ["model.safetensors"]


def test_extensionless_files_are_sniffed(tmp_path):
    """HF cache blobs have no extension."""
    ck.write_safetensors(tmp_path / "blob1", {"w": np.ones(3, np.float32)})
    torch.save({"w": torch.ones(3)}, tmp_path / "blob2")
    for name in ("blob1", "blob2"):
        (ref,) = read_checkpoint(tmp_path / name)
        assert ref.load().tolist() == [1.0, 1.0, 1.0]


# --------------------------------------------------------------------------- memory


MEMORY_PROBE = textwrap.dedent("""
    import json, re, sys
    import psutil
    from hubscan.readers import read_checkpoint

    proc = psutil.Process()

    def reset_peak():
        # Linux: writing 5 to clear_refs resets VmHWM (peak RSS) to the current RSS, so each
        # phase gets its own peak; without it, sample the current RSS instead (weaker).
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def rss_peak(sampled):
        if HWM:
            status = open("/proc/self/status").read()
            return int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) * 1024
        return max(sampled, proc.memory_info().rss)

    HWM = reset_peak()
    out = {"meter": "VmHWM" if HWM else "rss-samples"}
    for path in sys.argv[1:]:
        reset_peak(); base = proc.memory_info().rss
        refs = list(read_checkpoint(path))
        small = next(r for r in refs if r.name == "small").load()
        out[path] = {"open_and_small": rss_peak(0) - base}
        reset_peak(); base = proc.memory_info().rss; sampled = 0
        for r in refs:
            t = r.load()
            sampled = max(sampled, proc.memory_info().rss)
            del t
        out[path]["all_one_by_one"] = rss_peak(sampled) - base
        del refs, small
    reset_peak(); base = proc.memory_info().rss
    control = open(sys.argv[1], "rb").read()  # proves the meter sees a whole-file read
    out["control"] = rss_peak(proc.memory_info().rss) - base
    print(json.dumps(out))
""")


def test_reading_is_one_tensor_at_a_time_in_memory(tmp_path):
    """Peak RSS (VmHWM, reset per phase, in a fresh process) while reading a 128 MiB checkpoint: opening
    it and loading one small tensor costs far less than the file, and loading every tensor
    in turn costs about one tensor — for safetensors and mmap'd torch files alike."""
    mib = 1 << 20
    n_big, big = 8, 16 * mib
    layout = {"small": ck.TensorSpec((16,))}
    layout.update({f"big{i}": ck.TensorSpec((big // 4,)) for i in range(n_big)})
    st_path = ck.write_safetensors_streaming(
        tmp_path / "big.safetensors", layout,
        lambda name, spec: torch.full(spec.shape, float(len(name))))
    pt_path = tmp_path / "big.pt"
    torch.save({n: torch.full(s.shape, 1.0) for n, s in layout.items()}, pt_path)
    file_size = n_big * big
    proc = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(st_path), str(pt_path)],
                          capture_output=True, text=True, check=True)
    result = json.loads(proc.stdout)
    print(json.dumps(result))  # measured figures, visible with -s
    assert result["control"] >= 0.9 * file_size, result  # the meter works
    for path in (st_path, pt_path):
        r = result[str(path)]
        assert r["open_and_small"] < 24 * mib, (path, r)
        # one tensor copied out (+ its mapped pages while copying) — not the file
        assert r["all_one_by_one"] < 3 * big, (path, r)


# --------------------------------------------------------------------------- generators


def test_streaming_writer_matches_the_reference_library(tmp_path):
    tensors = {k: v for k, v in all_dtypes_tensors().items() if k != "nan"}
    layout = {k: ck.TensorSpec(tuple(v.shape), EXPECTED_DTYPE[k]) for k, v in tensors.items()}
    path = ck.write_safetensors_streaming(tmp_path / "s.safetensors", layout,
                                          lambda n, s: tensors[n], metadata={"k": "v"})
    loaded = st.load_file(path)
    assert loaded.keys() == tensors.keys()
    assert all(raw_bytes(loaded[k]) == raw_bytes(tensors[k]) for k in tensors)
    with pytest.raises(ValueError, match="spec is"):
        ck.write_safetensors_streaming(tmp_path / "x.safetensors", {"a": ck.TensorSpec((2,))},
                                       lambda n, s: torch.ones(3))


@pytest.mark.parametrize("kind", ck.DEMO_KINDS)
def test_demo_models_have_realistic_layouts(tmp_path, kind):
    folder = ck.make_demo_model(tmp_path, kind, seed=5)
    config = json.loads((folder / "config.json").read_text())
    refs = {r.name: r for r in read_checkpoint(folder)}
    shapes = {n: r.shape for n, r in refs.items()}
    module_sd = ck.build_demo_module(kind).state_dict()
    # every stored tensor matches the real module's parameter (tied lm_head / old
    # position_ids buffer are the documented differences)
    assert set(shapes) ^ set(module_sd) <= {"lm_head.weight", "embeddings.position_ids"}
    for name, shape in shapes.items():
        if name in module_sd:
            assert tuple(module_sd[name].shape) == shape, name
    if kind == "cnn":
        assert shapes["conv1.weight"] == (16, 3, 3, 3)
        assert refs["bn1.num_batches_tracked"].dtype == "I64" and shapes["bn1.num_batches_tracked"] == ()
        assert refs["bn1.running_var"].load().min() > 0
        assert "layer2.downsample.0.weight" in shapes
    if kind == "gpt2":
        d = config["n_embd"]
        assert shapes["transformer.h.0.attn.c_attn.weight"] == (d, 3 * d)  # Conv1D (in, out)
        assert shapes["transformer.h.1.mlp.c_proj.weight"] == (4 * d, d)
        assert shapes["transformer.wte.weight"] == (config["vocab_size"], d)
    if kind == "bert-tiny":
        assert refs["embeddings.position_ids"].dtype == "I64"
        assert "pooler.dense.weight" in shapes and "encoder.layer.1.intermediate.dense.weight" in shapes
    # same (seed, name) → same values whatever the format
    again = ck.demo_state_dict(kind, seed=5)
    assert all(raw_bytes(refs[n].load()) == raw_bytes(again[n]) for n in refs)
    other = ck.demo_state_dict(kind, seed=6)
    assert any(raw_bytes(other[n]) != raw_bytes(again[n]) for n in again)


@pytest.mark.parametrize("kind", ["mlp", "cnn", "bert-tiny"])
def test_demo_models_load_into_modules_that_run(tmp_path, kind):
    folder = ck.make_demo_model(tmp_path, kind, dtype="BF16")
    module = ck.load_demo_module(folder)
    sd = {r.name: r.load() for r in read_checkpoint(folder)}
    for name, value in module.state_dict().items():
        if name in sd and sd[name].is_floating_point():
            assert torch.equal(value, sd[name].float()), name
    with torch.no_grad():
        if kind == "mlp":
            assert module(torch.zeros(2, 64)).shape == (2, 10)
        elif kind == "cnn":
            assert module(torch.zeros(2, 3, 8, 8)).shape == (2, 10)
        else:
            assert module(input_ids=torch.zeros(1, 5, dtype=torch.long)).last_hidden_state.shape == (1, 5, 64)


def test_demo_dtypes_and_heavy_tails(tmp_path):
    for dtype in ("F16", "BF16", "F8_E4M3"):
        folder = ck.make_demo_model(tmp_path / dtype, "mlp", dtype=dtype)
        assert {r.dtype for r in read_checkpoint(folder)} == {dtype}
    gauss = ck.demo_state_dict("gpt2")["transformer.h.0.mlp.c_fc.weight"].numpy()
    heavy = ck.demo_state_dict("gpt2", heavy_tailed=2.0)["transformer.h.0.mlp.c_fc.weight"].numpy()
    kurt = lambda x: float(np.mean(x**4) / np.mean(x**2) ** 2)  # noqa: E731
    assert kurt(gauss) < 3.3 and kurt(heavy) > 30


def test_gaussian_matrix_follows_marchenko_pastur():
    n, m = 800, 200
    w = ck.gaussian_matrix(n, m, sigma=0.5, seed=1).astype(np.float64)
    evals = np.linalg.eigvalsh(w.T @ w / n)
    q = n / m
    assert evals.max() == pytest.approx(0.25 * (1 + 1 / np.sqrt(q)) ** 2, rel=0.05)
    assert evals.min() == pytest.approx(0.25 * (1 - 1 / np.sqrt(q)) ** 2, rel=0.15)


@pytest.mark.parametrize("rank", [1, 3, 5])
def test_spiked_matrix_has_exactly_rank_outliers(rank):
    n, m = 600, 300
    w = ck.spiked_matrix(n, m, rank=rank, strength=2.0, seed=rank).astype(np.float64)
    evals = np.linalg.eigvalsh(w.T @ w / n)
    edge = (1 + np.sqrt(m / n)) ** 2
    assert int((evals > 1.05 * edge).sum()) == rank
    hidden = ck.spiked_matrix(n, m, rank=rank, strength=0.5, seed=rank).astype(np.float64)
    assert int((np.linalg.eigvalsh(hidden.T @ hidden / n) > 1.05 * edge).sum()) == 0


def test_heavy_tailed_and_degenerate_matrices():
    p = ck.pareto_matrix(400, 200, 1.5, seed=0).astype(np.float64)
    assert np.abs(p).min() >= 1.0  # Pareto support x >= 1
    # tail exponent of the entries: Hill estimator on the top 2% ≈ μ
    top = np.sort(np.abs(p).ravel())[-1600:]
    hill = 1 / np.mean(np.log(top / top[0]))
    assert hill == pytest.approx(1.5, rel=0.15)
    evals = np.linalg.eigvalsh(p.T @ p / 400)
    assert evals.max() / np.median(evals) > 50  # a few huge eigenvalues: heavy tail
    sv = np.linalg.svd(ck.low_rank_matrix(50, 40, 3).astype(np.float64), compute_uv=False)
    assert sv[2] / sv[0] > 0.1 and sv[3] / sv[0] < 1e-6  # exactly rank 3 up to float32 rounding
    assert np.isnan(ck.nan_matrix(count=3)).sum() == 3
    assert np.isposinf(ck.inf_matrix(count=2)).sum() == 1 and np.isneginf(ck.inf_matrix(count=2)).sum() == 1
    assert not ck.all_zero_matrix().any()
    assert ck.empty_matrix(7).shape == (0, 7) and ck.row_matrix(9).shape == (1, 9)
    assert ck.student_t_matrix(10, 10, 3.0).dtype == np.float32


def test_degenerate_model_file(tmp_path):
    reasons = ck.make_degenerate_model(tmp_path / "bad.safetensors")
    refs = {r.name: r for r in read_checkpoint(tmp_path / "bad.safetensors")}
    assert refs.keys() == reasons.keys()
    assert refs["empty.weight"].shape == (0, 16) and refs["row.weight"].shape == (1, 64)
    assert torch.isnan(refs["nan.weight"].load()).any()
    assert refs["ids.weight"].dtype == "I64" and refs["half.weight"].dtype == "BF16"
