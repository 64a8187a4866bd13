"""The scan driver on the in-process executor: planning, incremental reruns, stop/resume,
in-scan content dedup, deadlines. (The Ray executor runs the same driver: test_engine_ray.py.)"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import threading
import time
from pathlib import Path

import pytest

from hubscan.analysis.model import analyze_model
from hubscan.engine.demo import demo_spec, ensure_demo_models
from hubscan.engine.local import LocalExecutor
from hubscan.engine.plan import order_refs, plan_scan
from hubscan.engine.scan import run_scan
from hubscan.engine.spec import load_spec, loads_spec
from hubscan.lake import Lake
from hubscan.refs import WeightFile
from hubscan.sources import open_model, resolve

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_models(tmp_path_factory):
    return ensure_demo_models(tmp_path_factory.mktemp("demo") / "models", n_models=6)


def spec_for(lake: Path, models: Path | str, extra: str = "", n_models: int = 6):
    return loads_spec(f"""
[scan]
name = "t"
lake = "{lake}"
[[sources]]
kind = "demo"
path = "{models}"
n_models = {n_models}
[analysis]
compare = false
[retry]
backoff_s = 0.01
max_backoff_s = 0.05
{extra}
""")


def models_table(lake: Path):
    return Lake(str(lake)).query("SELECT repo_id, status, n_tensors FROM models ORDER BY repo_id").to_pylist()


def test_demo_job_matches_packaged_demo_spec():
    shipped = load_spec(ROOT / "jobs" / "demo.toml")
    built = demo_spec()
    assert shipped.to_dict() | {"path": None} == built.to_dict() | {"path": None}


def test_local_scan_then_incremental_rerun(tmp_path, demo_models):
    lake = tmp_path / "lake"
    spec = spec_for(lake, demo_models[0].parent)
    first = run_scan(spec, executor="local", progress=False)
    assert first.status == "completed"
    assert (first.n_planned, first.n_ok, first.n_failed, first.n_skipped) == (6, 6, 0, 0)
    rows = models_table(lake)
    assert [r["repo_id"] for r in rows] == sorted(f.name for f in demo_models)
    assert all(r["status"] == "ok" for r in rows)
    n_layers = Lake(str(lake)).query("SELECT count(*) AS n FROM layers").column("n")[0].as_py()
    assert n_layers == sum(r["n_tensors"] for r in rows)

    second = run_scan(spec, executor="local", progress=False)
    assert (second.status, second.n_planned, second.n_skipped, second.n_ok) == ("completed", 0, 6, 0)
    scans = Lake(str(lake)).query("SELECT scan_id, status, n_planned, n_done FROM scans ORDER BY started_at").to_pylist()
    assert [(s["status"], s["n_planned"], s["n_done"]) for s in scans] == [("completed", 6, 6), ("completed", 0, 0)]
    assert [s["scan_id"] for s in scans] == [first.scan_id, second.scan_id]

    forced = run_scan(spec, executor="local", progress=False, force=True)
    assert forced.n_planned == 6
    assert len(models_table(lake)) == 6  # rewritten, still once each in the views


def test_stop_then_rerun_continues(tmp_path, demo_models):
    lake = tmp_path / "lake"
    spec = spec_for(lake, demo_models[0].parent, "[resources]\nmodels_per_worker = 1\n")
    stop = threading.Event()

    def stop_after_two(p):
        if p.done >= 2:
            stop.set()

    first = run_scan(spec, executor="local", progress=False, stop_event=stop, on_event=stop_after_two)
    assert first.status == "stopped"
    assert 2 <= first.n_ok < 6
    scans = Lake(str(lake)).query("SELECT status FROM scans").column("status").to_pylist()
    assert scans == ["stopped"]
    second = run_scan(spec, executor="local", progress=False)
    assert second.status == "completed" and second.n_skipped == first.n_ok
    assert second.n_ok == 6 - first.n_ok
    assert len(models_table(lake)) == 6


def test_a_bug_leaves_the_model_open_and_the_next_run_retries_it(tmp_path, demo_models, monkeypatch):
    """An error outside hubscan's vocabulary (here a TypeError, as a bug in the analysis would
    raise) is a failures row, but not a verdict on the checkpoint: the model gets no models
    row, the scan counts it as to retry, and the next run — with the bug gone — analyses it
    without --force. Checkpoint errors, by contrast, settle a model (test_pipeline.py)."""
    import hubscan.analysis.model as pipeline

    lake = tmp_path / "lake"
    spec = spec_for(lake, demo_models[0].parent)
    victim = demo_models[2].name  # a single-file model: one failures row
    real = pipeline._analyze_file

    def buggy(ref, wf, *args, **kwargs):
        if ref.repo_id.endswith(victim):
            raise TypeError("unsupported operand type(s) for +: 'NoneType' and 'int'")
        return real(ref, wf, *args, **kwargs)

    monkeypatch.setattr(pipeline, "_analyze_file", buggy)
    first = run_scan(spec, executor="local", progress=False)
    assert (first.status, first.n_ok, first.n_failed, first.n_open) == ("completed", 5, 0, 1)
    assert victim not in [r["repo_id"] for r in models_table(lake)]
    failures = Lake(str(lake)).query("SELECT repo_id, stage, error_class FROM failures").to_pylist()
    assert [(f["repo_id"].endswith(victim), f["error_class"]) for f in failures] == [(True, "TypeError")]

    monkeypatch.setattr(pipeline, "_analyze_file", real)  # the fixed release
    second = run_scan(spec, executor="local", progress=False)
    assert (second.n_planned, second.n_ok, second.n_skipped, second.n_open) == (1, 1, 5, 0)
    rows = models_table(lake)
    assert len(rows) == 6 and all(r["status"] == "ok" for r in rows)
    latest = Lake(str(lake)).query("SELECT count(*) AS n, count(DISTINCT repo_id) AS d FROM models_latest").to_pylist()
    assert latest == [{"n": 6, "d": 6}]


def test_plan_skips_caps_orders_and_bounds(tmp_path, demo_models):
    lake = Lake(str(tmp_path / "lake"))
    refs = [r for f in demo_models for r in resolve(str(f))]
    refs = [dataclasses.replace(r, downloads=d) for r, d in zip(refs, [5, None, 50, 1, 9, 7])]
    spec = spec_for(tmp_path / "lake", demo_models[0].parent)
    plan = plan_scan(spec, lake, refs=refs)
    assert [r.downloads for r in plan.todo] == [50, 9, 7, 5, 1, None]
    assert plan.todo == tuple(order_refs(refs))

    lake.write(analyze_model(plan.todo[0], spec.analysis))
    again = plan_scan(spec, lake, refs=refs + refs[:2])  # duplicates listed twice count once
    assert [r.repo_id for r in again.already_done] == [plan.todo[0].repo_id]
    assert len(again.todo) == 5 and again.n_listed == 8
    assert plan_scan(spec, lake, refs=refs, force=True).todo == plan.todo

    small = min(r.total_bytes for r in refs)
    capped = spec.replace(limits=spec.limits.__class__(max_models=2, max_bytes_per_model=small))
    p = plan_scan(capped, lake, refs=refs, force=True)
    assert all(r.total_bytes <= small for r in p.todo) and len(p.todo) <= 2
    assert len(p.over_limit) == sum(r.total_bytes > small for r in refs)
    assert len(p.todo) + len(p.deferred) == sum(r.total_bytes <= small for r in refs)


def test_new_code_version_is_skipped_unless_reanalyze(tmp_path, demo_models, monkeypatch):
    lake = Lake(str(tmp_path / "lake"))
    ref = resolve(str(demo_models[0]))[0]
    spec = spec_for(tmp_path / "lake", demo_models[0].parent)
    monkeypatch.setattr("hubscan.options.ANALYSIS_CODE_VERSION", "0")
    old = spec.analysis.analysis_version
    lake.write(analyze_model(ref, spec.analysis))
    monkeypatch.setattr("hubscan.options.ANALYSIS_CODE_VERSION", "1")
    assert spec.analysis.analysis_version != old
    assert plan_scan(spec, lake, refs=[ref]).todo == ()
    assert plan_scan(spec, lake, refs=[ref], reanalyze=True).todo == (ref,)
    other_options = spec.replace(analysis=spec.analysis.__class__(convention="seed"))
    assert plan_scan(other_options, lake, refs=[ref]).todo == (ref,)  # options changed: planned


class Counting:
    """The real opener, counting opens per file content hash (module-level: picklable)."""

    calls: dict[str, int] = {}
    lock = threading.Lock()

    def __call__(self, ref, *, allow_bin, stats, files=None):
        (path,) = files
        sha = next(f.sha256 for f in ref.files if f.path == path)
        with self.lock:
            self.calls[sha] = self.calls.get(sha, 0) + 1
        time.sleep(0.05)  # keep the first model in flight while its forks are admitted
        yield from open_model(ref, allow_bin=allow_bin, stats=stats, files=files)


def test_forks_in_one_scan_analyse_each_file_once(tmp_path, demo_models):
    """Copies of one model (forks) in the same scan: the file is analysed once, every fork
    shows the full layer set and the same summary."""
    src = demo_models[2]
    forks = []
    for i in range(4):
        dst = tmp_path / "forks" / f"fork-{i}"
        shutil.copytree(src, dst)
        forks.extend(resolve(str(dst)))
    sha = forks[0].files[0].sha256
    assert {f.files[0].sha256 for f in forks} == {sha}
    Counting.calls = {}
    spec = spec_for(tmp_path / "lake", tmp_path / "unused", "[resources]\nworkers = 2\n")
    s = run_scan(spec, executor="local", refs=forks, progress=False, opener=Counting())
    assert s.status == "completed" and s.n_ok == 4 and s.n_reused_files == 3
    assert Counting.calls == {sha: 1}
    lake = Lake(str(tmp_path / "lake"))
    per_model = lake.query("SELECT repo_id, count(*) AS n FROM layers GROUP BY repo_id").to_pylist()
    n_tensors = len(list(open_model(forks[0], allow_bin=False, stats=None)))
    assert sorted(r["n"] for r in per_model) == [n_tensors] * 4
    summaries = lake.query("SELECT DISTINCT n_analysed, alpha_mean, stable_rank_mean FROM models").to_pylist()
    assert len(summaries) == 1 and summaries[0]["n_analysed"] > 0
    reused = lake.query("SELECT count(*) FILTER (WHERE reused) AS r, count(*) AS n FROM model_files").to_pylist()
    assert reused == [{"r": 3, "n": 4}]


class Stuck:
    """An opener whose download never finishes for one repo (a stalled connection)."""

    def __init__(self, stuck_repo: str) -> None:
        self.stuck_repo = stuck_repo

    def __call__(self, ref, *, allow_bin, stats, files=None):
        if ref.repo_id == self.stuck_repo:
            time.sleep(3600)
        yield from open_model(ref, allow_bin=allow_bin, stats=stats, files=files)


def test_stuck_download_times_out_and_the_scan_finishes(tmp_path, demo_models):
    spec = spec_for(tmp_path / "lake", demo_models[0].parent,
                    "model_timeout_s = 4\nattempts = 2\n[resources]\nworkers = 2\n")
    stuck = demo_models[1].name
    s = run_scan(spec, executor="local", progress=False, opener=Stuck(stuck))
    assert s.status == "completed"
    assert (s.n_ok, s.n_open, s.n_retried) == (5, 1, 1)
    assert s.errors_by_class == {"ModelTimeout": 1}
    lake = Lake(str(tmp_path / "lake"))
    assert stuck not in {r["repo_id"] for r in models_table(tmp_path / "lake")}  # left open
    f = lake.query("SELECT repo_id, stage, error_class, attempt FROM failures").to_pylist()
    assert f == [{"repo_id": stuck, "stage": "timeout", "error_class": "ModelTimeout", "attempt": 2}]
    # the next run tries it again (and, not stuck any more, finishes it)
    again = run_scan(spec, executor="local", progress=False)
    assert (again.n_planned, again.n_ok) == (1, 1)


class Concurrency:
    """The real opener, recording how many models are being read at once."""

    def __init__(self) -> None:
        self.active, self.peak, self.lock = 0, 0, threading.Lock()

    def __call__(self, ref, *, allow_bin, stats, files=None):
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep(0.1)
            yield from open_model(ref, allow_bin=allow_bin, stats=stats, files=files)
        finally:
            with self.lock:
                self.active -= 1


@pytest.mark.parametrize("budget, expect_parallel", [("1", False), ("1GiB", True)])
def test_inflight_bytes_budget(tmp_path, demo_models, budget, expect_parallel):
    spec = spec_for(tmp_path / "lake", demo_models[0].parent,
                    f"[resources]\nworkers = 4\nmax_inflight_bytes = \"{budget}\"\n")
    opener = Concurrency()
    s = run_scan(spec, executor="local", progress=False, opener=opener)
    assert s.n_ok == 6
    # a model over the whole budget runs alone (but runs); within budget they overlap
    assert (opener.peak > 1) is expect_parallel


def test_content_hash_of_local_files(demo_models):
    (ref,) = resolve(str(demo_models[0]))
    wf: WeightFile = ref.files[0]
    assert wf.sha256 == hashlib.sha256((demo_models[0] / wf.path).read_bytes()).hexdigest()


def test_unwritable_lake_fails_the_scan_without_raising(tmp_path, demo_models):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the lake should be")
    spec = spec_for(blocker / "lake", demo_models[0].parent)
    s = run_scan(spec, executor="local", progress=False)
    assert s.status == "failed" and s.error
    assert s.n_ok == 0


def test_an_interrupt_right_after_a_commit_is_still_counted(tmp_path, demo_models, monkeypatch):
    """A second Ctrl-C (KeyboardInterrupt) landing just after a model's models row was
    written, before the driver counted it: the scans row recounts from the lake, so it agrees
    with the models the lake holds for that scan."""
    import hubscan.engine.scan as engine_scan

    real = engine_scan._write_result
    committed = []

    def write_then_interrupt(lake, result, *, with_model):
        real(lake, result, with_model=with_model)
        committed.append(result.model["repo_id"])
        if len(committed) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(engine_scan, "_write_result", write_then_interrupt)
    spec = spec_for(tmp_path / "lake", demo_models[0].parent, "[resources]\nmodels_per_worker = 1\n")
    s = run_scan(spec, executor="local", progress=False)
    lk = Lake(str(tmp_path / "lake"))
    in_lake = lk.query(f"SELECT count(*) AS n FROM models WHERE scan_id = '{s.scan_id}'").to_pylist()[0]["n"]
    assert s.status == "stopped" and in_lake == 2 and s.n_ok == 2
    assert lk.query("SELECT status, n_done FROM scans").to_pylist() == [{"status": "stopped", "n_done": 2}]


def test_a_bad_http_setting_fails_the_scan_before_any_model(tmp_path, demo_models, monkeypatch):
    """Workers read HUBSCAN_HTTP_*; a bad value must not turn every model into a failure row."""
    monkeypatch.setenv("HUBSCAN_HTTP_RETRIES", "lots")
    s = run_scan(spec_for(tmp_path / "lake", demo_models[0].parent), executor="local", progress=False)
    assert s.status == "failed" and "HUBSCAN_HTTP_RETRIES" in s.error and s.n_ok == 0
    assert Lake(str(tmp_path / "lake")).query("SELECT count(*) AS n FROM failures").to_pylist() == [{"n": 0}]


class RecordingLocal(LocalExecutor):
    """The real local executor, recording which models were handed to it."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.submitted: list[str] = []

    def submit(self, task, *, deadline_s):
        self.submitted.append(task.ref.repo_id)
        super().submit(task, deadline_s=deadline_s)


