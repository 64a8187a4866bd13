"""Incremental scheduled runs against the loopback hub: only changed repos are fetched, new
revisions become the latest, deleted repos are marked (not forgotten), SIGTERM stops a
running schedule cleanly and the next start resumes it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from hubscan.engine.incremental import (
    KnownRepo,
    Probe,
    RepoEvent,
    detect_changes,
    incremental_run,
    known_repos,
    probe_repo,
)
from hubscan.engine.schedule import (
    JobLock,
    ManualClock,
    Scheduler,
    StateStore,
    spec_jobs,
)
from hubscan.engine.spec import load_spec
from hubscan.lake import Lake
from hubscan.refs import ModelRef
from hubscan.testing.fakehub import safetensors_bytes

UTC = timezone.utc


def tensors(seed: int) -> dict[str, np.ndarray]:
    r = np.random.default_rng(seed)
    return {"l0.weight": r.standard_t(3, (48, 32)).astype(np.float32),
            "l1.weight": r.standard_normal((40, 24)).astype(np.float32),
            "l1.bias": r.standard_normal(40).astype(np.float32)}


def populate(hub, names=("a", "b", "c", "d")) -> None:
    for i, n in enumerate(names):
        hub.add_model(f"acme/{n}", tensors(i), config={"architectures": ["TinyNet"]},
                      downloads=10 * (len(names) - i))


def new_weights(hub, repo: str, seed: int) -> str:
    return hub.update_repo(repo, {"model.safetensors": safetensors_bytes(tensors(seed))})


def write_spec(tmp_path: Path, *, schedule: str = "0 2 * * *", extra: str = "") -> Path:
    path = tmp_path / "nightly.toml"
    path.write_text(f"""
