"""Today's Hub formats end to end against the loopback hub (issue 13): listing shows format
and quantisation and filters on them, each repo streams with one GET per weight file, and
``analyze_model`` analyses every weight matrix or skips it with a reason — never a companion
row, never a dead scan on a hostile file."""

from __future__ import annotations

import pytest

from hubscan.analysis.model import analyze_model
from hubscan.options import AnalysisOptions
from hubscan.sources import FetchStats, list_models, open_model
from hubscan.testing.fakehub import FORMAT_REPOS, FakeHub, add_format_repos

OPTS = AnalysisOptions(mp_fit=False, compare=False)
COMPANIONS = (".qzeros", ".scales", ".g_idx", ".qweight", ".absmax", ".quant_map", ".SCB", ".biases",
              ".weight_scale", ".weight_scale_inv", ".weight_packed", ".weight_shape", "_blocks", "_scales",
              "quant_state.bitsandbytes__nf4", ".lora_A.weight", ".lora_B.weight")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    h = FakeHub(idle_timeout=300, page_size=100).start()
    try:
        with h.environ(tmp_path_factory.mktemp("fmt")):
            add_format_repos(h, width=256)
            yield h
    finally:
        h.stop()


@pytest.fixture(scope="module")
def listed(hub):
    return {r.repo_id: r for r in list_models("hf", author="formats", limit=100)}


def test_listing_shows_format_and_quantisation(listed):
    assert set(listed) == set(FORMAT_REPOS)
    q = {rid: r.meta["quantization"] for rid, r in listed.items()}
    assert q["formats/tiny-llama-GGUF"] == "gguf:F16"          # one level, by preference
    assert q["formats/tiny-llama-GPTQ"] == "gptq" and q["formats/tiny-llama-AWQ"] == "awq"
    assert q["formats/tiny-llama-bnb-4bit"] == "bnb-nf4" and q["formats/tiny-llama-mlx-4bit"] == "mlx"
    assert q["formats/tiny-llama-FP8"] == "fp8-block" and q["formats/tiny-gpt-oss-mxfp4"] == "mxfp4"
    gg = listed["formats/tiny-llama-GGUF"]
    assert [f.path for f in gg.files] == ["tiny-llama-F16.gguf"] and gg.meta["formats"] == ["gguf"]
    assert gg.params and gg.arch == "llama"                     # from the Hub's gguf expand
    assert gg.meta["est_bytes"] == gg.params * 2                # F16: 16 bits per weight
    assert [f.path for f in listed["formats/tiny-llama-lora"].files] == ["adapter_model.safetensors"]


def test_spec_filters_on_format_and_quantisation(hub):
    gguf = list(list_models("hf", author="formats", formats=["gguf"], limit=10))
    assert [r.repo_id for r in gguf] == ["formats/tiny-llama-GGUF"]
    four = {r.repo_id for r in list_models("hf", author="formats", quantization=["gptq", "awq"], limit=10)}
    assert four == {"formats/tiny-llama-GPTQ", "formats/tiny-llama-AWQ"}
    assert {r.repo_id for r in list_models("hf", author="formats", quantization=["gguf:*"], limit=10)} == {
        "formats/tiny-llama-GGUF"}
    every = list(list_models("hf", author="formats", formats=["gguf"], gguf="all", limit=10))
    assert sorted(f.path for f in every[0].files) == ["tiny-llama-F16.gguf", "tiny-llama-Q4_K_M.gguf",
                                                      "tiny-llama-Q8_0.gguf"]