def test_an_analysis_stack_that_cannot_import_fails_the_scan_before_any_model(
        tmp_path, demo_models, monkeypatch):
    """The local executor imports the analysis stack at start, on the driver's thread (as a
    Ray actor does): a broken installation fails the scan at once — no model is started,
    none is written as failed — and the import is never charged to a model's deadline."""
    import sys

    from hubscan.engine.base import WorkerConfig

    spec = spec_for(tmp_path / "lake", demo_models[0].parent)
    import hubscan.analysis

    monkeypatch.delattr(hubscan.analysis, "tensors", raising=False)
    monkeypatch.delitem(sys.modules, "hubscan.analysis.tensors", raising=False)
    monkeypatch.setitem(sys.modules, "hubscan.analysis.tensors", None)  # import raises ImportError
    ex = RecordingLocal(WorkerConfig(options=spec.analysis), slots=2)
    s = run_scan(spec, executor=ex, progress=False)
    assert s.status == "failed" and "hubscan.analysis.tensors" in s.error
    assert (s.n_planned, ex.submitted) == (6, [])
    lake = Lake(str(tmp_path / "lake"))
    assert lake.query("SELECT count(*) FROM raw_models").column(0)[0].as_py() == 0
    assert lake.query("SELECT count(*) FROM raw_failures").column(0)[0].as_py() == 0
    monkeypatch.undo()  # the installation is repaired: the next run analyses every model
    again = run_scan(spec, executor="local", progress=False)
    assert (again.status, again.n_skipped, again.n_ok) == ("completed", 0, 6)
