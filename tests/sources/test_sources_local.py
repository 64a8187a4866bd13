"""Local sources: files, folders, globs, the HF cache — revisions are content hashes
(checked against an independent computation), tensors are the files' tensors."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
import torch
from safetensors import safe_open

from hubscan.errors import IntegrityError, NotFound
from hubscan.readers import read_checkpoint
from hubscan.sources import FetchStats, list_models, open_model, resolve
from hubscan.testing.checkpoints import (
    make_demo_model,
    make_sharded_model,
    write_safetensors,
)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _revision(*paths) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update((_sha(p) + "\n").encode())
    return h.hexdigest()


def _numel(path) -> int:
    with safe_open(str(path), "np") as f:
        return sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys())


def test_single_file_and_folder(tmp_path):
    folder = make_demo_model(tmp_path / "tiny-mlp", "mlp", width=32, layers=3)
    st = folder / "model.safetensors"
    (by_file,) = resolve(str(st))
    (by_dir,) = resolve(str(folder))
    (by_uri,) = resolve(f"file://{folder}")
    for ref in (by_file, by_dir, by_uri):
        assert ref.source == "local" and ref.repo_id == "tiny-mlp"
        assert ref.revision == _revision(st)
        assert [(f.path, f.size, f.sha256) for f in ref.files] == [("model.safetensors", st.stat().st_size, _sha(st))]
        assert ref.params == _numel(st)
        assert ref.arch == "DemoMLP" and ref.model_type
    local = {t.name: t.load() for t in read_checkpoint(st)}
    got = list(open_model(by_dir))
    assert [t.name for t in got] == list(local) and {t.file for t in got} == {"model.safetensors"}
    assert all(torch.equal(t.load(), local[t.name]) for t in got)


def test_a_named_file_is_named_after_itself(tmp_path):
    p = write_safetensors(tmp_path / "my-net.safetensors", {"w": np.ones((4, 4), np.float32)})
    (ref,) = resolve(str(p))
    assert ref.repo_id == "my-net" and ref.params == 16 and ref.arch is None


def test_zoo_folders_globs_and_sharding(tmp_path):
    zoo = tmp_path / "zoo"
    a = make_demo_model(zoo / "a", "mlp", width=16, layers=2, seed=1)
    b = make_demo_model(zoo / "b", "cnn", width=8, layers=1, seed=2)
    c = make_sharded_model(zoo / "sub" / "c", "gpt2", shards=3, width=32, layers=1, vocab=64)
    refs = resolve(str(zoo))
    assert [r.repo_id for r in refs] == ["a", "b", "sub/c"]
    shards = sorted(c.glob("*.safetensors"))
    assert [f.path for f in refs[2].files] == [p.name for p in shards]
    assert refs[2].revision == _revision(*shards)
    assert [r.repo_id for r in resolve(str(zoo / "*" / "model.safetensors"))] == ["a", "b"]
    assert [r.repo_id for r in list_models("local", path=str(zoo))] == ["a", "b", "sub/c"]
    streamed = {t.name: t.load() for t in open_model(refs[2])}
    assert set(streamed) == {t.name for t in read_checkpoint(c)}
    assert a.exists() and b.exists()


def test_revision_follows_content_not_location(tmp_path):
    folder = make_demo_model(tmp_path / "m", "mlp", width=16, layers=2)
    (ref,) = resolve(str(folder))
    moved = shutil.copytree(folder, tmp_path / "renamed")
    (same,) = resolve(str(moved))
    assert same.revision == ref.revision and same.repo_id == "renamed"
    tensors = {t.name: t.load().clone() for t in read_checkpoint(moved)}
    first = next(iter(tensors))
    tensors[first].view(-1)[0] += 1
    write_safetensors(moved / "model.safetensors", tensors)
    (changed,) = resolve(str(moved))
    assert changed.revision != ref.revision


def test_file_changed_after_resolve_is_an_integrity_error(tmp_path):
    folder = make_demo_model(tmp_path / "m", "mlp", width=16, layers=2)
    (ref,) = resolve(str(folder))
    write_safetensors(folder / "model.safetensors", {"w": np.ones((2, 2), np.float32)})
    with pytest.raises(IntegrityError):
        list(open_model(ref))


def test_pickles_and_missing_paths(tmp_path):
    folder = make_demo_model(tmp_path / "p", "mlp", width=16, layers=2, fmt="bin")
    (ref,) = resolve(str(folder))
    assert [f.path for f in ref.files] == ["pytorch_model.bin"]
    assert len(list(open_model(ref))) > 0
    with pytest.raises(NotFound):
        resolve(str(folder), allow_bin=False)
    with pytest.raises(NotFound):
        resolve(str(tmp_path / "nothing-here"))
    with pytest.raises(NotFound):
        resolve(str(tmp_path / "nothing-*"))


def test_hf_cache(fakehub, tmp_path):
    import os

    from huggingface_hub import hf_hub_download

    folder = make_sharded_model(tmp_path / "s", "gpt2", shards=2, width=32, layers=1, vocab=64)
    repo = fakehub.add_folder("acme/cached", folder)
    for p in sorted(folder.iterdir()):
        hf_hub_download("acme/cached", p.name)  # revision main → refs/main in the cache
    fakehub.reset_log()
    (ref,) = resolve("hf-cache://acme/*")
    assert (ref.source, ref.repo_id, ref.revision) == ("hf", "acme/cached", repo.sha)
    shards = sorted(folder.glob("*.safetensors"))
    assert [(f.path, f.size, f.sha256) for f in ref.files] == [(p.name, p.stat().st_size, _sha(p)) for p in shards]
    assert ref.meta["refs"] == ["main"] and ref.model_type == "gpt2"
    (same,) = resolve(os.environ["HF_HUB_CACHE"])  # a cache folder given as a path
    assert same == ref
    stats = FetchStats()
    got = {t.name: t.load() for t in open_model(ref, stats=stats)}
    want = {t.name: t.load() for t in read_checkpoint(folder)}
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert fakehub.count() == 0 and stats.cache_hits == 2
    assert resolve("hf-cache://nobody/*") == []
