"""The scheduler's decisions, driven by a ManualClock (no sleeping): cron arithmetic, one run at
a time per spec, missed runs after downtime, --once, graceful stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

import pytest

from hubscan.engine.schedule import (
    Job,
    JobLock,
    JobState,
    ManualClock,
    RunOutcome,
    Scheduler,
    StateStore,
    due_trigger,
    install_signal_handlers,
    latest_fire_time,
    next_fire_time,
)
from hubscan.errors import SpecError

UTC = timezone.utc
NIGHTLY = "0 2 * * *"


def t(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, 1, day, hour, minute, tzinfo=UTC)


class Recorder:
    """A job body that records each run; optionally blocks until released (a slow run)."""

    def __init__(self, *, block: bool = False, fail_on: set[int] = frozenset()) -> None:
        self.calls: list[datetime] = []
        self.clock: ManualClock | None = None
        self.release = threading.Event()
        self.started = threading.Event()
        self.block = block
        self.fail_on = fail_on
        self.saw_stop: list[bool] = []

    def __call__(self, stop: threading.Event) -> RunOutcome:
        self.calls.append(self.clock.now() if self.clock else datetime.now(UTC))
        self.started.set()
        n = len(self.calls)
        if self.block:
            while not (self.release.is_set() or stop.is_set()):
                self.release.wait(0.01)
            self.saw_stop.append(stop.is_set())
            if stop.is_set():
                return RunOutcome(status="stopped", scan_id=f"scan-{n}")
        if n in self.fail_on:
            raise RuntimeError(f"boom {n}")
        return RunOutcome(status="completed", scan_id=f"scan-{n}")


def start_loop(sched: Scheduler) -> threading.Thread:
    th = threading.Thread(target=sched.run_forever, daemon=True)
    th.start()
    return th


# -- cron arithmetic -----------------------------------------------------------------------


def test_fire_times_are_inclusive_and_strict_where_they_should_be():
    assert latest_fire_time(NIGHTLY, t(5, 2)) == t(5, 2)          # exactly on a cron time
    assert latest_fire_time(NIGHTLY, t(5, 1, 59)) == t(4, 2)
    assert next_fire_time(NIGHTLY, t(5, 2)) == t(6, 2)            # strictly after
    assert next_fire_time("*/15 * * * *", t(5, 2, 7)) == t(5, 2, 15)


def test_due_trigger_collapses_missed_runs_into_the_latest():
    assert due_trigger(NIGHTLY, None, t(5, 10)) == t(5, 10)        # never ran: due now
    assert due_trigger(NIGHTLY, t(5, 2), t(5, 10)) is None          # ran for today
    assert due_trigger(NIGHTLY, t(1, 2), t(5, 10)) == t(5, 2)       # 4 missed → 1 run, latest
    with pytest.raises(ValueError):
        due_trigger(NIGHTLY, None, datetime(2026, 1, 5))             # naive datetimes refused


def test_bad_cron_and_bad_names_are_spec_errors():
    with pytest.raises(SpecError, match="cron"):
        Job("x", "every night", lambda stop: None)
    with pytest.raises(SpecError, match="name"):
        Job("../etc", NIGHTLY, lambda stop: None)
    with pytest.raises(SpecError, match="unique"):
        Scheduler([Job("a", NIGHTLY, print), Job("a", NIGHTLY, print)], state_dir="/tmp/unused-x")


def test_cron_in_a_time_zone_follows_its_daylight_saving():
    """02:00 in Berlin is 01:00 UTC in winter and 00:00 UTC in summer; the spring change
    (2026-03-29, 02:00 → 03:00) moves a 02:30 job to 03:00 local, as croniter defines it."""
    berlin = "Europe/Berlin"
    winter = datetime(2026, 1, 5, 12, tzinfo=UTC)
    assert next_fire_time(NIGHTLY, winter, berlin) == datetime(2026, 1, 6, 1, tzinfo=UTC)
    assert latest_fire_time(NIGHTLY, winter, berlin) == datetime(2026, 1, 5, 1, tzinfo=UTC)
    summer = datetime(2026, 7, 5, 12, tzinfo=UTC)
    assert next_fire_time(NIGHTLY, summer, berlin) == datetime(2026, 7, 6, 0, tzinfo=UTC)
    assert due_trigger(NIGHTLY, datetime(2026, 7, 1, tzinfo=UTC), summer, berlin) == \
        datetime(2026, 7, 5, 0, tzinfo=UTC)
    spring = datetime(2026, 3, 28, 12, tzinfo=UTC)
    assert next_fire_time("30 2 * * *", spring, berlin) == datetime(2026, 3, 29, 1, tzinfo=UTC)
    assert next_fire_time(NIGHTLY, winter) == next_fire_time(NIGHTLY, winter, "UTC") == t(6, 2)
    with pytest.raises(SpecError, match="time zone"):
        Job("x", NIGHTLY, print, tz="Mars/Olympus")


def test_scheduler_fires_on_local_cron_times(tmp_path):
    """A job at 02:00 New York time runs at 07:00 UTC (EST) on the scheduler's UTC clock."""
    clock = ManualClock(t(1, 12))
    rec = Recorder()
    rec.clock = clock
    sched = Scheduler([Job("ny", NIGHTLY, rec, tz="America/New_York")], state_dir=tmp_path, clock=clock)
    th = start_loop(sched)
    assert clock.wait_asleep() == t(2, 7)
    sched.wait_idle()
    clock.set(t(2, 7))
    assert clock.wait_asleep() == t(3, 7)
    sched.wait_idle()
    sched.stop()
    th.join(60)
    assert rec.calls == [t(1, 12), t(2, 7)]


