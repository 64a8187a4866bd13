"""The loopback hub speaks the Hub's protocol to the real ``huggingface_hub`` client, and its
fault knobs do exactly what they say (so the source tests that rely on them mean something)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time

import httpx2
import numpy as np
import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub import errors as hfe

from hubscan.testing.checkpoints import make_sharded_model
from hubscan.testing.fakehub import FakeHub, populate_catalog


@pytest.fixture
def raw():
    with httpx2.Client(trust_env=False, timeout=10) as c:
        yield c


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_real_client_endpoints(fakehub, tmp_path):
    folder = make_sharded_model(tmp_path / "m", shards=3, width=16, layers=2, vocab=32)
    repo = fakehub.add_folder("acme/sharded", folder, downloads=7)
    api = HfApi(endpoint=fakehub.url)

    info = api.model_info("acme/sharded", files_metadata=True)
    assert info.sha == repo.sha
    by_name = {s.rfilename: s for s in info.siblings}
    for p in folder.iterdir():
        s = by_name[p.name]
        assert s.size == p.stat().st_size
        if p.suffix == ".safetensors":
            assert s.lfs is not None and s.lfs.sha256 == _sha(p.read_bytes())
        else:
            assert s.lfs is None
    assert info.config["model_type"]

    shard = "model-00002-of-00003.safetensors"
    paths = api.get_paths_info("acme/sharded", [shard, "config.json", "nope.txt"], revision=repo.sha)
    assert [p.path for p in paths] == [shard, "config.json"]
    assert paths[0].lfs.sha256 == _sha((folder / shard).read_bytes())

    tree = list(api.list_repo_tree("acme/sharded", revision=repo.sha, recursive=True))
    assert sorted(t.path for t in tree) == sorted(p.name for p in folder.iterdir())

    fakehub.reset_log()
    local = hf_hub_download("acme/sharded", shard, revision=repo.sha)
    assert open(local, "rb").read() == (folder / shard).read_bytes()
    kinds = [(r.method, r.endpoint, r.status) for r in fakehub.requests]
    # HEAD resolve → 302 to the CDN (same host: the client follows), then GET from the CDN.
    assert ("HEAD", "resolve", 302) in kinds and ("GET", "cdn", 200) in kinds
    assert fakehub.count("resolve") == 1


def test_listing_pages_follow_link_headers(fakehub):
    populate_catalog(fakehub, 250)
    api = HfApi(endpoint=fakehub.url)
    ids = [m.id for m in api.list_models(expand=["sha", "siblings"])]
    assert ids == [r.repo_id for r in sorted(fakehub.repos.values(), key=lambda r: r.created_at)]
    assert fakehub.count("api", path_prefix="/api/models") == 3  # 100 + 100 + 50
    assert all(m for m in ids)


def test_range_requests(fakehub, raw):
    data = bytes(range(256)) * 8
    repo = fakehub.add_repo("acme/r", {"w.bin": data})
    url = f"{fakehub.url}/acme/r/resolve/{repo.sha}/w.bin"
    r = raw.get(url, headers={"Range": "bytes=10-19"}, follow_redirects=True)
    assert r.status_code == 206 and r.content == data[10:20]
    assert r.headers["content-range"] == f"bytes 10-19/{len(data)}"
    assert r.history[0].status_code == 302
    assert r.history[0].headers["x-linked-etag"] == f'"{_sha(data)}"'
    assert r.history[0].headers["x-linked-size"] == str(len(data))
    assert r.history[0].headers["x-repo-commit"] == repo.sha
    assert raw.get(url, headers={"Range": "bytes=-5"}, follow_redirects=True).content == data[-5:]
    assert raw.get(url, headers={"Range": f"bytes={len(data)}-"}, follow_redirects=True).status_code == 416


def test_error_codes_map_to_hf_errors(fakehub):
    fakehub.tokens.update({"tok-alice": "alice", "tok-bob": "bob"})
    fakehub.add_model("acme/open", {"w": np.ones((4, 4), np.float32)})
    fakehub.add_model("acme/gated", {"w": np.ones((4, 4), np.float32)}, gated="manual", granted=["alice"])
    fakehub.add_model("acme/secret", {"w": np.ones((4, 4), np.float32)}, private=True, granted=["alice"])
    api = HfApi(endpoint=fakehub.url)

    with pytest.raises(hfe.RepositoryNotFoundError):
        api.model_info("acme/missing")
    with pytest.raises(hfe.RevisionNotFoundError):
        api.model_info("acme/open", revision="0" * 40)
    with pytest.raises(hfe.EntryNotFoundError):
        hf_hub_download("acme/open", "nope.safetensors")
    # Gated: metadata is public, files are not.
    assert api.model_info("acme/gated").gated == "manual"
    with pytest.raises(hfe.GatedRepoError):
        hf_hub_download("acme/gated", "model.safetensors", token=False)
    with pytest.raises(hfe.GatedRepoError):
        hf_hub_download("acme/gated", "model.safetensors", token="tok-bob")
    assert hf_hub_download("acme/gated", "model.safetensors", token="tok-alice")
    statuses = [r.status for r in fakehub.select("resolve", repo="acme/gated")]
    assert statuses[:2] == [401, 403]
    # Private: invisible without access, like a missing repo.
    with pytest.raises(hfe.RepositoryNotFoundError):
        api.model_info("acme/secret", token=False)
    assert "acme/secret" not in [m.id for m in api.list_models(author="acme", token=False)]
    assert "acme/secret" in [m.id for m in api.list_models(author="acme", token="tok-alice")]


def test_faults_do_what_they_say(fakehub, raw):
    data = np.random.default_rng(0).bytes(300_000)
    repo = fakehub.add_repo("acme/f", {"w.safetensors": data})
    url = f"{fakehub.url}/acme/f/resolve/{repo.sha}/w.safetensors"

    f = fakehub.inject("status", endpoint="resolve", status=503, times=1)
    assert raw.get(url, follow_redirects=True).status_code == 503
    assert raw.get(url, follow_redirects=True).content == data
    assert f.hits == 1

    fakehub.inject("status", endpoint="resolve", status=429, retry_after=7)
    r = raw.get(url, follow_redirects=True)
    assert r.status_code == 429 and r.headers["retry-after"] == "7"

    fakehub.inject("cut", endpoint="cdn", at=100_000)
    fakehub.reset_log()
    with pytest.raises(httpx2.RemoteProtocolError):
        raw.get(url, follow_redirects=True)
    cut = fakehub.select("cdn")[-1]
    assert cut.fault == "cut" and cut.bytes_sent == 100_000

    fakehub.inject("corrupt", endpoint="cdn", at=12_345)
    bad = raw.get(url, follow_redirects=True).content
    diff = np.flatnonzero(np.frombuffer(bad, np.uint8) != np.frombuffer(data, np.uint8))
    assert diff.tolist() == [12_345] and len(bad) == len(data)

    fakehub.inject("length_lie", endpoint="cdn", lie=-1000)
    short = raw.get(url, follow_redirects=True)
    assert int(short.headers["content-length"]) == len(data) - 1000 and short.content == data[:-1000]

    fakehub.inject("length_lie", endpoint="cdn", lie=+1000)
    with pytest.raises(httpx2.RemoteProtocolError):
        raw.get(url, follow_redirects=True)

    fakehub.inject("stall", endpoint="cdn", at=0.5, delay=1.5)
    with pytest.raises(httpx2.ReadTimeout):
        httpx2.get(url, follow_redirects=True, timeout=httpx2.Timeout(10, read=0.3), trust_env=False)
    assert raw.get(url, follow_redirects=True).content == data  # faults are used up


def test_mutable_repos_keep_old_revisions(fakehub, raw):
    repo = fakehub.add_repo("acme/m", {"a.safetensors": b"one"})
    old = repo.sha
    new = fakehub.update_repo("acme/m", {"a.safetensors": b"two", "b.txt": b"x"}, downloads=5)
    assert new != old
    api = HfApi(endpoint=fakehub.url)
    assert api.model_info("acme/m").sha == new
    assert api.model_info("acme/m", revision=old).sha == old
    get = lambda rev: raw.get(f"{fakehub.url}/acme/m/resolve/{rev}/a.safetensors", follow_redirects=True).content
    assert get(old) == b"one" and get(new) == b"two" and get("main") == b"two"
    fakehub.delete_repo("acme/m")
    with pytest.raises(hfe.RepositoryNotFoundError):
        api.model_info("acme/m")


def test_server_side_rate_limit(tmp_path):
    with FakeHub(rate_limits={"api": (3, 60)}) as hub, httpx2.Client(trust_env=False) as c:
        hub.add_repo("a/b", {"x.txt": b"x"})
        rs = [c.get(f"{hub.url}/api/models/a/b") for _ in range(4)]
        assert [r.status_code for r in rs] == [200, 200, 200, 429]
        assert rs[0].headers["ratelimit"].startswith('"api";r=2;t=')
        assert rs[0].headers["ratelimit-policy"] == '"fixed window";"api";q=3;w=60'
        assert rs[3].headers["ratelimit"].startswith('"api";r=0;')


def test_bounded_and_stops_when_idle():
    hub = FakeHub(max_repos=2, max_bytes=1000, idle_timeout=0.3).start()
    hub.add_repo("a/1", {"x": b"1"})
    with pytest.raises(ValueError, match="max 1000"):
        hub.add_repo("a/big", {"x": b"0" * 2000})
    hub.add_repo("a/2", {"x": b"2"})
    with pytest.raises(ValueError, match="full"):
        hub.add_repo("a/3", {"x": b"3"})
    deadline = time.monotonic() + 10
    while not hub.stopped and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hub.stopped
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(f"{hub.url}/api/models", trust_env=False, timeout=2)


def test_runs_as_a_module():
    from hubscan.testing.fakehub import FORMAT_REPOS

    p = subprocess.run(
        [sys.executable, "-m", "hubscan.testing.fakehub", "--demo", "3", "--idle-timeout", "0.5"],
        capture_output=True, text=True, timeout=120,
    )
    assert p.returncode == 0, p.stderr
    # the generated catalogue plus the formats/* repos (GGUF, GPTQ, AWQ, bnb, MLX, FP8, …)
    assert f"fake hub with {3 + len(FORMAT_REPOS)} repos at http://127.0.0.1:" in p.stdout
    assert "export HF_ENDPOINT=" in p.stdout
    p = subprocess.run(
        [sys.executable, "-m", "hubscan.testing.fakehub", "--demo", "3", "--idle-timeout", "0.5", "--no-formats"],
        capture_output=True, text=True, timeout=60,
    )
    assert p.returncode == 0, p.stderr
    assert "fake hub with 3 repos at http://127.0.0.1:" in p.stdout


def test_agent_registry_endpoint(fakehub, raw):
    r = raw.get(f"{fakehub.url}/api/agent-harnesses")
    assert json.loads(r.content) == {"standardEnvVars": [], "harnesses": {}}
