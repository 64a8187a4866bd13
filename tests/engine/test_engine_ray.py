"""The Ray executor on a real local Ray cluster (the session ``ray_cluster``): the same
numbers as the in-process executor, a killed worker does not fail the scan, a stuck model
gets its worker restarted."""

from __future__ import annotations

import math
import os
import signal
import time

import pytest

from hubscan.engine.base import WorkerConfig
from hubscan.engine.demo import ensure_demo_models
from hubscan.engine.local import LocalExecutor
from hubscan.engine.ray_exec import RayExecutor, plan_pool
from hubscan.engine.scan import run_scan
from hubscan.engine.spec import ResourceSpec, StageResources, loads_spec
from hubscan.lake import Lake
from hubscan.sources import open_model

pytestmark = pytest.mark.ray

#: columns that legitimately differ between two runs of the same analysis
VOLATILE = {"written_at", "eig_s", "fit_s", "scan_date", "model_key", "computed_by"}


@pytest.fixture(scope="module")
def demo_models(tmp_path_factory):
    return ensure_demo_models(tmp_path_factory.mktemp("ray-demo") / "models", n_models=12, seed=7)


def spec_for(lake, models, extra=""):
    return loads_spec(f"""
[scan]
name = "ray-test"
lake = "{lake}"
[[sources]]
kind = "demo"
path = "{models}"
n_models = 12
seed = 7
[resources]
models_per_worker = 1
[analysis]
compare = false
[retry]
backoff_s = 0.01
max_backoff_s = 0.05
{extra}
""")


def layer_rows(lake):
    rows = Lake(str(lake)).query("SELECT * FROM layers ORDER BY repo_id, file, tensor").to_pylist()
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    return a == b


def test_ray_equals_local(tmp_path, demo_models, ray_cluster):
    """Bit-identical numbers. Ray actors with num_cpus=1 run torch on one thread; the local
    executor is given one thread too — BLAS reductions on other thread counts differ in the
    last bits (~1e-14 relative)."""
    import torch

    models = demo_models[0].parent
    local_spec = spec_for(tmp_path / "local", models)
    threads = torch.get_num_threads()
    try:
        local = run_scan(local_spec, progress=False, executor=LocalExecutor(
            WorkerConfig(options=local_spec.analysis, torch_threads=1), slots=2))
    finally:
        torch.set_num_threads(threads)
    dist = run_scan(spec_for(tmp_path / "ray", models), executor="ray", progress=False)
    assert (local.status, dist.status) == ("completed", "completed")
    assert local.n_ok == dist.n_ok == 12
    a, b = layer_rows(tmp_path / "local"), layer_rows(tmp_path / "ray")
    assert len(a) == len(b) > 200
    diffs = [(ra["repo_id"], ra["tensor"], k) for ra, rb in zip(a, b) for k in ra if not same(ra[k], rb[k])]
    assert diffs == []
    ma = Lake(str(tmp_path / "local")).query("SELECT * EXCLUDE (written_at, scan_id, fetch_s, analyze_s, scan_date) FROM models ORDER BY model_key").to_pylist()
    mb = Lake(str(tmp_path / "ray")).query("SELECT * EXCLUDE (written_at, scan_id, fetch_s, analyze_s, scan_date) FROM models ORDER BY model_key").to_pylist()
    assert [[k for k in x if not same(x[k], y[k])] for x, y in zip(ma, mb)] == [[]] * 12


def test_killed_worker_does_not_fail_the_scan(tmp_path, demo_models, ray_cluster):
    spec = spec_for(tmp_path / "lake", demo_models[0].parent)
    config = WorkerConfig(options=spec.analysis, file_attempts=1)
    ex = RayExecutor(config, resources=spec.resources, name=f"kill-{os.getpid()}")
    killed: list[int] = []

    def kill_a_busy_worker(p):
        if p.done >= 3 and not killed:
            busy = ex.busy_workers()
            if busy:
                pid = ex.worker_pid(busy[0])
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    s = run_scan(spec, executor=ex, progress=False, on_event=kill_a_busy_worker)
    assert killed, "no worker was killed: the test did not test anything"
    assert s.status == "completed"
    assert s.n_ok == 12 and s.n_failed == 0 and s.n_open == 0
    assert s.n_retried >= 1  # the killed worker's model ran again, on a restarted worker
    lake = Lake(str(tmp_path / "lake"))
    counts = lake.query("SELECT repo_id, count(*) AS n FROM models GROUP BY repo_id").to_pylist()
    assert sorted(c["repo_id"] for c in counts) == sorted(f.name for f in demo_models)
    assert {c["n"] for c in counts} == {1}
    assert lake.query("SELECT count(*) AS n FROM failures").column("n")[0].as_py() == 0


class StuckOnce:
    """Picklable opener: the named repo's download stalls (its first attempt only: the marker
    file is shared by worker processes)."""

    def __init__(self, repo: str, marker: str) -> None:
        self.repo, self.marker = repo, marker

    def __call__(self, ref, *, allow_bin, stats, files=None):
        if ref.repo_id == self.repo and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            time.sleep(3600)
        yield from open_model(ref, allow_bin=allow_bin, stats=stats, files=files)


def test_stuck_model_restarts_its_worker(tmp_path, demo_models, ray_cluster):
    spec = spec_for(tmp_path / "lake", demo_models[0].parent, "model_timeout_s = 5\n")
    stuck = demo_models[4].name
    s = run_scan(spec, executor="ray", progress=False,
                 opener=StuckOnce(stuck, str(tmp_path / "stalled-once")))
    assert s.status == "completed"
    assert s.n_ok == 12 and s.n_retried >= 1
    assert s.errors_by_class == {}  # the retry on the restarted worker succeeded
    assert (tmp_path / "stalled-once").exists()


@pytest.mark.parametrize("cluster, expected", [
    ({"CPU": 2}, [(1, 0)] * 2),
    ({"CPU": 16, "GPU": 1}, [(1, 0.25)] * 4 + [(1, 0)] * 12),
    ({"CPU": 0.5}, [(1, 0)]),
])
def test_pool_shape(cluster, expected):
    res = ResourceSpec(analyze=StageResources(num_cpus=1, num_gpus=0.25), fetch=StageResources(num_cpus=0))
    assert [(r["num_cpus"], r["num_gpus"]) for r in plan_pool(res, cluster)] == expected
    fixed = ResourceSpec(workers=3, analyze=StageResources(num_cpus=1, num_gpus=0.5))
    assert [r["num_gpus"] for r in plan_pool(fixed, {"CPU": 8, "GPU": 1})] == [0.5, 0.5, 0]


def test_workers_that_cannot_start_fail_the_scan_fast(tmp_path, demo_models, ray_cluster):
    """A worker whose start-up raises (on a cluster: hubscan not installed, CUDA broken) must
    fail the scan with the reason, not leave it waiting for workers forever."""
    spec = spec_for(tmp_path / "lake", demo_models[0].parent)
    broken = WorkerConfig(options=spec.analysis, torch_threads=-1)  # set_num_threads raises
    ex = RayExecutor(broken, resources=spec.resources, name=f"broken-{os.getpid()}")
    s = run_scan(spec, executor=ex, progress=False)
    assert s.status == "failed"
    assert "every analyze actor failed to start" in s.error and "set_num_threads" in s.error
