"""Priority process pools on loky: ``WorkerPool``, ``TaskPoolConfig``, ``Priority``, ``CoreBudget``.

    submit() ──► [priority heap] ──► dispatch ──► loky executor ──► worker: _run_in_worker(fn)
        │  (fast path: straight to dispatch            ▲                 │ posts pid in a board row
        │   when a slot and a core are free)           │                 ▼
        └──────────── our Future ◄──── _on_done (loky's thread) ◄── (result, seconds)

    dispatcher thread: drains the heap when capacity frees, kills workers of
    tasks past their deadline, replaces broken executors.

Why our own queue in front of loky: loky runs tasks first-in first-out and
pre-queues them to workers, so neither priorities nor an in-flight limit can
be had inside it. We hand loky at most ``max_concurrent_tasks`` tasks at once.

Why a board: to kill the worker of a hung task we need its pid; the worker
writes it into its row of a shared-memory table (no lock shared with a
process that may die).

When a worker dies, loky marks the whole executor broken and fails every
future on it. The pool then starts a new executor and re-submits the tasks
that were lost: free of charge when we killed a worker for a timeout (we
know the culprit), charged one attempt each when the death came from outside
(we do not), up to ``retries`` attempts.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import os
import pickle
import statistics
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, InvalidStateError
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import psutil
from loky import ProcessPoolExecutor
from loky.process_executor import TerminatedWorkerError

from ..dataplane.board import RUNNING, ProgressBoard
from ..errors import (
    FramepipeError,
    PoolFull,
    PoolShutdown,
    PoolUnavailable,
    ResourceExhausted,
    TaskTimeout,
    WorkerCrashed,
)
from ..observe.metrics import percentile
from . import lifecycle
from .forkserver import SAFE_PATH, forget_safe_path, worker_context
from .limits import limit_reason, limit_reason_in_text, memory_limit

__all__ = ["Priority", "TaskPoolConfig", "WorkerPool", "PoolMetrics", "CoreBudget", "NICE_INCREMENT"]


class Priority(IntEnum):
    """Task and pool priorities: LOW < MEDIUM < HIGH < CRITICAL."""

    LOW = 0
    MEDIUM = 1
    HIGH = 2
    CRITICAL = 3


NICE_INCREMENT: dict[Priority, int] = {Priority.CRITICAL: 0, Priority.HIGH: 1, Priority.MEDIUM: 6,
                                       Priority.LOW: 19}
"""How much nicer than the parent a pool's workers run (raising niceness never needs root)."""


@dataclass(frozen=True, slots=True)
class TaskPoolConfig:
    """How a pool runs: in-flight limit, queue bound (None: unbounded), priority, task timeout, retries."""

    max_concurrent_tasks: int = field(default_factory=lambda: os.cpu_count() or 1)
    queue_size: int | None = None
    priority: Priority = Priority.MEDIUM
    timeout: float | None = None
    retries: int = 2

    def __post_init__(self) -> None:
        if self.max_concurrent_tasks < 1:
            raise ValueError("max_concurrent_tasks must be at least 1")
        if self.queue_size is not None and self.queue_size < 0:
            raise ValueError("queue_size must be None or >= 0")


@dataclass(frozen=True, slots=True)
class PoolMetrics:
    """A snapshot of a pool: its load and what its tasks did."""

    pool_id: str
    priority: Priority
    max_concurrent_tasks: int
    active_tasks: int
    queue_size: int
    executed: int
    failed: int
    timeouts: int
    retried: int
    avg_s: float
    p50_s: float
    p95_s: float
    busy_s: float
    load: float


# -----------------------------------------------------------------------------
# The core budget shared by the pools of one coordinator


