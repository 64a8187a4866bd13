"""Bad and malicious checkpoints: each is refused with the right error class and a message
that names the problem, *before* any tensor is yielded, and no pickled code ever runs."""

from __future__ import annotations

import json
import os
import pickle
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubscan.errors import (
    CheckpointError,
    MalformedCheckpoint,
    NotFound,
    UnsafeCheckpoint,
)
from hubscan.readers import (
    header_length,
    load_safetensors_tensor,
    parse_index,
    parse_safetensors_header,
    read_checkpoint,
)
from hubscan.testing import checkpoints as ck

# --------------------------------------------------------------------------- safetensors


HOSTILE = [
    # (builder, expected message fragments)
    (lambda p: ck.truncated_safetensors(p, where="data"), ["'b'", "run past the data section", "truncated"]),
    (lambda p: ck.truncated_safetensors(p, where="header"), ["header length", "exceeds the file"]),
    (lambda p: ck.truncated_safetensors(p, where="prefix"), ["5 bytes", "8-byte header length"]),
    (ck.header_too_long, ["header length", "exceeds the file"]),
    (lambda p: ck.header_too_long(p, length=2**63), ["exceeds the 100000000-byte limit"]),
    (lambda p: ck.header_too_long(p, length=200_000_000), ["exceeds the 100000000-byte limit"]),
    (lambda p: ck.invalid_json_header(p, kind="syntax"), ["not valid JSON"]),
    (lambda p: ck.invalid_json_header(p, kind="not_object"), ["is a list, expected an object"]),
    (lambda p: ck.invalid_json_header(p, kind="utf8"), ["not valid UTF-8"]),
    (lambda p: ck.invalid_json_header(p, kind="duplicate_key"), ["repeats the key 'a'"]),
    (ck.offsets_out_of_range, ["'b'", "[64, 160]", "run past the data section", "96 bytes"]),
    (ck.overlapping_offsets, ["'b'", "[32, 64]", "overlap", "'a'", "[0, 64]"]),
    (ck.unknown_dtype, ["'a'", "unknown dtype 'F7'"]),
    (ck.shape_size_mismatch, ["'a'", "[4, 5]", "needs 80 bytes", "span 64"]),
    (ck.negative_shape, ["'a'", "non-negative"]),
    (ck.bad_metadata, ["__metadata__", "strings"]),
]


@pytest.mark.parametrize("build,fragments", HOSTILE,
                         ids=[f"case{i}" for i in range(len(HOSTILE))])
