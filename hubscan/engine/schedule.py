"""Run scan specs on their cron expressions: one run at a time per spec, nothing missed twice.

``hubscan schedule SPEC…`` is a small, long-running loop; ``--once`` is the same decision made
once, for people whose cron, systemd timer or Kubernetes CronJob already owns the clock.
What this module guarantees, and why:

- **One run at a time per spec.** A run holds an exclusive ``flock`` on
  ``<state_dir>/<name>.lock`` until it ends. A trigger that finds the lock taken — the previous
  run is still going, here or in another process (a ``--once`` from cron next to a long-running
  scheduler) — is *skipped and logged*, never queued: queued scans pile up behind a slow one,
  and the next trigger picks up everything anyway because scans are incremental.
- **A missed run after downtime runs once on start.** ``<state_dir>/<name>.json`` records the
  cron time of the last run. On start, if one or more cron times passed since, the spec runs
  once (for the latest of them), not once per missed time. A run that was interrupted (SIGTERM,
  crash) is resumed on start; the engine continues where it stopped.
- **Graceful shutdown.** SIGTERM/SIGINT set a stop event: the loop stops sleeping at once, no
  new run starts, and in-flight runs get the same event (``run_scan(stop_event=…)``) so they
  stop cleanly and record the stop. A second signal aborts.
- **Testable without sleeping.** Time comes from an injectable :class:`Clock`
  (:class:`SystemClock` in production, :class:`ManualClock` in tests), so tests move time
  by hand instead of waiting for it.

Cron expressions are evaluated by croniter (5 fields, or 6 with seconds) in the job's IANA
time zone (``[scan] timezone``, default UTC); every time the scheduler stores or compares is
aware UTC. Across daylight-saving changes croniter's rules hold: a time in the skipped spring
hour fires at the first valid time after it, a time in the repeated autumn hour fires in both.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import re
import signal
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Protocol

from ..errors import SpecError
from .cron import (
    UTC,
    due_trigger,
    latest_fire_time,
    next_fire_time,
    validate_cron,
    zone,
)
from .cron import utc as _utc

__all__ = [
    "Clock",
    "SystemClock",
    "ManualClock",
    "Job",
    "RunOutcome",
    "JobState",
    "StateStore",
    "TriggerRecord",
    "Scheduler",
    "latest_fire_time",
    "next_fire_time",
    "zone",
    "due_trigger",
    "default_state_dir",
    "install_signal_handlers",
]

log = logging.getLogger("hubscan.engine.schedule")

RunStatus = Literal["running", "completed", "stopped", "failed"]
FirstRun = Literal["now", "cron"]


# ---------------------------------------------------------------------------------------------
# Clocks
# ---------------------------------------------------------------------------------------------


class Clock(Protocol):
    """Where the scheduler reads the time and waits for it."""

    def now(self) -> datetime:
        """Current time, timezone-aware UTC."""

    def sleep_until(self, when: datetime, stop: threading.Event) -> None:
        """Return at ``when`` or as soon as ``stop`` is set, whichever comes first."""


class SystemClock:
    """The wall clock. Sleeps in slices of at most a minute and re-reads the clock, so a
    suspended laptop or an NTP step does not make the scheduler oversleep a trigger."""

    max_slice_s: float = 60.0

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep_until(self, when: datetime, stop: threading.Event) -> None:
        while not stop.is_set():
            remaining = (when - self.now()).total_seconds()
            if remaining <= 0:
                return
            stop.wait(min(remaining, self.max_slice_s))


class ManualClock:
    """A clock that only moves when told to: tests and simulations drive it with
    :meth:`advance` / :meth:`set` instead of sleeping.

    A thread in :meth:`sleep_until` blocks until the clock reaches its wake time (or ``stop``);
    :meth:`wait_asleep` lets the driving thread wait until the scheduler has handled the
    current time and gone back to sleep.
    """

    def __init__(self, start: datetime) -> None:
        self._now = _utc(start)
        self._cond = threading.Condition()
        self._asleep_until: datetime | None = None

    def now(self) -> datetime:
        with self._cond:
            return self._now

    def set(self, t: datetime) -> None:
        t = _utc(t)
        with self._cond:
            if t < self._now:
                raise ValueError("ManualClock does not go backwards")
            self._now = t
            self._asleep_until = None
            self._cond.notify_all()

    def advance(self, delta: timedelta) -> None:
        self.set(self.now() + delta)

    def sleep_until(self, when: datetime, stop: threading.Event) -> None:
        with self._cond:
            while self._now < when and not stop.is_set():
                self._asleep_until = when
                self._cond.notify_all()
                # stop is a plain Event (it cannot notify this condition): re-check it often.
                self._cond.wait(0.02)
            self._asleep_until = None

    def wait_asleep(self, timeout: float = 30.0) -> datetime:
        """Block until a thread sleeps on this clock; return the time it will wake at."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._asleep_until is not None, timeout):
                raise TimeoutError("nobody went to sleep on the ManualClock")
            assert self._asleep_until is not None
            return self._asleep_until