@pytest.mark.parametrize("rid", sorted(FORMAT_REPOS))
def test_every_repo_streams_with_one_get_per_file_and_is_analysed(hub, listed, rid):
    ref = listed[rid]
    hub.requests.clear()
    stats = FetchStats()
    result = analyze_model(ref, OPTS, stats=stats)
    assert result.model["status"] == "ok", result.failures
    for wf in ref.files:
        assert hub.count("resolve", repo=rid, file=wf.path) == 1
        assert hub.count("cdn", ranged=True) == 0
    rows = result.layers
    assert not any(r["tensor"].endswith(COMPANIONS) for r in rows)
    analysed = [r for r in rows if r["status"] == "ok"]
    assert analysed
    for r in rows:
        assert r["status"] in ("ok", "skipped"), r
        if r["status"] == "skipped":
            assert r["skip_reason"]
    if rid in ("formats/tiny-llama-GPTQ", "formats/tiny-llama-AWQ", "formats/tiny-llama-bnb-4bit",
               "formats/tiny-llama-mlx-4bit", "formats/tiny-llama-FP8", "formats/tiny-llama-w4a16"):
        quant = {r["quant_method"] for r in analysed} - {"none"}
        assert len(quant) == 1 and all(r["bits"] for r in analysed)
    if rid == "formats/tiny-llama-GGUF":
        assert all(r["source_format"] == "gguf" for r in rows)
        assert {r["quant_method"] for r in analysed} == {"gguf:F16"}   # norms are gguf:F32, 1-D, skipped
        assert {r["gguf_name"] for r in rows} >= {"blk.0.attn_q.weight", "token_embd.weight"}
        assert "model.layers.0.self_attn.q_proj.weight" in {r["tensor"] for r in rows}
    if rid == "formats/tiny-gpt-oss-mxfp4":
        assert {r["expert"] for r in analysed if r["expert"] is not None} == {0, 1, 2, 3}
    if rid == "formats/tiny-llama-lora":
        lora = [r for r in rows if r["kind"] == "lora"]
        assert len(lora) == 4 and {r["base_model"] for r in lora} == {"formats/tiny-llama"}
        assert {r["lora_scale"] for r in lora} == {2.0}
        assert hub.count("resolve", repo=rid, file="adapter_config.json") == 1
    if rid == "formats/tiny-llama-tied":
        assert sum(1 for r in rows if r["tied_to"]) == 1


def test_gguf_levels_stream_k_quants(hub, listed):
    ref = next(r for r in list_models("hf", author="formats", formats=["gguf"], gguf="all", limit=10))
    q4 = [t for t in open_model(ref, files=["tiny-llama-Q4_K_M.gguf"])]
    kinds = {t.quant.method for t in q4 if len(t.shape) == 2}
    assert kinds == {"gguf:Q4_K"}
    w = next(t for t in q4 if t.name == "model.layers.0.mlp.up_proj.weight").load()
    assert w.shape == (512, 256) and w.dtype.is_floating_point


def test_a_hostile_gguf_fails_its_file_and_the_rest_is_analysed(hub):
    import struct

    good = hub.repos["formats/tiny-llama-GGUF"].files["tiny-llama-F16.gguf"].data
    raw = bytearray(good)
    # lie about the first tensor's offset: past the end of the data section
    i = raw.index(b"token_embd.weight")
    at = i + len(b"token_embd.weight") + 4 + 2 * 8 + 4
    raw[at:at + 8] = struct.pack("<Q", 1 << 40)
    hub.add_repo("hostile/tiny-GGUF", {"a-F16.gguf": bytes(raw), "b-F16.gguf": good}, library_name="gguf")
    (ref,) = list_models("hf", author="hostile", limit=5)
    result = analyze_model(ref, OPTS)
    assert result.model["status"] == "partial"
    (f,) = result.failures
    assert f["file"] == "a-F16.gguf" and f["error_class"] == "MalformedCheckpoint"
    assert "token_embd.weight" in f["message"]
    assert {r["file"] for r in result.layers} == {"b-F16.gguf"}


def test_hubscan_scan_over_every_format(hub, tmp_path):
    """``hubscan scan`` (the in-process executor) over the formats/* repos: every model ok,
    every layer row analysed or skipped with a reason; the lake says how weights were stored."""
    from hubscan.engine.scan import run_scan
    from hubscan.engine.spec import loads_spec
    from hubscan.lake import Lake

    lake_dir = tmp_path / "lake"
    spec = loads_spec(f"""
[scan]
name = "formats"
lake = "{lake_dir}"
[[sources]]
kind = "hf"
author = "formats"
quantization = ["none", "gptq", "awq", "bnb-nf4", "mlx", "fp8-block", "compressed-tensors", "mxfp4", "gguf:*"]
[analysis]
compare = false
mp_fit = false
""")
    s = run_scan(spec, executor="local", progress=False)
    assert s.status == "completed", s.error
    assert s.n_ok == len(FORMAT_REPOS) and s.n_failed == 0
    lake = Lake(str(lake_dir))
    by = {r["quant_method"]: r["n"] for r in lake.query(
        "SELECT quant_method, count(*) AS n FROM layers WHERE status = 'ok' GROUP BY 1").to_pylist()}
    for q in ("gptq", "awq", "bnb-nf4", "mlx", "fp8-block", "compressed-tensors", "mxfp4", "gguf:F16", "none"):
        assert by.get(q, 0) > 0, (q, by)
    assert lake.query("SELECT count(*) AS n FROM layers WHERE status = 'skipped' AND skip_reason IS NULL"
                      ).column("n")[0].as_py() == 0
    assert lake.query("SELECT count(*) AS n FROM layers WHERE kind = 'lora'").column("n")[0].as_py() == 4
    assert lake.query("SELECT count(*) AS n FROM failures").column("n")[0].as_py() == 0
