"""analyze_model: one model → the rows of every table, with real numbers, never an exception."""

from __future__ import annotations

import hashlib
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from hubscan.analysis.model import (
    FileRetry,
    analyze_model,
    failed_model,
    file_key,
    is_final,
    model_bytes,
    model_footprint,
    readahead,
    with_reused_layers,
)
from hubscan.analysis.summary import model_summary
from hubscan.errors import IntegrityError, MalformedCheckpoint, TransientFetchError
from hubscan.options import AnalysisOptions
from hubscan.refs import ModelRef, TensorRef, WeightFile, model_key
from hubscan.sources import open_model, resolve
from hubscan.testing.checkpoints import make_demo_model, make_sharded_model

OPTS = AnalysisOptions(compare=False)  # compare: its own tests; keeps these fast
NO_WAIT = FileRetry(attempts=3, backoff_s=0.0, max_backoff_s=0.0)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline-models")
    return {
        "gpt2": make_demo_model(root / "gpt2", "gpt2", seed=3, heavy_tailed=True),
        "mlp": make_demo_model(root / "mlp", "mlp", seed=4),
        "sharded": make_sharded_model(root / "sharded", "gpt2", shards=2, seed=5),
    }


def local_ref(folder: Path) -> ModelRef:
    (ref,) = resolve(str(folder))
    return ref


class CountingOpener:
    """The real ``open_model``, counting which files it was asked to open; optionally
    failing the first ``fail_first`` opens of a file with ``error`` (before or after its
    tensors, like a stream that breaks or a sha256 check at the end of a file)."""

    def __init__(self, *, fail_first: int = 0, error: type[BaseException] = TransientFetchError,
                 after_tensors: bool = False, delay_s: float = 0.0) -> None:
        self.calls: list[str] = []
        self.fail_first, self.error, self.after = fail_first, error, after_tensors
        self.delay_s = delay_s

    def __call__(self, ref, *, allow_bin, stats, files=None):
        self.calls.extend(files)
        n = self.calls.count(files[0])
        if self.delay_s:
            time.sleep(self.delay_s)
        if n <= self.fail_first and not self.after:
            raise self.error(f"injected failure #{n} of {files[0]}")
        yield from open_model(ref, allow_bin=allow_bin, stats=stats, files=files)
        if n <= self.fail_first and self.after:
            raise self.error(f"injected failure #{n} at the end of {files[0]}")


def test_rows_carry_keys_and_match_numpy(models):
    folder = models["gpt2"]
    ref = local_ref(folder)
    opts = AnalysisOptions()  # the defaults users run (comparisons included)
    result = analyze_model(ref, opts, scan_id="s1", scan_date="2026-01-02")
    key = model_key(ref.source, ref.repo_id, ref.revision, opts.analysis_version)
    file_sha = sha256(folder / "model.safetensors")
    tensors = load_file(str(folder / "model.safetensors"))  # independent reader

    assert result.model_key == key and result.scan_date == "2026-01-02"
    assert result.model["status"] == "ok" and result.model["scan_id"] == "s1"
    assert result.model["n_tensors"] == len(tensors) == len(result.layers)
    assert result.failures == []
    assert result.model_files == [{**result.model_files[0], "file": "model.safetensors",
                                   "file_sha256": file_sha, "reused": False}]
    assert {r["file_sha256"] for r in result.layers} == {file_sha}
    assert all(r["analysis_version"] == opts.analysis_version and r["model_key"] == key
               and r["written_at"] is not None for r in result.layers)
    assert any(r["best_family"] for r in result.layers)  # the comparisons ran
    assert {r["tensor"] for r in result.layers} == set(tensors)

    # every analysed dense matrix: eigenvalues = squared singular values (ww: no 1/N), float64
    dense = [r for r in result.layers if r["kind"] == "dense" and r["status"] in ("ok", "fit-failed")]
    assert len(dense) >= 8
    spectra = {s["tensor"]: s["evals"] for s in result.spectra}
    for r in dense:
        sv = np.linalg.svd(tensors[r["tensor"]].astype(np.float64), compute_uv=False)
        ev = np.sort(sv**2)
        assert r["lambda_max"] == pytest.approx(ev[-1], rel=1e-9)
        assert r["norm"] == pytest.approx(ev.sum(), rel=1e-9)
        assert spectra[r["tensor"]].dtype == np.float32
        np.testing.assert_allclose(np.sort(spectra[r["tensor"]])[-5:], ev[-5:], rtol=1e-6)

    # the models row summarises exactly these layer rows
    summary = model_summary(result.layers)
    for col in ("n_analysed", "n_skipped", "alpha_mean", "alpha_median", "frac_alpha_2_6"):
        assert result.model[col] == summary[col]
    alphas = [r["alpha"] for r in result.layers if r["status"] == "ok"]
    assert result.model["alpha_mean"] == pytest.approx(np.mean(alphas))
    assert result.model["bytes"] == (folder / "model.safetensors").stat().st_size


