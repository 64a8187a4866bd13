"""``run_scan``: plan a spec, fan its models out to an executor, write each result to the lake.

The driver is the only writer. Workers return ``ModelResult``s (rows, never files), and the
driver writes each one as a unit — every table's file atomically, the ``models`` row last —
so a crash at any instant leaves either a whole model or one the next run redoes (its files
have deterministic names: rewriting them replaces, never duplicates). A ``scans`` row is
written when the run starts (``running``) and again when it ends (``completed``, ``stopped``
or ``failed``, with counts and errors by class); the newest row per ``scan_id`` wins.

What the driver loop guarantees:

- **Backpressure**: at most ``executor.slots`` models in flight, and at most
  ``max_inflight_bytes`` of their memory footprints (a model bigger than the budget runs
  alone, so a 70B model and 1,000 tiny ones both fit).
- **Content dedup inside a run**: a model whose not-yet-known file another in-flight model is
  already analysing waits for it, then reuses it — each distinct file is fetched once.
- **Retries**: a model whose worker died or that overran its deadline is resubmitted, with
  back-off, up to ``retry.attempts``; then it becomes a failed model. File-level transient
  errors are retried inside the worker (``hubscan.analysis.model``).
- **Stopping**: ``stop_event`` stops admission; in-flight models finish and are written.
  A ``KeyboardInterrupt`` (the CLI's second Ctrl-C) drops in-flight models whole (the counts
  are then re-read from the lake, in case it cut a just-committed model's count). Either way
  the scans row says ``stopped``, and rerunning the same spec continues (the plan skips what
  the lake holds).
"""

from __future__ import annotations

import collections
import heapq
import json
import logging
import random
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Literal

from ..analysis.model import (
    failed_model,
    file_key,
    hubscan_version,
    is_final,
    model_bytes,
    model_footprint,
    with_reused_layers,
)
from ..errors import LakeError
from ..refs import ModelRef
from ..results import ModelResult
from .base import Executor, ModelTimeout, Outcome, Task, WorkerConfig, WorkerDied
from .plan import Plan, plan_scan
from .spec import ScanSpec

__all__ = ["run_scan", "ScanSummary", "ScanProgress", "make_executor", "new_scan_id"]

log = logging.getLogger("hubscan.engine.scan")

ScanStatus = Literal["running", "completed", "stopped", "failed"]


@dataclass(frozen=True)
class ScanSummary:
    """What a run did. Also written, as a ``scans`` row, to the lake."""

    scan_id: str
    spec_name: str
    status: ScanStatus
    started_at: datetime
    finished_at: datetime | None
    lake: str
    executor: str
    n_listed: int = 0
    n_planned: int = 0
    n_skipped: int = 0  # already in the lake
    n_over_limit: int = 0  # larger than limits.max_bytes_per_model
    n_deferred: int = 0  # beyond limits.max_models (a later run)
    n_ok: int = 0
    n_partial: int = 0
    n_failed: int = 0  # failed for good (models row status = failed)
    n_open: int = 0  # transient failures: failures written, retried by the next run
    n_dropped: int = 0  # in flight at a hard stop; the next run redoes them
    n_retried: int = 0  # engine-level resubmissions (worker died, timeout)
    n_reused_files: int = 0
    bytes_fetched: int = 0  # over the network
    bytes_analysed: int = 0  # weight bytes of the models analysed (local or fetched)
    write_s: float = 0.0  # driver seconds spent writing results to the lake
    errors_by_class: dict[str, int] = field(default_factory=dict)
    error: str | None = None  # why a failed scan failed

    @property
    def n_done(self) -> int:
        return self.n_ok + self.n_partial

    @property
    def elapsed_s(self) -> float:
        end = self.finished_at or datetime.now(timezone.utc)
        return (end - self.started_at).total_seconds()

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if k.startswith("n_")} | {
            "n_done": self.n_done, "bytes_fetched": self.bytes_fetched,
            "bytes_analysed": self.bytes_analysed}


