"""torchvision as a source: the resnet/vgg series enumerate with their published accuracies,
and weights generated here with the real architectures' names and shapes are read (and
analysed) offline from the torch hub cache, or fetched through the base-URL override."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision

from hubscan.errors import IntegrityError, NotFound, UnsafeCheckpoint
from hubscan.sources import FetchStats, list_models, open_model, resolve
from hubscan.sources.torchvision import TorchvisionSource, family_of, tv_cache_dir

# Published ImageNet-1K top-1 (torchvision docs' model table).
PUBLISHED_ACC1 = {
    ("resnet18", "IMAGENET1K_V1"): 69.758,
    ("resnet50", "IMAGENET1K_V1"): 76.13,
    ("resnet50", "IMAGENET1K_V2"): 80.858,
    ("vgg11", "IMAGENET1K_V1"): 69.02,
    ("vgg16", "IMAGENET1K_V1"): 71.592,
    ("vgg19_bn", "IMAGENET1K_V1"): 74.218,
}


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    return tmp_path / "torch"


def _generated_state_dict(name: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return torchvision.models.get_model(name, weights=None).state_dict()


def test_resnet_and_vgg_series_with_accuracy():
    resnets = list(list_models("tv", family="resnet", task="classification"))
    vggs = list(list_models("tv", family="vgg", task="classification"))
    assert sorted({r.repo_id for r in resnets}) == ["resnet101", "resnet152", "resnet18", "resnet34", "resnet50"]
    assert sorted({r.repo_id for r in vggs}) == sorted(f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn"))
    by_key = {(r.repo_id, r.meta["weights"]): r for r in resnets + vggs}
    for key, acc in PUBLISHED_ACC1.items():
        assert by_key[key].meta["acc@1"] == pytest.approx(acc)
    assert by_key[("vgg16", "IMAGENET1K_FEATURES")].meta["acc@1"] is None  # NaN published
    assert all(r.meta["acc@5"] > r.meta["acc@1"] for r in resnets)
    r50 = by_key[("resnet50", "IMAGENET1K_V2")]
    assert r50.revision == "IMAGENET1K_V2-11ad3fa6" and r50.arch == "resnet50" and r50.library == "torchvision"
    assert r50.files[0].path == "resnet50-11ad3fa6.pth"
    assert r50.files[0].url == "https://download.pytorch.org/models/resnet50-11ad3fa6.pth"
    # num_params metadata agrees with the architecture itself.
    arch = torchvision.models.resnet50(weights=None)
    assert r50.params == sum(p.numel() for p in arch.parameters())


def test_catalogue_shape_and_uris():
    classifiers = {r.repo_id for r in list_models("tv", task="classification", weights="default")}
    assert len(classifiers) == 80 == len(torchvision.models.list_models(module=torchvision.models))
    everything = {r.repo_id for r in list_models("tv")}
    assert classifiers < everything and len(everything) == len(torchvision.models.list_models())
    assert [r.meta["weights"] for r in resolve("tv://resnet50")] == ["IMAGENET1K_V2"]  # DEFAULT
    assert [r.meta["weights"] for r in resolve("tv://resnet50:*")] == ["IMAGENET1K_V1", "IMAGENET1K_V2"]
    assert [r.repo_id for r in resolve("tv://vgg1[16]")] == ["vgg11", "vgg16"]
    assert (family_of("wide_resnet50_2"), family_of("mobilenet_v3_large"), family_of("vgg11_bn")) == (
        "wide_resnet", "mobilenet_v3", "vgg")
    with pytest.raises(NotFound):
        resolve("tv://resnet50:NOPE")
    with pytest.raises(NotFound):
        resolve("tv://nonet")


def test_cached_weights_analyse_offline(torch_home, monkeypatch):
    from hubscan.analysis.model import analyze_model
    from hubscan.options import AnalysisOptions

    sd = _generated_state_dict("resnet18")
    cache = tv_cache_dir()
    assert cache == torch_home / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(sd, cache / "resnet18-f37072fd.pth")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HUBSCAN_TV_BASE_URL", "http://127.0.0.1:9")  # would fail if contacted

    (ref,) = resolve("tv://resnet18")
    stats = FetchStats()
    got = {t.name: t for t in open_model(ref, stats=stats)}
    assert list(got) == list(sd) and stats.cache_hits == 1
    assert all(got[k].shape == tuple(v.shape) and torch.equal(got[k].load(), v) for k, v in sd.items())
    assert {t.file for t in got.values()} == {"resnet18-f37072fd.pth"}

    opts = AnalysisOptions(mp_fit=False, compare=False, keep_spectra=False,
                           layers_include=r"^(fc|conv1|layer1\.0\.conv1|layer2\.0\.conv1)\.weight$")
    result = analyze_model(ref, opts, allow_bin=True)
    assert result.model["status"] == "ok" and not result.failures
    analysed = {r["tensor"] if "tensor" in r else r.get("longname") for r in result.layers if r.get("status") == "ok"}
    assert "fc.weight" in analysed and "layer2.0.conv1.weight" in analysed
    alphas = [r["alpha"] for r in result.layers if r.get("status") == "ok" and r.get("alpha") is not None]
    assert alphas and all(math.isfinite(a) and a > 1 for a in alphas)


def test_download_through_the_base_url_override(torch_home, fakehub, monkeypatch):
    sd = _generated_state_dict("squeezenet1_1")
    fname = "squeezenet1_1-b8a52dc0.pth"
    path = torch_home.parent / fname
    torch.save(sd, path)
    fakehub.add_tv_file(fname, path)
    monkeypatch.setenv("HUBSCAN_TV_BASE_URL", f"{fakehub.url}/tv")
    (ref,) = resolve("tv://squeezenet1_1")
    assert ref.files[0].url == f"{fakehub.url}/tv/{fname}"

    # Our generated bytes are not torchvision's: the published hash prefix rejects them.
    with pytest.raises(IntegrityError, match="b8a52dc0"):
        list(open_model(ref))
    assert not (tv_cache_dir() / fname).exists()

    src = TorchvisionSource(check_hash=False)
    fakehub.inject("cut", endpoint="tv", at=0.5)  # and the download survives a cut
    stats = FetchStats()
    got = {t.name: t.load() for t in src.open(ref, stats=stats)}
    assert got.keys() == sd.keys() and all(torch.equal(got[k], sd[k]) for k in sd)
    assert (tv_cache_dir() / fname).stat().st_size == path.stat().st_size
    assert stats.resumes == 1 and stats.bytes_fetched == path.stat().st_size
    n = fakehub.count("tv")
    assert len(list(src.open(ref))) == len(sd) and fakehub.count("tv") == n  # now cached
    with pytest.raises(UnsafeCheckpoint):
        list(src.open(ref, allow_bin=False))
