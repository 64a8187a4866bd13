"""Streaming safetensors from the loopback hub: bit-identical tensors, one GET per shard,
and the right outcome under every injected fault (recovered, or the right error class —
never tensors from bad bytes passed off as good)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from hubscan.errors import (
    GatedRepo,
    IntegrityError,
    NotFound,
    RateLimited,
    TransientFetchError,
    UnsafeCheckpoint,
)
from hubscan.net import http
from hubscan.readers import read_checkpoint, read_safetensors_header
from hubscan.readers.stream import RemoteFile, fetch_header, stream_safetensors
from hubscan.sources import FetchStats, open_model, resolve
from hubscan.testing.checkpoints import make_demo_model, make_sharded_model


def _raw(t: torch.Tensor) -> bytes:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _local(folder) -> dict[str, tuple[str, tuple[int, ...], bytes]]:
    return {t.name: (t.dtype, t.shape, _raw(t.load())) for t in read_checkpoint(folder)}


def _streamed(ref, **kw) -> tuple[dict[str, tuple[str, tuple[int, ...], bytes]], list[str], FetchStats]:
    stats = FetchStats()
    out, files = {}, []
    for t in open_model(ref, stats=stats, **kw):
        out[t.name] = (t.dtype, t.shape, _raw(t.load()))
        files.append(t.file)
    return out, files, stats


@pytest.fixture
def demo(fakehub, tmp_path):
    """A 4-layer MLP (≈1.3 MB, F32) on the hub; returns (hub, folder, ref)."""
    folder = make_demo_model(tmp_path / "demo", "mlp", width=128, layers=4, seed=1)
    fakehub.add_folder("acme/demo", folder)
    (ref,) = resolve("hf://acme/demo")
    fakehub.reset_log()
    return fakehub, folder, ref


def test_stream_is_bit_identical_and_costs_one_get(demo):
    hub, folder, ref = demo
    out, files, stats = _streamed(ref)
    assert out == _local(folder)
    size = (folder / "model.safetensors").stat().st_size
    # The design figure: 1 resolve per shard (+ the CDN hop it redirects to), no api call,
    # no Range request, every byte once, sha256 checked.
    assert (stats.api_calls, stats.resolve_calls, stats.range_requests) == (0, 1, 0)
    assert stats.bytes_fetched == size and stats.files_verified == 1
    assert [(r.method, r.endpoint) for r in hub.requests] == [("GET", "resolve"), ("GET", "cdn")]
    assert set(files) == {"model.safetensors"}


@pytest.mark.parametrize("dtype", ["BF16", "F16"])
def test_sharded_half_precision(fakehub, tmp_path, dtype):
    folder = make_sharded_model(tmp_path / "s", "gpt2", shards=3, width=64, layers=2, vocab=96, dtype=dtype)
    fakehub.add_folder("acme/sharded", folder)
    (ref,) = resolve("hf://acme/sharded")
    assert [f.path for f in ref.files] == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    fakehub.reset_log()
    out, files, stats = _streamed(ref)
    assert out == _local(folder)
    assert files == sorted(files)  # shard after shard
    assert stats.resolve_calls == 3 and stats.files_verified == 3 and stats.api_calls == 0
    assert stats.bytes_fetched == sum(f.size for f in ref.files)
    assert fakehub.count("resolve", method="GET") == 3 and fakehub.count("resolve", method="HEAD") == 0


def test_tensors_arrive_before_the_file_ends(fakehub, tmp_path):
    """Streaming, not download-then-read: the first tensor is handed over while most of the
    file is still on the server."""
    folder = make_demo_model(tmp_path / "big", "mlp", width=1024, layers=10, seed=2)  # ≈ 42 MB
    fakehub.add_folder("acme/big", folder)
    (ref,) = resolve("hf://acme/big")
    size = ref.files[0].size
    fakehub.inject("slow", endpoint="cdn", delay=0.0005)  # keep socket buffers from absorbing it all
    it = open_model(ref)
    first = next(it)
    sent_at_first = fakehub.select("cdn")[-1].bytes_sent
    rest = list(it)
    assert first.load().numel() > 0 and len(rest) > 5
    assert sent_at_first < size / 2, (sent_at_first, size)


FAULTS = {
    "500x2 on resolve": dict(kind="status", endpoint="resolve", status=500, times=2),
    "503 on cdn": dict(kind="status", endpoint="cdn", status=503),
    "429 + Retry-After": dict(kind="status", endpoint="resolve", status=429, retry_after=1),
    "slow body": dict(kind="slow", endpoint="cdn", delay=0.001),
    "body shorter than announced": dict(kind="length_lie", endpoint="cdn", lie=-5000),
    "Content-Length too large": dict(kind="length_lie", endpoint="cdn", lie=+5000),
    "cut twice": dict(kind="cut", endpoint="cdn", at=0.3, times=2),
}


@pytest.mark.parametrize("fault", list(FAULTS), ids=list(FAULTS))
def test_recovers_from_transient_faults(demo, fault):
    hub, folder, ref = demo
    f = hub.inject(**FAULTS[fault])
    out, _, stats = _streamed(ref)
    assert f.hits >= 1
    assert out == _local(folder)
    assert stats.files_verified == 1
    assert stats.retries >= (0 if f.kind in ("slow",) or f.lie > 0 else 1)


def test_cut_resumes_with_a_range_request(demo):
    hub, folder, ref = demo
    size = ref.files[0].size
    hub.inject("cut", endpoint="cdn", at=0.55)
    out, _, stats = _streamed(ref)
    assert out == _local(folder)
    cdn = hub.select("cdn")
    assert [r.fault for r in cdn] == ["cut", None]
    cut_at = cdn[0].bytes_sent
    assert 0 < cut_at < size
    assert cdn[1].range == f"bytes={cut_at}-{size - 1}" and cdn[1].status == 206
    # Not from zero: every byte crossed the wire once; the resume went to the CDN URL and
    # cost no extra resolve call.
    assert stats.bytes_fetched == size
    assert stats.resumes == 1 and stats.range_requests == 1 and stats.resolve_calls == 1


def test_resume_without_cdn_goes_back_to_resolve(demo):
    hub, folder, ref = demo
    hub.lfs_redirect = False
    hub.inject("cut", endpoint="resolve", at=100_000)
    out, _, stats = _streamed(ref)
    assert out == _local(folder)
    reqs = hub.select("resolve")
    assert reqs[1].range == f"bytes=100000-{ref.files[0].size - 1}"
    assert stats.resolve_calls == 2 and stats.bytes_fetched == ref.files[0].size


def test_stall_becomes_a_cut_and_resumes(demo):
    hub, folder, ref = demo
    # The read timeout is far above any pause of a healthy transfer on a loaded 2-core CI
    # (a spurious timeout would be a second resume), and the stall far above the timeout.
    http.install(policy=http.RetryPolicy(base_delay=0.01, max_delay=0.05, read_timeout=1.5), force=True)
    hub.inject("stall", endpoint="cdn", at=0.5, delay=4.0)
    out, _, stats = _streamed(ref)
    assert out == _local(folder) and stats.resumes == 1


def test_wrong_bytes_raise_integrity_error_after_the_file(demo):
    hub, folder, ref = demo
    hub.inject("corrupt", endpoint="cdn", at=0.8)
    seen = []
    with pytest.raises(IntegrityError, match="sha256"):
        for t in open_model(ref):
            seen.append(t.name)
    # The contract: the error comes after the file's last tensor — the consumer must drop
    # the file's results. (The pipeline test below checks that it does.)
    assert seen == [t.name for t in read_checkpoint(folder)]


def test_wrong_bytes_never_become_metrics(demo):
    from hubscan.analysis.model import analyze_model
    from hubscan.options import AnalysisOptions

    hub, folder, ref = demo
    hub.inject("corrupt", endpoint="cdn", at=0.8)
    result = analyze_model(ref, AnalysisOptions(mp_fit=False, compare=False), sleep=lambda s: None)
    assert result.layers == [] and result.spectra == []
    assert [f["error_class"] for f in result.failures] == ["IntegrityError"]
    assert result.model["status"] == "failed"
    hub.clear_faults()
    ok = analyze_model(ref, AnalysisOptions(mp_fit=False, compare=False))
    assert ok.model["status"] == "ok" and len(ok.layers) > 0


def test_metadata_that_lies_is_caught(demo):
    hub, folder, ref = demo
    import dataclasses

    wf = ref.files[0]
    bad_sha = dataclasses.replace(ref, files=(dataclasses.replace(wf, sha256="0" * 64),))
    with pytest.raises(IntegrityError):
        list(open_model(bad_sha))
    bad_size = dataclasses.replace(ref, files=(dataclasses.replace(wf, size=wf.size + 8),))
    with pytest.raises(IntegrityError):
        list(open_model(bad_size))


@pytest.mark.parametrize("status, error", [(503, TransientFetchError), (429, RateLimited)])
def test_persistent_errors_become_the_right_class(demo, status, error):
    hub, _, ref = demo
    hub.inject("status", endpoint="resolve", status=status, times=None)
    stats = FetchStats()
    with pytest.raises(error):
        list(open_model(ref, stats=stats))
    retries = http.current_policy().max_retries
    assert hub.count("resolve") == retries + 1 and stats.retries == retries


def test_endless_cuts_give_up(demo):
    hub, _, ref = demo
    hub.inject("cut", endpoint="cdn", at=0, times=None)
    with pytest.raises(TransientFetchError, match="gave up"):
        list(open_model(ref))


def test_gated_private_and_missing(fakehub):
    fakehub.tokens["tok-alice"] = "alice"
    w = {"w": np.ones((8, 8), np.float32)}
    fakehub.add_model("acme/gated", w, gated="auto", granted=["alice"])
    fakehub.add_model("acme/private", w, private=True)
    (ref,) = resolve("hf://acme/gated")  # metadata is public
    assert ref.gated and ref.meta["gated"] == "auto"
    with pytest.raises(GatedRepo):
        list(open_model(ref))
    with pytest.raises(NotFound):
        resolve("hf://acme/private")
    with pytest.raises(NotFound):
        resolve("hf://acme/missing")
    with pytest.raises(NotFound):
        resolve("hf://acme/gated@" + "f" * 40)


def test_gated_with_a_granted_token(fakehub, monkeypatch):
    fakehub.tokens["tok-alice"] = "alice"
    fakehub.add_model("acme/gated", {"w": np.ones((8, 8), np.float32)}, gated="manual", granted=["alice"])
    monkeypatch.setenv("HF_TOKEN", "tok-alice")
    (ref,) = resolve("hf://acme/gated")
    assert [t.name for t in open_model(ref)] == ["w"]
    assert {r.token for r in fakehub.select("resolve")} == {"tok-alice"}


def test_header_and_subset_reads(demo):
    hub, folder, ref = demo
    path = folder / "model.safetensors"
    rf = RemoteFile(ref.files[0].url, "model.safetensors")
    stats = FetchStats()
    hdr = fetch_header(rf, stats=stats)
    local = read_safetensors_header(path)
    assert hdr.entries == local.entries and hdr.size == path.stat().st_size
    assert hdr.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (stats.resolve_calls, stats.range_requests) == (1, 1)
    assert stats.bytes_fetched < 0.1 * hdr.size

    names = [e.name for e in local.entries]
    want = [names[1], names[2], names[-1]]  # two adjacent, one far: 2 runs (+1 header)
    stats = FetchStats()
    got = {t.name: _raw(t.load()) for t in stream_safetensors(rf, names=want, stats=stats)}
    full = _local(folder)
    assert got == {n: full[n][2] for n in want}
    assert stats.range_requests <= 3 and stats.bytes_fetched < hdr.size


def test_pickles_only_when_allowed(fakehub):
    rng = np.random.default_rng(3)
    tensors = {"a.weight": rng.standard_normal((16, 8)).astype(np.float32), "b.bias": np.ones(4, np.float32)}
    fakehub.add_model("acme/pickled", tensors, safetensors=False, bin=True)
    (ref,) = resolve("hf://acme/pickled")
    assert [f.path for f in ref.files] == ["pytorch_model.bin"]
    stats = FetchStats()
    got = {t.name: t.load().numpy() for t in open_model(ref, stats=stats)}
    assert set(got) == set(tensors) and all(np.array_equal(got[k], tensors[k]) for k in tensors)
    assert stats.files_verified == 1 and "downloaded whole" in stats.notes[0]
    with pytest.raises(UnsafeCheckpoint):
        list(open_model(ref, allow_bin=False))
    assert resolve("hf://acme/pickled", allow_bin=False)[0].files == ()


@pytest.mark.parametrize(
    "fault, error_class",
    [(dict(kind="status", endpoint="resolve", status=503, times=None), "TransientFetchError"),
     (dict(kind="status", endpoint="resolve", status=429, times=None), "RateLimited"),
     (dict(kind="cut", endpoint="cdn", at=0, times=None), "TransientFetchError")],
    ids=["503 forever", "429 forever", "cut forever"],
)
def test_unrecoverable_faults_become_failure_rows(demo, fault, error_class):
    from hubscan.analysis.model import analyze_model
    from hubscan.options import AnalysisOptions

    hub, _, ref = demo
    hub.inject(**fault)
    result = analyze_model(ref, AnalysisOptions(mp_fit=False, compare=False), sleep=lambda s: None)
    assert result.layers == [] and result.model["status"] == "failed"
    assert {f["error_class"] for f in result.failures} == {error_class}
    assert {f["stage"] for f in result.failures} == {"fetch"}


def test_gated_repo_becomes_a_failure_row(fakehub):
    from hubscan.analysis.model import analyze_model
    from hubscan.options import AnalysisOptions

    fakehub.add_model("acme/gated", {"w": np.ones((8, 8), np.float32)}, gated="manual")
    (ref,) = resolve("hf://acme/gated")
    result = analyze_model(ref, AnalysisOptions(mp_fit=False, compare=False), sleep=lambda s: None)
    assert [f["error_class"] for f in result.failures] == ["GatedRepo"]
    assert "GatedRepo" in result.failures[0]["message"] or "restricted" in result.failures[0]["message"]


def test_streamed_analysis_equals_local_analysis_bit_for_bit(demo):
    """The whole chain — hub → stream (with read-ahead and a cut) → analysis — gives exactly
    the numbers of the local file, and the same file sha256 key (so results dedupe)."""
    from hubscan.analysis.model import analyze_model
    from hubscan.options import AnalysisOptions

    hub, folder, ref = demo
    (local_ref,) = resolve(str(folder))
    opts = AnalysisOptions(mp_fit=False, compare=False)
    hub.inject("cut", endpoint="cdn", at=0.5)
    remote = analyze_model(ref, opts, prefetch_bytes=1 << 20)
    local = analyze_model(local_ref, opts)
    assert remote.model["status"] == local.model["status"] == "ok"
    skip = {"model_key", "written_at", "fit_s", "eig_s"}
    strip = lambda rows: [{k: v for k, v in r.items() if k not in skip} for r in rows]  # noqa: E731
    assert strip(remote.layers) == strip(local.layers)  # incl. file_sha256, alpha, D, norms …
    assert sum(r["status"] == "ok" for r in local.layers) >= 4
    assert len(remote.spectra) == len(local.spectra) > 0
    assert all(np.array_equal(a["evals"], b["evals"]) for a, b in zip(remote.spectra, local.spectra))
    assert hub.select("cdn")[-1].range is not None  # the cut really happened and was resumed
