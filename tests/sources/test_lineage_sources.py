"""Base-model links and reported metrics as each source reads them: the Hub's listing and
model info (``baseModels``, ``cardData``) through the real ``huggingface_hub`` client against
the loopback hub, local folders (README.md, adapter_config.json), torchvision's enums."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hubscan.refs import BaseLink
from hubscan.sources import adapter_links, list_models, resolve
from hubscan.sources.evals import card_evals, torchvision_evals
from hubscan.sources.lineage import card_links, hub_links, is_hub_id
from tests import lineage_family as fam


def test_pure_link_rules():
    assert hub_links({"relation": "quantized", "models": [{"id": "a/b"}]}) == (
        BaseLink("hf", "a/b", "quantized", "hub:baseModels"),)
    assert hub_links(["a/b", "c/d"])[0].relation == "merge"
    assert hub_links({"relation": "weird", "models": [{"id": "a/b"}]})[0].relation == "finetune"
    assert card_links({"base_model": ["a/b", "c/d"]})[1] == BaseLink("hf", "c/d", "merge", "card:base_model")
    assert card_links({"base_model": "a/b"}, repo_files=["adapter_config.json"])[0].relation == "adapter"
    assert card_links({"base_model": "a/b"}, repo_files=["m-Q4_K_M.gguf"])[0].relation == "quantized"
    assert card_links({"base_model": "a/b", "base_model_relation": "merge"})[0].relation == "merge"
    assert card_links({"license": "mit"}) == ()
    assert [is_hub_id(x) for x in ("bert-base-uncased", "google/vit-base", "/home/u/llama", "./base",
                                   "a/b/c", "../x")] == [True, True, False, False, False, False]


def test_card_evals_keep_numbers_only():
    data = {"model-index": [{"name": "m", "results": [{
        "task": {"type": "text-classification"}, "dataset": {"type": "glue", "name": "GLUE", "split": "test"},
        "metrics": [{"type": "accuracy", "value": 0.9, "name": "Acc", "verified": True},
                    {"type": "f1", "value": "N/A"}, {"type": "loss", "value": "1.5"}]}]}]}
    got = card_evals(data)
    assert [(e.metric, e.value, e.dataset, e.dataset_split, e.verified) for e in got] == [
        ("accuracy", 0.9, "glue", "test", True), ("loss", 1.5, "glue", "test", None)]
    assert card_evals(None) == () and card_evals({"license": "mit"}) == ()
    tv = torchvision_evals({"ImageNet-1K": {"acc@1": 76.1, "acc@5": float("nan")}})
    assert [(e.task, e.dataset, e.metric, e.value) for e in tv] == [("image-classification", "ImageNet-1K", "acc@1", 76.1)]


def test_hub_listing_and_resolve_carry_bases_and_evals(fakehub):
    fam.add_family(fakehub)
    refs = {r.repo_id: r for r in list_models("hf", author="acme")}
    assert set(refs) == {fam.BASE, fam.LIGHT, fam.HEAVY, fam.FP16, fam.LORA}
    assert {(lk.base_repo_id, lk.relation, lk.origin) for lk in refs[fam.HEAVY].bases} == {
        (fam.BASE, "finetune", "hub:baseModels"), (fam.BASE, "finetune", "card:base_model")}
    assert {lk.relation for lk in refs[fam.FP16].bases} == {"quantized"}
    assert refs[fam.LORA].bases == () and refs[fam.LORA].meta["adapter"] is True
    assert [(e.metric, e.value) for e in refs[fam.HEAVY].evals] == [("accuracy", 0.62)]
    assert refs[fam.BASE].bases == ()
    # the adapter's base comes from its adapter_config.json, at its pinned commit (1 request)
    fakehub.reset_log()
    assert adapter_links(refs[fam.LORA]) == (BaseLink("hf", fam.BASE, "adapter", "adapter_config"),)
    assert fakehub.count("resolve", repo=fam.LORA, file="adapter_config.json") == 1
    one = resolve(f"hf://{fam.LIGHT}")[0]  # model_info: the card, not the tree
    assert [(lk.base_repo_id, lk.origin) for lk in one.bases] == [(fam.BASE, "card:base_model")]
    assert [(e.metric, e.value) for e in one.evals] == [("accuracy", 0.81)]


def test_local_folder_reads_its_card_and_adapter_config(tmp_path):
    from hubscan.testing.checkpoints import write_safetensors

    ft = tmp_path / "ft"
    ft.mkdir()
    write_safetensors(ft / "model.safetensors", {"w": np.ones((8, 8), np.float32)})
    (ft / "README.md").write_bytes(fam.card("acme/base", accuracy=0.7))
    ad = tmp_path / "adapter"
    ad.mkdir()
    write_safetensors(ad / "adapter_model.safetensors", {"w.lora_A.weight": np.ones((2, 8), np.float32)})
    (ad / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/home/me/base"}))
    r = resolve(str(ft))[0]
    assert r.bases == (BaseLink("hf", "acme/base", "finetune", "card:base_model"),)
    assert [(e.metric, e.value, e.origin) for e in r.evals] == [("accuracy", 0.7, "card:model-index")]
    a = resolve(str(ad))[0]
    assert a.bases == (BaseLink("path", "/home/me/base", "adapter", "adapter_config"),)


def test_torchvision_quantized_weights_name_their_float_original():
    q = resolve("tv://quantized_resnet18:IMAGENET1K_FBGEMM_V1")[0]
    f = resolve("tv://resnet18:IMAGENET1K_V1")[0]
    assert q.bases == (BaseLink("tv", "resnet18", "quantized", "torchvision:unquantized", f.revision),)
    acc = {e.metric: e.value for e in f.evals}
    assert acc == {"acc@1": 69.758, "acc@5": 89.078}
    assert f.bases == ()


def test_fakehub_card_payloads_through_the_real_client(fakehub):
    from huggingface_hub import HfApi

    fam.add_family(fakehub)
    api = HfApi(endpoint=fakehub.url)
    info = api.model_info(fam.FP16)
    assert info.card_data["base_model"] == fam.BASE
    assert info.card_data["base_model_relation"] == "quantized"
    listed = {m.id: m for m in api.list_models(author="acme", expand=["baseModels", "cardData", "model-index"])}
    assert listed[fam.HEAVY].base_models == {"relation": "finetune", "models": [{"id": fam.BASE}]}
    assert listed[fam.LORA].base_models is None  # no card names a base: the tree has none
    assert listed[fam.HEAVY].card_data.eval_results[0].metric_value == 0.62
    assert listed[fam.HEAVY].model_index[0]["results"][0]["metrics"][0]["value"] == 0.62
    plain = {m.id: m for m in api.list_models(author="acme", cardData=True)}
    assert plain[fam.LIGHT].card_data["base_model"] == fam.BASE
