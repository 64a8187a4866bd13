"""``hubscan list`` prints what a scan would touch, without fetching a weight byte."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from hubscan.cli import app
from hubscan.testing.checkpoints import make_demo_model

runner = CliRunner()


def test_list_hf(fakehub_clean):
    hub = fakehub_clean
    res = runner.invoke(app, ["list", "hf", "--author", "acme", "--sort", "downloads", "--limit", "5"],
                        env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    top = sorted((r for r in hub.catalog if r.author == "acme"), key=lambda r: (-r.downloads, r.repo_id))[:5]
    lines = res.output.splitlines()
    positions = [next(i for i, l in enumerate(lines) if r.repo_id in l) for r in top]
    assert positions == sorted(positions)  # in download order
    assert "total: 5 models, 5 weight files" in res.output and "1 API call" in res.output
    assert hub.count("resolve") == 0 and hub.count("cdn") == 0


def test_list_hf_json_exact(fakehub_clean):
    hub = fakehub_clean
    res = runner.invoke(app, ["list", "hf", "--search", "llama", "--author", "initech", "--exact-sizes", "--json"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(l) for l in res.output.splitlines() if l.strip()]
    want = sorted(r.repo_id for r in hub.catalog if r.author == "initech" and "llama" in r.repo_id)
    assert sorted(r["repo_id"] for r in rows) == want
    for r in rows:
        assert r["bytes_exact"] and r["bytes"] == hub.repos[r["repo_id"]].files["model.safetensors"].size
        assert r["revision"] == hub.repos[r["repo_id"]].sha


def test_list_tv_and_local(tmp_path):
    res = runner.invoke(app, ["list", "tv", "--family", "vgg", "--task", "classification"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "vgg16" in res.output and "71.59" in res.output and "total: 9 models" in res.output
    make_demo_model(tmp_path / "zoo" / "a", "mlp", width=16, layers=2)
    make_demo_model(tmp_path / "zoo" / "b", "mlp", width=16, layers=2, seed=3)
    res = runner.invoke(app, ["list", "local", str(tmp_path / "zoo")], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "total: 2 models, 2 weight files" in res.output
    assert runner.invoke(app, ["list", "nope"]).exit_code != 0
