"""Lake writes: round trip, layout, idempotency, commit marker, atomic files, content dedup."""

from __future__ import annotations

import math
import os
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow.parquet as pq
import pytest

from hubscan.errors import LakeError
from hubscan.lake import Lake
from hubscan.lake.synthetic import (
    ANALYSIS_VERSION,
    file_sha,
    synthetic_result,
    with_time,
)
from hubscan.lake.schema import default_registry
from hubscan.lake.views import VIEW_NAMES
from hubscan.lake.writer import unit_file_name

V = ANALYSIS_VERSION


@pytest.fixture
def lake(tmp_path):
    return Lake(tmp_path / "lake", fsync=False)


def _count(lake, sql):
    return lake.query(sql).column(0)[0].as_py()


def test_round_trip_numbers_are_identical(lake):
    r = synthetic_result(repo_id="org/a", files=["f1", "f2"], n_layers=9, failures=1)
    r.layers[0]["alpha"] = float("nan")  # a NaN survives as NaN (not NULL)
    lake.write(r)
    got = {(x["file_sha256"], x["tensor"]): x for x in
           lake.query("SELECT * FROM layers WHERE model_key = ?", [r.model_key]).to_pylist()}
    assert len(got) == len(r.layers) == 18
    for row in r.layers:
        g = got[(row["file_sha256"], row["tensor"])]
        for k, v in row.items():
            if k in ("model_key", "file"):
                continue  # per-model view: model_key = owner, computed_by = provenance
            if isinstance(v, float) and math.isnan(v):
                assert math.isnan(g[k]), k
            elif k == "shape":
                assert g[k] == list(v), k
            else:
                assert g[k] == v, (k, g[k], v)
        assert g["computed_by"] == row["model_key"]
    spectra = {x["tensor"] + x["file_sha256"]: x["evals"] for x in lake.query("SELECT * FROM spectra").to_pylist()}
    for s in r.spectra:
        np.testing.assert_array_equal(np.asarray(spectra[s["tensor"] + s["file_sha256"]], np.float32), s["evals"])
    m = lake.query("SELECT * FROM models").to_pylist()[0]
    for k, v in r.model.items():
        assert m[k] == v, k
    assert str(m["scan_date"]) == r.scan_date and m["tags"] == ["synthetic"]
    f = lake.query("SELECT * FROM failures").to_pylist()
    assert [x["error_class"] for x in f] == ["MalformedCheckpoint"]


def test_layout_is_hive_partitioned_with_deterministic_names(lake, tmp_path):
    r = synthetic_result(repo_id="org/a", source="hf", scan_date="2026-01-02")
    paths = lake.write(r)
    reg = default_registry()
    assert [os.path.relpath(p, tmp_path / "lake") for p in paths] == [
        f"{t}/source=hf/scan_date=2026-01-02/{unit_file_name(r.model_key, reg[t].version)}"
        for t in ("spectra", "layers", "model_files", "models")]
    # models row last: it is the commit marker
    assert paths[-1].startswith(str(tmp_path / "lake" / "models"))
    # sorted by the table's sort columns
    t = pq.read_table(paths[1])
    keys = list(zip(t.column("file_sha256").to_pylist(), t.column("tensor").to_pylist()))
    assert keys == sorted(keys)
    assert lake.write(r) == paths  # a retry overwrites the same files


def test_writing_the_same_unit_twice_shows_it_once(lake):
    r = synthetic_result(repo_id="org/a", files=["f1", "f2"], n_layers=5, failures=1)
    lake.write(r)
    lake.write(r)
    # and once more, later, on another day (a resumed scan): newest wins, still once
    r2 = with_time(r, datetime.now(timezone.utc) + timedelta(seconds=5))
    r2.scan_date = "2026-11-24"
    r2.model["alpha_mean"] = 9.0
    lake.write(r2)
    assert _count(lake, "SELECT count(*) FROM raw_models") == 2
    assert _count(lake, "SELECT count(*) FROM models") == 1
    assert _count(lake, "SELECT alpha_mean FROM models") == 9.0
    assert _count(lake, "SELECT count(*) FROM layers") == 10
    assert _count(lake, "SELECT count(*) FROM model_files") == 2
    assert _count(lake, "SELECT count(*) FROM spectra") == len(r.spectra)
    assert _count(lake, "SELECT count(*) FROM failures") == 1
    assert _count(lake, "SELECT count(DISTINCT scan_date) FROM layers") == 1  # the winner's
    rep = lake.check()
    assert rep.ok and "duplicate-key" in rep.kinds()  # across files: a warning until compaction
    assert not lake.check(strict=True).ok


def test_a_unit_without_its_models_row_is_invisible(lake, tmp_path):
    r = synthetic_result(repo_id="org/a", n_layers=4)
    st = lake.storage
    from hubscan.lake.writer import write_rows

    for table in ("spectra", "layers", "model_files"):  # crash before the commit marker
        write_rows(st, lake.registry[table], getattr(r, table),
                   partition={"source": "local", "scan_date": r.scan_date}, unit_key=r.model_key)
    assert _count(lake, "SELECT count(*) FROM layers") == 0
    assert _count(lake, "SELECT count(*) FROM model_files") == 0
    assert lake.done_model_keys() == set()
    assert lake.known_file_hashes(V) == set()  # not committed: the file must be analysed again
    rep = lake.check()
    assert "uncommitted" in rep.kinds() and rep.ok
    lake.write(r)  # the retry completes it
    assert _count(lake, "SELECT count(*) FROM layers") == 4
    assert lake.done_model_keys(V) == {r.model_key}
    assert "uncommitted" not in lake.check().kinds()