[scan]
name = "nightly"
lake = "{tmp_path / 'lake'}"
schedule = "{schedule}"
[[sources]]
kind = "hf"
author = "acme"
[analysis]
compare = false
[retry]
backoff_s = 0.01
max_backoff_s = 0.05
{extra}
""")
    return path


def resolves_by_repo(hub) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in hub.select("resolve"):
        out[r.repo] = out.get(r.repo, 0) + 1
    return out


def test_three_triggers_analyse_only_what_changed_on_the_hub(fakehub, tmp_path):
    """The schedule on a test clock: run 1 backfills, runs 2 and 3 fetch only new shas."""
    populate(fakehub)
    spec_path = write_spec(tmp_path)
    lake = Lake(str(tmp_path / "lake"))
    clock = ManualClock(datetime(2026, 1, 1, 1, 0, tzinfo=UTC))
    sched = Scheduler(spec_jobs([spec_path], executor="local"), state_dir=tmp_path / "state",
                      clock=clock)
    loop = threading.Thread(target=sched.run_forever, daemon=True)
    loop.start()
    per_run = []

    def finish_run() -> None:
        clock.wait_asleep(120)
        sched.wait_idle()
        per_run.append(resolves_by_repo(fakehub))
        fakehub.reset_log()

    fakehub.reset_log()
    finish_run()                                              # trigger 1: first start, backfill
    old_b = fakehub.repos["acme/b"].sha
    new_b = new_weights(fakehub, "acme/b", 10)
    clock.set(datetime(2026, 1, 1, 2, 0, tzinfo=UTC))
    finish_run()                                              # trigger 2: 02:00
    new_c = new_weights(fakehub, "acme/c", 11)
    new_d = new_weights(fakehub, "acme/d", 12)
    fakehub.delete_repo("acme/a")
    clock.set(datetime(2026, 1, 2, 2, 0, tzinfo=UTC))
    finish_run()                                              # trigger 3: next night
    sched.stop()
    loop.join(60)
    assert not loop.is_alive()

    runs = sched.records("nightly")
    assert [r.status for r in runs] == ["completed"] * 3
    # One GET per weight file, and only for repos whose sha changed since the previous run.
    assert per_run == [{"acme/a": 1, "acme/b": 1, "acme/c": 1, "acme/d": 1},
                       {"acme/b": 1},
                       {"acme/c": 1, "acme/d": 1}]
    analysed = [lake.query("SELECT repo_id FROM models WHERE scan_id = $s ORDER BY repo_id",
                           {"s": r.scan_id}).column("repo_id").to_pylist() for r in runs]
    assert analysed == [["acme/a", "acme/b", "acme/c", "acme/d"], ["acme/b"], ["acme/c", "acme/d"]]
    scans = {s["scan_id"]: s for s in lake.query("SELECT * FROM scans").to_pylist()}
    assert [(scans[r.scan_id]["n_done"], scans[r.scan_id]["n_skipped"]) for r in runs] == [
        (4, 0), (1, 3), (2, 1)]

    # A new revision becomes the latest; the old one stays in the history.
    latest = {r["repo_id"]: r["revision"]
              for r in lake.query("SELECT repo_id, revision FROM models_latest").to_pylist()}
    assert latest["acme/b"] == new_b and latest["acme/c"] == new_c and latest["acme/d"] == new_d
    hist = lake.query("SELECT revision, is_latest FROM history WHERE repo_id = 'acme/b' "
                      "ORDER BY revision_seq").to_pylist()
    assert hist == [{"revision": old_b, "is_latest": False}, {"revision": new_b, "is_latest": True}]

    # The deleted repo is marked, not forgotten: its rows are all still there.
    assert latest["acme/a"] == fakehub_sha_of_deleted(lake, "acme/a")
    assert lake.query("SELECT count(*) AS n FROM layers WHERE repo_id = 'acme/a'").column("n")[0].as_py() == 3
    events = lake.query("SELECT repo_id, event, revision, previous_revision, scan_id FROM repo_events "
                        "ORDER BY repo_id, event").to_pylist()
    assert [(e["repo_id"], e["event"]) for e in events] == [
        ("acme/a", "deleted"), ("acme/b", "new_revision"), ("acme/c", "new_revision"),
        ("acme/d", "new_revision")]
    by = {e["repo_id"]: e for e in events}
    assert (by["acme/b"]["revision"], by["acme/b"]["previous_revision"]) == (new_b, old_b)
    assert by["acme/b"]["scan_id"] == runs[1].scan_id and by["acme/a"]["scan_id"] == runs[2].scan_id
    state = StateStore(tmp_path / "state").load("nightly")
    assert (state.runs, state.last_status, state.last_trigger) == (
        3, "completed", datetime(2026, 1, 2, 2, 0, tzinfo=UTC))


def fakehub_sha_of_deleted(lake: Lake, repo: str) -> str:
    """The revision the lake holds for a repo (the hub no longer has it)."""
    return lake.query("SELECT revision FROM models WHERE repo_id = $r", {"r": repo}).column(
        "revision")[0].as_py()


def test_deleted_repo_is_marked_once_and_restored_when_it_returns(fakehub, tmp_path):
    populate(fakehub, names=("a", "b"))
    spec = load_spec(write_spec(tmp_path))
    lake = Lake(spec.lake)
    assert incremental_run(spec, executor="local").counts()["n_done"] == 2
    fakehub.delete_repo("acme/a")
    second = incremental_run(spec, executor="local")
    assert [(e.repo_id, e.event) for e in second.events] == [("acme/a", "deleted")]
    fakehub.reset_log()
    third = incremental_run(spec, executor="local")          # still gone: no second mark,
    assert third.events == () and fakehub.count("api", repo="acme/a") == 0   # and no re-probe
    populate(fakehub, names=("a",))                          # re-created with the same weights
    fourth = incremental_run(spec, executor="local")
    assert {(e.repo_id, e.event) for e in fourth.events} >= {("acme/a", "restored")}
    rows = lake.query("SELECT event, scan_id FROM repo_events WHERE repo_id = 'acme/a'").to_pylist()
    assert sorted((r["event"], r["scan_id"]) for r in rows) == sorted([
        ("deleted", second.scan_id), ("new_revision", fourth.scan_id), ("restored", fourth.scan_id)])
    known = known_repos(lake, spec_name="nightly")
    assert known[("hf", "acme/a")].last_event in ("restored", "new_revision")


def test_probe_repo_asks_the_hub(fakehub):
    populate(fakehub, names=("a",))
    assert probe_repo("hf", "acme/a") == Probe("present")
    assert probe_repo("hf", "acme/nope") == Probe("deleted")
    assert probe_repo("local", "some/folder") == Probe("deleted")


def ref(repo: str, rev: str, source: str = "hf") -> ModelRef:
    return ModelRef(source=source, repo_id=repo, revision=rev)


def test_detect_changes_decisions():
    """Missing from a listing is not enough: only owned repos of a covered source that the
    source confirms gone are marked; renames carry the new id; probes are bounded."""
    known = {
        ("hf", "o/kept"): KnownRepo("hf", "o/kept", "r1", owned=True),
        ("hf", "o/moved"): KnownRepo("hf", "o/moved", "r1", owned=True),
        ("hf", "o/gone"): KnownRepo("hf", "o/gone", "r2", owned=True),
        ("hf", "o/fell-out"): KnownRepo("hf", "o/fell-out", "r1", owned=True),
        ("hf", "o/flaky"): KnownRepo("hf", "o/flaky", "r1", owned=True),
        ("hf", "x/other-spec"): KnownRepo("hf", "x/other-spec", "r1", owned=False),
        ("tv", "resnet18"): KnownRepo("tv", "resnet18", "r1", owned=True),
        ("hf", "o/already"): KnownRepo("hf", "o/already", "r1", last_event="deleted",
                                       last_event_revision="r1", owned=True),
    }
    answers = {"o/moved": Probe("renamed", "o/new-name"), "o/gone": Probe("deleted"),
               "o/fell-out": Probe("present"), "o/flaky": Probe("unknown")}
    asked: list[str] = []

    def probe(source: str, repo: str) -> Probe:
        asked.append(repo)
        return answers[repo]

    listed = [ref("o/kept", "r2"), ref("o/new-name", "r1"), ref("o/kept", "r2")]
    events = detect_changes(listed, known, probe=probe, sources={"hf"})
    assert sorted(asked) == ["o/fell-out", "o/flaky", "o/gone", "o/moved"]
    assert sorted(events, key=lambda e: e.repo_id) == [
        RepoEvent("hf", "o/gone", "deleted", revision="r2"),
        RepoEvent("hf", "o/kept", "new_revision", revision="r2", previous_revision="r1"),
        RepoEvent("hf", "o/moved", "renamed", revision="r1", new_repo_id="o/new-name"),
    ]
    probed = set()
    for seed in range(20):                   # bounded probes, drawn so that none starves
        asked.clear()
        detect_changes(listed, known, probe=probe, sources={"hf"}, max_probes=2, seed=seed)
        assert len(asked) == 2
        probed |= set(asked)
    assert probed == {"o/fell-out", "o/flaky", "o/gone", "o/moved"}
    no_probe = detect_changes(listed, known, probe=None)
    assert [(e.repo_id, e.event) for e in no_probe] == [("o/kept", "new_revision")]


def test_reanalyze_redoes_an_older_code_version_only_when_asked(fakehub, tmp_path, monkeypatch):
    populate(fakehub, names=("a", "b"))
    spec = load_spec(write_spec(tmp_path))
    incremental_run(spec, executor="local")
    import hubscan.options

    monkeypatch.setattr(hubscan.options, "ANALYSIS_CODE_VERSION", "999")  # a release that changes numbers
    fakehub.reset_log()
    quiet = incremental_run(spec, executor="local")
    assert (quiet.scan.n_planned, quiet.scan.n_skipped, fakehub.count("resolve")) == (0, 2, 0)
    asked = incremental_run(spec, executor="local", reanalyze=True)
    assert (asked.scan.n_planned, asked.scan.n_done, fakehub.count("resolve")) == (2, 2, 2)
    versions = Lake(spec.lake).query("SELECT DISTINCT analysis_version AS v FROM models ORDER BY v")
    assert [v.split("-")[0] for v in versions.column("v").to_pylist()] == ["1", "999"]


@pytest.mark.ray
def test_scheduled_run_on_ray(fakehub, tmp_path, ray_cluster):
    """The scheduler's run thread drives the Ray executor on the session cluster."""
    populate(fakehub, names=("a", "b"))
    spec_path = write_spec(tmp_path, extra="[resources]\nworkers = 1\nmodels_per_worker = 1\n"
                                           "[resources.analyze]\nnum_cpus = 1\nnum_gpus = 0\n")
    clock = ManualClock(datetime(2026, 1, 1, 12, tzinfo=UTC))
    first = Scheduler(spec_jobs([spec_path], executor="ray"), state_dir=tmp_path / "st",
                      clock=clock).run_once()
    assert [r.status for r in first] == ["completed"]
    new_weights(fakehub, "acme/a", 7)
    fakehub.reset_log()
    clock.set(datetime(2026, 1, 2, 2, 5, tzinfo=UTC))
    second = Scheduler(spec_jobs([spec_path], executor="ray"), state_dir=tmp_path / "st",
                       clock=clock).run_once()
    assert second[0].status == "completed"
    assert resolves_by_repo(fakehub) == {"acme/a": 1}
    lake = Lake(str(tmp_path / "lake"))
    assert lake.query("SELECT count(*) AS n FROM models WHERE scan_id = $s",
                      {"s": second[0].scan_id}).column("n")[0].as_py() == 1