def test_state_roundtrips_through_json(tmp_path):
    store = StateStore(tmp_path)
    st = JobState(name="j", cron=NIGHTLY, last_trigger=t(3, 2), last_started=t(3, 2, 1),
                  last_finished=t(3, 3), last_status="completed", last_scan_id="s", runs=4)
    store.save(st)
    assert store.load("j") == st
    assert store.load("other") is None
    assert not list(tmp_path.glob("*.tmp"))


def test_lock_is_exclusive_within_and_across_processes(tmp_path):
    a, b = JobLock(tmp_path / "j.lock"), JobLock(tmp_path / "j.lock")
    assert a.acquire()
    assert not b.acquire()                       # same process, another open: refused
    code = ("import fcntl,os,sys; fd=os.open(sys.argv[1], os.O_RDWR);\n"
            "try: fcntl.flock(fd, fcntl.LOCK_EX|fcntl.LOCK_NB); print('got')\n"
            "except BlockingIOError: print('busy')")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "j.lock")],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "busy"                         # another process: refused
    a.release()
    assert b.acquire()
    b.release()


# -- the loop on a manual clock ------------------------------------------------------------


def test_three_triggers_three_runs_on_the_cron_times(tmp_path):
    clock = ManualClock(t(1, 12))
    rec = Recorder()
    rec.clock = clock
    sched = Scheduler([Job("nightly", NIGHTLY, rec)], state_dir=tmp_path, clock=clock)
    th = start_loop(sched)
    assert clock.wait_asleep() == t(2, 2)        # first start: ran at once, sleeps to 02:00
    sched.wait_idle()
    for day in (2, 3):
        clock.set(t(day, 2))
        assert clock.wait_asleep() == t(day + 1, 2)
        sched.wait_idle()
    clock.set(t(3, 23))                          # no cron time passed: nothing runs
    assert clock.wait_asleep() == t(4, 2)
    sched.stop()
    th.join(60)
    assert not th.is_alive()
    assert rec.calls == [t(1, 12), t(2, 2), t(3, 2)]
    runs = sched.records("nightly")
    assert [r.trigger for r in runs] == [t(1, 12), t(2, 2), t(3, 2)]
    assert [r.status for r in runs] == ["completed"] * 3
    state = StateStore(tmp_path).load("nightly")
    assert (state.last_trigger, state.runs, state.last_status, state.last_scan_id) == (
        t(3, 2), 3, "completed", "scan-3")


