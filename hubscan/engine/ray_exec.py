"""The Ray executor: a pool of long-lived analyze actors fed model descriptors.

Why actors (Ray Core) and not Ray Data — measured in ``benchmarks/bench_scan.py`` and argued in
``docs/scan.md``: the unit of work is a whole model with its own failure rows, sizes vary by
six orders of magnitude, and each worker should pay imports and CUDA start-up once. So:

- each actor is a long-lived process (``max_restarts=-1``) that fetches its own bytes: only a
  ``ModelRef`` goes in through the object store, only a ``ModelResult`` (rows) comes out;
- an actor holds ``models_per_worker`` models at once (a threaded actor), so one model's
  download overlaps another's eigen-solves; inside a model, ``prefetch_bytes`` of tensors are
  read ahead of the solver (``hubscan.analysis.model.readahead``);
- the driver submits only as many tasks as there are actor slots and as the in-flight byte
  budget allows, and collects them with ``ray.wait`` — that is the backpressure;
- a task whose actor died is reported as ``WorkerDied``; Ray restarts the actor, the driver
  resubmits the model (to the least-loaded actor) up to the retry limit;
- a task past its deadline (a stuck download) gets its actor killed and restarted, and is
  reported as ``ModelTimeout``; the other models on that actor come back as ``WorkerDied``
  and are resubmitted.

GPU: when the cluster has GPUs and ``resources.analyze.num_gpus > 0``, actors ask for that
fraction of a GPU (``0.25`` → four actors share one GPU); the remaining CPUs get CPU actors.
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any

from .base import ModelTimeout, Outcome, Task, WorkerConfig, WorkerDied, run_task
from .spec import ResourceSpec

__all__ = ["RayExecutor", "AnalyzeWorker", "plan_pool"]

log = logging.getLogger("hubscan.engine.ray")

#: environment forwarded to workers (a cluster's workers do not inherit the driver's shell):
#: these names, and every ``HUBSCAN_*`` variable (retry, timeout, rate-limit tier settings)
FORWARDED_ENV = ("HF_TOKEN", "HF_ENDPOINT", "HF_HUB_OFFLINE", "HF_HOME", "HF_HUB_CACHE",
                 "TORCH_HOME")


#: an actor whose health probe fails this many times in a row is given up on
MAX_PROBE_FAILURES = 5


def forwarded_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in FORWARDED_ENV or k.startswith("HUBSCAN_")}


class AnalyzeWorker:
    """One long-lived worker process: imports, torch threads and CUDA are set up once."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        import torch

        from ..analysis import tensors  # noqa: F401 - import cost paid at start, not per model

        if config.torch_threads:
            torch.set_num_threads(config.torch_threads)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.device == "cuda":  # CUDA context + cuSOLVER handles, once per process
            torch.linalg.eigvalsh(torch.eye(8, device="cuda", dtype=torch.float64))
        else:  # fits run the compiled CPU search: compile or load it once per process
            from ..esd.powerlaw.fit import warm_up

            warm_up()

    def pid(self) -> int:
        return os.getpid()

    def info(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "device": self.device}

    def analyze(self, task: Task) -> Any:
        return run_task(task, self.config)


def plan_pool(resources: ResourceSpec, cluster: dict[str, float]) -> list[dict[str, float]]:
    """The actors to start: one resource request per actor, GPU actors first.

    ``workers = 0`` fills the cluster as it is now (an autoscaling cluster should set
    ``workers`` explicitly: pending actors are what makes the autoscaler add nodes).
    """
    per_cpu = resources.analyze.num_cpus + resources.fetch.num_cpus
    gpus = float(cluster.get("GPU", 0.0))
    cpus = float(cluster.get("CPU", 0.0))
    frac = resources.analyze.num_gpus
    n_gpu_cap = math.floor(gpus / frac + 1e-9) if gpus > 0 and frac > 0 else 0
    if resources.workers:
        n_gpu = min(resources.workers, n_gpu_cap)
        n_cpu = resources.workers - n_gpu
    else:
        n_gpu = n_gpu_cap
        cpu_left = max(0.0, cpus - n_gpu * per_cpu)
        n_cpu = math.floor(cpu_left / per_cpu + 1e-9) if per_cpu > 0 else 0
        if n_gpu + n_cpu == 0:
            n_cpu = 1
    return ([{"num_cpus": per_cpu, "num_gpus": frac}] * n_gpu
            + [{"num_cpus": per_cpu, "num_gpus": 0.0}] * n_cpu)


