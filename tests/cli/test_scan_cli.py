"""``hubscan scan``: exit codes, the progress display, and a clean stop on SIGTERM that a
rerun of the same command continues."""

from __future__ import annotations

import json
import os
import signal

from typer.testing import CliRunner

from hubscan.cli import app
from hubscan.engine.demo import ensure_demo_models
from hubscan.lake import Lake
from tests.engine.test_scan_crash import committed, hubscan, wait_for

N = 12


def write_spec(tmp_path, n=N, extra=""):
    spec = tmp_path / "cli.toml"
    spec.write_text(f"""
[scan]
name = "cli"
lake = "{tmp_path / 'lake'}"
[[sources]]
kind = "demo"
path = "{tmp_path / 'models'}"
n_models = {n}
[analysis]
compare = false
[resources]
models_per_worker = 1
{extra}
""")
    return spec


def test_bad_spec_exits_2_naming_the_key(tmp_path):
    spec = write_spec(tmp_path, extra="[limits]\nmax_model = 3\n")
    r = CliRunner().invoke(app, ["scan", str(spec), "--local"])
    assert r.exit_code == 2
    assert "[limits] unknown key 'max_model'" in r.output


def test_progress_display_and_json_summary(tmp_path):
    spec = write_spec(tmp_path, n=2)
    r = CliRunner().invoke(app, ["scan", str(spec), "--local", "--progress", "--json"])
    assert r.exit_code == 0, r.output
    assert "models/s" in r.output and "completed: 2 analysed" in r.output
    summary = json.loads([line for line in r.output.splitlines() if line.startswith("{")][-1])
    assert (summary["status"], summary["n_ok"], summary["n_planned"]) == ("completed", 2, 2)
    r2 = CliRunner().invoke(app, ["scan", str(spec), "--local", "--no-progress", "--json"])
    again = json.loads(r2.output.strip().splitlines()[-1])
    assert (again["n_planned"], again["n_skipped"]) == (0, 2)


def test_sigterm_stops_cleanly_and_rerun_continues(tmp_path):
    spec = write_spec(tmp_path)
    lake = tmp_path / "lake"
    ensure_demo_models(tmp_path / "models", n_models=N)
    proc = hubscan("scan", str(spec), "--local", "--no-progress", "--json")
    wait_for(lambda: committed(lake) >= 2 or proc.poll() is not None)
    assert proc.poll() is None, proc.stderr.read()
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "stopping" in err
    stopped = json.loads(out.strip().splitlines()[-1])
    assert stopped["status"] == "stopped" and stopped["n_dropped"] == 0
    done = stopped["n_ok"]
    assert 2 <= done < N and committed(lake) == done  # in-flight models finished and were written

    scans = Lake(str(lake)).query("SELECT status, n_done FROM scans").to_pylist()
    assert scans == [{"status": "stopped", "n_done": done}]

    rerun = hubscan("scan", str(spec), "--local", "--no-progress", "--json")
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    final = json.loads(out.strip().splitlines()[-1])
    print(final, stopped)
    assert (final["status"], final["n_skipped"], final["n_ok"]) == ("completed", done, N - done), final
    keys = Lake(str(lake)).query("SELECT model_key FROM models").column("model_key").to_pylist()
    assert len(keys) == len(set(keys)) == N
