"""What the scan driver and its executors exchange: tasks in, outcomes out.

An executor runs ``Task``s — a model *descriptor* (``ModelRef``) plus the few content hashes
it may reuse — and reports an ``Outcome`` per task: a ``ModelResult``, or the error that kept
the task from producing one (the worker died, the model overran its deadline). Everything
a worker needs besides the task is fixed for the whole scan and shipped once, as a
``WorkerConfig``, when the worker starts. No tensor ever crosses this boundary: workers
fetch their own bytes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from ..options import AnalysisOptions, DeltaOptions
from ..refs import ModelRef
from ..results import ModelResult

__all__ = ["WorkerConfig", "Task", "Outcome", "Executor", "run_task", "WorkerDied", "ModelTimeout"]


class WorkerDied(RuntimeError):
    """The process running a model died (killed, out of memory, node lost)."""


class ModelTimeout(TimeoutError):
    """A model ran past its deadline (a stuck download); its worker was restarted."""


@dataclass(frozen=True, kw_only=True)
class WorkerConfig:
    """Per-scan settings every worker needs: fixed at start, shipped once per worker."""

    options: AnalysisOptions
    scan_id: str | None = None
    scan_date: str | None = None
    allow_bin: bool = False
    prefetch_bytes: int = 0
    file_attempts: int = 3
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    torch_threads: int | None = None
    #: ``open_model``-compatible callable (picklable, for Ray); None = ``hubscan.sources.open_model``
    opener: Callable[..., Any] | None = None
    #: fine-tune deltas of models whose ``Task.bases`` name a base (the spec's ``[deltas]``)
    deltas: DeltaOptions = DeltaOptions()


@dataclass(frozen=True)
class Task:
    """One model to analyse. ``attempt`` counts the engine's retries of the whole model."""

    seq: int
    ref: ModelRef
    known_files: frozenset[str] = frozenset()
    attempt: int = 1
    footprint: int = 0  # bytes this model may hold in memory (for the in-flight budget)
    bases: tuple[ModelRef, ...] = ()  # base models to measure it against (fine-tune deltas)


@dataclass
class Outcome:
    """What became of a task: a result, or the error that prevented one."""

    task: Task
    result: ModelResult | None = None
    error: BaseException | None = None
    worker: str | None = None
    seconds: float = 0.0
    finished_at: float = field(default_factory=time.time)


class Executor(Protocol):
    """Runs tasks concurrently; the driver owns ordering, budgets, retries and writing."""

    #: how many tasks may be in flight at once
    slots: int

    def start(self) -> None:
        """Acquire workers (may take seconds: processes, CUDA)."""

    def submit(self, task: Task, *, deadline_s: float) -> None:
        """Start a task now; ``deadline_s`` after which it is abandoned as stuck."""

    def wait(self, timeout: float) -> list[Outcome]:
        """Outcomes that finished (or timed out) within ``timeout`` seconds; maybe none."""

    def inflight(self) -> int:
        """Tasks submitted and not yet reported."""

    def abort(self) -> list[Task]:
        """Drop every in-flight task (hard stop); returns them. Their results are never reported."""

    def close(self) -> None:
        """Release workers. Never shuts down a Ray that the executor did not start."""


def run_task(task: Task, config: WorkerConfig) -> ModelResult:
    """The body every worker runs for a task (local thread or Ray actor)."""
    from ..analysis.model import FileRetry, analyze_model
    from ..sources.base import FetchStats

    return analyze_model(
        task.ref,
        config.options,
        opener=config.opener,
        known_files=task.known_files,
        scan_id=config.scan_id,
        scan_date=config.scan_date,
        stats=FetchStats(),
        retry=FileRetry(attempts=config.file_attempts, backoff_s=config.backoff_s,
                        max_backoff_s=config.max_backoff_s),
        attempt=task.attempt,
        allow_bin=config.allow_bin,
        prefetch_bytes=config.prefetch_bytes,
        bases=task.bases,
        deltas=config.deltas,
    )
