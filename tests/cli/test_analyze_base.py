"""``hubscan analyze MODEL --base BASE``: fine-tune deltas for models named on the command line."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from hubscan.cli import app
from tests import lineage_family as fam

runner = CliRunner()


def test_cli_analyze_with_a_base_writes_deltas(tmp_path):
    from hubscan.lake import Lake
    from hubscan.testing.checkpoints import write_safetensors

    for name, t in (("base", fam.base_tensors()), ("ft", fam.heavy_tensors())):
        (tmp_path / name).mkdir()
        write_safetensors(tmp_path / name / "model.safetensors", t)
    lake = tmp_path / "lake"
    res = runner.invoke(app, ["analyze", str(tmp_path / "ft"), "--base", str(tmp_path / "base"),
                              "--lake", str(lake)])
    assert res.exit_code == 0, res.output
    rows = {r["tensor"]: r for r in Lake(lake).query("SELECT * FROM deltas").to_pylist()}
    assert set(rows) == set(fam.MATRICES)
    b, h = fam.base_tensors(), fam.heavy_tensors()
    for t in fam.MATRICES:
        want = fam.distances(h[t], b[t])
        assert rows[t]["delta_cka"] == pytest.approx(want["delta_cka"], rel=1e-9)
        assert rows[t]["base_repo_id"] == "base" and rows[t]["base_source"] == "local"
    bad = runner.invoke(app, ["analyze", str(tmp_path / "ft"), "--base", str(tmp_path / "nope"),
                              "--lake", str(lake), "--force"])
    assert bad.exit_code == 2 and "cannot open base" in bad.output