def test_overlapping_trigger_is_skipped_and_logged(tmp_path, caplog):
    clock = ManualClock(t(1, 1))
    slow = Recorder(block=True)
    slow.clock = clock
    sched = Scheduler([Job("slow", "0 * * * *", slow)], state_dir=tmp_path, clock=clock)
    th = start_loop(sched)
    assert slow.started.wait(10)
    clock.wait_asleep()
    with caplog.at_level("WARNING", logger="hubscan.engine.schedule"):
        clock.set(t(1, 2))                       # the hourly trigger fires while run 1 holds the lock
        clock.wait_asleep()
        clock.set(t(1, 3))
        clock.wait_asleep()
    assert len(slow.calls) == 1
    skipped = [r for r in sched.records("slow") if r.action == "skipped"]
    assert [r.trigger for r in skipped] == [t(1, 2), t(1, 3)]
    assert sum("skipped" in m for m in caplog.messages) == 2
    slow.release.set()
    sched.wait_idle()
    clock.set(t(1, 4))                           # lock released: the next trigger runs again
    clock.wait_asleep()
    sched.wait_idle()
    sched.stop()
    th.join(60)
    assert slow.calls == [t(1, 1), t(1, 4)]
    events = StateStore(tmp_path).events("slow")
    assert [(e["action"], e["trigger"][:16]) for e in events] == [
        ("skipped", "2026-01-01 02:00"), ("skipped", "2026-01-01 03:00"),
        ("run", "2026-01-01 01:00"), ("run", "2026-01-01 04:00")]


def test_a_run_held_by_another_process_is_skipped(tmp_path):
    """A long-running scheduler and a `--once` from cron never run the same spec together."""
    other = JobLock(tmp_path / "j.lock")
    assert other.acquire()                      # stands for another process's run
    rec = Recorder()
    sched = Scheduler([Job("j", NIGHTLY, rec)], state_dir=tmp_path, clock=ManualClock(t(1)))
    records = sched.run_once()
    assert [r.action for r in records] == ["skipped"] and rec.calls == []
    other.release()


def test_missed_runs_after_downtime_run_once_on_start(tmp_path):
    store = StateStore(tmp_path)
    store.save(JobState(name="nightly", cron=NIGHTLY, last_trigger=t(1, 2), last_status="completed",
                        runs=1))
    clock = ManualClock(t(5, 10))                # down from Jan 1 to Jan 5: 4 nightly runs missed
    rec = Recorder()
    rec.clock = clock
    sched = Scheduler([Job("nightly", NIGHTLY, rec)], state_dir=tmp_path, clock=clock)
    th = start_loop(sched)
    assert clock.wait_asleep() == t(6, 2)
    sched.wait_idle()
    assert rec.calls == [t(5, 10)]               # one catch-up run, at start
    assert [r.trigger for r in sched.records()] == [t(5, 2)]   # for the latest missed time
    clock.set(t(5, 20))
    assert clock.wait_asleep() == t(6, 2)        # and not again until the next cron time
    sched.stop()
    th.join(60)
    assert len(rec.calls) == 1
    assert store.load("nightly").runs == 2


def test_first_run_cron_waits_for_the_first_cron_time(tmp_path):
    clock = ManualClock(t(1, 12))
    rec = Recorder()
    rec.clock = clock
    sched = Scheduler([Job("n", NIGHTLY, rec)], state_dir=tmp_path, clock=clock, first_run="cron")
    assert sched.run_once() == [] and rec.calls == []
    clock.set(t(2, 2, 30))
    again = Scheduler([Job("n", NIGHTLY, rec)], state_dir=tmp_path, clock=clock, first_run="cron")
    assert [(r.trigger, r.action) for r in again.run_once()] == [(t(2, 2), "run")]  # armed state kept


