"""Crash and resume: ``kill -9`` the ``hubscan scan`` driver mid-scan, rerun the same command:
every model is in the views exactly once, files written before the kill are intact, and no
partial Parquet file is ever visible."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from hubscan.lake import Lake

ROOT = Path(__file__).resolve().parents[2]
N_MODELS = 16


def write_spec(tmp_path: Path) -> Path:
    spec = tmp_path / "crash.toml"
    spec.write_text(f"""
[scan]
name = "crash"
lake = "{tmp_path / 'lake'}"
[[sources]]
kind = "demo"
path = "{tmp_path / 'models'}"
n_models = {N_MODELS}
[analysis]
compare = false
[resources]
models_per_worker = 1
""")
    return spec


def hubscan(*args: str, **kw) -> subprocess.Popen:
    """``hubscan …`` as a user runs it (the console script's entry point, in a new process)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-c", "from hubscan.cli import main; main()", *args],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


def committed(lake: Path) -> int:
    return len(list((lake / "models").rglob("*.parquet"))) if (lake / "models").exists() else 0


def wait_for(pred, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError("condition not reached")
        time.sleep(0.01)


def all_parquet_readable(lake: Path) -> int:
    files = list(lake.rglob("*.parquet"))
    for f in files:
        pq.read_metadata(f)  # a partial file has no valid footer: this raises
    return len(files)


def test_kill_dash_nine_then_resume(tmp_path):
    spec = write_spec(tmp_path)
    lake = tmp_path / "lake"
    # generate the models first, so the timed part is the scan itself
    from hubscan.engine.demo import ensure_demo_models

    ensure_demo_models(tmp_path / "models", n_models=N_MODELS)

    proc = hubscan("scan", str(spec), "--local", "--no-progress")
    wait_for(lambda: committed(lake) >= 3 or proc.poll() is not None)
    assert proc.poll() is None, "the scan ended before it could be killed: " + proc.stderr.read()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = committed(lake)
    assert 3 <= before < N_MODELS

    # what was written before the kill is whole; a temp file may remain, never as *.parquet
    n_files = all_parquet_readable(lake)
    intact = Lake(str(lake)).query("SELECT repo_id FROM models").column("repo_id").to_pylist()
    assert len(intact) == before
    scans = Lake(str(lake)).query("SELECT status FROM scans").column("status").to_pylist()
    assert scans == ["running"]  # the killed run never got to record its end

    rerun = hubscan("scan", str(spec), "--local", "--no-progress", "--json")
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    import json

    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["status"] == "completed"
    assert summary["n_skipped"] == before and summary["n_ok"] == N_MODELS - before

    lake_ = Lake(str(lake))
    rows = lake_.query("SELECT repo_id, count(*) OVER (PARTITION BY model_key) AS k FROM models").to_pylist()
    assert len(rows) == N_MODELS and {r["k"] for r in rows} == {1}
    assert sorted(r["repo_id"] for r in rows) == sorted(p.name for p in (tmp_path / "models").iterdir() if p.is_dir())
    # the layer view joins every committed model to its whole layer set, once
    per = lake_.query("""SELECT m.repo_id, m.n_tensors, count(l.tensor) AS n
                         FROM models m LEFT JOIN layers l USING (model_key)
                         GROUP BY ALL""").to_pylist()
    assert all(r["n"] == r["n_tensors"] for r in per)
    dup = lake_.query("SELECT model_key, tensor, count(*) AS c FROM layers GROUP BY ALL HAVING c > 1").num_rows
    assert dup == 0
    assert all_parquet_readable(lake) >= n_files
    statuses = lake_.query("SELECT status FROM scans ORDER BY started_at").column("status").to_pylist()
    assert statuses == ["running", "completed"]