class CoreBudget:
    """Cores shared by pools; a higher priority never waits for cores held by lower ones.

    A task of priority P may start when the tasks running at priority P or
    above hold fewer than ``cores`` cores: low-priority pools fill idle cores,
    and a high-priority task starts at once, the OS preempting the niced
    low-priority workers. When cores free up, waiting pools are woken
    highest priority first.
    """

    def __init__(self, cores: int | None = None) -> None:
        self.cores = max(1, cores or os.cpu_count() or 1)
        self._held = dict.fromkeys(Priority, 0)
        self._lock = threading.Lock()
        self._waiters: list[tuple[Priority, Callable[[], None]]] = []

    def try_take(self, priority: Priority) -> bool:
        with self._lock:
            if sum(n for p, n in self._held.items() if p >= priority) >= self.cores:
                return False
            self._held[priority] += 1
            return True

    def give(self, priority: Priority) -> None:
        with self._lock:
            self._held[priority] -= 1
            waiters = sorted(self._waiters, key=lambda w: -w[0])
        for _prio, wake in waiters:
            wake()

    def subscribe(self, priority: Priority, wake: Callable[[], None]) -> None:
        """Call ``wake`` whenever cores free up (pools register their dispatcher)."""
        with self._lock:
            self._waiters.append((priority, wake))

    def unsubscribe(self, wake: Callable[[], None]) -> None:
        with self._lock:
            self._waiters = [w for w in self._waiters if w[1] is not wake]

    def held(self) -> dict[Priority, int]:
        with self._lock:
            return dict(self._held)


# -----------------------------------------------------------------------------
# What runs in the worker


_WORKER_BOARDS: dict[str, ProgressBoard] = {}


def _init_worker(nice: int, keep_alive: bool) -> None:
    """Executor initializer: run at this pool's niceness; for ``keep_alive`` pools, never recycle the worker.

    (It also drops the variable that kept the current folder off the worker's import path at its start.)

    loky replaces a worker whose memory grew by 300 MB since it started (its
    leak guard). A worker that holds a file's session (an open decoder, an
    encoder's state) must not be replaced between calls, so those pools turn
    the guard off in their workers.
    """
    forget_safe_path()
    proc = psutil.Process()
    if nice > proc.nice():
        proc.nice(min(19, nice))
    _keep_freed_memory()
    if keep_alive:
        import loky.process_executor
        loky.process_executor._MAX_MEMORY_LEAK_SIZE = 1 << 62


def _keep_freed_memory() -> None:
    """Let glibc reuse freed memory instead of returning it to the kernel after every frame.

    A fresh worker's malloc hands each buffer over 128 KiB to mmap and unmaps it
    when freed, so a numpy stage's temporaries page-fault again on every frame:
    measured here, 10,000 faults and 15 ms of kernel time on a 40 ms 1080p
    stage. Raising the mmap and trim thresholds to 32 and 256 MiB keeps them
    in the heap. No-op where the C library has no ``mallopt``.
    """
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 32 << 20)
        libc.mallopt(m_trim_threshold, 256 << 20)
    except (OSError, AttributeError):
        pass


def _run_in_worker(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], board_name: str,
                   rows: int, row: int) -> tuple[Any, float]:
    """Run ``fn`` with this worker's pid posted in board row ``row``; return the result and its seconds."""
    board = _WORKER_BOARDS.get(board_name)
    if board is None:
        board = _WORKER_BOARDS[board_name] = ProgressBoard.attach(board_name, rows)
    board.start(row, os.getpid())
    t0 = time.perf_counter()
    try:
        result = fn(*args, **kwargs)
    finally:
        board.finish(row)
    return result, time.perf_counter() - t0


# -----------------------------------------------------------------------------
# The pool


class _Task:
    __slots__ = ("seq", "priority", "fn", "args", "kwargs", "name", "timeout", "future", "attempts", "row",
                 "executor", "deadline", "timed_out", "unstarted_breaks")

    def __init__(self, seq: int, priority: Priority, fn: Callable[..., Any], args: tuple[Any, ...],
                 kwargs: dict[str, Any], name: str, timeout: float | None) -> None:
        self.seq, self.priority, self.fn, self.args, self.kwargs = seq, priority, fn, args, kwargs
        self.name, self.timeout = name, timeout
        self.future: Future[Any] = Future()
        self.attempts = 0
        self.row = -1
        self.executor: _Executor | None = None
        self.deadline: float | None = None
        self.timed_out = False
        self.unstarted_breaks = 0

    def sort_key(self) -> tuple[int, int]:
        return (-int(self.priority), self.seq)


class _Executor:
    """A loky executor and what we know of its fate."""

    __slots__ = ("loky", "broken", "timeout_kills", "down_since")

    def __init__(self, loky: ProcessPoolExecutor) -> None:
        self.loky = loky
        self.broken = False
        self.timeout_kills = 0
        self.down_since: dict[str, float] = {}  # its threads seen not (yet) running, and since when


