"""The driver's live display: models done / failed / total, bytes/s, models/s, ETA (rich).

It only reads ``ScanProgress`` snapshots, so the engine does not depend on how (or whether)
progress is shown; ``hubscan scan`` uses it, tests pass ``progress=False``.
"""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                           TimeElapsedColumn)
from rich.text import Text

__all__ = ["ScanDisplay", "human_bytes", "human_duration"]


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"  # pragma: no cover


def human_duration(s: float | None) -> str:
    if s is None:
        return "--:--"
    s = int(s)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"


class _Fields(ProgressColumn):
    """failed count, rates and ETA from the task's fields (our own numbers, not rich's)."""

    def render(self, task: Any) -> Text:
        f = task.fields
        text = Text()
        if f.get("failed"):
            text.append(f"{f['failed']} failed ", style="red")
        text.append(f"{f.get('models_per_s', 0):.2f} models/s {human_bytes(f.get('bytes_per_s', 0))}/s "
                    f"{f.get('inflight', 0)} running ETA {human_duration(f.get('eta'))}",
                    style="cyan")
        return text


class ScanDisplay:
    """A one-line rich progress bar on stderr, fed with ``ScanProgress`` snapshots."""

    def __init__(self, name: str, *, console: Console | None = None) -> None:
        self.console = console or Console(file=sys.stderr)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(bar_width=16), MofNCompleteColumn(),
            _Fields(), TimeElapsedColumn(), console=self.console, transient=False)
        self.task = self.progress.add_task(f"{name}: planning", total=None)
        self.name = name

    def start(self) -> None:
        self.progress.start()

    def update(self, p: Any) -> None:
        desc = {"plan": "planning", "start": "starting workers", "run": "scanning",
                "stopping": "stopping", "done": "done"}[p.phase]
        self.progress.update(
            self.task, description=f"{self.name}: {desc}", total=p.total or None,
            completed=p.done + p.failed, failed=p.failed, models_per_s=p.models_per_s,
            bytes_per_s=p.bytes_per_s, inflight=p.inflight, eta=p.eta_s)

    def stop(self, summary: Any) -> None:
        self.progress.stop()
        s = summary
        self.console.print(
            f"[bold]{s.status}[/]: {s.n_done} analysed ({s.n_partial} partial), "
            f"{s.n_failed} failed, {s.n_open} to retry, {s.n_skipped} already in lake, "
            f"{s.n_reused_files} files reused, {human_bytes(s.bytes_analysed)} analysed "
            f"({human_bytes(s.bytes_fetched)} fetched) in {human_duration(s.elapsed_s)}  "
            f"[dim](scan {s.scan_id})[/]")
        if s.errors_by_class:
            errs = ", ".join(f"{k}: {v}" for k, v in sorted(s.errors_by_class.items()))
            self.console.print(f"  errors by class: {errs}")
        if s.error:
            self.console.print(f"  [red]scan failed: {s.error}[/]")