def test_hostile_safetensors_refused_before_yielding(tmp_path, build, fragments):
    path = build(tmp_path / "bad.safetensors")
    # The error comes from the call itself: nothing was yielded, no iteration needed.
    with pytest.raises(MalformedCheckpoint) as info:
        read_checkpoint(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_every_hostile_builder_is_also_rejected_by_the_reference_library(tmp_path):
    """The builders make files that are broken by the format's own standard, not just ours."""
    from safetensors import SafetensorError, safe_open

    for i, (build, _) in enumerate(HOSTILE):
        path = build(tmp_path / f"bad{i}.safetensors")
        with pytest.raises(SafetensorError):
            with safe_open(str(path), "pt") as f:
                for k in f.keys():
                    f.get_tensor(k)


def test_same_file_intact_is_read(tmp_path):
    """Control for the hostile cases: the builders' base file is valid."""
    header, data = ck._valid_parts()
    path = ck.write_raw_safetensors(tmp_path / "ok.safetensors", header, data)
    refs = list(read_checkpoint(path))
    assert [r.name for r in refs] == ["a", "b"]
    np.testing.assert_array_equal(refs[0].load().numpy(), ck.gaussian_matrix(4, 4, seed=0))


def _entry(**kw):
    base = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
    base.update(kw)
    return json.dumps({"t": base}).encode()


@pytest.mark.parametrize("header,fragment", [
    (_entry(shape=[2.0, 2]), "not a list of non-negative integers"),
    (_entry(shape=[True, 4]), "not a list of non-negative integers"),
    (_entry(shape="2x2"), "not a list of non-negative integers"),
    (_entry(data_offsets=[0]), "is not [begin, end]"),
    (_entry(data_offsets=[0, 16.0]), "is not [begin, end]"),
    (_entry(data_offsets=[16, 0]), "0 <= begin <= end"),
    (_entry(data_offsets=[-16, 0]), "0 <= begin <= end"),
    (_entry(dtype=5), "unknown dtype 5"),
    (_entry(dtype="f32"), "unknown dtype 'f32'"),
    (b'{"t": [1, 2]}', "entry is list"),
    (b'{"t": {"dtype": "F32", "shape": [1]}}', "missing data_offsets"),
    (b'{"__metadata__": ["x"]}', "__metadata__"),
    (b'"just a string"', "expected an object"),
    (b'{"t": {"dtype": "F32", "shape": [' + b"9" * 5000 + b'], "data_offsets": [0, 4]}}',
     "not valid JSON"),  # Python's int-digits limit
    (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),  # nesting bomb
    (json.dumps({"t": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}).encode(),
     "not a whole number of bytes"),
])
def test_parse_header_rules(header, fragment):
    with pytest.raises(MalformedCheckpoint) as info:
        parse_safetensors_header(header, 1000)
    assert fragment in str(info.value)


def test_zero_size_tensor_inside_another_span_is_an_overlap():
    header = json.dumps({
        "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
        "z": {"dtype": "F32", "shape": [0], "data_offsets": [8, 8]},
    }).encode()
    with pytest.raises(MalformedCheckpoint, match="overlap"):
        parse_safetensors_header(header, 16)
    # …while zero-size tensors at span boundaries are fine (the library writes those).
    ok = json.dumps({
        "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
        "z": {"dtype": "F32", "shape": [0, 3], "data_offsets": [16, 16]},
        "y": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]},
    }).encode()
    entries, _ = parse_safetensors_header(ok, 16)
    assert [e.name for e in entries] == ["y", "a", "z"]


def test_header_length_bounds():
    assert header_length(struct.pack("<Q", 100), file_size=108) == 100
    with pytest.raises(MalformedCheckpoint, match="exceeds the file"):
        header_length(struct.pack("<Q", 101), file_size=108)
    with pytest.raises(MalformedCheckpoint, match="smallest valid header"):
        header_length(struct.pack("<Q", 0))
    with pytest.raises(MalformedCheckpoint, match="limit"):
        header_length(struct.pack("<Q", 100_000_001))
    with pytest.raises(MalformedCheckpoint, match="zip archive"):
        header_length(b"PK\x03\x04\x14\x00\x00\x00", file_size=10**6)


def test_torch_zip_renamed_to_safetensors_gets_a_hint(tmp_path):
    path = tmp_path / "model.safetensors"
    torch.save({"w": torch.ones(2)}, path)
    with pytest.raises(MalformedCheckpoint, match="torch .bin/.pt, not safetensors"):
        read_checkpoint(path)


def test_packed_subbyte_dtype_is_listed_but_load_refuses(tmp_path):
    header = {"q": {"dtype": "F4", "shape": [4, 4], "data_offsets": [0, 8]},
              "w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}
    path = ck.write_raw_safetensors(tmp_path / "f4.safetensors", header, bytes(16))
    refs = {r.name: r for r in read_checkpoint(path)}
    assert refs["q"].dtype == "F4" and refs["q"].nbytes == 8
    with pytest.raises(CheckpointError, match="no element-wise torch dtype"):
        refs["q"].load()
    assert refs["w"].load().tolist() == [0.0, 0.0]


def test_file_changed_after_header_read_fails_that_load(tmp_path):
    path = ck.write_safetensors(tmp_path / "m.safetensors", {"w": np.ones((64, 64), np.float32)})
    (ref,) = read_checkpoint(path)
    with open(path, "r+b") as f:  # a concurrent writer truncates the file
        f.truncate(os.path.getsize(path) - 100)
    with pytest.raises(MalformedCheckpoint, match="size changed"):
        ref.load()
    # and without the recorded size, the span check still keeps the mmap inside the file
    with pytest.raises(MalformedCheckpoint, match="needs bytes"):
        load_safetensors_tensor(str(path), ref.offset, _entry_of(ref))


def _entry_of(ref):
    from hubscan.readers import SafetensorsEntry

    return SafetensorsEntry(ref.name, ref.dtype, ref.shape, 0, ref.nbytes)


def test_bool_bytes_other_than_0_1_are_normalised(tmp_path):
    header = {"m": {"dtype": "BOOL", "shape": [4], "data_offsets": [0, 4]}}
    path = ck.write_raw_safetensors(tmp_path / "b.safetensors", header, bytes([0, 1, 2, 255]))
    (ref,) = read_checkpoint(path)
    assert ref.load().tolist() == [False, True, True, True]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_files_raise_only_checkpoint_errors(data):
    """Random byte edits of a valid file: reading either works or raises CheckpointError —
    never IndexError/KeyError/OverflowError/SIGBUS — and every yielded ref loads or raises
    CheckpointError."""
    header, body = ck._valid_parts()
    raw = bytearray(ck.safetensors_bytes(header, body))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(raw))))
    if cut is not None:
        raw = raw[:cut]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "f.safetensors"
        path.write_bytes(bytes(raw))
        try:
            refs = list(read_checkpoint(path))
        except MalformedCheckpoint:
            return
        for ref in refs:
            try:
                t = ref.load()
            except CheckpointError:
                continue
            assert tuple(t.shape) == ref.shape


