"""The hf source against 1,000 fake repos, with the real ``huggingface_hub`` client: filters
return exactly the expected set (computed here from the generated catalogue, not by the
server's code path), in pages, at ~N/page API calls; refs carry what a scan needs."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

from hubscan.errors import NotFound
from hubscan.sources import FetchStats, list_models, open_model, resolve
from hubscan.testing.fakehub import safetensors_bytes

N = 1000
PAGE = 100


def _params(repo) -> int:
    info = repo.safetensors_info()
    return info["total"]


def _ids(refs) -> list[str]:
    return [r.repo_id for r in refs]


def test_everything_in_pages(fakehub_clean):
    hub = fakehub_clean
    stats = FetchStats()
    refs = list(list_models("hf", stats=stats))
    assert sorted(_ids(refs)) == sorted(r.repo_id for r in hub.catalog)
    assert stats.api_calls == math.ceil(N / PAGE) == hub.count("api", path_prefix="/api/models")
    pages = hub.select("api")
    assert all("expand=sha" in r.query and "expand=siblings" in r.query for r in pages)
    assert sum("cursor=" in r.query for r in pages) == N // PAGE - 1  # followed Link headers
    assert hub.count("resolve") == 0  # enumeration never touches files


@pytest.mark.parametrize(
    "filters, keep",
    [
        (dict(author="acme", library="timm"), lambda r: r.author == "acme" and r.library_name == "timm"),
        (dict(search="bert", pipeline_tag="text-classification"),
         lambda r: "bert" in r.repo_id and r.pipeline_tag == "text-classification"),
        (dict(tags=["license:mit", "vit"]), lambda r: "license:mit" in r.tags and "vit" in r.tags),
        (dict(min_params=20, max_params=40), lambda r: 20 <= _params(r) <= 40),
        (dict(min_bytes=200, author="globex"), lambda r: _params(r) * 4 >= 200 and r.author == "globex"),
        (dict(gated=True), lambda r: bool(r.gated)),
    ],
    ids=["author+library", "search+task", "tags", "params", "bytes", "gated"],
)
def test_filters_return_exactly_the_expected_set(fakehub_clean, filters, keep):
    hub = fakehub_clean
    expected = sorted(r.repo_id for r in hub.catalog if keep(r))
    assert expected, "a filter that selects nothing proves nothing"
    stats = FetchStats()
    got = _ids(list_models("hf", stats=stats, **filters))
    assert sorted(got) == expected and len(got) == len(set(got))
    assert stats.api_calls == max(1, math.ceil(len(expected) / PAGE)) or "min_bytes" in filters


def test_sorted_and_limited(fakehub_clean):
    hub = fakehub_clean
    stats = FetchStats()
    got = list(list_models("hf", sort="downloads", limit=25, stats=stats))
    top = sorted(hub.catalog, key=lambda r: (-r.downloads, r.repo_id))[:25]
    assert _ids(got) == [r.repo_id for r in top]
    assert [r.downloads for r in got] == sorted((r.downloads for r in got), reverse=True)
    assert stats.api_calls == 1  # limit=25 → one page of 25


def test_refs_carry_what_a_scan_needs(fakehub_clean):
    hub = fakehub_clean
    by_id = {r.repo_id: r for r in hub.catalog}
    for ref in list_models("hf", author="hooli", limit=30):
        repo = by_id[ref.repo_id]
        fam = repo.repo_id.split("/")[1].split("-")[0]
        assert ref.source == "hf" and ref.revision == repo.sha
        assert [f.path for f in ref.files] == ["model.safetensors"]
        assert ref.files[0].url == f"{hub.url}/{ref.repo_id}/resolve/{repo.sha}/model.safetensors"
        assert ref.arch == f"{fam.capitalize()}Model" and ref.model_type == fam
        assert ref.params == _params(repo) and ref.meta["est_bytes"] == 4 * _params(repo)
        assert (ref.downloads, ref.likes, ref.library) == (repo.downloads, repo.likes, repo.library_name)
        assert ref.gated == bool(repo.gated) and "safetensors" in ref.tags
        assert ref.files[0].size is None  # the listing has names only (as on the Hub)


def test_exact_file_metadata_costs_one_call_per_model(fakehub_clean):
    hub = fakehub_clean
    stats = FetchStats()
    refs = list(list_models("hf", author="umbrella", search="gpt", file_metadata="paths-info", stats=stats))
    assert refs
    for ref in refs:
        f = hub.repos[ref.repo_id].files["model.safetensors"]
        assert ref.files[0].size == f.size
        assert ref.files[0].sha256 == hashlib.sha256(f.data).hexdigest()
    assert stats.api_calls == 1 + len(refs)
    assert hub.count("api", method="POST") == len(refs)


def test_resolve_pins_a_revision(fakehub):
    w = {"w": np.arange(16, dtype=np.float32).reshape(4, 4)}
    repo = fakehub.add_model("acme/x", w, config={"architectures": ["XModel"], "model_type": "x"})
    old = repo.sha
    stats = FetchStats()
    (ref,) = resolve("hf://acme/x", stats=stats)
    assert ref.revision == old and ref.files[0].size == repo.files["model.safetensors"].size
    assert ref.files[0].sha256 == repo.files["model.safetensors"].sha256  # from model_info(blobs)
    assert stats.api_calls == 1 and ref.arch == "XModel"

    fakehub.update_repo("acme/x", {"model.safetensors": safetensors_bytes({"w": np.zeros((4, 4), np.float32)})})
    (new,) = resolve("hf://acme/x@main")
    assert new.revision != old
    (pinned,) = resolve(f"hf://acme/x@{old}")
    assert pinned.revision == old
    assert np.array_equal(next(open_model(pinned)).load().numpy(), w["w"])
    assert not next(open_model(new)).load().numpy().any()
    assert list_models("hf", author="acme").__next__().revision == new.revision


def test_hf_cache_is_used_and_offline_mode_honoured(fakehub, monkeypatch):
    from huggingface_hub import hf_hub_download

    w = {"w": np.ones((8, 4), np.float32)}
    fakehub.add_model("acme/cached", w, config={"model_type": "c"})
    fakehub.add_model("acme/remote", w)
    (ref,) = resolve("hf://acme/cached")
    for f in ("model.safetensors", "config.json"):
        hf_hub_download("acme/cached", f, revision=ref.revision)
    fakehub.reset_log()
    stats = FetchStats()
    assert [t.name for t in open_model(ref, stats=stats)] == ["w"]
    assert stats.cache_hits == 1 and fakehub.count() == 0  # no request at all

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (off,) = resolve("hf://acme/cached")  # from the cache, no API
    assert off.revision == ref.revision and off.location and off.model_type == "c"
    assert [t.name for t in open_model(off)] == ["w"]
    assert fakehub.count() == 0
    with pytest.raises(NotFound):
        resolve("hf://acme/remote")
