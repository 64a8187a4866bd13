"""Lineage and fine-tune deltas end to end: a base, two fine-tunes (one barely moved, one with
planted heavy-tailed layers), an adapter and a float16 copy on the loopback hub, scanned with
the real engine into a real lake. Lineage rows, Δalpha and weightwatcher's distances are
checked against plain numpy; the planted layers must rank first; the base's bytes are read
by Range requests, never downloaded a second time."""

from __future__ import annotations

import numpy as np
import pytest

from hubscan.engine.scan import run_scan
from hubscan.engine.spec import loads_spec
from hubscan.lake import Lake
from tests import lineage_family as fam

SPEC = """
[scan]
name = "lineage"
lake = "{lake}"
[[sources]]
kind = "hf"
author = "acme"
[deltas]
distances = true
methods = ["raw", "euclidean", "cka"]
esd = {esd}
"""


def _scan(tmp_path, *, esd: bool = False, name: str = "lake", executor: str = "local"):
    lake = tmp_path / name
    spec = loads_spec(SPEC.format(lake=lake, esd=str(esd).lower()))
    summary = run_scan(spec, executor=executor, progress=False)
    assert summary.status == "completed", summary.error
    return Lake(lake), summary


@pytest.fixture
def family_hub(fakehub):
    fam.add_family(fakehub)
    return fakehub


def test_lineage_rows_from_the_hub_card_and_adapter_config(family_hub, tmp_path):
    lake, summary = _scan(tmp_path)
    assert summary.n_ok == 5
    rows = lake.query("""SELECT repo_id, base_source, base_repo_id, relation, origin FROM lineage
                         ORDER BY repo_id, origin""").to_pylist()
    got = {(r["repo_id"], r["base_repo_id"], r["relation"], r["origin"]) for r in rows}
    assert got == {
        (fam.LIGHT, fam.BASE, "finetune", "hub:baseModels"), (fam.LIGHT, fam.BASE, "finetune", "card:base_model"),
        (fam.HEAVY, fam.BASE, "finetune", "hub:baseModels"), (fam.HEAVY, fam.BASE, "finetune", "card:base_model"),
        (fam.FP16, fam.BASE, "quantized", "hub:baseModels"), (fam.FP16, fam.BASE, "quantized", "card:base_model"),
        (fam.LORA, fam.BASE, "adapter", "adapter_config"),
    }
    assert {r["base_source"] for r in rows} == {"hf"}
    # each lineage row is at the revision that was analysed
    pairs = lake.query("""SELECT count(*) AS n FROM lineage l JOIN models m
                          ON m.repo_id = l.repo_id AND m.revision = l.revision""").column("n")[0].as_py()
    assert pairs == len(rows)
    links = lake.query("SELECT repo_id, relation, origins FROM lineage_links ORDER BY repo_id").to_pylist()
    assert [(r["repo_id"], r["relation"], r["origins"][0]) for r in links] == [
        (fam.FP16, "quantized", "hub:baseModels"), (fam.HEAVY, "finetune", "hub:baseModels"),
        (fam.LIGHT, "finetune", "hub:baseModels"), (fam.LORA, "adapter", "adapter_config")]


def test_distances_and_delta_alpha_equal_numpy(family_hub, tmp_path):
    lake, _ = _scan(tmp_path)
    base = fam.base_tensors()
    for repo, tensors in ((fam.LIGHT, fam.light_tensors()), (fam.HEAVY, fam.heavy_tensors()),
                          (fam.FP16, fam.fp16_tensors())):
        rows = {r["tensor"]: r for r in lake.query(
            f"SELECT * FROM deltas WHERE repo_id = '{repo}'").to_pylist()}
        assert set(rows) == set(fam.MATRICES), repo  # every analysed matrix, nothing else
        for name in fam.MATRICES:
            r = rows[name]
            assert r["status"] == "ok" and r["base_repo_id"] == fam.BASE
            want = fam.distances(tensors[name], base[name])
            for col, v in want.items():
                assert r[col] == pytest.approx(v, rel=1e-9, abs=1e-12), (repo, name, col)
            assert r["rel_delta"] == pytest.approx(
                want["delta_raw"] / np.linalg.norm(base[name].astype(np.float64)), rel=1e-9)
            assert r["n_mats"] == (9 if name == "conv.weight" else 1)
        fd = {r["tensor"]: r for r in lake.query(
            f"SELECT * FROM finetune_deltas WHERE repo_id = '{repo}'").to_pylist()}
        assert set(fd) == set(fam.MATRICES)
        for name in fam.MATRICES:
            want = fam.ww_alpha(tensors[name]) - fam.ww_alpha(base[name])
            assert fd[name]["delta_alpha"] == pytest.approx(want, rel=1e-6, abs=1e-9), (repo, name)
            assert fd[name]["delta_raw"] == pytest.approx(rows[name]["delta_raw"])
    # the adapter's tensors are LoRA factors: no deltas against the base's matrices
    assert lake.query(f"SELECT count(*) AS n FROM deltas WHERE repo_id = '{fam.LORA}'").column("n")[0].as_py() == 0


