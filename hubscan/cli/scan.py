"""``hubscan scan SPEC``: run one scan spec — plan, fan out on Ray (or locally), write the lake.

Ctrl-C or SIGTERM once: no new model starts, models in flight finish and are written, the
``scans`` row records ``stopped``. A second signal drops the in-flight models whole (they were
never written, so nothing is half there). Rerunning the same command continues: the plan
skips every model the lake already holds.

Exit status: 0 completed (failed *models* are data, in ``failures``), 1 the scan itself failed
(e.g. the lake cannot be written), 2 bad spec or arguments, 130 stopped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import threading
from pathlib import Path
from typing import Optional

import typer

from ._app import app

log = logging.getLogger("hubscan.cli.scan")


@app.command("scan")
def scan_command(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="Scan spec (TOML), e.g. jobs/demo.toml."),
    local: bool = typer.Option(False, "--local", help="Run in this process (threads), without Ray."),
    address: Optional[str] = typer.Option(None, "--address", envvar="RAY_ADDRESS",
                                          help="Ray cluster address (default: start a local Ray)."),
    force: bool = typer.Option(False, "--force", help="Re-analyse models the lake already holds."),
    reanalyze: bool = typer.Option(False, "--reanalyze", help="Also redo models the lake holds under an older hubscan code version."),
    lake: Optional[str] = typer.Option(None, "--lake", help="Override the spec's [scan] lake."),
    max_models: Optional[int] = typer.Option(None, "--max-models", min=1, help="Override the spec's limits.max_models."),
    num_cpus: Optional[int] = typer.Option(None, "--num-cpus", min=1, help="CPUs of the local Ray started here."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Live progress display on stderr."),
    as_json: bool = typer.Option(False, "--json", help="Print the scan summary as JSON on stdout."),
    log_level: str = typer.Option("WARNING", "--log-level", help="DEBUG | INFO | WARNING"),
) -> None:
    """Scan the models a spec selects into its lake (incremental: the lake's models are skipped)."""
    from ..engine.scan import run_scan
    from ..engine.spec import load_spec
    from ..errors import SpecError

    logging.getLogger("hubscan").setLevel(log_level.upper())
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        spec = load_spec(spec_path)
    except SpecError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if lake:
        spec = spec.replace(lake=lake)
    if max_models:
        spec = spec.replace(limits=dataclasses.replace(spec.limits, max_models=max_models))

    stop = threading.Event()
    restore = _install_stop_handlers(stop)
    try:
        summary = run_scan(spec, executor="local" if local else "ray", address=address,
                           force=force, reanalyze=reanalyze, stop_event=stop, progress=progress,
                           num_cpus=num_cpus)
    finally:
        restore()
    if as_json:
        typer.echo(json.dumps({"scan_id": summary.scan_id, "status": summary.status,
                               "lake": summary.lake, **summary.counts(),
                               "errors_by_class": summary.errors_by_class,
                               "error": summary.error, "elapsed_s": summary.elapsed_s}))
    raise typer.Exit({"completed": 0, "failed": 1, "stopped": 130}.get(summary.status, 1))


def _install_stop_handlers(stop: threading.Event):
    """SIGINT/SIGTERM: the first sets ``stop`` (finish in-flight work), the second aborts."""
    signals = [signal.SIGINT, signal.SIGTERM]
    previous = {s: signal.getsignal(s) for s in signals}

    def handler(signum: int, _frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # second signal: drop in-flight models whole
        log.warning("%s: stopping — in-flight models finish, no new ones start "
                    "(signal again to drop them)", signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for s in signals:
            signal.signal(s, handler)

    def restore() -> None:
        if threading.current_thread() is threading.main_thread():
            for s, h in previous.items():
                signal.signal(s, h)

    return restore
