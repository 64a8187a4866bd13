"""Read tensors ahead of the eigen-solve, in a thread, bounded by bytes.

A streaming reader fetches a tensor's bytes when its iterator reaches it, so iterating ahead
downloads ahead: the next tensors arrive (network, GIL released) while this one is solved
(torch, GIL released). Kept apart from ``analysis.model`` because it is plain concurrency
plumbing with its own tests, and the engine's workers and the notebook path can share it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator

from ..refs import TensorRef

__all__ = ["readahead"]

_END = object()


def readahead(tensors: Iterable[TensorRef], *, max_bytes: int) -> Iterator[TensorRef]:
    """Iterate ``tensors`` in a background thread, up to ``max_bytes`` ahead of the consumer.

    A streaming reader fetches a tensor's bytes when the iterator reaches it (``load()`` then
    only wraps them), so iterating ahead downloads ahead: the next tensors arrive (network,
    GIL released) while this one is eigen-solved (torch, GIL released). Order is kept, and
    an error surfaces at the position it happened — the ``IntegrityError`` at the end of a
    file still comes after that file's tensors. Memory: ``max_bytes`` plus one tensor.
    """
    q: queue.Queue = queue.Queue()
    budget = threading.Condition()
    state = {"held": 0, "stop": False}

    def produce() -> None:
        it = iter(tensors)
        try:
            for t in it:
                n = int(t.nbytes or 0)
                with budget:
                    while state["held"] > 0 and state["held"] + n > max_bytes and not state["stop"]:
                        budget.wait(0.5)
                    if state["stop"]:
                        return
                    state["held"] += n
                q.put((t, n))
            q.put((_END, 0))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer, in order
            q.put((exc, 0))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="hubscan-readahead", daemon=True)
    thread.start()
    try:
        while True:
            item, n = q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            with budget:
                state["held"] -= n
                budget.notify_all()
            yield item
    finally:
        with budget:
            state["stop"] = True
            budget.notify_all()
