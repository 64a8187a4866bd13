"""``hubscan analyze``: good and bad checkpoints in one run, exit codes, lake contents, reruns."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from hubscan.cli import app
from hubscan.lake import Lake
from hubscan.testing.checkpoints import (
    make_demo_model,
    malicious_pickle,
    truncated_safetensors,
)


def _run(*args: str):
    return CliRunner().invoke(app, ["analyze", *args], catch_exceptions=False)


def test_bad_file_among_good_ones_is_a_failure_row_not_a_crash(tmp_path):
    good = make_demo_model(tmp_path / "good-mlp", "mlp", seed=1, heavy_tailed=True)
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    truncated_safetensors(bad_dir / "model.safetensors")
    evil_dir = tmp_path / "evil"
    evil_dir.mkdir()
    marker = tmp_path / "pwned"
    malicious_pickle(evil_dir / "pytorch_model.bin", marker)
    lake = tmp_path / "lake"

    result = _run(str(good), str(bad_dir), str(evil_dir), "--lake", str(lake))
    assert result.exit_code == 0, result.output
    assert not marker.exists(), "the malicious pickle ran"

    lk = Lake(str(lake))
    models = {r["repo_id"]: r for r in lk.query("SELECT repo_id, status, n_analysed FROM models").to_pylist()}
    assert models["good-mlp"]["status"] == "ok" and models["good-mlp"]["n_analysed"] == 3
    assert models["bad"]["status"] == "failed" and models["evil"]["status"] == "failed"
    classes = {r["repo_id"]: r["error_class"] for r in lk.query(
        "SELECT m.repo_id, f.error_class FROM failures f JOIN models m USING (model_key)").to_pylist()}
    assert classes == {"bad": "MalformedCheckpoint", "evil": "UnsafeCheckpoint"}

    # The layers in the lake are the numbers a direct analysis gives.
    import hubscan

    direct = hubscan.analyze(good).to_pylist()
    stored = lk.query("SELECT tensor, alpha FROM layers WHERE repo_id = 'good-mlp' AND alpha IS NOT NULL").to_pylist()
    want = {r["tensor"]: r["alpha"] for r in direct if r["alpha"] is not None}
    assert {r["tensor"] for r in stored} == set(want)
    for r in stored:
        assert np.isclose(r["alpha"], want[r["tensor"]], rtol=1e-12)

    # A rerun skips what the lake holds; the views still show each model once.
    again = _run(str(good), "--lake", str(lake))
    assert again.exit_code == 0 and "already in lake" in again.output
    assert lk.query("SELECT count(*) AS n FROM models WHERE repo_id = 'good-mlp'").to_pylist()[0]["n"] == 1


def test_nothing_analysable_exits_nonzero_with_a_reason(tmp_path):
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    truncated_safetensors(bad_dir / "model.safetensors")
    result = _run(str(bad_dir), "--lake", str(tmp_path / "lake"))
    assert result.exit_code == 1
    assert "no model could be analysed" in result.output

    missing = _run(str(tmp_path / "does-not-exist"), "--lake", str(tmp_path / "lake"))
    assert missing.exit_code == 2
    assert "nothing to analyse" in missing.output


def test_seed_convention_is_recorded_per_row(tmp_path):
    good = make_demo_model(tmp_path / "m", "mlp", seed=2)
    lake = tmp_path / "lake"
    assert _run(str(good), "--lake", str(lake), "--convention", "seed", "--no-spectra").exit_code == 0
    lk = Lake(str(lake))
    conv = lk.query("SELECT DISTINCT convention FROM layers").to_pylist()
    assert conv == [{"convention": "seed"}]
    assert lk.query("SELECT count(*) AS n FROM spectra").to_pylist()[0]["n"] == 0