def test_known_file_is_not_fetched_only_linked(models):
    ref = local_ref(models["sharded"])
    first, second = ref.files
    opener = CountingOpener()
    result = analyze_model(ref, OPTS, opener=opener, known_files=frozenset({first.sha256}))
    assert opener.calls == [second.path]
    reused = {r["file"]: r["reused"] for r in result.model_files}
    assert reused == {first.path: True, second.path: False}
    assert {r["file"] for r in result.layers} == {second.path}
    assert result.model["status"] == "ok"

    # the engine later completes the summary with the reused file's rows from the lake
    full = analyze_model(ref, OPTS)
    rows_of_first = [r for r in full.layers if r["file_sha256"] == first.sha256]
    completed = with_reused_layers(result, rows_of_first)
    for col in ("n_tensors", "n_analysed", "alpha_mean", "alpha_median", "stable_rank_mean"):
        assert completed.model[col] == pytest.approx(full.model[col])


def test_a_file_repeated_inside_a_model_is_analysed_once(models):
    ref = local_ref(models["mlp"])
    (wf,) = ref.files
    twice = ModelRef(source="local", repo_id="twice", revision="r1", location=ref.location,
                     files=(wf, WeightFile(path=wf.path, size=wf.size, sha256=wf.sha256)))
    opener = CountingOpener()
    result = analyze_model(twice, OPTS, opener=opener)
    assert opener.calls == [wf.path]
    assert [r["reused"] for r in result.model_files] == [False, True]


def test_bad_file_fails_alone(tmp_path, models):
    folder = tmp_path / "half-broken"
    shutil.copytree(models["sharded"], folder)
    shard2 = sorted(folder.glob("model-*.safetensors"))[1]
    shard2.write_bytes(shard2.read_bytes()[:200])  # truncated: header cut
    ref = local_ref(folder)
    result = analyze_model(ref, OPTS)
    assert result.model["status"] == "partial"
    (f,) = result.failures
    assert (f["stage"], f["file"], f["error_class"], f["attempt"]) == ("read", shard2.name, "MalformedCheckpoint", 1)
    assert f["message"] and f["model_key"] == result.model_key
    assert {r["file"] for r in result.layers} == {ref.files[0].path}
    assert [r["file"] for r in result.model_files] == [ref.files[0].path]
    assert is_final(result)


def test_every_file_bad_is_a_failed_model(tmp_path, models):
    folder = tmp_path / "broken"
    shutil.copytree(models["mlp"], folder)
    (folder / "model.safetensors").write_bytes(b"\x00" * 7)
    result = analyze_model(local_ref(folder), OPTS)
    assert result.model["status"] == "failed"
    assert result.layers == [] and result.model_files == []
    assert [f["error_class"] for f in result.failures] == ["MalformedCheckpoint"]


def test_transient_error_is_retried_with_backoff(models):
    ref = local_ref(models["mlp"])
    sleeps: list[float] = []
    opener = CountingOpener(fail_first=2)
    result = analyze_model(ref, OPTS, opener=opener, retry=FileRetry(attempts=3, backoff_s=0.5,
                                                                     max_backoff_s=10),
                           sleep=sleeps.append)
    assert result.model["status"] == "ok" and result.failures == []
    assert len(opener.calls) == 3
    assert len(sleeps) == 2 and 0.5 <= sleeps[0] <= 0.75 and 1.0 <= sleeps[1] <= 1.5


def test_transient_error_after_all_attempts_leaves_model_open(models):
    ref = local_ref(models["mlp"])
    result = analyze_model(ref, OPTS, opener=CountingOpener(fail_first=5), retry=NO_WAIT,
                           attempt=2, sleep=lambda s: None)
    (f,) = result.failures
    assert (f["stage"], f["error_class"], f["attempt"]) == ("fetch", "TransientFetchError", 4)
    assert result.model["status"] == "failed"
    assert not is_final(result)  # the engine leaves it for the next run


def test_integrity_error_at_end_of_file_drops_its_rows(models):
    """A stream verifies sha256 after yielding a file's tensors: those rows must go."""
    ref = local_ref(models["sharded"])
    opener = CountingOpener(fail_first=1, error=IntegrityError, after_tensors=True)
    result = analyze_model(ref, OPTS, opener=opener, retry=NO_WAIT)
    assert result.model["status"] == "failed"
    assert result.layers == [] and result.spectra == [] and result.model_files == []
    assert sorted(f["file"] for f in result.failures) == sorted(f.path for f in ref.files)
    assert {f["error_class"] for f in result.failures} == {"IntegrityError"}
    assert {f["stage"] for f in result.failures} == {"read"}
    assert is_final(result)


