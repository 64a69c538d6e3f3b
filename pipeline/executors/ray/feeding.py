"""How one file's frames go to its map stages on Ray: in batches of a stage's ``batch_size``, the higher
``priority`` stage's first (``MapBatches``), and a lower-priority pool's work on a niced thread of the Ray worker
that runs it (``pool_nice``, ``run_niced``). Plain Python, no Ray: the file actor's ``_MapFeeder`` asks these.

Ray has no task priorities, and its workers all run at one niceness (Ray's ``worker_niceness``). What
framepipe can do, it does:

* **Send order.** When several map stages have frames waiting, the feeder sends the highest-priority stage's
  batches first (pipeline order among equals), as the local executor dispatches its queues. Ray starts a
  node's queued tasks in about the order they came, so the higher stage's frames get the free CPUs first.
* **Niceness.** A map pool below the run's top map priority runs its stage's work on a thread of the Ray
  worker niced by the gap between the two pools' ``NICE_INCREMENT`` (LOW beside MEDIUM: +13), so a node's
  CPUs go to the higher pools' tasks and the file actors first, the OS preempting the niced thread. Ray runs
  its workers at niceness 15 already (``RAY_worker_niceness``), and 19 is the most: on a default node the gap
  is so capped at 4 (a niced thread at 19 weighs about 2.4 times less than one at 15). Linux
  nices a thread on its own: the worker's main thread, which runs whatever Ray sends it next, keeps its
  niceness, and the niced thread serves only work of that niceness, so nothing is ever set back (raising
  niceness needs no privilege; lowering it would). Not a dedicated Ray worker per niceness (a ``runtime_env``
  per pool): that starts a second set of worker processes on each node (0.8 s for the first tasks, measured
  here), beyond Ray's soft limit of idle workers (those are killed after a second idle and started again),
  and needs Ray's runtime-env agent on every node. Elsewhere than
  Linux a thread cannot be niced alone, and the work runs un-niced. When every map pool has one priority
  (the default) nothing is niced: the work runs on the task's own thread, as before.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ...runtime.pool import NICE_INCREMENT, Priority, TaskPoolConfig
from ...stage import Stage

__all__ = ["MapBatches", "pool_nice", "run_niced", "widest_batch"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(slots=True)
class _Queue(Generic[T]):
    """One map stage's frames waiting to be sent, and its tasks out."""

    stage: str
    priority: int
    batch_size: int
    concurrency: int | None
    items: deque[T] = field(default_factory=deque)
    running: int = 0  # tasks out (batches), as a stage's ``concurrency`` counts them

    def may_send(self, flush: bool) -> bool:
        full = len(self.items) >= self.batch_size
        return bool(self.items) and (full or flush) and (self.concurrency is None or self.running < self.concurrency)


class MapBatches(Generic[T]):
    """The frames of one file waiting for each map stage, and the batches to send next.

    ``add`` a frame for a stage; ``batches(flush)`` gives the batches that may go now, the highest-priority
    stage's first (pipeline order among equals): full ones (``batch_size`` frames), and with ``flush`` the
    partial ones too (nothing else will come to fill them soon), each stage while its tasks out are under its
    ``concurrency``; ``returned(stage)`` when one of its tasks came back. Frames keep their order within a stage.
    """

    def __init__(self, stages: Iterable[Stage]) -> None:
        queues = [_Queue[T](s.name, s.priority, max(1, s.batch_size), s.concurrency) for s in stages]
        self._queues = {q.stage: q for q in queues}
        self._by_priority = sorted(queues, key=lambda q: -q.priority)  # stable: pipeline order among equals
        self.waiting = 0  # frames waiting, all stages

    def add(self, stage: str, item: T) -> None:
        self._queues[stage].items.append(item)
        self.waiting += 1

    def batches(self, flush: bool = False) -> Iterator[tuple[str, list[T]]]:
        """The batches that may go now, in the order to send them; each counts as a task out when given."""
        for q in self._by_priority:
            while q.may_send(flush):
                batch = [q.items.popleft() for _ in range(min(q.batch_size, len(q.items)))]
                q.running += 1
                self.waiting -= len(batch)
                yield q.stage, batch

    def returned(self, stage: str) -> None:
        """A task of ``stage`` came back."""
        self._queues[stage].running -= 1

    def running(self, stage: str) -> int:
        """Tasks of ``stage`` out."""
        return self._queues[stage].running


def widest_batch(stages: Iterable[Stage]) -> int:
    """The largest ``batch_size`` of these map stages (1 without any): the default frames in flight per file
    scale with it, so that each CPU can still have a batch running and one waiting."""
    return max((max(1, s.batch_size) for s in stages if s.is_map), default=1)


def pool_nice(pipeline_pools: Mapping[str, TaskPoolConfig | None], maps: Iterable[Stage]) -> dict[str, int]:
    """How much nicer than Ray's workers each map pool's work runs: the gap between its ``NICE_INCREMENT`` and
    that of the run's highest-priority map pool (0 for that one, and for every pool when all share a priority).

    A pool's priority is its ``TaskPoolConfig``'s (``Pipeline.add_pool``), else the highest of its stages', as
    the local executor sets it.
    """
    stages = list(maps)
    priority: dict[str, Priority] = {}
    for s in stages:
        config = pipeline_pools.get(s.pool)
        found = Priority(config.priority) if config is not None else Priority(s.priority)
        priority[s.pool] = found if config is not None else max(found, priority.get(s.pool, Priority.LOW))
    if not priority:
        return {}
    top = NICE_INCREMENT[max(priority.values())]
    return {pool: NICE_INCREMENT[p] - top for pool, p in priority.items()}


_NICED: dict[int, ThreadPoolExecutor] = {}
_NICED_LOCK = threading.Lock()


def _nice_this_thread(increment: int) -> None:
    """Raise the calling thread's niceness by ``increment`` (capped at 19); Linux nices a thread alone. Where the
    OS refuses (a sandbox without the call), the work runs un-niced rather than not at all."""
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment))
    except OSError:
        pass


def run_niced(increment: int, fn: Callable[..., R], *args: Any) -> R:
    """``fn(*args)`` on a thread of this process niced by ``increment`` (the calling thread, the process's other
    threads and its later tasks keep theirs); on the calling thread when ``increment`` is 0 or the OS cannot
    nice one thread alone (not Linux).

    One such thread per increment per process, made at its first use and kept: it serves only work of that
    niceness, so its niceness never has to be set back.
    """
    if increment <= 0 or not sys.platform.startswith("linux"):
        return fn(*args)
    with _NICED_LOCK:
        pool = _NICED.get(increment)
        if pool is None:
            pool = _NICED[increment] = ThreadPoolExecutor(1, thread_name_prefix=f"framepipe-nice+{increment}",
                                                          initializer=_nice_this_thread, initargs=(increment,))
    return pool.submit(fn, *args).result()