_BOARD_ROWS = 1024
_DURATIONS_KEPT = 2048
_START_POLL_S = 0.05
_MAX_UNSTARTED_BREAKS = 3
_HEALTH_CHECK_S = 1.0  # how often a pool with tasks in flight checks that loky's threads still live
_START_GRACE_S = 5.0  # a loky thread made but not running after this long never will (see _dead_internals)


class WorkerPool:
    """A priority process pool on loky with an in-flight limit, a bounded queue, timeouts and retries.

    ``pool_id`` names it in errors and metrics. Workers run at the niceness of
    ``config.priority`` (see ``NICE_INCREMENT``). With a ``budget`` shared
    with other pools, dispatch also waits for a free core at its priority.
    ``keep_alive`` workers are never recycled by loky (they hold state).
    """

    def __init__(self, pool_id: str, config: TaskPoolConfig | None = None, *,
                 budget: CoreBudget | None = None, keep_alive: bool = False) -> None:
        self.pool_id = pool_id
        self.keep_alive = keep_alive
        self.config = config or TaskPoolConfig()
        self.budget = budget
        self._max = self.config.max_concurrent_tasks
        self._cond = threading.Condition(threading.RLock())
        self._heap: list[tuple[tuple[int, int], _Task]] = []
        self._active: dict[int, _Task] = {}
        self._free_rows = list(range(_BOARD_ROWS - 1, -1, -1))
        self._seq = itertools.count()
        self._shutdown = False
        self._killing = False
        self._closed = False
        self._nice = psutil.Process().nice() + NICE_INCREMENT[self.config.priority]
        self._retired: list[_Executor] = []
        self._executed = self._failed = self._timeouts = self._retried = 0
        self._busy_s = 0.0
        self._durations: deque[float] = deque(maxlen=_DURATIONS_KEPT)
        self._failed_with: FramepipeError | None = None  # set when the dispatcher failed: new tasks fail at once
        board: ProgressBoard | None = None
        executor: _Executor | None = None
        try:
            self._board = board = ProgressBoard.create(_BOARD_ROWS)
            self._executor = executor = self._new_executor()
            self._dispatcher = threading.Thread(target=self._dispatch_loop, name=f"framepipe-pool-{pool_id}",
                                                daemon=True)
            self._dispatcher.start()
        except Exception as exc:  # out of descriptors, threads or memory: nothing of the pool is left behind
            if executor is not None:
                _shutdown_loky(executor, kill_workers=True)
            if board is not None:
                board.close()
            reason = limit_reason(exc)
            if reason is None:
                raise
            raise PoolUnavailable(f"could not start the worker pool {pool_id}: {reason}") from exc
        if budget is not None:
            budget.subscribe(self.config.priority, self._wake)

    # Submitting -------------------------------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Queue ``fn(*args, **kwargs)`` at the pool's priority; blocks while the queue is full."""
        return self.submit_task(fn, args, kwargs)

    def submit_task(self, fn: Callable[..., Any], args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None,
                    *, priority: Priority | None = None, timeout: float | None = None, block: bool = True,
                    block_timeout: float | None = None, name: str | None = None) -> Future[Any]:
        """Queue a task with options: its priority, its own timeout, and what to do when the queue is full.

        With ``block=False`` (or once ``block_timeout`` passes) a full queue
        raises :class:`PoolFull` instead of waiting.
        """
        prio = Priority(self.config.priority if priority is None else priority)
        seq = next(self._seq)
        task = _Task(seq, prio, fn, tuple(args), dict(kwargs or {}),
                     name or f"{self.pool_id}#{seq}:{getattr(fn, '__qualname__', repr(fn))}",
                     self.config.timeout if timeout is None else timeout)
        deadline = None if block_timeout is None else time.monotonic() + block_timeout
        with self._cond:
            while True:
                if self._shutdown:
                    raise PoolShutdown(f"pool {self.pool_id} is shut down")
                if self._failed_with is not None:  # its dispatcher failed (see _give_up)
                    self._failed += 1
                    task.future.set_exception(self._failed_with)
                    return task.future
                if self._has_capacity() and not self._heap and self._take_core(prio):
                    self._dispatch(task)  # fast path: no queue, no thread hop
                    return task.future
                if self.config.queue_size is None or len(self._heap) < self.config.queue_size:
                    heapq.heappush(self._heap, (task.sort_key(), task))
                    self._cond.notify_all()
                    return task.future
                remaining = None if deadline is None else deadline - time.monotonic()
                if not block or (remaining is not None and remaining <= 0):
                    raise PoolFull(f"pool {self.pool_id}: queue full ({self.config.queue_size} tasks waiting)")
                self._cond.wait(remaining)

    def execute(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` in the pool and return its result (raises what it raised)."""
        return self.submit(fn, *args, **kwargs).result()

    def execute_with_timeout(self, fn: Callable[..., Any], timeout: float, /, *args: Any, **kwargs: Any) -> Any:
        """Like :meth:`execute`, but the task is killed after ``timeout`` seconds (``TaskTimeout``)."""
        return self.submit_task(fn, args, kwargs, timeout=timeout).result()

    async def execute_async(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Awaitable :meth:`execute` for asyncio code (submission never blocks the event loop for long)."""
        return await asyncio.wrap_future(self.submit_task(fn, args, kwargs, block=False))

    async def execute_with_timeout_async(self, fn: Callable[..., Any], timeout: float, /, *args: Any,
                                         **kwargs: Any) -> Any:
        """Awaitable :meth:`execute_with_timeout`."""
        return await asyncio.wrap_future(self.submit_task(fn, args, kwargs, timeout=timeout, block=False))

    # Dispatch (callers hold self._cond) -------------------------------------------------

    def _has_capacity(self) -> bool:
        return len(self._active) < self._max and not self._executor.broken

    def _take_core(self, priority: Priority) -> bool:
        return self.budget is None or self.budget.try_take(priority)

    def _dispatch(self, task: _Task) -> None:
        first_run = not task.future.running()
        if first_run and not task.future.set_running_or_notify_cancel():  # cancelled while queued
            if self.budget is not None:
                self.budget.give(task.priority)
            return
        task.row = self._free_rows.pop()
        self._board.reset(task.row)
        task.executor = self._executor
        task.deadline = None if task.timeout is None else time.monotonic() + task.timeout
        self._active[task.row] = task
        try:
            lfut = self._executor.loky.submit(_run_in_worker, task.fn, task.args, task.kwargs,
                                              self._board.segment.name, _BOARD_ROWS, task.row)
        except Exception as exc:  # loky could not start its thread or a worker, or found its executor broken
            self._undispatch(task, exc)
            return
        lfut.add_done_callback(lambda f, t=task: self._on_done(t, f))
        if task.deadline is not None:
            self._cond.notify_all()  # the dispatcher must watch this deadline

    def _undispatch(self, task: _Task, exc: Exception) -> None:
        """A task that loky would not take: queued again for a new executor when this one broke, else failed
        (resources ran out: its error names the limit). The executor is replaced before the next dispatch."""
        self._active.pop(task.row, None)
        self._free_rows.append(task.row)
        task.row = -1
        if self.budget is not None:
            self.budget.give(task.priority)
        assert task.executor is not None
        task.executor.broken = True  # half started, perhaps: not used again
        reason = limit_reason(exc) or _broken_for_want_of(exc)
        if reason is None and isinstance(exc, BrokenProcessPool) and task.unstarted_breaks < _MAX_UNSTARTED_BREAKS:
            task.unstarted_breaks += 1
            heapq.heappush(self._heap, (task.sort_key(), task))
        else:
            self._failed += 1
            error = ResourceExhausted(reason) if reason is not None else \
                WorkerCrashed(f"task {task.name} could not be sent to a worker: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            task.future.set_exception(error)
        self._cond.notify_all()

    def _new_executor(self) -> _Executor:
        # env: a loky-started worker imports nothing from the current folder (see forkserver.SAFE_PATH) and is
        # tagged as this process's (lifecycle: it is killed if this process dies)
        env = {**{k: v for k, v in SAFE_PATH.items() if not os.environ.get(k)}, **lifecycle.helper_env()}
        return _Executor(ProcessPoolExecutor(max_workers=self._max, initializer=_init_worker,
                                             initargs=(self._nice, self.keep_alive), context=worker_context(),
                                             env=env))

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _dispatch_loop(self) -> None:
        try:
            self._dispatch_until_shutdown()
        except BaseException as exc:  # out of memory in here, say: what the pool holds must not wait forever
            self._give_up(exc)

    def check(self) -> None:
        """Fail the pool's tasks if its dispatcher thread died (out of memory as it started), or loky's threads
        did (``_fail_stalled``): whoever waits on them would wait forever. Cheap: the local executor calls it on
        every tick."""
        if not self._dispatcher.is_alive() and self._failed_with is None and not self._closed:
            with self._cond:
                if self._shutdown and not self._heap and not self._active:
                    return  # it ended as it should
            self._give_up(MemoryError() if memory_limit() else RuntimeError("the pool's dispatcher thread died"))
            return
        if self._active:  # the dispatcher looks too, but sleeps while it has nothing to dispatch
            with self._cond:
                self._fail_stalled()

    def _give_up(self, exc: BaseException) -> None:
        """The dispatcher failed: every task queued or running fails with why (the limit named, when one was hit),
        the workers are killed, and the tasks submitted from now on fail at once."""
        reason = limit_reason(exc)
        error: FramepipeError = ResourceExhausted(reason) if reason is not None else \
            WorkerCrashed(f"pool {self.pool_id}: its dispatcher failed: {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        with self._cond:
            self._failed_with = error
            doomed = [task for _key, task in self._heap] + list(self._active.values())
            if self.budget is not None:
                for task in self._active.values():
                    self.budget.give(task.priority)  # cores other pools of the run share
            self._free_rows.extend(self._active)
            self._heap.clear()
            self._active.clear()
            executors = [self._executor, *self._retired]
            self._failed += len(doomed)
            for task in doomed:
                try:
                    task.future.set_exception(error)
                except InvalidStateError:
                    pass
            self._cond.notify_all()
        for ex in executors:
            ex.broken = True
            _kill_workers(ex)

    def _dispatch_until_shutdown(self) -> None:
        with self._cond:
            while True:
                if self._executor.broken and not self._killing and self._heap:
                    self._replace_executor()  # before dispatching anything else (none made: the queued tasks fail)
                while self._heap and self._has_capacity() and not self._executor.broken:
                    _key, task = self._heap[0]
                    if task.future.cancelled():
                        heapq.heappop(self._heap)
                        continue
                    if not self._take_core(task.priority):
                        break
                    heapq.heappop(self._heap)
                    self._dispatch(task)
                    self._cond.notify_all()  # a blocked submit may now queue
                self._kill_overdue()
                self._fail_stalled()
                self._reap_retired()
                if self._shutdown and not self._heap and not self._active:
                    self._cond.notify_all()
                    return
                # Wakes at least every _HEALTH_CHECK_S, even with nothing to dispatch: tasks sent on the fast path
                # (submit_task) do not wake it, and _fail_stalled must look at them.
                deadlines = [t.deadline for t in self._active.values() if t.deadline is not None and not t.timed_out]
                deadlines.append(time.monotonic() + _HEALTH_CHECK_S)
                self._cond.wait(max(0.0, min(deadlines) - time.monotonic()))

    def _replace_executor(self) -> bool:
        """Retire the broken executor for a new one; False when none can be made (resources ran out): every queued
        task then fails with the limit named, and the next task tries again."""
        try:
            fresh = self._new_executor()
        except Exception as exc:
            reason = limit_reason(exc)
            error: FramepipeError = ResourceExhausted(reason) if reason is not None else \
                WorkerCrashed(f"pool {self.pool_id}: no new worker executor could be made: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            doomed = [task for _key, task in self._heap]
            self._heap.clear()
            self._failed += len(doomed)
            for task in doomed:
                try:
                    task.future.set_exception(error)
                except InvalidStateError:  # cancelled meanwhile
                    pass
            self._cond.notify_all()  # a blocked submit may now queue
            return False
        self._retired.append(self._executor)
        self._executor = fresh
        return True

    def _kill_overdue(self) -> None:
        if not any(t.deadline is not None for t in self._active.values()):
            return
        now = time.monotonic()
        table = self._board.snapshot()
        for row, task in list(self._active.items()):
            if task.timed_out or task.deadline is None or now < task.deadline:
                continue
            state, pid = int(table[row, 0]), int(table[row, 1])
            if state != RUNNING or pid <= 0:
                # Not started yet (a worker still starting up): a task's clock starts when it runs.
                task.deadline = now + _START_POLL_S if state != 2 else None
                continue
            started = int(table[row, 5]) / 1e9
            if now < started + (task.timeout or 0.0):
                task.deadline = started + (task.timeout or 0.0)
                continue
            task.timed_out = True
            assert task.executor is not None
            task.executor.timeout_kills += 1
            try:
                os.kill(pid, 9)  # SIGKILL: works on a task hung in native code holding the GIL too
            except ProcessLookupError:
                pass

    def _fail_stalled(self) -> None:
        """Fail the tasks of an executor whose own threads died (one that could not allocate, under a tight memory
        limit): loky would never settle them, and the caller would wait forever. Its workers are killed."""
        for ex in {id(t.executor): t.executor for t in self._active.values() if t.executor is not None}.values():
            what = _dead_internals(ex)
            if what is None:
                continue
            ex.broken = True
            memory = memory_limit()
            error: FramepipeError = ResourceExhausted(f"{what} died: out of memory{memory}") if memory else \
                WorkerCrashed(f"pool {self.pool_id}: {what} died; its tasks cannot finish")
            for row, task in list(self._active.items()):
                if task.executor is not ex:
                    continue
                del self._active[row]
                self._free_rows.append(row)
                if self.budget is not None:
                    self.budget.give(task.priority)
                self._failed += 1
                task.future.set_exception(error)
            _kill_workers(ex)
            self._cond.notify_all()

    def _reap_retired(self) -> None:
        for ex in list(self._retired):
            if not any(t.executor is ex for t in self._active.values()):
                self._retired.remove(ex)
                _shutdown_loky(ex, wait=False, kill_workers=ex.broken)

    # Completion (runs in loky's result thread) ------------------------------------------

    def _on_done(self, task: _Task, lfut: Future[Any]) -> None:
        settle: Callable[[], None] | None = None
        with self._cond:
            if self._active.get(task.row) is not task:  # already settled: its executor's threads had died
                return
            self._active.pop(task.row, None)
            self._free_rows.append(task.row)
            if self.budget is not None:
                self.budget.give(task.priority)
            exc = lfut.exception()
            if exc is None:
                result, seconds = lfut.result()
                self._executed += 1
                self._busy_s += seconds
                self._durations.append(seconds)
                settle = lambda: task.future.set_result(result)  # noqa: E731
            elif isinstance(exc, (TerminatedWorkerError, BrokenProcessPool)):
                assert task.executor is not None
                task.executor.broken = True
                settle = self._after_crash(task, exc)
            else:
                self._failed += 1
                reason = _unsent_for_want_of(exc)
                if reason is not None:  # the task could not be pickled to be sent: out of memory here
                    exhausted = ResourceExhausted(reason)
                    exhausted.__cause__ = exc
                    exc = exhausted
                settle = lambda: task.future.set_exception(exc)  # noqa: E731
            # Wake the dispatcher only when it has work: a wake-up costs the caller the GIL.
            if self._heap or self._shutdown or self._executor.broken or self._retired:
                self._cond.notify_all()
        if settle is not None:
            settle()

    def _after_crash(self, task: _Task, exc: BaseException) -> Callable[[], None] | None:
        """Decide what a task lost with its executor becomes: a timeout, a retry, or a crash error."""
        assert task.executor is not None
        started = self._board.state(task.row) != 0 if task.row >= 0 else False
        if self._killing:
            self._failed += 1
            stopped = PoolShutdown(f"task {task.name} was stopped: pool {self.pool_id} was killed")
            return lambda: task.future.set_exception(stopped)
        if task.timed_out:
            self._timeouts += 1
            self._failed += 1
            error = TaskTimeout(task.name, task.timeout or 0.0)
            return lambda: task.future.set_exception(error)
        reason = _broken_for_want_of(exc)
        if reason is not None:  # loky's own thread could not start its queue's thread (or the like): no retry
            self._failed += 1
            exhausted = ResourceExhausted(reason)
            exhausted.__cause__ = exc
            return lambda: task.future.set_exception(exhausted)
        if started and not task.executor.timeout_kills:
            task.attempts += 1  # a death from outside: we cannot tell the culprit, so all running pay
        elif not started and not task.executor.timeout_kills:
            task.unstarted_breaks += 1  # broke before it ran: e.g. its arguments cannot be unpickled there
            if task.unstarted_breaks > _MAX_UNSTARTED_BREAKS:
                self._failed += 1
                never = WorkerCrashed(f"task {task.name}: its worker died {task.unstarted_breaks} times before "
                                      f"the task could start (can the worker unpickle it?): {exc}")
                never.__cause__ = exc
                return lambda: task.future.set_exception(never)
        if task.attempts <= self.config.retries:
            self._retried += 1
            heapq.heappush(self._heap, (task.sort_key(), task))  # keeps its place: same priority and seq
            return None
        self._failed += 1
        crashed = WorkerCrashed(f"task {task.name}: worker process died ({task.attempts} attempts): {exc}")
        crashed.__cause__ = exc
        return lambda: task.future.set_exception(crashed)

    # Size and life cycle --------------------------------------------------------------------

    def resize(self, n: int) -> None:
        """Run at most ``n`` tasks at once from now on; queued and running tasks are kept.

        A new loky executor of the new size takes new tasks; the old one
        finishes what it runs and then exits.
        """
        if n < 1:
            raise ValueError("a pool needs at least one worker")
        with self._cond:
            if n == self._max or self._shutdown:
                self._max = n
                return
            self._max = n
            self._retired.append(self._executor)
            self._executor = self._new_executor()
            self._cond.notify_all()

    @property
    def max_concurrent_tasks(self) -> int:
        return self._max

    def shutdown(self, wait: bool = True, cancel_pending: bool = False, kill: bool = False) -> None:
        """Stop taking tasks; with ``cancel_pending`` drop queued ones; with ``wait`` block until all is done.

        ``kill`` ends running tasks at once: their workers are killed (an interrupted run uses it).
        """
        with self._cond:
            self._shutdown = True
            if cancel_pending or kill:
                for _key, task in self._heap:
                    task.future.cancel()
                self._heap.clear()
            if kill:
                self._killing = True
            doomed = [self._executor, *self._retired] if kill else []
            self._cond.notify_all()
        # Outside the lock: loky's thread calls _on_done (which takes it) while failing the killed tasks.
        for ex in doomed:
            _shutdown_loky(ex, kill_workers=True)
        if doomed:
            self._settle_killed(doomed)
        if wait:
            self._dispatcher.join()
            self._close()
        else:
            threading.Thread(target=self._join_and_close, daemon=True).start()

    def _settle_killed(self, doomed: list[_Executor]) -> None:
        """Fail the tasks of killed executors that loky did not settle (its threads had died): the dispatcher waits
        for every running task before it ends."""
        with self._cond:
            for row, task in list(self._active.items()):
                if any(task.executor is ex for ex in doomed):
                    del self._active[row]
                    self._free_rows.append(row)
                    if self.budget is not None:
                        self.budget.give(task.priority)
                    self._failed += 1
                    try:
                        task.future.set_exception(PoolShutdown(f"task {task.name} was stopped: pool {self.pool_id} "
                                                               "was killed"))
                    except InvalidStateError:
                        pass
            self._cond.notify_all()

    def _join_and_close(self) -> None:
        """Wait for the dispatcher to end, then release the pool's resources (``shutdown(wait=False)``)."""
        self._dispatcher.join()
        self._close()

    def _close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            executors = [self._executor, *self._retired]
        for ex in executors:
            _shutdown_loky(ex)
        if self.budget is not None:
            self.budget.unsubscribe(self._wake)
        self._board.close()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(wait=True, cancel_pending=exc[0] is not None)

    # Introspection ------------------------------------------------------------------------

    def metrics(self) -> PoolMetrics:
        """Deprecated: the older name of :meth:`statistics`."""
        warnings.warn(f"{type(self).__name__}.metrics() is deprecated: use statistics()", DeprecationWarning,
                      stacklevel=2)
        return self.statistics()

    def statistics(self) -> PoolMetrics:
        """A snapshot of load and task statistics, as one frozen record."""
        with self._cond:
            durations = sorted(self._durations)
            active, queued = len(self._active), len(self._heap)
            return PoolMetrics(
                self.pool_id, self.config.priority, self._max, active, queued, self._executed, self._failed,
                self._timeouts, self._retried,
                statistics.fmean(durations) if durations else 0.0,
                percentile(durations, 0.50), percentile(durations, 0.95), self._busy_s,
                self._load(active, queued))

    def _load(self, active: int, queued: int) -> float:
        return min(1.0, (active + queued) / self._max)

    def current_load(self) -> float:
        """Running plus queued tasks over the in-flight limit, capped at 1."""
        with self._cond:
            return self._load(len(self._active), len(self._heap))

    def is_overloaded(self) -> bool:
        """True when every worker is busy and at least a full round of tasks waits (or the queue is nearly full)."""
        with self._cond:
            queued = len(self._heap)
            if self.config.queue_size:
                if queued >= 0.8 * self.config.queue_size:
                    return True
            return len(self._active) >= self._max and queued >= self._max

    def worker_pids(self) -> list[int]:
        """Pids of the current executor's workers (started lazily by loky)."""
        with self._cond:
            return list(getattr(self._executor.loky, "_processes", {}).keys())

    def __repr__(self) -> str:
        return f"<WorkerPool {self.pool_id} {self.config.priority.name} max={self._max}>"


def _shutdown_loky(ex: _Executor, wait: bool = True, kill_workers: bool = False) -> None:
    """Shut a loky executor down; one whose threads could not all start (resources ran out) is let go as it is."""
    try:
        ex.loky.shutdown(wait=wait, kill_workers=kill_workers)
    except RuntimeError:  # "cannot join thread before it is started": its manager thread never ran
        pass


def _kill_workers(ex: _Executor) -> None:
    """SIGKILL the workers of a loky executor that cannot do it itself (its threads died)."""
    for pid in list(getattr(ex.loky, "_processes", {})):
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def _dead_internals(ex: _Executor) -> str | None:
    """Which of a loky executor's threads is dead while it has tasks (None: both live, or not made yet).

    A thread that ran and ended is dead; so is one that has not come up 5 s after it was made: a thread
    that fails as it starts (out of memory before it could say it had started) never comes up, and CPython's
    ``Thread.start()`` then waits forever in whoever started it (loky's manager thread, for its queue's thread).
    That wait is released (``_release_start``) so that the executor can still be shut down.
    """
    now = time.monotonic()
    threads = (("the pool's manager thread", getattr(ex.loky, "_executor_manager_thread", None)),
               ("the thread that sends tasks to the pool's workers",
                getattr(getattr(ex.loky, "_call_queue", None), "_thread", None)))
    for what, thread in threads:
        if thread is None or thread.is_alive():
            ex.down_since.pop(what, None)
            continue
        started = getattr(thread, "_started", None)
        if started is None or started.is_set():
            return what  # it ran, and ended
        if now - ex.down_since.setdefault(what, now) >= _START_GRACE_S:
            _release_start(thread)
            return what
    return None


def _release_start(thread: threading.Thread) -> None:
    """Let whoever waits in ``thread.start()`` go on, and a later ``join()`` return: the thread died before it
    could say it had started (CPython's private fields; left alone where they differ)."""
    started = getattr(thread, "_started", None)
    if started is not None and hasattr(thread, "_is_stopped") and not started.is_set():
        thread._is_stopped = True  # type: ignore[attr-defined,unused-ignore]
        started.set()


def _unsent_for_want_of(exc: BaseException) -> str | None:
    """The limit named when loky could not pickle a task to send it for want of memory (its ``PicklingError``
    carries the cause as text)."""
    if not isinstance(exc, pickle.PicklingError) or exc.__cause__ is None:
        return None
    return limit_reason(exc.__cause__) or limit_reason_in_text(str(exc.__cause__))


def _broken_for_want_of(exc: BaseException) -> str | None:
    """The limit named when ``exc`` says loky's executor broke for want of a thread, memory or descriptors."""
    if not isinstance(exc, BrokenProcessPool) or isinstance(exc, TerminatedWorkerError):
        return None
    cause = exc.__cause__
    if cause is None:
        return None
    return limit_reason(cause) or limit_reason_in_text(str(cause))


class _QuietManagerCrash(logging.Filter):
    """Drop loky's log of its crashed manager thread (a traceback on stderr): the error reaches the tasks'
    futures as the cause of ``BrokenProcessPool``, and ``WorkerPool`` reports it in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Exception in executor manager thread")


if not any(isinstance(f, _QuietManagerCrash) for f in logging.getLogger("concurrent.futures").filters):
    logging.getLogger("concurrent.futures").addFilter(_QuietManagerCrash())