def test_temp_and_partial_files_are_never_visible(lake, tmp_path, monkeypatch):
    r = synthetic_result(repo_id="org/a", n_layers=4)
    lake.write(r)
    part = tmp_path / "lake" / "layers" / "source=local" / f"scan_date={r.scan_date}"
    # a writer that died mid-file leaves a temp file with half a Parquet file in it
    whole = (part / unit_file_name(r.model_key, default_registry()["layers"].version)).read_bytes()
    (part / f".part-dead.parquet.tmp-0123456789ab").write_bytes(whole[: len(whole) // 2])
    assert _count(lake, "SELECT count(*) FROM layers") == 4
    assert _count(lake, "SELECT count(*) FROM raw_layers") == 4
    # a crash between writing the temp file and the rename: no final file, no temp left
    r2 = synthetic_result(repo_id="org/b", n_layers=4, seed=2)

    def boom(src, dst):
        raise OSError("simulated crash")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="simulated"):
        lake.write(r2)
    monkeypatch.undo()
    assert not (part / unit_file_name(r2.model_key, default_registry()["layers"].version)).exists()
    assert sorted(p.name for p in part.iterdir() if ".tmp-" in p.name) == [".part-dead.parquet.tmp-0123456789ab"]
    assert lake.done_model_keys() == {r.model_key}
    # check: a young temp file is a warning; an old one (crashed writer) an error
    assert "young-temp" in lake.check().kinds()
    rep = lake.check(temp_max_age_s=0)
    assert "orphan-temp" in rep.kinds() and not rep.ok
    assert lake.compact(temp_max_age_s=0).temp_removed == 1
    assert lake.check().ok


def test_content_dedup_reused_files_join_existing_layers(lake):
    a = synthetic_result(repo_id="org/base", files=["shared.safetensors", "a-only"], n_layers=6)
    lake.write(a)
    assert lake.known_file_hashes(V) == {file_sha("shared.safetensors"), file_sha("a-only")}
    assert lake.known_file_hashes("other-version") == set()
    fork = synthetic_result(repo_id="org/fork", files=["fork-only"], reused=["shared.safetensors"],
                            n_layers=6, seed=5, arch="BertModel")
    lake.write(fork)
    per_model = {x["repo_id"]: x["n"] for x in
                 lake.query("SELECT repo_id, count(*) AS n FROM layers GROUP BY ALL").to_pylist()}
    assert per_model == {"org/base": 12, "org/fork": 12}
    # the shared file's rows are stored once, computed by the base model
    assert _count(lake, "SELECT count(*) FROM file_layers") == 18
    shared = lake.query("SELECT DISTINCT computed_by FROM layers WHERE repo_id = 'org/fork' "
                        "AND file_sha256 = ?", [file_sha("shared.safetensors")]).column(0).to_pylist()
    assert shared == [a.model_key]
    rows = lake.file_layers([file_sha("shared.safetensors")], V)
    assert rows.num_rows == 6 and set(rows.column("file_sha256").to_pylist()) == {file_sha("shared.safetensors")}
    assert lake.check().ok


def test_write_table_scans_and_partition_rules(lake, tmp_path):
    t0 = datetime(2026, 11, 20, 2, 0, tzinfo=timezone.utc)
    row = {"scan_id": "s1", "spec_name": "nightly", "started_at": t0, "status": "running",
           "written_at": t0}
    p1 = lake.write_table("scans", [row])
    assert "scans/scan_date=2026-11-20/" in p1
    p2 = lake.write_table("scans", [{**row, "status": "completed", "n_done": 3,
                                     "written_at": t0 + timedelta(hours=1)}])
    assert p1 == p2  # same key → same file
    assert lake.query("SELECT status, n_done FROM scans").to_pylist() == [{"status": "completed", "n_done": 3}]
    with pytest.raises(LakeError, match="partition"):
        lake.write_table("failures", [{"model_key": "k", "source": "a/b", "repo_id": "r", "stage": "x",
                                       "error_class": "E", "message": "m", "attempt": 1,
                                       "written_at": t0}])
    fail = {"model_key": "k", "source": "hf", "repo_id": "r", "stage": "fetch", "error_class": "E",
            "message": "m", "attempt": 1, "written_at": t0}
    with pytest.raises(LakeError, match="partition source=tv"):
        lake.write_table("failures", [fail], partition={"source": "tv", "scan_date": "2026-11-20"})
    assert "failures/source=hf/scan_date=2026-11-20/" in lake.write_table(
        "failures", [fail], partition={"scan_date": "2026-11-20"})
    with pytest.raises(LakeError, match="YYYY-MM-DD"):
        lake.write(synthetic_result(repo_id="org/a", scan_date="23.11.2026"))
    assert lake.write_table("scans", []) is None


def test_empty_lake_has_every_view_with_columns(tmp_path):
    lake = Lake(tmp_path / "nothing-here")
    for view in VIEW_NAMES:
        t = lake.query(f"SELECT * FROM {view}")
        assert t.num_rows == 0 and t.num_columns > 0, view
    cols = lake.query("SELECT * FROM layers").column_names
    assert cols[:8] == ["model_key", "source", "repo_id", "revision", "arch", "model_type",
                        "scan_date", "file"]
    assert {"alpha", "alpha_weighted", "computed_by", "written_at"} <= set(cols)
    assert lake.done_model_keys() == set()
    assert lake.check().ok


def test_sql_script_reproduces_the_views_in_plain_duckdb(lake):
    import duckdb

    lake.write(synthetic_result(repo_id="org/a", n_layers=5))
    con = duckdb.connect()
    con.execute(lake.sql_script())
    assert con.sql("SELECT count(*) FROM layers").fetchall() == [(5,)]