# --------------------------------------------------------------------------- pickles


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_torch_files_raise_only_checkpoint_errors(data):
    """Random byte edits of a torch zip: torch.load's own exceptions (RuntimeError,
    UnpicklingError, zipfile's NotImplementedError …) all surface as CheckpointError."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "f.pt"
        torch.save({"state_dict": {"a": torch.ones(4, 4), "b": torch.arange(6)}, "epoch": 1}, path)
        raw = bytearray(path.read_bytes())
        for _ in range(data.draw(st.integers(1, 6))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        cut = data.draw(st.one_of(st.none(), st.integers(0, len(raw))))
        path.write_bytes(bytes(raw if cut is None else raw[:cut]))
        try:
            refs = list(read_checkpoint(path))
        except CheckpointError:
            return
        for ref in refs:
            try:
                ref.load()
            except CheckpointError:
                pass



@pytest.mark.parametrize("fmt", ["zip", "legacy", "raw"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, fmt):
    marker = tmp_path / "pwned"
    path = ck.malicious_pickle(tmp_path / "pytorch_model.bin", marker, fmt=fmt)
    assert not marker.exists()  # writing it did not run it
    with pytest.raises(UnsafeCheckpoint) as info:
        read_checkpoint(path)
    assert "exec" in str(info.value) and "not run" in str(info.value)
    with pytest.raises(UnsafeCheckpoint):
        read_checkpoint(tmp_path)  # the folder too
    assert not marker.exists()

    # Control: the payload is real — a full unpickle *does* run it. (Our own harmless code,
    # writing into tmp_path; this proves the assertion above could fail.)
    if fmt == "raw":
        with open(path, "rb") as f:
            pickle.load(f)  # noqa: S301 — deliberate, see comment
    else:
        torch.load(path, weights_only=False)  # noqa: S614 — deliberate, see comment
    assert marker.read_text() == "unpickled"


def test_malicious_pickle_beside_safetensors_is_not_even_opened(tmp_path):
    marker = tmp_path / "pwned"
    ck.make_demo_model(tmp_path, "mlp")
    ck.malicious_pickle(tmp_path / "pytorch_model.bin", marker)
    names = [r.name for r in read_checkpoint(tmp_path)]
    assert names and all(n.startswith("fc") for n in names)
    assert not marker.exists()


def test_torchscript_is_refused(tmp_path):
    path = ck.torchscript_file(tmp_path / "model.pt")
    with pytest.raises(UnsafeCheckpoint, match="TorchScript"):
        read_checkpoint(path)


def test_numpy_inside_a_pickle_needs_full_unpickling(tmp_path):
    """Even 'harmless' globals outside torch's allowlist are refused: no trusted list."""
    path = tmp_path / "np.pt"
    torch.save({"w": torch.ones(2), "stats": np.ones(3)}, path)
    with pytest.raises(UnsafeCheckpoint, match="numpy"):
        read_checkpoint(path)