def test_sigterm_stops_a_running_schedule_and_the_next_start_resumes(fakehub, tmp_path):
    """`hubscan schedule` in a subprocess: SIGTERM mid-run → the in-flight model finishes, the
    rest is left, exit 0; `--once` afterwards resumes the interrupted run."""
    populate(fakehub)
    spec_path = write_spec(tmp_path, schedule="0 3 1 1 *",
                           extra="[resources]\nworkers = 1\nmodels_per_worker = 1\n")
    # acme/a is planned first (most downloads); its download stalls so SIGTERM lands mid-run.
    fakehub.inject("stall", endpoint="cdn", repo="acme/a", at=0.5, delay=2.0, times=1)
    state = tmp_path / "state"
    env = dict(os.environ, HUBSCAN_STATE_DIR=str(state), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-c", "from hubscan.cli import main; main()"]
    proc = subprocess.Popen([*cmd, "schedule", str(spec_path), "--executor", "local"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while fakehub.count("cdn", repo="acme/a") == 0:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "SIGTERM" in err
    st = json.loads((state / "nightly.json").read_text())
    assert st["last_status"] == "stopped"
    lock = JobLock(state / "nightly.lock")
    assert lock.acquire()                                    # the stopped run released it
    lock.release()
    lake = Lake(str(tmp_path / "lake"))
    scan = lake.query("SELECT status, n_done FROM scans").to_pylist()
    assert scan == [{"status": "stopped", "n_done": 1}]       # the in-flight model was finished
    done = lake.query("SELECT repo_id FROM models").column("repo_id").to_pylist()
    assert done == ["acme/a"]

    resumed = subprocess.run([*cmd, "schedule", "--once", str(spec_path), "--executor", "local"],
                             env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "completed" in resumed.stdout
    assert sorted(lake.query("SELECT repo_id FROM models").column("repo_id").to_pylist()) == [
        "acme/a", "acme/b", "acme/c", "acme/d"]
    again = subprocess.run([*cmd, "schedule", "--once", str(spec_path), "--executor", "local"],
                           env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout.strip() == ""   # not due until next 1 Jan 03:00


def test_renamed_repo_is_followed_and_marked(fakehub, tmp_path):
    """The Hub answers a renamed repo's old id with a 307 to the new one. A repo renamed out of
    the spec's listing (another owner) is probed and marked ``renamed`` with its new id; the
    old id's files still resolve through the redirect."""
    populate(fakehub, names=("a", "b"))
    spec = load_spec(write_spec(tmp_path))
    lake = Lake(spec.lake)
    assert incremental_run(spec, executor="local").counts()["n_done"] == 2
    sha_b = fakehub.repos["acme/b"].sha
    fakehub.rename_repo("acme/b", "elsewhere/b")
    assert probe_repo("hf", "acme/b") == Probe("renamed", new_repo_id="elsewhere/b")
    assert [r.status for r in fakehub.select("api", repo="acme/b")] == [307]
    second = incremental_run(spec, executor="local")
    assert [(e.repo_id, e.event, e.new_repo_id) for e in second.events] == [
        ("acme/b", "renamed", "elsewhere/b")]
    rows = lake.query("SELECT repo_id, event, revision, new_repo_id FROM repo_events "
                      "WHERE event = 'renamed'").to_pylist()
    assert rows == [{"repo_id": "acme/b", "event": "renamed", "revision": sha_b,
                     "new_repo_id": "elsewhere/b"}]
    third = incremental_run(spec, executor="local")  # marked once, not every run
    assert third.events == ()
    # the old id still serves the same bytes (hf_hub_download follows the 307)
    from huggingface_hub import hf_hub_download

    path = hf_hub_download("acme/b", "model.safetensors", revision=sha_b,
                           cache_dir=str(tmp_path / "dl"))
    import hashlib

    assert 307 in [r.status for r in fakehub.select("resolve", repo="acme/b")]
    served = fakehub.repos["elsewhere/b"].files["model.safetensors"]
    assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == served.sha256
