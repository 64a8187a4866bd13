"""A whole scan on Ray against the loopback hub: 56 repos, hostile and broken ones among
them, 5xx / 429 / cut connections injected. Every good model lands in the lake exactly once
with the numbers a local analysis of the same bytes gives; every bad one is a failures row
with its reason."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hubscan.analysis.tensors import analyze_tensors
from hubscan.engine.scan import run_scan
from hubscan.engine.spec import loads_spec
from hubscan.lake import Lake
from hubscan.options import AnalysisOptions
from hubscan.readers import read_checkpoint
from hubscan.testing import checkpoints as ck

pytestmark = pytest.mark.ray

N_GOOD = 48
AUTHOR = "scanorg"


def tensors_for(i: int) -> dict[str, np.ndarray]:
    """Tiny but real layers: a Gaussian and a heavy-tailed matrix, a bias, a conv."""
    rows, cols = 24 + i % 5 * 4, 16 + i % 3 * 8
    return {
        "encoder.0.weight": ck.gaussian_matrix(rows, cols, seed=i),
        "encoder.0.bias": np.zeros(rows, np.float32),
        "encoder.1.weight": ck.pareto_matrix(cols, rows, 2.5, seed=1000 + i),
        "conv.weight": ck.gaussian_matrix(8 * 4, 9, seed=2000 + i).reshape(8, 4, 3, 3),
    }


def hostile(tmp_path, kind: str) -> bytes:
    p = tmp_path / f"{kind}.bin"
    {"offsets": ck.offsets_out_of_range, "json": ck.invalid_json_header,
     "dtype": ck.unknown_dtype, "truncated": ck.truncated_safetensors}[kind](p)
    return p.read_bytes()


@pytest.fixture
def hub_with_catalogue(fakehub, tmp_path):
    hub = fakehub
    config = {"architectures": ["TinyNet"], "model_type": "tiny"}
    for i in range(N_GOOD):
        hub.add_model(f"{AUTHOR}/good-{i:02d}", tensors_for(i), config=config,
                      shards=2 if i % 7 == 0 else 1, downloads=10_000 - i)
    bad = {}
    for kind, err in [("offsets", "MalformedCheckpoint"), ("json", "MalformedCheckpoint"),
                      ("dtype", "MalformedCheckpoint"), ("truncated", "MalformedCheckpoint")]:
        rid = f"{AUTHOR}/bad-{kind}"
        hub.add_repo(rid, {"model.safetensors": hostile(tmp_path, kind),
                           "config.json": json.dumps(config).encode()}, downloads=5)
        bad[rid] = {err}
    hub.add_model(f"{AUTHOR}/bad-corrupt", tensors_for(99), config=config, downloads=5)
    hub.inject("corrupt", repo=f"{AUTHOR}/bad-corrupt", endpoint="data", times=None, at=0.7)
    bad[f"{AUTHOR}/bad-corrupt"] = {"IntegrityError"}
    hub.add_model(f"{AUTHOR}/bad-gated", tensors_for(98), config=config, gated="manual", downloads=5)
    bad[f"{AUTHOR}/bad-gated"] = {"GatedRepo"}
    pk = tmp_path / "evil.bin"
    ck.malicious_pickle(pk, tmp_path / "PWNED")
    hub.add_repo(f"{AUTHOR}/bad-pickle", {"pytorch_model.bin": pk.read_bytes(),
                                          "config.json": json.dumps(config).encode()}, downloads=5)
    bad[f"{AUTHOR}/bad-pickle"] = {"UnsafeCheckpoint"}
    hub.add_model(f"{AUTHOR}/bad-nofile", tensors_for(97), config=config, downloads=5)
    bad_nofile = f"{AUTHOR}/bad-nofile"

    # transient trouble on good repos: must be retried / resumed, not recorded as failures
    faults = [
        hub.inject("status", status=503, repo=f"{AUTHOR}/good-01", endpoint="data", times=2),
        hub.inject("status", status=429, retry_after=0.2, repo=f"{AUTHOR}/good-02", endpoint="data", times=1),
        hub.inject("cut", repo=f"{AUTHOR}/good-03", endpoint="data", at=0.5, times=1),
        hub.inject("status", status=500, repo=f"{AUTHOR}/good-04", endpoint="data", times=1),
        hub.inject("cut", repo=f"{AUTHOR}/good-14", endpoint="data", at=0.3, times=2),
    ]
    return hub, bad, bad_nofile, faults


def test_scan_of_a_misbehaving_hub(tmp_path, hub_with_catalogue, ray_cluster):
    hub, bad, bad_nofile, faults = hub_with_catalogue
    lake_dir = tmp_path / "lake"
    spec = loads_spec(f"""
