"""The views: arch_summary against an independent pandas computation, latest/history."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from hubscan.lake import Lake
from hubscan.lake.synthetic import ANALYSIS_VERSION, synthetic_result

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def _results():
    """Several architectures, several revisions per repo, shared files, a model without arch,
    a failed model and a NaN alpha — everything the summary must get right."""
    out = []
    archs = ["BertModel", "GPT2Model", "ResNet", None]
    n = 0
    for i, arch in enumerate(archs):
        for j in range(3):
            repo = f"org{i}/m{j}"
            for rev in range(2 if j == 0 else 1):  # m0 has two revisions: latest = r1
                n += 1
                files = [f"{repo}@r{rev}/w.safetensors"]
                reused = ["shared-base.safetensors"] if (i == 1 and j > 0) else []
                if i == 1 and j == 0 and rev == 1:
                    files.append("shared-base.safetensors")
                r = synthetic_result(repo_id=repo, revision=f"r{rev}", arch=arch, files=files,
                                     reused=reused, n_layers=10 + j, alpha_loc=2.5 + i,
                                     seed=n, written_at=T0 + timedelta(hours=n),
                                     scan_date=(T0 + timedelta(days=rev)).date().isoformat())
                out.append(r)
    out[2].layers[0]["alpha"] = float("nan")  # org0/m1 (latest): status ok but NaN alpha
    failed = synthetic_result(repo_id="org9/broken", arch="BertModel", files=[], status="failed",
                              failures=1, written_at=T0 + timedelta(hours=99))
    out.append(failed)
    return out


def _ordered_for_dependencies(results):
    # write the model that computes the shared file before the ones that reuse it
    return sorted(results, key=lambda r: not any(f["reused"] is False and "shared" in f["file"]
                                                 for f in r.model_files))


def _pandas_arch_summary(results):
    models = pd.DataFrame([{**r.model} for r in results])
    latest = (models.sort_values("written_at")
              .groupby(["source", "repo_id", "analysis_version"], dropna=False).tail(1))
    by_file = {}
    for r in results:
        for row in r.layers:
            by_file.setdefault(row["file_sha256"], []).append(row)
    rows = []
    for r in results:
        if r.model_key not in set(latest["model_key"]):
            continue
        for f in r.model_files:
            for lr in by_file.get(f["file_sha256"], []):
                rows.append({"arch": r.model["arch"], "analysis_version": r.model["analysis_version"],
                             "model_key": r.model_key, **{k: lr.get(k) for k in
                                                          ("status", "alpha", "alpha_weighted", "warning")}})
    layers = pd.DataFrame(rows)
    layers["alpha"] = layers["alpha"].astype(float)
    valid = (layers["status"] == "ok") & layers["alpha"].notna()
    out = {}
    for (arch, av), g in latest.groupby(["arch", "analysis_version"], dropna=False):
        arch = None if (isinstance(arch, float) and math.isnan(arch)) else arch
        lg = layers[(layers["arch"].isna() if arch is None else layers["arch"] == arch)
                    & (layers["analysis_version"] == av)]
        a = lg.loc[valid[lg.index], "alpha"]
        aw = lg.loc[valid[lg.index], "alpha_weighted"].astype(float).dropna()
        out[arch] = {
            "models": len(g), "layers": len(lg), "fits": len(a),
            "alpha_mean": a.mean() if len(a) else None,
            "alpha_median": a.median() if len(a) else None,
            "frac_alpha_2_4": ((a >= 2) & (a <= 4)).mean() if len(a) else None,
            "frac_alpha_2_6": ((a >= 2) & (a <= 6)).mean() if len(a) else None,
            "alpha_weighted_mean": aw.mean() if len(aw) else None,
            "n_over_trained": int((lg["warning"] == "over-trained").sum()),
            "n_under_trained": int((lg["warning"] == "under-trained").sum()),
            "n_warnings": int(lg["warning"].notna().sum()),
        }
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    lake = Lake(tmp_path_factory.mktemp("views") / "lake", fsync=False)
    results = _results()
    for r in _ordered_for_dependencies(results):
        lake.write(r)
    return lake, results


def test_arch_summary_equals_pandas(built):
    lake, results = built
    expected = _pandas_arch_summary(results)
    got = {r["arch"]: r for r in lake.query("SELECT * FROM arch_summary").to_pylist()}
    assert set(got) == set(expected) == {"BertModel", "GPT2Model", "ResNet", None}
    for arch, exp in expected.items():
        g = got[arch]
        assert g["analysis_version"] == ANALYSIS_VERSION
        for k, v in exp.items():
            if v is None:
                assert g[k] is None, (arch, k)
            elif isinstance(v, (int, np.integer)):
                assert g[k] == v, (arch, k, g[k], v)
            else:
                assert g[k] == pytest.approx(v, rel=1e-12, abs=1e-12), (arch, k)
    # a sanity anchor independent of pandas: the failed model counts as a model, no layers
    assert got["BertModel"]["models"] == 4


def test_models_latest_and_layers_latest(built):
    lake, results = built
    latest = {r["repo_id"]: r["revision"] for r in lake.query("SELECT * FROM models_latest").to_pylist()}
    assert latest["org0/m0"] == "r1" and latest["org0/m1"] == "r0"
    assert len(latest) == 13
    n_latest_layers = lake.query("SELECT count(*) FROM layers_latest").column(0)[0].as_py()
    n_old = lake.query("SELECT count(*) FROM layers WHERE revision = 'r0' AND repo_id LIKE '%/m0'"
                       ).column(0)[0].as_py()
    n_all = lake.query("SELECT count(*) FROM layers").column(0)[0].as_py()
    assert n_old > 0 and n_latest_layers == n_all - n_old


def test_history_follows_a_model_across_revisions(built):
    lake, results = built
    h = lake.query("SELECT * FROM history WHERE repo_id = 'org1/m0' ORDER BY revision_seq").to_pylist()
    assert [x["revision"] for x in h] == ["r0", "r1"]
    assert [x["revision_seq"] for x in h] == [1, 2]
    assert [x["is_latest"] for x in h] == [False, True]
    assert [str(x["scan_date"]) for x in h] == ["2026-11-01", "2026-11-02"]
    for x in h:
        r = next(r for r in results if r.model_key == x["model_key"])
        alphas = [l["alpha"] for l in r.layers if l["status"] == "ok"]
        assert x["n_layers"] == len(r.layers)
        assert x["alpha_mean"] == pytest.approx(np.mean(alphas), rel=1e-12)
        assert x["alpha_median"] == pytest.approx(np.median(alphas), rel=1e-12)


def test_failed_model_is_committed_with_failures_and_no_layers(built):
    lake, _ = built
    m = lake.query("SELECT * FROM models WHERE repo_id = 'org9/broken'").to_pylist()
    assert [x["status"] for x in m] == ["failed"]
    f = lake.query("SELECT stage, error_class FROM failures WHERE repo_id = 'org9/broken'").to_pylist()
    assert f == [{"stage": "read", "error_class": "MalformedCheckpoint"}]
    assert lake.check().ok  # a failed model without layers is not a problem