@dataclass(frozen=True)
class ScanProgress:
    """A progress snapshot for displays (``on_event``)."""

    phase: Literal["plan", "start", "run", "stopping", "done"]
    total: int = 0
    done: int = 0
    failed: int = 0
    inflight: int = 0
    bytes_fetched: int = 0  # transferred over the network
    bytes_done: int = 0  # weight bytes of the models finished (read locally or fetched)
    elapsed_s: float = 0.0
    last: str | None = None

    @property
    def models_per_s(self) -> float:
        return (self.done + self.failed) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def bytes_per_s(self) -> float:
        """Weight bytes analysed per second (network or local: the scan's throughput)."""
        return self.bytes_done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        rate = self.models_per_s
        left = self.total - self.done - self.failed
        return left / rate if rate > 0 else None


def new_scan_id(name: str, started: datetime) -> str:
    return f"{name}-{started:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def run_scan(
    spec: ScanSpec,
    *,
    executor: Literal["ray", "local"] | Executor = "ray",
    address: str | None = None,
    force: bool = False,
    stop_event: threading.Event | None = None,
    progress: bool = True,
    reanalyze: bool = False,
    on_event: Callable[[ScanProgress], None] | None = None,
    refs: Iterable[ModelRef] | None = None,
    num_cpus: int | None = None,
    opener: Callable[..., Any] | None = None,
) -> ScanSummary:
    """Run one scan of ``spec`` into ``spec.lake``; never raises for a bad model.

    Args:
        spec: the validated spec (``hubscan.engine.spec.load_spec``).
        executor: ``"ray"`` (actors on a local Ray started here, or ``address``), ``"local"``
            (threads in this process), or an ``Executor`` instance.
        address: Ray cluster address; default ``RAY_ADDRESS``; an initialised Ray is reused.
        force: analyse even what the lake already holds.
        stop_event: set it to stop cleanly (no new model starts; in-flight ones finish).
        progress: show a rich progress display on stderr.
        reanalyze: also redo models the lake holds under an older code version.
        on_event: called with a ``ScanProgress`` after each model (and at phase changes).
        refs: models to scan instead of enumerating the spec's sources.
        num_cpus: CPUs of a local Ray started here.
        opener: how workers open a model's tensors (picklable; default
            ``hubscan.sources.open_model``).

    Returns:
        A ``ScanSummary`` (``status`` completed | stopped | failed); the same numbers are in
        the lake's ``scans`` table.
    """
    from ..lake import Lake

    stop_event = stop_event or threading.Event()
    started = datetime.now(timezone.utc)
    scan_id = new_scan_id(spec.name, started)
    lake = None
    ex_name = executor if isinstance(executor, str) else type(executor).__name__
    summary = ScanSummary(scan_id=scan_id, spec_name=spec.name, status="running",
                          started_at=started, finished_at=None, lake=spec.lake, executor=ex_name)
    sinks = [s for s in (on_event,) if s is not None]
    display = None
    if progress:
        from .progress import ScanDisplay

        display = ScanDisplay(spec.name)
        sinks.append(display.update)

    def emit(p: ScanProgress) -> None:
        for s in sinks:
            s(p)

    ex: Executor | None = None
    try:
        lake = Lake(spec.lake)
        _write_scan_row(lake, spec, summary)  # "running": a run killed with -9 stays visible
        if display:
            display.start()
        # a bad HUBSCAN_HTTP_* variable fails the scan here, not every model in the workers
        from ..net.http import RetryPolicy

        RetryPolicy.from_env()
        emit(ScanProgress("plan"))
        plan = plan_scan(spec, lake, force=force, reanalyze=reanalyze, refs=refs)
        _listing_facts(lake, spec, plan, scan_id)
        summary = replace(summary, n_listed=plan.n_listed, n_planned=len(plan.todo),
                          n_skipped=len(plan.already_done), n_over_limit=len(plan.over_limit),
                          n_deferred=len(plan.deferred))
        _write_scan_row(lake, spec, summary)
        if plan.todo and not stop_event.is_set():
            emit(ScanProgress("start", total=len(plan.todo)))
            config = WorkerConfig(
                options=spec.analysis, scan_id=scan_id, scan_date=started.date().isoformat(),
                allow_bin=spec.limits.allow_bin, prefetch_bytes=spec.resources.prefetch_bytes,
                file_attempts=spec.retry.attempts, backoff_s=spec.retry.backoff_s,
                max_backoff_s=spec.retry.max_backoff_s, opener=opener, deltas=spec.deltas)
            ex = executor if not isinstance(executor, str) else make_executor(
                executor, config, spec, address=address, scan_id=scan_id, num_cpus=num_cpus)
            ex.start()
            driver = _Driver(spec, lake, ex, plan, config, stop_event, emit)
            summary = driver.run(summary)
        else:
            summary = replace(summary, status="stopped" if stop_event.is_set() else "completed")
    except KeyboardInterrupt:  # interrupted while planning or starting workers
        summary = replace(summary, status="stopped")
    except Exception as exc:  # noqa: BLE001 - a scan that cannot go on is recorded, not raised
        summary = replace(summary, status="failed", error=f"{type(exc).__name__}: {exc}")
        log.exception("scan %s failed", scan_id)
    finally:
        if ex is not None:
            ex.close()
        summary = replace(summary, finished_at=datetime.now(timezone.utc))
        try:
            if lake is not None:
                _write_scan_row(lake, spec, summary)
        except Exception:  # noqa: BLE001 - the lake may be what failed
            log.warning("could not record the end of scan %s in %s", scan_id, spec.lake,
                        exc_info=True)
        emit(ScanProgress("done", total=summary.n_planned, done=summary.n_done,
                          failed=summary.n_failed + summary.n_open,
                          bytes_fetched=summary.bytes_fetched, bytes_done=summary.bytes_analysed,
                          elapsed_s=summary.elapsed_s))
        if display:
            display.stop(summary)
    return summary


