"""`hubscan query` and `hubscan lake stats|compact|check|sql` through the real CLI app."""

from __future__ import annotations

import csv
import io
import json

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from hubscan.cli import app
from hubscan.lake import Lake
from hubscan.lake.synthetic import synthetic_result

runner = CliRunner()


@pytest.fixture(scope="module")
def lake_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "lake"
    lake = Lake(root, fsync=False)
    for i in range(4):
        lake.write(synthetic_result(repo_id=f"org/m{i}", arch=("A", "B")[i % 2], n_layers=5, seed=i))
    return root


def _run(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_query_table_output(lake_dir):
    res = _run("query", "--lake", str(lake_dir), "SELECT arch, models FROM arch_summary ORDER BY arch")
    assert res.exit_code == 0, res.output
    assert "arch" in res.output and "models" in res.output
    assert "2 row(s)" in res.output


def test_query_csv_json_parquet_agree(lake_dir, tmp_path):
    sql = "SELECT repo_id, tensor, alpha, shape FROM layers ORDER BY repo_id, tensor"
    expected = Lake(lake_dir).query(sql).to_pylist()
    res = _run("query", "--lake", str(lake_dir), sql, "--format", "csv")
    assert res.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert len(rows) == len(expected) == 20
    for r, e in zip(rows, expected):
        assert r["repo_id"] == e["repo_id"] and r["tensor"] == e["tensor"]
        assert (r["alpha"] == "" and e["alpha"] is None) or float(r["alpha"]) == pytest.approx(e["alpha"], rel=1e-15)
        assert json.loads(r["shape"]) == e["shape"]
    res = _run("query", "--lake", str(lake_dir), sql, "-f", "json")
    got = json.loads(res.stdout)
    assert [g["alpha"] for g in got] == [e["alpha"] for e in expected]
    out = tmp_path / "x.parquet"
    res = _run("query", "--lake", str(lake_dir), sql, "-f", "parquet", "-o", str(out))
    assert res.exit_code == 0 and pq.read_table(out).to_pylist() == expected


def test_query_errors_are_one_line_and_nonzero(lake_dir):
    res = _run("query", "--lake", str(lake_dir), "SELECT nope FROM layers")
    assert res.exit_code == 1 and "query failed" in res.output
    res = _run("query", "--lake", str(lake_dir), "SELECT 1", "-f", "parquet")
    assert res.exit_code != 0


def test_lake_stats_check_compact(lake_dir):
    res = _run("lake", "stats", "--lake", str(lake_dir), "--json")
    st = json.loads(res.stdout)
    assert st["tables"]["layers"]["rows"] == 20 and st["tables"]["models"]["files"] == 4
    assert _run("lake", "check", "--lake", str(lake_dir)).exit_code == 0
    res = _run("lake", "compact", "--lake", str(lake_dir), "--json")
    rep = json.loads(res.stdout)
    assert rep["files_before"] > rep["files_after"] and rep["rows_dropped"] == 0
    st = json.loads(_run("lake", "stats", "--lake", str(lake_dir), "--json").stdout)
    assert st["tables"]["layers"] == {"partitions": 1, "files": 1, "rows": 20, "bytes": st["tables"]["layers"]["bytes"]}
    assert _run("lake", "stats", "--lake", str(lake_dir), "--partitions").exit_code == 0
    assert "CREATE OR REPLACE VIEW arch_summary" in _run("lake", "sql", "--lake", str(lake_dir)).stdout


def test_lake_check_fails_on_a_bad_file(tmp_path):
    root = tmp_path / "lake"
    Lake(root, fsync=False).write(synthetic_result(repo_id="org/a", n_layers=2))
    part = next((root / "layers").rglob("*.parquet")).parent
    (part / "part-0000000000000000.v1.parquet").write_bytes(b"PAR1 not really")
    res = _run("lake", "check", "--lake", str(root))
    assert res.exit_code == 1 and "unreadable" in res.output
