"""Lineage in specs and plans: ``base_models = true`` adds the bases of what a source lists,
``[deltas]`` / ``[evals]`` are validated at load, a spec's CSV is imported by every run, and
models the lake already holds get their links recorded without being re-analysed."""

from __future__ import annotations

import pytest

from hubscan.engine.plan import enumerate_sources, plan_scan
from hubscan.engine.scan import run_scan
from hubscan.engine.spec import loads_spec
from hubscan.errors import SpecError
from hubscan.lake import Lake
from hubscan.options import DeltaOptions
from tests import lineage_family as fam


def _spec(lake, body: str):
    return loads_spec(f'[scan]\nname = "t"\nlake = "{lake}"\n' + body)


@pytest.mark.parametrize("body, message", [
    ('[[sources]]\nkind = "hf"\nbase_models = "yes"\n', "base_models must be bool"),
    ('[[sources]]\nkind = "demo"\nbase_models = true\n', "not available for kind = 'demo'"),
    ('[[sources]]\nkind = "hf"\n[deltas]\nmethods = []\n', "methods must be a non-empty list"),
    ('[[sources]]\nkind = "hf"\n[deltas]\nmethods = ["frobenius"]\n', "methods must be a non-empty list"),
    ('[[sources]]\nkind = "hf"\n[deltas]\nesd = 1\n', "esd must be bool"),
    ('[[sources]]\nkind = "hf"\n[deltas]\ncka = true\n', "unknown key 'cka'"),
    ('[[sources]]\nkind = "hf"\n[evals]\ncsv = 3\n', "csv must be a file name"),
    ('[[sources]]\nkind = "hf"\n[evals]\nfile = "x.csv"\n', "unknown key 'file'"),
])
def test_spec_errors_name_the_key(tmp_path, body, message):
    with pytest.raises(SpecError, match=message):
        _spec(tmp_path / "l", body)


def test_spec_values(tmp_path):
    s = loads_spec('[scan]\nname = "t"\nlake = "l"\n[[sources]]\nkind = "tv"\nfamily = "vgg"\nbase_models = true\n'
                   '[deltas]\ndistances = true\nmethods = ["cka"]\nesd = true\n[evals]\ncsv = "acc.csv"\n',
                   origin=str(tmp_path / "job.toml"))
    assert s.sources[0].base_models and s.sources[0].filters == {"family": "vgg"}
    assert s.deltas == DeltaOptions(distances=True, methods=("cka",), esd=True)
    assert s.evals_csv == (str(tmp_path / "acc.csv"),)  # relative to the spec's folder
    assert '"base_models": true' in s.to_json()
    assert _spec(tmp_path / "l", '[[sources]]\nkind = "hf"\n').deltas.enabled is False


def test_base_models_true_adds_the_bases_of_listed_models(fakehub, tmp_path):
    fam.add_family(fakehub)
    body = '[[sources]]\nkind = "hf"\nsearch = "ft-heavy"\n'
    assert [r.repo_id for r in enumerate_sources(_spec(tmp_path / "l", body))] == [fam.HEAVY]
    refs = enumerate_sources(_spec(tmp_path / "l", body + "base_models = true\n"))
    assert [r.repo_id for r in refs] == [fam.HEAVY, fam.BASE]
    assert refs[1].revision == fakehub.repos[fam.BASE].sha


def test_plan_attaches_bases_from_the_listing_only_when_deltas_are_on(fakehub, tmp_path):
    fam.add_family(fakehub)
    lake = Lake(tmp_path / "l")
    off = plan_scan(_spec(tmp_path / "l", '[[sources]]\nkind = "hf"\nauthor = "acme"\n'), lake)
    assert off.bases == {}
    on = plan_scan(_spec(tmp_path / "l", '[[sources]]\nkind = "hf"\nauthor = "acme"\n[deltas]\ndistances = true\n'),
                   lake)
    got = {k[1]: [b.repo_id for b in v] for k, v in on.bases.items()}
    assert got == {fam.LIGHT: [fam.BASE], fam.HEAVY: [fam.BASE], fam.FP16: [fam.BASE]}  # not the adapter


def test_spec_csv_is_imported_and_done_models_get_their_links(fakehub, tmp_path, caplog):
    fam.add_family(fakehub)
    csv = tmp_path / "acc.csv"
    csv.write_text(f"model,metric,value\nhf://{fam.BASE},accuracy,0.79\nhf://{fam.LORA},accuracy,x\n")
    body = f'[[sources]]\nkind = "hf"\nauthor = "acme"\n[evals]\ncsv = "{csv}"\n'
    spec = _spec(tmp_path / "l", body)
    lake = Lake(tmp_path / "l")
    # a lake written before lineage existed: the models are there, their links are not
    first = run_scan(spec.replace(evals_csv=()), executor="local", progress=False)
    assert first.n_ok == 5
    lake_files = list((tmp_path / "l" / "lineage").rglob("*.parquet"))
    for f in lake_files:
        f.unlink()
    assert lake.query("SELECT count(*) AS n FROM lineage").column("n")[0].as_py() == 0
    with caplog.at_level("WARNING"):
        second = run_scan(spec, executor="local", progress=False)
    assert second.n_skipped == 5 and second.n_planned == 0
    assert lake.query("SELECT count(*) AS n FROM lineage").column("n")[0].as_py() == 7
    ev = lake.query("SELECT repo_id, value, origin FROM model_evals WHERE origin LIKE 'csv%'").to_pylist()
    assert ev == [{"repo_id": fam.BASE, "value": 0.79, "origin": "csv:acc.csv"}]
    assert any("line 3 skipped" in r.getMessage() for r in caplog.records)
    # a third run finds the links and writes nothing new for them
    before = len(list((tmp_path / "l" / "lineage").rglob("*.parquet")))
    run_scan(spec, executor="local", progress=False)
    assert len(list((tmp_path / "l" / "lineage").rglob("*.parquet"))) == before
