"""Calls to worker pools and their completions: every completion comes back on one queue the loop waits on.

A call's done-callback puts its completion on the queue. If that callback fails (out of memory), the
completion never arrives: the loop looks twice a second for calls done a while ago whose completion it has
not taken, and takes them itself. Traced calls run wrapped in ``timed``, which sends the worker's pid and
its own start and end back with the result.
"""

from __future__ import annotations

import logging
import os
import queue
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

from ...runtime.pool import WorkerPool

__all__ = ["Calls", "Done", "Label", "TimedFuture", "timed"]

LOST_CHECK_S = 0.5  # how often, and how long after it is done, a call's completion counts as lost
log = logging.getLogger("framepipe.executor")

Label = tuple[str, str, dict[str, Any]]  # a traced call's (track, span name, span args)
Ctx = TypeVar("Ctx")


def timed(fn: Any, *args: Any) -> tuple[int, float, float, Any]:
    """Run ``fn`` in a worker; return its pid, start, end (``perf_counter``, system-wide here) and result."""
    t0 = time.perf_counter()
    out = fn(*args)
    return os.getpid(), t0, time.perf_counter(), out


class TimedFuture:
    """A finished call made through ``timed``: ``result()`` is the call's own; the span it makes travels along."""

    __slots__ = ("fut", "label", "sent", "done")

    def __init__(self, fut: Future[Any], label: Label, sent: float) -> None:
        self.fut, self.label, self.sent, self.done = fut, label, sent, time.perf_counter()

    def result(self) -> Any:
        return self.fut.result()[3]

    def where(self) -> tuple[int | None, float, float]:
        """The worker's pid and the call's start and end, kept within send..done (None: it did not return)."""
        try:
            pid, t0, t1, _ = self.fut.result()
        except BaseException:
            return None, self.sent, self.done
        t0 = min(max(t0, self.sent), self.done)
        return pid, t0, min(max(t1, t0), self.done)


Done = Future[Any] | TimedFuture  # a finished call as the loop gets it


def _future(done: Done) -> Future[Any]:
    return done.fut if isinstance(done, TimedFuture) else done


class Calls(Generic[Ctx]):
    """The calls sent whose completion the loop has not taken yet, each with its context (what it was for)."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[tuple[Ctx, Done]] = queue.SimpleQueue()
        self.sent: dict[Future[Any], tuple[Ctx, Callable[[Future[Any]], Done]]] = {}
        self.done_seen: dict[Future[Any], float] = {}  # when a call of those was first seen done
        self.next_lost_check = 0.0

    def submit(self, pool: WorkerPool, ctx: Ctx, fn: Any, *args: Any, label: Label | None = None,
               timeout: float | None = None) -> None:
        """Send a call; its completion comes back on the queue. ``label``: (track, span name, args) when tracing.

        ``timeout``: the pool kills the call's worker when the call runs longer (None: the pool's own).
        """
        wrap: Callable[[Future[Any]], Done]
        if label is None:
            wrap = lambda f: f  # noqa: E731
            fut = pool.submit_task(fn, args, timeout=timeout)
        else:
            sent = time.perf_counter()
            wrap = lambda f: TimedFuture(f, label, sent)  # noqa: E731
            fut = pool.submit_task(timed, (fn, *args), timeout=timeout)
        self.sent[fut] = (ctx, wrap)
        fut.add_done_callback(lambda f: self.queue.put((ctx, wrap(f))))

    def claim(self, done: Done) -> bool:
        """Whether a completion from the queue is still to be handled (False: it was taken already, as lost)."""
        return self.sent.pop(_future(done), None) is not None

    def take(self, timeout: float) -> tuple[Ctx, Done] | None:
        """The next completion, waited for up to ``timeout`` seconds, or a lost one; None when there is neither."""
        try:
            ctx, done = self.queue.get(timeout=timeout)
        except queue.Empty:
            return self.lost()
        self.done_seen.pop(_future(done), None)
        if not self.claim(done):
            return self.lost()
        return ctx, done

    def lost(self) -> tuple[Ctx, Done] | None:
        """A call done for a while whose completion never reached the queue (its callback failed: out of memory),
        taken here instead of waited for forever; None when there is none. Looked for twice a second."""
        now = time.monotonic()
        if now < self.next_lost_check:
            return None
        self.next_lost_check = now + LOST_CHECK_S
        for fut, (ctx, wrap) in list(self.sent.items()):
            if fut.done():
                if now - self.done_seen.setdefault(fut, now) >= LOST_CHECK_S:
                    del self.sent[fut]
                    self.done_seen.pop(fut, None)
                    log.warning("a call's completion was lost (its callback failed); taking it now")
                    return ctx, wrap(fut)
        return None