def test_planted_layers_rank_first(family_hub, tmp_path):
    lake, _ = _scan(tmp_path)
    fd = lake.query(f"""SELECT tensor, delta_alpha, delta_alpha_rank, move_rank FROM finetune_deltas
                        WHERE repo_id = '{fam.HEAVY}' ORDER BY delta_alpha_rank, tensor""").to_pylist()
    assert {r["tensor"] for r in fd[:2]} == set(fam.PLANTED)
    assert all(r["delta_alpha"] < -0.5 for r in fd[:2])
    assert {r["tensor"] for r in fd if r["move_rank"] <= 2} == set(fam.PLANTED)
    # the barely-moved fine-tune moved far less than the heavy one, in every layer
    light = {r["tensor"]: r["rel_delta"] for r in lake.query(
        f"SELECT tensor, rel_delta FROM deltas WHERE repo_id = '{fam.LIGHT}'").to_pylist()}
    assert max(light.values()) < 0.01
    heavy = {r["tensor"]: r["rel_delta"] for r in lake.query(
        f"SELECT tensor, rel_delta FROM deltas WHERE repo_id = '{fam.HEAVY}'").to_pylist()}
    assert min(heavy[t] for t in fam.PLANTED) > 0.5
    assert all(heavy[t] == 0.0 for t in fam.MATRICES if t not in fam.PLANTED)


def test_delta_esd_of_w_minus_base(family_hub, tmp_path):
    lake, _ = _scan(tmp_path, esd=True)
    rows = {(r["repo_id"], r["tensor"]): r for r in lake.query(
        "SELECT * FROM deltas WHERE status = 'ok'").to_pylist()}
    base, heavy = fam.base_tensors(), fam.heavy_tensors()
    for name in fam.PLANTED:
        r = rows[(fam.HEAVY, name)]
        assert r["diff_status"] == "ok"
        diff = heavy[name].astype(np.float64) - base[name].astype(np.float64)  # ours: in float64
        assert r["diff_alpha"] == pytest.approx(fam.ww_alpha(diff), rel=1e-6)
        ev = np.linalg.svd(diff, compute_uv=False) ** 2
        assert r["diff_log_norm"] == pytest.approx(np.log10(ev.sum()), rel=1e-9)
        assert r["diff_log_spectral_norm"] == pytest.approx(np.log10(ev.max()), rel=1e-9)
    # unchanged layers of the heavy fine-tune have no ESD of their difference
    assert rows[(fam.HEAVY, "layers.0.weight")]["diff_status"] == "zero"
    assert rows[(fam.LIGHT, "layers.0.weight")]["diff_status"] in ("ok", "fit-failed")


def test_base_in_the_lake_is_read_by_ranges_not_downloaded_again(fakehub, tmp_path):
    hub = fakehub
    fam.add_family(hub, derived=False)
    lake, first = _scan(tmp_path)
    assert first.n_ok == 1
    fam.add_family(hub, with_base=False)
    hub.reset_log()
    lake, second = _scan(tmp_path)
    assert second.n_ok == 4 and second.n_skipped == 1  # the base is not re-analysed
    base_file = hub.repos[fam.BASE].files["model.safetensors"]
    sent = hub.bytes_sent("cdn", repo=fam.BASE)
    full = hub.select("cdn", repo=fam.BASE, ranged=False)
    assert not full, "the base was downloaded whole a second time"
    tensors = fam.base_tensors()
    needed = sum(v.nbytes for k, v in tensors.items() if k != "embed.weight")  # matrices + biases between
    # three derived models each read the header request (256 KiB) and the matrices they need,
    # never the 1.9 MB embedding none of them needs
    assert 0 < sent <= 3 * (needed + 256 * 1024)
    assert sent < 3 * (base_file.size - tensors["embed.weight"].nbytes) + 3 * 256 * 1024
    assert base_file.size > 2 * 256 * 1024
    n = lake.query("SELECT count(*) AS n FROM deltas WHERE status = 'ok'").column("n")[0].as_py()
    assert n == 3 * len(fam.MATRICES)
    fd = lake.query(f"SELECT count(*) AS n FROM finetune_deltas WHERE repo_id = '{fam.HEAVY}'")
    assert fd.column("n")[0].as_py() == len(fam.MATRICES)


def test_deltas_off_by_default(family_hub, tmp_path):
    lake = tmp_path / "lake"
    spec = loads_spec(f'[scan]\nname = "x"\nlake = "{lake}"\n[[sources]]\nkind = "hf"\nauthor = "acme"\n')
    assert run_scan(spec, executor="local", progress=False).status == "completed"
    lk = Lake(lake)
    assert lk.query("SELECT count(*) AS n FROM deltas").column("n")[0].as_py() == 0
    # Δalpha needs no distances: the view joins the two analyses
    assert lk.query(f"SELECT count(*) AS n FROM finetune_deltas WHERE repo_id = '{fam.HEAVY}'"
                    ).column("n")[0].as_py() == len(fam.MATRICES)


@pytest.mark.ray
def test_deltas_on_ray_equal_the_local_executor(family_hub, tmp_path, ray_cluster):
    """The base descriptors travel with the tasks to Ray actors, which read the base themselves."""
    local, _ = _scan(tmp_path, name="local")
    ray_lake, summary = _scan(tmp_path, name="ray", executor="ray")
    assert summary.n_ok == 5
    q = """SELECT repo_id, tensor, status, delta_raw, delta_euclidean, delta_cka FROM deltas
           ORDER BY repo_id, tensor"""
    assert ray_lake.query(q).to_pylist() == local.query(q).to_pylist()
    assert len(local.query(q)) == 3 * len(fam.MATRICES)
