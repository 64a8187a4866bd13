"""``hubscan schedule SPEC…``: run scan specs on their cron expressions (see docs/schedule.md).

Long-running by default (a service: systemd unit, container, tmux); ``--once`` makes the same
"what is due?" decision once and exits, for cron, systemd timers and Kubernetes CronJobs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from ._app import app


@app.command("schedule")
def schedule_command(
    specs: list[Path] = typer.Argument(..., help="Scan spec files (TOML) with a `schedule` cron expression in their scan table (read in its `timezone`, default UTC)."),
    once: bool = typer.Option(False, "--once", help="Run every due spec once, then exit (for cron, systemd timers, Kubernetes CronJobs)."),
    state_dir: Optional[Path] = typer.Option(None, "--state-dir", envvar="HUBSCAN_STATE_DIR",
                                             help="Where last-run times and locks live (default: ~/.local/state/hubscan/schedule)."),
    executor: str = typer.Option("ray", "--executor", help="ray (default) or local (in-process, small jobs)."),
    address: Optional[str] = typer.Option(None, "--address", envvar="RAY_ADDRESS", help="Existing Ray cluster to run on."),
    reanalyze: bool = typer.Option(False, "--reanalyze", help="Also re-analyse revisions the lake holds under an older hubscan code version (changed fit options are re-fitted from stored spectra without it)."),
    first_run: str = typer.Option("now", "--first-run", help="now: a spec that never ran runs at start; cron: it waits for its first cron time."),
    log_level: str = typer.Option("INFO", "--log-level", help="DEBUG | INFO | WARNING"),
) -> None:
    """Run scan specs on their cron schedules: one run at a time per spec, each run incremental.

    A trigger that arrives while the spec's previous run is still going is skipped (logged);
    runs missed while the scheduler was down run once on start; SIGTERM/SIGINT stop gracefully.
    """
    from ..engine.schedule import (
        Scheduler,
        default_state_dir,
        install_signal_handlers,
        spec_jobs,
    )
    from ..errors import SpecError

    _configure_logging(log_level)
    if executor not in ("ray", "local"):
        raise typer.BadParameter("--executor must be ray or local")
    if first_run not in ("now", "cron"):
        raise typer.BadParameter("--first-run must be now or cron")
    try:
        jobs = spec_jobs(specs, executor=executor, address=address, reanalyze=reanalyze)
        sched = Scheduler(jobs, state_dir=state_dir or default_state_dir(), first_run=first_run)  # type: ignore[arg-type]
    except SpecError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    restore = install_signal_handlers(sched.stop_event)
    try:
        if once:
            records = sched.run_once()
            failed = [r for r in records if r.status == "failed"]
            for r in records:
                typer.echo(f"{r.job}\t{r.trigger.isoformat()}\t{r.action}\t{r.status or ''}\t{r.scan_id or ''}")
            raise typer.Exit(1 if failed else 0)
        sched.run_forever()
    finally:
        restore()


def _configure_logging(level: str) -> None:
    """Rich log lines on stderr, unless the embedding application configured logging."""
    logger = logging.getLogger("hubscan")
    logger.setLevel(level.upper())
    if not logging.getLogger().handlers and not logger.handlers:
        from rich.console import Console
        from rich.logging import RichHandler

        logger.addHandler(RichHandler(console=Console(stderr=True), show_path=False,
                                      log_time_format="[%Y-%m-%d %H:%M:%S]"))