def make_executor(kind: str, config: WorkerConfig, spec: ScanSpec, *, address: str | None = None,
                  scan_id: str = "hubscan", num_cpus: int | None = None) -> Executor:
    """The executor named by ``kind`` (``ray`` or ``local``), sized from the spec."""
    if kind == "ray":
        from .ray_exec import RayExecutor

        return RayExecutor(config, resources=spec.resources, address=address, num_cpus=num_cpus,
                           name=f"hubscan-{scan_id}")
    if kind == "local":
        from .local import LocalExecutor

        workers = spec.resources.workers or 1
        return LocalExecutor(config, slots=workers * spec.resources.models_per_worker)
    raise ValueError(f"executor must be 'ray' or 'local', not {kind!r}")


# --------------------------------------------------------------------------------------------
# The driver loop
# --------------------------------------------------------------------------------------------


class _Driver:
    """Admission (slots, bytes, dedup claims), outcomes (retry or write), counters."""

    def __init__(self, spec: ScanSpec, lake: Any, ex: Executor, plan: Plan,
                 config: WorkerConfig, stop: threading.Event,
                 emit: Callable[[ScanProgress], None]) -> None:
        self.spec, self.lake, self.ex, self.config = spec, lake, ex, config
        self.stop, self.emit = stop, emit
        self.version = spec.analysis.analysis_version
        window = spec.resources.prefetch_bytes + 2 * 2**30  # read-ahead + the largest tensors
        self.pending: collections.deque[Task] = collections.deque(
            Task(seq=i, ref=r, footprint=model_footprint(r, window=window),
                 bases=plan.bases.get((r.source, r.repo_id, r.revision), ()))
            for i, r in enumerate(plan.todo))
        self.total = len(plan.todo)
        self.delayed: list[tuple[float, int, Task]] = []  # (ready_at, seq, task) retries
        self.known: set[str] = set(plan.known_files)
        self.claimed: dict[str, int] = {}  # file hash -> seq analysing it
        self.waiting: dict[str, list[Task]] = collections.defaultdict(list)
        self.inflight: dict[int, Task] = {}
        self.inflight_bytes = 0
        self.c = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.t0 = time.monotonic()
        self.last: str | None = None
        self.write_s = 0.0

    # -- main loop ------------------------------------------------------------------------

    def run(self, summary: ScanSummary) -> ScanSummary:
        status: ScanStatus = "completed"
        last_emit = 0.0
        try:
            while True:
                if not self.stop.is_set():
                    self._admit()
                if not self.inflight and (self.stop.is_set() or not self._has_work()):
                    break
                for out in self.ex.wait(timeout=0.2):
                    self._handle(out)
                now = time.monotonic()
                if now - last_emit > 0.5:
                    self.emit(self._progress())
                    last_emit = now
            if self.stop.is_set() and (self._has_work() or self.c["dropped"]):
                status = "stopped"
        except KeyboardInterrupt:
            self.c["dropped"] += len(self.ex.abort())
            status = "stopped"
            self._recount()
        return replace(
            summary, status=status, n_ok=self.c["ok"], n_partial=self.c["partial"],
            n_failed=self.c["failed"], n_open=self.c["open"], n_dropped=self.c["dropped"],
            n_retried=self.c["retried"], n_reused_files=self.c["reused_files"],
            bytes_fetched=self.c["bytes_fetched"], bytes_analysed=self.c["bytes_done"],
            write_s=self.write_s,
            errors_by_class=dict(self.errors))

    def _recount(self) -> None:
        """After an interrupt, take the settled counts from the lake: an interrupt landing
        between a model's commit (its models row, written last) and the counter would
        otherwise leave a model in the lake that its scans row does not count."""
        try:
            rows = self.lake.query(
                "SELECT status, count(*) AS n FROM models "
                f"WHERE scan_id = '{self.config.scan_id}' GROUP BY status").to_pylist()
        except Exception:  # noqa: BLE001 - best effort: the counters stand
            log.warning("could not recount scan %s from the lake", self.config.scan_id, exc_info=True)
            return
        for r in rows:
            if r["status"] in ("ok", "partial", "failed"):
                self.c[r["status"]] = max(self.c[r["status"]], int(r["n"]))

    def _has_work(self) -> bool:
        return bool(self.pending or self.delayed or any(self.waiting.values()))

    def _progress(self, phase: str = "run") -> ScanProgress:
        return ScanProgress(
            "stopping" if self.stop.is_set() else phase, total=self.total,
            done=self.c["ok"] + self.c["partial"], failed=self.c["failed"] + self.c["open"],
            inflight=len(self.inflight), bytes_fetched=self.c["bytes_fetched"],
            bytes_done=self.c["bytes_done"], elapsed_s=time.monotonic() - self.t0, last=self.last)

    # -- admission ------------------------------------------------------------------------

    def _next(self) -> Task | None:
        if self.delayed and self.delayed[0][0] <= time.monotonic():
            return heapq.heappop(self.delayed)[2]
        return self.pending.popleft() if self.pending else None

    def _admit(self) -> None:
        budget = self.spec.resources.max_inflight_bytes
        while self.ex.inflight() < self.ex.slots:
            task = self._next()
            if task is None:
                return
            hashes = {file_key(task.ref, f) for f in task.ref.files}
            unknown = hashes - self.known
            busy = [h for h in unknown if h in self.claimed]
            if busy:  # another in-flight model is analysing this file: wait, then reuse it
                self.waiting[busy[0]].append(task)
                continue
            if self.inflight and self.inflight_bytes + task.footprint > budget:
                self.pending.appendleft(task)
                return
            for h in unknown:
                self.claimed[h] = task.seq
            task = replace(task, known_files=frozenset(hashes & self.known))
            self.inflight[task.seq] = task
            self.inflight_bytes += task.footprint
            self.ex.submit(task, deadline_s=self.spec.retry.model_deadline_s(model_bytes(task.ref)))

    def _release(self, task: Task) -> None:
        self.inflight.pop(task.seq, None)
        self.inflight_bytes -= task.footprint
        freed = [h for h, seq in self.claimed.items() if seq == task.seq]
        for h in freed:
            del self.claimed[h]
            # models waiting on it go first: their file is now known (or free to fetch)
            self.pending.extendleft(reversed(self.waiting.pop(h, [])))

    # -- outcomes -------------------------------------------------------------------------

    def _handle(self, out: Outcome) -> None:
        task = out.task
        self.last = task.ref.uri
        if out.error is not None:
            if task.attempt < self.spec.retry.attempts and not self.stop.is_set():
                self._release(task)
                self.c["retried"] += 1
                delay = self.spec.retry.backoff(task.attempt, jitter=random.random() * 0.5)
                retry = replace(task, attempt=task.attempt + 1)
                heapq.heappush(self.delayed, (time.monotonic() + delay, retry.seq, retry))
                log.warning("retrying %s (attempt %d): %s", task.ref.uri, retry.attempt, out.error)
                return
            stage = "timeout" if isinstance(out.error, ModelTimeout) else (
                "worker" if isinstance(out.error, WorkerDied) else "analyze")
            result = failed_model(task.ref, self.spec.analysis, out.error, stage=stage,
                                  attempt=task.attempt, scan_id=self.config.scan_id,
                                  scan_date=self.config.scan_date)
        else:
            result = out.result
        t0 = time.perf_counter()
        try:
            self._write(result)
        finally:
            self._release(task)
            self.write_s += time.perf_counter() - t0
        self.emit(self._progress())

    def _write(self, result: ModelResult) -> None:
        final = is_final(result)
        reused = [r["file_sha256"] for r in result.model_files if r.get("reused")]
        if final and reused:
            result = with_reused_layers(result, self._layer_rows(reused))
        _write_result(self.lake, result, with_model=final)
        for r in result.model_files:
            if not r.get("reused"):
                self.known.add(r["file_sha256"])
        status = result.model.get("status")
        self.c["open" if not final else status] += 1
        self.c["reused_files"] += len(reused)
        self.c["bytes_fetched"] += int(result.model.get("bytes_fetched") or 0)
        self.c["bytes_done"] += int(result.model.get("bytes") or 0)
        for f in result.failures:
            self.errors[f["error_class"]] += 1

    def _layer_rows(self, hashes: list[str]) -> list[dict[str, Any]]:
        """The lake's layer rows of reused files (for the model's summary columns)."""
        return self.lake.file_layers(hashes, self.version).to_pylist()


