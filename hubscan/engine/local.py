"""The in-process executor: threads in the driver's process, same interface as Ray's.

For small jobs, tests and debugging: no cluster, no serialisation, one stack trace. Each task
gets its own thread (torch and socket reads release the GIL, so a download and an eigen-solve
do overlap). A thread cannot be killed, so a task past its deadline is *abandoned*: reported
as ``ModelTimeout`` at once, its slot freed, and whatever it returns later is dropped.
"""

from __future__ import annotations

import queue
import threading
import time

from .base import ModelTimeout, Outcome, Task, WorkerConfig, run_task

__all__ = ["LocalExecutor"]


class LocalExecutor:
    """Run tasks on threads of this process (``slots`` at once)."""

    def __init__(self, config: WorkerConfig, *, slots: int = 1) -> None:
        self.config = config
        self.slots = max(1, slots)
        self._done: queue.Queue[Outcome] = queue.Queue()
        self._running: dict[int, tuple[Task, float]] = {}  # seq -> (task, deadline)
        self._lock = threading.Lock()

    def start(self) -> None:
        """Set torch threads and import the analysis stack now, on the driver's thread.

        Like a Ray actor's start-up: the import cost (torch, scipy, the fitters) is paid
        once here, not inside the first models' deadlines (a loaded machine could otherwise
        time a healthy model out); worker threads never race on a first import; and an
        installation that cannot import fails the scan at once, before any model runs."""
        from ..analysis import tensors  # noqa: F401 - import cost paid at start, not per model
        from ..esd.powerlaw.fit import warm_up

        warm_up()  # the compiled CPU search: compiled or loaded once, here
        if self.config.options.compare:
            from ..esd import compare  # noqa: F401 - scipy.stats: another second on a cold start
        if self.config.torch_threads:
            import torch

            torch.set_num_threads(self.config.torch_threads)

    def submit(self, task: Task, *, deadline_s: float) -> None:
        with self._lock:
            self._running[task.seq] = (task, time.monotonic() + deadline_s)
        threading.Thread(target=self._run, args=(task,), daemon=True,
                         name=f"hubscan-model-{task.seq}").start()

    def _run(self, task: Task) -> None:
        t0 = time.perf_counter()
        try:
            out = Outcome(task, result=run_task(task, self.config))
        except BaseException as exc:  # noqa: BLE001 - reported, the driver decides
            out = Outcome(task, error=exc)
        out.seconds = time.perf_counter() - t0
        out.worker = "local"
        self._done.put(out)

    def wait(self, timeout: float) -> list[Outcome]:
        outs: list[Outcome] = []
        end = time.monotonic() + max(0.0, timeout)
        while True:
            try:
                out = self._done.get(timeout=max(0.0, min(0.05, end - time.monotonic())))
            except queue.Empty:
                out = None
            while out is not None:
                with self._lock:
                    if self._running.pop(out.task.seq, None) is not None:
                        outs.append(out)  # else: abandoned earlier, drop it
                try:
                    out = self._done.get_nowait()
                except queue.Empty:
                    out = None
            outs.extend(self._expire())
            if outs or time.monotonic() >= end:
                return outs

    def _expire(self) -> list[Outcome]:
        now = time.monotonic()
        with self._lock:
            late = [seq for seq, (_, dl) in self._running.items() if dl <= now]
            tasks = [self._running.pop(seq)[0] for seq in late]
        return [Outcome(t, error=ModelTimeout(f"{t.ref.uri}: no result before its deadline"),
                        worker="local") for t in tasks]

    def inflight(self) -> int:
        with self._lock:
            return len(self._running)

    def abort(self) -> list[Task]:
        with self._lock:
            tasks = [t for t, _ in self._running.values()]
            self._running.clear()
        return tasks

    def close(self) -> None:
        self.abort()