def test_run_once_runs_only_due_jobs_and_a_failure_is_retried_next_trigger(tmp_path):
    clock = ManualClock(t(1, 12))
    a, b = Recorder(fail_on={1}), Recorder()
    jobs = [Job("a", NIGHTLY, a), Job("b", "0 0 * * 0", b)]    # b: weekly, Sundays 00:00
    assert [(r.job, r.status) for r in Scheduler(jobs, state_dir=tmp_path, clock=clock).run_once()] \
        == [("a", "failed"), ("b", "completed")]
    assert "boom 1" in StateStore(tmp_path).load("a").last_error
    clock.set(t(1, 18))                          # nothing passed: a failed run is not hot-looped
    assert Scheduler(jobs, state_dir=tmp_path, clock=clock).run_once() == []
    clock.set(t(2, 3))                           # Friday 2 Jan 02:00 passed: only a is due
    assert [(r.job, r.status) for r in Scheduler(jobs, state_dir=tmp_path, clock=clock).run_once()] \
        == [("a", "completed")]
    assert len(a.calls) == 2 and len(b.calls) == 1


def test_stop_reaches_the_running_job_and_the_stopped_run_resumes_on_start(tmp_path):
    clock = ManualClock(t(1, 12))
    rec = Recorder(block=True)
    sched = Scheduler([Job("n", NIGHTLY, rec)], state_dir=tmp_path, clock=clock)
    th = start_loop(sched)
    assert rec.started.wait(10)
    sched.stop()                                 # what the SIGTERM handler does
    th.join(60)
    assert not th.is_alive() and rec.saw_stop == [True]
    state = StateStore(tmp_path).load("n")
    assert state.last_status == "stopped"
    lock = JobLock(tmp_path / "n.lock")
    assert lock.acquire()                        # the stopped run released its lock
    lock.release()
    rec2 = Recorder()
    again = Scheduler([Job("n", NIGHTLY, rec2)], state_dir=tmp_path, clock=clock)
    assert [(r.trigger, r.action, r.status) for r in again.run_once()] == [
        (t(1, 12), "run", "completed")]          # the interrupted run resumes
    assert len(rec2.calls) == 1


def test_a_crashed_run_is_resumed_on_start(tmp_path):
    StateStore(tmp_path).save(JobState(name="n", cron=NIGHTLY, last_trigger=t(3, 2),
                                       last_started=t(3, 2), last_status="running", runs=2))
    clock = ManualClock(t(3, 9))
    rec = Recorder()
    recs = Scheduler([Job("n", NIGHTLY, rec)], state_dir=tmp_path, clock=clock).run_once()
    assert [(r.trigger, r.status) for r in recs] == [(t(3, 2), "completed")]


def test_signal_handler_sets_the_stop_event_and_restores():
    stop = threading.Event()
    before = signal.getsignal(signal.SIGTERM)
    restore = install_signal_handlers(stop)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 60  # a bound, not a wait: the loop ends once it is set
        while not stop.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stop.is_set()
    finally:
        restore()
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_spec_without_schedule_is_refused_by_api_and_cli(tmp_path):
    from typer.testing import CliRunner

    from hubscan.cli import app
    from hubscan.engine.schedule import spec_jobs

    path = tmp_path / "x.toml"
    path.write_text('[scan]\nname = "x"\nlake = "l"\n[[sources]]\nkind = "local"\npath = "."\n')
    with pytest.raises(SpecError, match="no schedule"):
        spec_jobs([path])
    result = CliRunner().invoke(app, ["schedule", str(path), "--once", "--state-dir", str(tmp_path / "s")])
    assert result.exit_code == 2 and "no schedule" in result.output
    path.write_text(path.read_text().replace('lake = "l"', 'lake = "l"\nschedule = "0 2 * * *"'))
    [job] = spec_jobs([path], executor="local")
    assert (job.name, job.cron, job.tz) == ("x", "0 2 * * *", "UTC")
    path.write_text(path.read_text().replace('schedule = "0 2 * * *"', 'schedule = "0 2 * * *"\ntimezone = "Asia/Tokyo"'))
    [job] = spec_jobs([path], executor="local")
    assert job.tz == "Asia/Tokyo"