# --------------------------------------------------------------------------------------------
# Lake writes
# --------------------------------------------------------------------------------------------

_WRITE_ATTEMPTS = 3


def _write_result(lake: Any, result: ModelResult, *, with_model: bool) -> None:
    """Write one model's rows, retrying a failing store briefly; the models row goes last.

    ``with_model=False`` writes only the failures of an *open* model (see
    ``hubscan.analysis.model.is_final``): without its models row nothing else of it would be
    visible or reused, and the next run redoes it.
    """
    for attempt in range(1, _WRITE_ATTEMPTS + 1):
        try:
            if with_model:
                lake.write(result)
            else:  # an open model: its failures only (its other rows would not be reused)
                lake.write_table("failures", result.failures,
                                 partition={"source": result.source, "scan_date": result.scan_date},
                                 unit_key=f"{result.model_key}|open|{result.model.get('scan_id')}")
            return
        except (OSError, LakeError):
            if attempt == _WRITE_ATTEMPTS:
                raise
            time.sleep(0.5 * attempt)


def _listing_facts(lake: Any, spec: ScanSpec, plan: Plan, scan_id: str) -> None:
    """What a run records without analysing anything: the spec's evals CSVs, and the lineage
    and reported metrics of listed models the lake already holds (``engine.lineage``)."""
    from .lineage import record_links

    if spec.evals_csv:
        from ..lake.evals_csv import import_evals_csv

        for path in spec.evals_csv:
            try:
                done = import_evals_csv(lake, path, scan_id=scan_id)
            except LakeError as exc:  # a missing or unreadable CSV: say so, scan anyway
                log.error("evals CSV not imported: %s", exc)
                continue
            for line, why in done.skipped:
                log.warning("%s line %d skipped: %s", path, line, why)
    if plan.already_done:
        record_links(lake, plan.already_done, scan_id=scan_id)


def _write_scan_row(lake: Any, spec: ScanSpec, s: ScanSummary) -> None:
    row = {
        "scan_id": s.scan_id, "spec_name": s.spec_name, "spec_json": spec.to_json(),
        "started_at": s.started_at, "finished_at": s.finished_at, "status": s.status,
        "n_planned": s.n_planned, "n_skipped": s.n_skipped, "n_done": s.n_done,
        "n_failed": s.n_failed + s.n_open, "n_reused_files": s.n_reused_files,
        "bytes_fetched": s.bytes_fetched,
        "errors_json": json.dumps({**s.errors_by_class, **({"_scan": s.error} if s.error else {})},
                                  sort_keys=True),
        "hubscan_version": hubscan_version(), "written_at": datetime.now(timezone.utc),
    }
    lake.write_table("scans", [row], partition={"scan_date": s.started_at.date().isoformat()},
                     unit_key=f"scans:{s.scan_id}")