[scan]
name = "hub-test"
lake = "{lake_dir}"
[[sources]]
kind = "hf"
author = "{AUTHOR}"
sort = "downloads"
[analysis]
compare = false
[resources]
models_per_worker = 2
[retry]
attempts = 3
backoff_s = 0.05
max_backoff_s = 0.2
model_timeout_s = 60
[limits]
allow_bin = true
""")
    # the listing is done; then one repo is deleted (its files answer 404 mid-scan)
    from hubscan.engine.plan import enumerate_sources

    refs = enumerate_sources(spec)
    assert len(refs) == N_GOOD + len(bad) + 1
    hub.delete_repo(bad_nofile)
    bad[bad_nofile] = {"NotFound"}

    s = run_scan(spec, executor="ray", progress=False, refs=refs)
    assert s.status == "completed", s.error
    assert (s.n_ok, s.n_partial, s.n_failed, s.n_open) == (N_GOOD, 0, len(bad), 0)
    assert all(f.hits >= 1 for f in faults), [(f.kind, f.repo, f.hits) for f in faults]
    assert not (tmp_path / "PWNED").exists()  # the malicious pickle never ran

    lake = Lake(str(lake_dir))
    models = lake.query("SELECT repo_id, status, count(*) OVER (PARTITION BY repo_id) AS k FROM models").to_pylist()
    good = {m["repo_id"] for m in models if m["status"] == "ok"}
    assert good == {f"{AUTHOR}/good-{i:02d}" for i in range(N_GOOD)}
    assert {m["repo_id"] for m in models if m["status"] == "failed"} == set(bad)
    assert {m["k"] for m in models} == {1}

    per_model = lake.query("SELECT repo_id, count(*) AS n, count(DISTINCT tensor) AS d FROM layers GROUP BY repo_id").to_pylist()
    assert {r["repo_id"]: (r["n"], r["d"]) for r in per_model} == {g: (4, 4) for g in good}

    failures = lake.query("SELECT repo_id, stage, error_class, message FROM failures").to_pylist()
    by_repo: dict[str, set[str]] = {}
    for f in failures:
        assert f["message"]
        by_repo.setdefault(f["repo_id"], set()).add(f["error_class"])
    assert by_repo == bad

    # streamed numbers = a local analysis of the same bytes
    for i in (0, 3, 14):
        rid = f"{AUTHOR}/good-{i:02d}"
        folder = tmp_path / f"copy-{i}"
        folder.mkdir()
        for name, f in hub.repos[rid].files.items():
            if name.endswith(".safetensors"):
                (folder / name).write_bytes(f.data)
        expect = {r.row["tensor"]: r.row for p in sorted(folder.glob("*.safetensors"))
                  for r in analyze_tensors(read_checkpoint(p), AnalysisOptions(compare=False))}
        got = lake.query(f"SELECT tensor, status, alpha, lambda_max, stable_rank FROM layers WHERE repo_id = '{rid}'").to_pylist()
        assert len(got) == len(expect)
        for g in got:
            e = expect[g["tensor"]]
            assert g["status"] == e["status"]
            for col in ("alpha", "lambda_max", "stable_rank"):
                if e[col] is None:
                    assert g[col] is None
                else:
                    assert g[col] == pytest.approx(e[col], rel=1e-9)

    scan = lake.query("SELECT status, n_planned, n_done, n_failed, errors_json FROM scans").to_pylist()
    assert len(scan) == 1 and scan[0]["status"] == "completed"
    assert (scan[0]["n_planned"], scan[0]["n_done"], scan[0]["n_failed"]) == (N_GOOD + len(bad), N_GOOD, len(bad))
    errors = json.loads(scan[0]["errors_json"])
    assert set(errors) == set().union(*bad.values())