@pytest.mark.parametrize("content,fragment", [
    (b"", "not a torch checkpoint"),
    (b"hello, this is text" * 10, "not a torch checkpoint"),
    (b"\x80\x02" + os.urandom(200), "unreadable"),
])
def test_garbage_bin_is_malformed(tmp_path, content, fragment):
    path = tmp_path / "model.bin"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=fragment) as info:
        read_checkpoint(path)
    assert str(path) in str(info.value)


def test_truncated_zip_pickle_is_malformed(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.ones(1000)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MalformedCheckpoint, match="zip archive"):
        read_checkpoint(path)


def test_pickle_whose_top_level_is_not_a_dict(tmp_path):
    path = tmp_path / "t.pt"
    torch.save([torch.ones(2)], path)
    with pytest.raises(MalformedCheckpoint, match="list, not a state dict"):
        read_checkpoint(path)


def test_allow_pickle_false_refuses_even_good_pickles(tmp_path):
    ck.make_demo_model(tmp_path, "mlp", fmt="bin")
    with pytest.raises(UnsafeCheckpoint, match="allow_pickle=False"):
        read_checkpoint(tmp_path, allow_pickle=False)
    assert len(list(read_checkpoint(tmp_path))) == 6


# --------------------------------------------------------------------------- indexes / paths


@pytest.mark.parametrize("text,fragment", [
    ("not json", "not valid JSON"),
    ("[]", "expected an object"),
    ('{"metadata": {}}', "no weight_map"),
    ('{"weight_map": {}}', "no weight_map"),
    ('{"weight_map": {"a": 3}}', "not a non-empty string"),
    ('{"weight_map": {"a": "../../etc/passwd"}}', "outside the checkpoint folder"),
    ('{"weight_map": {"a": "/etc/passwd"}}', "outside the checkpoint folder"),
    ('{"weight_map": {"a": "..\\\\x.safetensors"}}', "outside the checkpoint folder"),
    ('{"weight_map": {"a": "m.safetensors"}, "metadata": 5}', "metadata is not an object"),
])
def test_bad_index(text, fragment):
    with pytest.raises(MalformedCheckpoint, match=fragment.replace("\\", "\\\\").replace("(", "\\(")):
        parse_index(text)


def test_index_with_missing_or_wrong_shard(tmp_path):
    folder = ck.make_sharded_model(tmp_path / "m", "mlp", shards=2)
    index_path = folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    # a tensor the index puts in the wrong shard
    name = next(iter(index["weight_map"]))
    good = index["weight_map"][name]
    other = next(s for s in set(index["weight_map"].values()) if s != good)
    index["weight_map"][name] = other
    index_path.write_text(json.dumps(index))
    with pytest.raises(MalformedCheckpoint, match=f"{name!r} is mapped to {other!r} but found in {good!r}"):
        read_checkpoint(folder)
    # a tensor the index lists but no shard has
    index["weight_map"][name] = good
    index["weight_map"]["ghost.weight"] = good
    index_path.write_text(json.dumps(index))
    with pytest.raises(MalformedCheckpoint, match=f"'ghost.weight' is not in shard {good!r}"):
        read_checkpoint(folder)
    del index["weight_map"]["ghost.weight"]
    # a shard that is missing
    index["weight_map"][name] = "model-00009-of-00009.safetensors"
    index_path.write_text(json.dumps(index))
    with pytest.raises(MalformedCheckpoint, match="is missing"):
        read_checkpoint(folder)


def test_duplicate_tensor_across_files(tmp_path):
    ck.write_safetensors(tmp_path / "a.safetensors", {"w": np.ones((2, 2), np.float32)})
    ck.write_safetensors(tmp_path / "b.safetensors", {"w": np.zeros((2, 2), np.float32)})
    with pytest.raises(MalformedCheckpoint, match="'w' appears in both"):
        read_checkpoint(tmp_path)


def test_missing_paths_are_not_found(tmp_path):
    with pytest.raises(NotFound):
        read_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(NotFound, match="no weight files"):
        read_checkpoint(tmp_path)
    (tmp_path / "blob").write_bytes(b"\x00" * 64)
    with pytest.raises(MalformedCheckpoint, match="not a safetensors, GGUF or torch checkpoint file"):
        read_checkpoint(tmp_path / "blob")