# ---------------------------------------------------------------------------------------------
# Jobs and their persistent state
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunOutcome:
    """What one run reports back (a scan maps its ``ScanSummary`` onto this)."""

    status: Literal["completed", "stopped", "failed"] = "completed"
    scan_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    """Something to run on a cron expression.

    Attributes:
        name: unique key of the job's state and lock files (a spec's name or file stem).
        cron: cron expression, read in ``tz``.
        tz: IANA time zone of the cron expression (default UTC).
        run: does one run; gets the scheduler's stop event and must return soon after it
            is set. Returns a :class:`RunOutcome` (or anything; ``None`` means completed).
    """

    name: str
    cron: str
    run: Callable[[threading.Event], RunOutcome | None] = field(repr=False, compare=False)
    tz: str = "UTC"

    def __post_init__(self) -> None:
        validate_cron(self.cron)
        zone(self.tz)
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.name):
            raise SpecError(f"job name {self.name!r}: use letters, digits, '.', '_' and '-' only")


@dataclass(frozen=True)
class JobState:
    """The persistent record of a job, ``<state_dir>/<name>.json``.

    ``last_trigger`` is the cron time the last run was *for* (not when it started): missed
    runs are found by comparing it with the cron times that passed since.
    ``armed_at`` is set instead when ``first_run="cron"`` and the job has never run.
    """

    name: str
    cron: str
    last_trigger: datetime | None = None
    last_started: datetime | None = None
    last_finished: datetime | None = None
    last_status: RunStatus | None = None
    last_scan_id: str | None = None
    last_error: str | None = None
    runs: int = 0
    armed_at: datetime | None = None

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, datetime):
                d[k] = v.isoformat()
        return json.dumps(d, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "JobState":
        d = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        for k in ("last_trigger", "last_started", "last_finished", "armed_at"):
            if d.get(k):
                d[k] = datetime.fromisoformat(d[k])
        return cls(**d)


class JobLock:
    """An exclusive, non-blocking ``flock`` held for the duration of one run.

    flock locks belong to an open file description, so two opens of the same file conflict
    in one process as well as across processes; the kernel drops the lock if the holder dies,
    so a crashed run never leaves a stale lock behind.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class StateStore:
    """Job state, locks and an append-only event log in one local directory.

    The state file of a job is written only by the holder of its lock; triggers that are
    skipped leave a line in ``<name>.events.jsonl`` instead (appends of one short line do not
    interleave), so a lock-less writer never races the running one.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)

    def load(self, name: str) -> JobState | None:
        path = self.dir / f"{name}.json"
        try:
            return JobState.from_json(path.read_text())
        except FileNotFoundError:
            return None

    def save(self, state: JobState) -> None:
        path = self.dir / f"{state.name}.json"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(state.to_json())
        os.replace(tmp, path)  # readers see the old file or the new one, never half of one

    def lock(self, name: str) -> JobLock:
        return JobLock(self.dir / f"{name}.lock")

    def append_event(self, name: str, record: dict[str, Any]) -> None:
        line = json.dumps(record, default=str, sort_keys=True) + "\n"
        fd = os.open(self.dir / f"{name}.events.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def events(self, name: str) -> list[dict[str, Any]]:
        path = self.dir / f"{name}.events.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def default_state_dir() -> Path:
    """``$HUBSCAN_STATE_DIR``, else ``$XDG_STATE_HOME/hubscan/schedule`` (``~/.local/state``)."""
    if os.environ.get("HUBSCAN_STATE_DIR"):
        return Path(os.environ["HUBSCAN_STATE_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "hubscan" / "schedule"


# ---------------------------------------------------------------------------------------------
# The scheduler
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TriggerRecord:
    """One decision of the scheduler: a trigger that ran (with its outcome) or was skipped."""

    job: str
    trigger: datetime
    action: Literal["run", "skipped"]
    status: str | None = None  # run: completed | stopped | failed; skipped: why
    scan_id: str | None = None
    started: datetime | None = None
    finished: datetime | None = None
    error: str | None = None


class Scheduler:
    """Runs :class:`Job`s on their cron expressions.

    Args:
        jobs: the jobs; names must be unique.
        state_dir: where state, locks and event logs live (see :class:`StateStore`).
        clock: time source (:class:`SystemClock` by default).
        first_run: ``"now"`` — a job that has never run is due at once (its first,
            backfilling scan starts on start); ``"cron"`` — it waits for its first cron time.

    Example::

        sched = Scheduler([Job("nightly", "0 2 * * *", run)], state_dir="state")
        install_signal_handlers(sched.stop_event)
        sched.run_forever()        # or: sched.run_once() from cron / a CronJob
    """

    def __init__(
        self,
        jobs: Iterable[Job],
        *,
        state_dir: str | os.PathLike[str],
        clock: Clock | None = None,
        first_run: FirstRun = "now",
    ) -> None:
        self.jobs = list(jobs)
        names = [j.name for j in self.jobs]
        if len(set(names)) != len(names):
            raise SpecError(f"job names must be unique: {names}")
        if first_run not in ("now", "cron"):
            raise ValueError("first_run must be 'now' or 'cron'")
        self.store = StateStore(state_dir)
        self.clock: Clock = clock or SystemClock()
        self.first_run = first_run
        self.stop_event = threading.Event()
        self.history: list[TriggerRecord] = []
        self._history_lock = threading.Lock()
        self._threads: dict[str, threading.Thread] = {}
        self._handled: dict[str, datetime | None] = {}

    # -- public API -------------------------------------------------------------------------

    def run_forever(self) -> None:
        """Loop until :meth:`stop`: run what is due, sleep until the next cron time.

        Each run executes in its own thread, so one slow spec never delays another's trigger;
        a trigger of a spec whose previous run still holds the lock is skipped. On stop, the
        loop waits for in-flight runs, which got the same stop event, to finish.
        """
        self._startup()
        log.info("scheduler started: %s", ", ".join(f"{j.name} [{j.cron} {j.tz}]" for j in self.jobs))
        try:
            while not self.stop_event.is_set():
                now = self.clock.now()
                for job in self.jobs:
                    trigger = self._due(job, now)
                    if trigger is not None and not self.stop_event.is_set():
                        self._handled[job.name] = trigger
                        self._launch(job, trigger, background=True)
                wake = min(next_fire_time(j.cron, now, j.tz) for j in self.jobs)
                log.debug("next trigger at %s", wake.isoformat())
                self.clock.sleep_until(wake, self.stop_event)
        finally:
            self.wait_idle()
            log.info("scheduler stopped")

    def run_once(self) -> list[TriggerRecord]:
        """Run every due job once, one after the other, in this thread; then return.

        "Due" is decided exactly as in :meth:`run_forever`'s first iteration (never ran,
        interrupted, or a cron time passed since the last run). For cron/systemd/CronJob use.
        """
        self._startup()
        records: list[TriggerRecord] = []
        now = self.clock.now()
        for job in self.jobs:
            if self.stop_event.is_set():
                break
            trigger = self._due(job, now)
            if trigger is None:
                state = self.store.load(job.name)
                since = state.last_trigger if state else None
                log.info("%s: not due (last run for %s, next at %s)", job.name,
                         since.isoformat() if since else "-", next_fire_time(job.cron, now, job.tz).isoformat())
                continue
            self._handled[job.name] = trigger
            records.append(self._launch(job, trigger, background=False))
        return records

    def stop(self) -> None:
        """Ask the loop and every in-flight run to stop (what SIGTERM does)."""
        self.stop_event.set()

    def wait_idle(self, timeout: float | None = None) -> None:
        """Wait until no run is in flight."""
        for thread in list(self._threads.values()):
            thread.join(timeout)

    def next_due(self, job_name: str) -> datetime:
        """When the job will next trigger, given what has been handled so far."""
        job = self._job(job_name)
        now = self.clock.now()
        if self._due(job, now) is not None:
            return now
        return next_fire_time(job.cron, now, job.tz)

    def records(self, job_name: str | None = None) -> list[TriggerRecord]:
        with self._history_lock:
            return [r for r in self.history if job_name is None or r.job == job_name]

    # -- internals --------------------------------------------------------------------------

    def _job(self, name: str) -> Job:
        for j in self.jobs:
            if j.name == name:
                return j
        raise KeyError(name)

    def _startup(self) -> None:
        """Read each job's state once and decide what it still owes."""
        if self._handled:
            return
        now = self.clock.now()
        for job in self.jobs:
            state = self.store.load(job.name)
            if state is not None and state.last_status == "running" and self._lock_is_free(job):
                # The process that wrote "running" is gone (nobody holds the lock): a crash.
                log.warning("%s: the run for %s was interrupted (crash); resuming it",
                            job.name, state.last_trigger)
            if state is None or (state.last_trigger is None and state.armed_at is None):
                if self.first_run == "cron":
                    self.store.save(JobState(name=job.name, cron=job.cron, armed_at=now))
                    self._handled[job.name] = now
                else:
                    self._handled[job.name] = None
            elif state.last_status in ("running", "stopped"):
                # Interrupted runs are owed again: the engine resumes where they stopped.
                self._handled[job.name] = None
            else:
                self._handled[job.name] = state.last_trigger or state.armed_at

    def _lock_is_free(self, job: Job) -> bool:
        lock = self.store.lock(job.name)
        if lock.acquire():
            lock.release()
            return True
        return False

    def _due(self, job: Job, now: datetime) -> datetime | None:
        since = self._handled.get(job.name)
        if since is None:
            state = self.store.load(job.name)
            if state is not None and state.last_status in ("running", "stopped") and state.last_trigger:
                # Resume an interrupted run, for the latest cron time that has passed.
                latest = latest_fire_time(job.cron, now, job.tz)
                return max(state.last_trigger, latest)
        return due_trigger(job.cron, since, now, job.tz)

    def _launch(self, job: Job, trigger: datetime, *, background: bool) -> TriggerRecord:
        lock = self.store.lock(job.name)
        if not lock.acquire():
            rec = TriggerRecord(job=job.name, trigger=trigger, action="skipped",
                                status="previous run still in progress")
            log.warning("%s: trigger %s skipped: the previous run still holds %s",
                        job.name, trigger.isoformat(), lock.path)
            self._record(rec)
            return rec
        if not background:
            return self._execute(job, trigger, lock)
        thread = threading.Thread(target=self._execute, args=(job, trigger, lock),
                                  name=f"hubscan-schedule-{job.name}", daemon=False)
        self._threads[job.name] = thread
        thread.start()
        return TriggerRecord(job=job.name, trigger=trigger, action="run", status="running")

    def _execute(self, job: Job, trigger: datetime, lock: JobLock) -> TriggerRecord:
        """One run, with the lock held: state "running" → outcome; the lock is released at
        the end whatever happens (an unwritable state dir included)."""
        started = self.clock.now()
        status: str = "failed"
        scan_id = error = None
        try:
            previous = self.store.load(job.name)
            runs = previous.runs if previous else 0
            self.store.save(JobState(name=job.name, cron=job.cron, last_trigger=trigger,
                                     last_started=started, last_status="running", runs=runs,
                                     last_scan_id=previous.last_scan_id if previous else None))
            log.info("%s: run for %s started", job.name, trigger.isoformat())
            try:
                outcome = job.run(self.stop_event) or RunOutcome()
                status, scan_id = outcome.status, outcome.scan_id
            except Exception as exc:  # a failed run is logged and retried at the next trigger
                status, error = "failed", f"{type(exc).__name__}: {exc}"
                log.exception("%s: run for %s failed", job.name, trigger.isoformat())
            self.store.save(JobState(name=job.name, cron=job.cron, last_trigger=trigger,
                                     last_started=started, last_finished=self.clock.now(),
                                     last_status=status, last_scan_id=scan_id, last_error=error,
                                     runs=runs + 1))  # type: ignore[arg-type]
        except OSError as exc:
            status, error = "failed", f"state dir: {type(exc).__name__}: {exc}"
            log.exception("%s: cannot record the run in %s", job.name, self.store.dir)
        finally:
            lock.release()
        rec = TriggerRecord(job=job.name, trigger=trigger, action="run", status=status,
                            scan_id=scan_id, started=started, finished=self.clock.now(),
                            error=error)
        log.info("%s: run for %s %s%s", job.name, trigger.isoformat(), status,
                 f" (scan {scan_id})" if scan_id else "")
        try:
            self._record(rec)
        except OSError:
            log.exception("%s: cannot append to the event log", job.name)
        return rec

    def _record(self, rec: TriggerRecord) -> None:
        with self._history_lock:
            self.history.append(rec)
        self.store.append_event(rec.job, dataclasses.asdict(rec))


# ---------------------------------------------------------------------------------------------
# Signals
# ---------------------------------------------------------------------------------------------


def install_signal_handlers(stop: threading.Event) -> Callable[[], None]:
    """SIGTERM/SIGINT → set ``stop`` (graceful); a second signal restores the default and
    re-raises it (abort). Returns a function that restores the previous handlers.

    Only the main thread may install handlers; elsewhere this is a no-op.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set():
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        log.warning("%s received: stopping after in-flight runs stop (send again to abort)",
                    signal.Signals(signum).name)
        stop.set()

    for sig in previous:
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, h in previous.items():
            signal.signal(sig, h)

    return restore


# ---------------------------------------------------------------------------------------------
# Scan specs as jobs
# ---------------------------------------------------------------------------------------------


def spec_jobs(
    paths: Iterable[str | os.PathLike[str]],
    *,
    executor: Literal["ray", "local"] = "ray",
    address: str | None = None,
    reanalyze: bool = False,
    force: bool = False,
) -> list[Job]:
    """One :class:`Job` per spec file: its ``[scan] schedule`` and an incremental scan run.

    The spec is re-read at every run, so an edited spec (new filters, new analysis options)
    applies from the next run on without restarting the scheduler; its name and schedule are
    fixed at start (they key the state and the timetable).

    Raises:
        SpecError: a spec is invalid, has no ``schedule``, or two specs share a name.
    """
    from .spec import load_spec

    jobs = []
    for path in paths:
        spec = load_spec(path)
        if not spec.schedule:
            raise SpecError(f"{path}: no schedule — add `schedule = \"0 2 * * *\"` to [scan] "
                            f"(or run it once with `hubscan scan {path}`)")
        jobs.append(Job(name=spec.name, cron=spec.schedule, tz=spec.timezone,
                        run=_SpecRun(str(path), executor=executor, address=address,
                                     reanalyze=reanalyze, force=force)))
    return jobs


@dataclass(frozen=True)
class _SpecRun:
    """The body of a spec's job: re-read the spec, run it incrementally, report the outcome."""

    path: str
    executor: str
    address: str | None
    reanalyze: bool
    force: bool

    def __call__(self, stop: threading.Event) -> RunOutcome:
        from .incremental import incremental_run
        from .spec import load_spec

        with _shared_ray(self.address) if self.executor == "ray" else contextlib.nullcontext():
            result = incremental_run(load_spec(self.path), executor=self.executor,
                                     address=self.address, reanalyze=self.reanalyze,
                                     force=self.force, stop_event=stop)
        return RunOutcome(status=result.status, scan_id=result.scan_id, detail=result.counts())


class _SharedRay:
    """One Ray connection for every run of this process, up while any run needs it.

    Runs of different specs overlap in one scheduler process. If each ``run_scan`` started
    its own local Ray, the second would fail to start it and the first, on finishing, would
    shut it down under the second. So the scheduler starts Ray (or connects to
    ``address``) when the first run begins and shuts it down when the last one ends — a
    scheduler asleep between nightly runs holds no Ray; ``run_scan`` finds it initialised
    and reuses it. A Ray initialised by someone else is never shut down here.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._owned = False

    def __call__(self, address: str | None) -> "_SharedRay._Use":
        return _SharedRay._Use(self, address)

    class _Use:
        def __init__(self, shared: "_SharedRay", address: str | None) -> None:
            self.shared, self.address = shared, address

        def __enter__(self) -> None:
            import ray

            s = self.shared
            with s._lock:
                if not ray.is_initialized():
                    ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                             configure_logging=False)
                    s._owned = True
                s._users += 1

        def __exit__(self, *exc: Any) -> None:
            import ray

            s = self.shared
            with s._lock:
                s._users -= 1
                if s._users == 0 and s._owned:
                    ray.shutdown()
                    s._owned = False


_shared_ray = _SharedRay()