def test_unexpected_error_becomes_a_failure_row(models):
    def broken(ref, *, allow_bin, stats, files=None):
        raise RuntimeError("opener bug")
        yield  # pragma: no cover

    result = analyze_model(local_ref(models["mlp"]), OPTS, opener=broken)
    assert [(f["stage"], f["error_class"], f["message"]) for f in result.failures] == [
        ("analyze", "RuntimeError", "opener bug")]
    assert result.model["status"] == "failed"


def test_model_without_files():
    ref = ModelRef(source="hf", repo_id="a/empty", revision="abc")
    result = analyze_model(ref, OPTS)
    assert result.model["status"] == "failed"
    assert [f["error_class"] for f in result.failures] == ["NotFound"]


def test_failed_model_rows():
    ref = ModelRef(source="hf", repo_id="a/b", revision="abc",
                   files=(WeightFile("model.safetensors", 10, "f" * 64),))
    result = failed_model(ref, OPTS, TimeoutError("stuck"), stage="timeout", attempt=3, scan_id="s")
    assert result.model["status"] == "failed" and result.model["model_key"] == result.failures[0]["model_key"]
    assert result.failures[0]["attempt"] == 3 and result.failures[0]["error_class"] == "TimeoutError"
    assert not is_final(result)


def test_file_key_without_hash_never_collides():
    a = ModelRef(source="hf", repo_id="a/b", revision="1", files=(WeightFile("m.safetensors"),))
    b = ModelRef(source="hf", repo_id="a/c", revision="1", files=(WeightFile("m.safetensors"),))
    assert file_key(a, a.files[0]) != file_key(b, b.files[0])
    assert file_key(a, a.files[0]).startswith("nohash-")


def _refs(n: int, nbytes: int, *, error_at: int | None = None, log: list | None = None):
    for i in range(n):
        if i == error_at:
            raise IntegrityError("bad file")
        if log is not None:
            log.append(("produced", i))
        yield TensorRef(name=f"t{i}", shape=(nbytes // 4,), dtype="F32", file="f",
                        load=lambda i=i: i, nbytes=nbytes)


def test_readahead_keeps_order_and_error_position():
    out = []
    with pytest.raises(IntegrityError):
        for t in readahead(_refs(10, 100, error_at=6), max_bytes=1000):
            out.append(t.load())
    assert out == [0, 1, 2, 3, 4, 5]


def _wait_until(pred, timeout: float = 60.0) -> None:
    """Poll ``pred`` until true; the bound is generous (a loaded 2-core CI) and only hit
    when the condition never comes."""
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.01)


def test_readahead_is_bounded_by_bytes():
    log: list = []
    it = readahead(_refs(20, 100, log=log), max_bytes=300)
    first = next(it)

    def produced() -> int:
        return sum(1 for e in log if e[0] == "produced")

    # The producer runs until the budget stops it: wait for that point (however slow the
    # machine), then give it time to overrun the budget, if it would.
    _wait_until(lambda: produced() >= 1 + 3 + 1)
    time.sleep(0.3)
    assert first.load() == 0
    assert produced() <= 1 + 3 + 1  # consumed + budget + the one waiting for room
    assert [t.load() for t in it] == list(range(1, 20))


def test_readahead_stops_its_thread_when_abandoned():
    before = set(threading.enumerate())  # other tests' threads are not this one's to judge
    it = readahead(_refs(1000, 100), max_bytes=200)
    next(it)
    mine = [t for t in threading.enumerate() if t not in before and t.name == "hubscan-readahead"]
    assert len(mine) == 1
    it.close()
    mine[0].join(timeout=60)  # a bound, not a pause: returns as soon as the thread ends
    assert not [t for t in threading.enumerate()
                if t not in before and t.name == "hubscan-readahead" and t.is_alive()]


def test_model_size_and_footprint():
    listed = ModelRef(source="hf", repo_id="a/llm", revision="1",
                      files=(WeightFile("model-1.safetensors"), WeightFile("model-2.safetensors")),
                      meta={"est_bytes": 140 * 10**9})  # a listing without file sizes
    assert model_bytes(listed) == 140 * 10**9
    assert model_footprint(listed, window=2**30) == 2**30  # streamed: the window, not 140 GB
    sized = ModelRef(source="hf", repo_id="a/b", revision="1",
                     files=(WeightFile("model.safetensors", 10), WeightFile("extra.bin", 5000)))
    assert model_bytes(sized) == 5010
    assert model_footprint(sized, window=100) == 5000  # a pickle is loaded whole
    assert model_bytes(ModelRef(source="hf", repo_id="a/c", revision="1")) == 0