class RayExecutor:
    """Analyse models on a pool of Ray actors; same interface as ``LocalExecutor``.

    Args:
        config: per-scan worker settings.
        resources: the spec's ``[resources]``.
        address: Ray address (``auto``, ``ray://host:10001``); default ``RAY_ADDRESS`` or a
            local Ray started here. An already initialised Ray is reused and never shut down.
        num_cpus: CPUs of a local Ray started here (default: all).
        name: prefix of the actors' names (``<name>-analyze-<i>``), so tools can find them.
    """

    def __init__(self, config: WorkerConfig, *, resources: ResourceSpec,
                 address: str | None = None, num_cpus: int | None = None,
                 name: str = "hubscan") -> None:
        self.config = config
        self.resources = resources
        self.address = address or os.environ.get("RAY_ADDRESS")
        self.num_cpus = num_cpus
        self.name = name
        self.actors: list[Any] = []
        self.actor_names: list[str] = []
        self._owns_ray = False
        self._inflight: dict[Any, tuple[Task, int, float, float]] = {}  # ref -> (task, actor, t0, deadline)
        self._load: list[int] = []
        self._up: list[bool] = []  # actor answered its last probe: safe to give it work
        self._probes: dict[Any, int] = {}  # probe ref -> actor index
        self._probe_failures: list[int] = []  # consecutive failed probes per actor
        self._dead: dict[int, str] = {}  # actors given up on (cannot start) -> why

    @property
    def slots(self) -> int:
        """Models that may be in flight now: only actors that are up take work (a pending
        actor on an autoscaling cluster, or one restarting after a crash, does not)."""
        return sum(self._up) * self.resources.models_per_worker

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, *, ready_timeout_s: float = 600.0) -> None:
        """Start Ray if needed and the actor pool; return once one actor is up.

        Waiting for one (not all) keeps an autoscaling cluster useful while it grows; the
        timeout turns an unplaceable pool (resources the cluster will never have) into an
        error instead of a scan that waits forever.
        """
        import ray

        if self.actors:
            return
        if not ray.is_initialized():
            ray.init(address=self.address, num_cpus=None if self.address else self.num_cpus,
                     include_dashboard=False, log_to_driver=False, configure_logging=False)
            self._owns_ray = True
        requests = plan_pool(self.resources, ray.cluster_resources())
        env = forwarded_env()
        remote_cls = ray.remote(AnalyzeWorker)
        per_worker = self.resources.models_per_worker
        for i, req in enumerate(requests):
            name = f"{self.name}-analyze-{i}"
            opts: dict[str, Any] = dict(
                num_cpus=req["num_cpus"], num_gpus=req["num_gpus"] or None,
                max_restarts=-1, max_task_retries=0, max_concurrency=per_worker,
                name=name, get_if_exists=False,
            )
            if env:
                opts["runtime_env"] = {"env_vars": env}
            torch_threads = max(1, int(req["num_cpus"]))
            cfg = _with_threads(self.config, torch_threads)
            self.actors.append(remote_cls.options(**opts).remote(cfg))
            self.actor_names.append(name)
        self._load = [0] * len(self.actors)
        self._up = [False] * len(self.actors)
        self._probe_failures = [0] * len(self.actors)
        log.info("ray executor: %d actors (%s)", len(self.actors), requests)
        for i in range(len(self.actors)):
            self._probe(i)
        deadline = time.monotonic() + ready_timeout_s
        while not any(self._up):
            if time.monotonic() > deadline:
                self.abort()
                raise RuntimeError(f"no analyze actor started within {ready_timeout_s:.0f} s "
                                   f"(each asks for {requests[0]}; the cluster has "
                                   f"{ray.cluster_resources()})")
            self._check_probes(timeout=1.0)
            self._raise_if_all_dead()

    def wait_all_ready(self, timeout_s: float = 600.0) -> None:
        """Block until every actor is up (benchmarks: time the run, not the start-up)."""
        deadline = time.monotonic() + timeout_s
        while not all(self._up) and time.monotonic() < deadline:
            self._check_probes(timeout=1.0)

    # -- actor health ---------------------------------------------------------------------

    def _probe(self, i: int) -> None:
        """Ask actor ``i`` for a sign of life; until it answers it gets no work."""
        self._up[i] = False
        self._probes[self.actors[i].info.remote()] = i

    def _check_probes(self, timeout: float = 0.0) -> None:
        import ray

        if not self._probes:
            return
        ready, _ = ray.wait(list(self._probes), num_returns=len(self._probes), timeout=timeout)
        for ref in ready:
            i = self._probes.pop(ref)
            try:
                ray.get(ref)
                self._up[i] = True
                self._probe_failures[i] = 0
            except ray.exceptions.ActorUnavailableError:
                self._probe(i)  # restarting: ask again
            except ray.exceptions.RayActorError as exc:
                # died again, or its start-up (imports, CUDA) raises: give up after a few
                self._probe_failures[i] += 1
                if self._probe_failures[i] >= MAX_PROBE_FAILURES:
                    self._dead[i] = str(exc).strip().splitlines()[-1][:500]
                    log.error("giving up on %s: %s", self.actor_names[i], self._dead[i])
                else:
                    time.sleep(0.05 * self._probe_failures[i])
                    self._probe(i)

    def _raise_if_all_dead(self) -> None:
        if self.actors and len(self._dead) == len(self.actors):
            why = next(iter(self._dead.values()))
            self.abort()
            raise RuntimeError(f"every analyze actor failed to start: {why}")

    def close(self) -> None:
        import ray

        self.abort()
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()

    # -- work -----------------------------------------------------------------------------

    def submit(self, task: Task, *, deadline_s: float) -> None:
        candidates = [k for k in range(len(self.actors)) if self._up[k]] or range(len(self.actors))
        i = min(candidates, key=lambda k: self._load[k])
        ref = self.actors[i].analyze.remote(task)
        now = time.monotonic()
        self._inflight[ref] = (task, i, now, now + deadline_s)
        self._load[i] += 1

    def inflight(self) -> int:
        return len(self._inflight)

    def wait(self, timeout: float) -> list[Outcome]:
        import ray

        outs: list[Outcome] = []
        self._check_probes()
        self._raise_if_all_dead()
        if not self._inflight:
            self._check_probes(timeout=max(0.0, min(timeout, 0.2)))
            return outs
        refs = list(self._inflight)
        ready, rest = ray.wait(refs, num_returns=1, timeout=max(0.0, timeout))
        if ready and rest:
            more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        for ref in ready:
            outs.append(self._collect(ref))
        outs.extend(self._expire())
        return outs

    def _collect(self, ref: Any) -> Outcome:
        import ray

        task, i, t0, _ = self._inflight.pop(ref)
        self._load[i] -= 1
        out = Outcome(task, worker=self.actor_names[i], seconds=time.monotonic() - t0)
        try:
            out.result = ray.get(ref)
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError,
                ray.exceptions.WorkerCrashedError, ray.exceptions.ObjectLostError) as exc:
            out.error = WorkerDied(f"{task.ref.uri}: worker {self.actor_names[i]} died "
                                   f"({type(exc).__name__})")
            if self._up[i]:
                self._probe(i)  # Ray restarts it (max_restarts); no work until it answers
        except ray.exceptions.OutOfMemoryError as exc:
            out.error = WorkerDied(f"{task.ref.uri}: worker killed for memory: {exc}")
            if self._up[i]:
                self._probe(i)
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            out.error = cause if isinstance(cause, BaseException) else exc
        return out

    def _expire(self) -> list[Outcome]:
        """Models past their deadline: restart their actor, report them as timed out."""
        import ray

        now = time.monotonic()
        late = [(ref, v) for ref, v in self._inflight.items() if v[3] <= now]
        outs = []
        killed: set[int] = set()
        for ref, (task, i, t0, _) in late:
            self._inflight.pop(ref)
            self._load[i] -= 1
            outs.append(Outcome(task, worker=self.actor_names[i], seconds=now - t0,
                                error=ModelTimeout(f"{task.ref.uri}: no result after "
                                                   f"{now - t0:.0f} s; worker restarted")))
            if i not in killed:
                log.warning("restarting %s: %s overran its deadline", self.actor_names[i],
                            task.ref.uri)
                ray.kill(self.actors[i], no_restart=False)
                killed.add(i)
                self._probe(i)
        return outs

    def abort(self) -> list[Task]:
        import ray

        tasks = [v[0] for v in self._inflight.values()]
        self._inflight.clear()
        for a in self.actors:
            try:
                ray.kill(a, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.actors, self._load, self._up, self._probes = [], [], [], {}
        self._probe_failures, self._dead = [], {}
        return tasks

    # -- introspection (tests, progress) --------------------------------------------------

    def worker_pids(self) -> list[int]:
        import ray

        return ray.get([a.pid.remote() for a in self.actors])

    def worker_pid(self, i: int) -> int:
        import ray

        return ray.get(self.actors[i].pid.remote())

    def busy_workers(self) -> list[int]:
        """Indices of actors that have a model in flight."""
        return [i for i, n in enumerate(self._load) if n > 0]


def _with_threads(config: WorkerConfig, n: int) -> WorkerConfig:
    from dataclasses import replace

    return replace(config, torch_threads=config.torch_threads or n)
