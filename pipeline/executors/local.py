"""The local executor: one scheduler in the parent; files on actors, map stages frame-parallel on pools.

    parent: one scheduling loop                              worker processes
    ---------------------------                              ----------------
    per file in flight: an actor (a one-worker WorkerPool) ── actor_start / actor_step / actor_finish
        grants it slot credits; gets back frames in slots      (FileSession: decode, stateful stages)
    per map stage: a ready queue ─── run_map(batch) ───────► any worker of the stage's WorkerPool
        results put back in order per file before they go to the file's actor (an encoder sees frames in order)
    events: completions of both kinds arrive on one queue; the loop also wakes every 0.1 s for progress
    and to notice Ctrl-C / SIGTERM (a flag).

Memory is bounded by slots: a file's actor may hold at most ``credits_per_file`` slots, and every slot
comes from a ``SlotAllocator`` with a fixed byte budget; when none is free, no actor is asked for more
frames until a slot is released (backpressure), whatever the length of the input.

Slot lifetime: a frame's slot is leased by the parent, filled by the actor, retained once per consumer
(each map stage it goes to, each ordered delivery to an actor) and freed with its last release.

Without map stages each file's whole graph runs in its actor in one call, streaming depth-first; with
them, the actor pauses whenever it has no credit for a frame that must cross.

Timeouts (``file_timeout``): each attempt at a file gets a deadline when its first call is sent. Every actor
call carries the time left as its pool timeout, so the pool SIGKILLs a call hung even in native code holding
the GIL; a file idle past its deadline (waiting on map stages) is failed by the loop; a map task gets the
whole timeout. The file fails with ``FileTimeout``; the other files go on.

Tracing (``run(..., trace=RunTrace)``): each call is sent wrapped in ``_timed``, which returns the
worker's pid and its own start and end with the result; the parent records a span per actor call and map task on
the track of that worker, and a counter sample per scheduler tick. Without a trace nothing of this runs.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import time
import uuid
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..dataplane.board import ProgressBoard
from ..dataplane.buffers import FrameRef, SlotLease
from ..dataplane.frame_pools import SlotAllocator
from ..errors import Cancelled, FramepipeError, PoolUnavailable, ResourceExhausted, TaskTimeout, WorkerCrashed
from ..graph import Pipeline
from ..items import FileItem
from ..observe.metrics import StageStats
from ..observe.snapshots import (
    SNAPSHOT_EVERY_S,
    MetricsSnapshot,
    actors_snapshot,
    cache_snapshots,
    memory_snapshot,
    pool_snapshot,
)
from ..observe.trace import RunTrace, Span
from ..results import FAILED, FileResult
from ..runtime.forkserver import start_server
from ..runtime.interrupts import InterruptFlag, capture_interrupts
from ..runtime.limits import limit_reason
from ..runtime.pool import CoreBudget, Priority, TaskPoolConfig, WorkerPool
from .base import ExecutionReport, Executor, FileTask, RunEvents, credits_per_file
from .failures import map_task_failed, map_task_timed_out, timed_out, worker_died, worker_failed
from .worker import ActorReply, MapOutcome, actor_abort, actor_finish, actor_start, actor_step, run_map

__all__ = ["LocalExecutor"]

_TICK_S = 0.1
_LOST_CHECK_S = 0.5  # how often, and how long after it is done, a call's completion counts as lost
_SKIP = object()
log = logging.getLogger("framepipe.executor")


def _warm_up() -> None:
    """A no-op task: makes loky start a pool's workers (and import their modules) ahead of need."""
    import numpy  # noqa: F401  (what map stages nearly always need)


def stage_modules(pipeline: Pipeline) -> set[str]:
    """The modules that define the pipeline's stages (and the functions of function stages)."""
    stages = pipeline.stages.values()
    return {type(s).__module__ for s in stages} | {getattr(s, "fn", _warm_up).__module__ for s in stages}


def _key(ref: FrameRef) -> tuple[str, int, int]:
    return ref.pool_id, ref.slot, ref.generation


def _timed(fn: Any, *args: Any) -> tuple[int, float, float, Any]:
    """Run ``fn`` in a worker; return its pid, start, end (``perf_counter``, system-wide here) and result."""
    t0 = time.perf_counter()
    out = fn(*args)
    return os.getpid(), t0, time.perf_counter(), out


class _TimedFuture:
    """A finished call made through ``_timed``: ``result()`` is the call's own; the span it makes travels along."""

    __slots__ = ("fut", "label", "sent", "done")

    def __init__(self, fut: Future[Any], label: tuple[str, str, dict[str, Any]], sent: float) -> None:
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


@dataclass(eq=False)
class _File:
    """The scheduler's view of one file in flight."""

    task: FileTask
    row: int
    actor: WorkerPool | None = None
    busy: bool = False
    started: bool = False
    answered: bool = False  # its actor has answered a call (so its worker could be started)
    announced: bool = False  # file_started was told
    exhausted: bool = False
    finishing: bool = False
    need_nbytes: int = 0
    credits: dict[tuple[str, int, int], SlotLease] = field(default_factory=dict)  # granted, not yet returned
    inbox: dict[str, list[tuple[Any, SlotLease | None]]] = field(default_factory=dict)
    order: dict[str, deque[int]] = field(default_factory=dict)  # per map stage with local children
    done: dict[str, dict[int, tuple[Any, SlotLease | None]]] = field(default_factory=dict)
    in_maps: int = 0  # frames of this file queued in or running on map stages
    seq: int = 0
    result: FileResult | None = None
    error: FileResult | None = None
    records: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    calls: int = 0  # actor calls in flight
    epoch: int = 0  # bumped when the file restarts after its actor died: late results of before are dropped
    attempts: int = 1
    deadline: float | None = None  # monotonic time past which the attempt is killed (with a file timeout)
    spans: list[Span] = field(default_factory=list)  # its actor calls, when tracing

    def reset(self) -> None:
        """Forget all progress (the actor died): the file starts over on the next call."""
        self.started = self.exhausted = self.finishing = False
        self.need_nbytes = self.seq = 0
        self.order.clear()
        self.done.clear()
        self.records.clear()
        self.warnings.clear()
        self.epoch += 1
        self.attempts += 1
        self.spans.clear()


class LocalExecutor(Executor):
    """Runs files on this machine: ``workers`` processes for map stages, ``files_in_flight`` actors.

    ``buffer_bytes`` bounds the shared memory of frames in flight; ``fail_fast``
    stops the batch at the first failed file; on Ctrl-C running calls get
    ``grace_s`` seconds to finish before their workers are killed. ``snapshot()``: the run's latest
    ``MetricsSnapshot`` (with the figures of ``caches``, a ``CacheManager``, when one is given).
    ``map_workers``: the starting size of each map pool (default ``workers``). ``performance``: a
    ``PerformanceConfig`` whose ``optimize`` turns on the ``RunOptimizer``; its decisions end up in ``decisions``.
    ``file_timeout``: seconds each attempt at a file may take; past it the worker running the file's call (or
    a map task) is killed with SIGKILL, a hang in native code holding the GIL included, the file fails with
    ``FileTimeout`` and the batch goes on.

    The figures of the last run are in its ``ExecutionReport``, and also here: ``peak_slots``, ``actor_count``,
    ``map_stats``, ``decisions``.
    """

    name = "local"

    def __init__(self, workers: int | None = None, *, files_in_flight: int | None = None,
                 credits_per_file: int | None = None, buffer_bytes: int = 512 << 20, fail_fast: bool = False,
                 grace_s: float = 2.0, retries: int = 1, caches: Any = None, map_workers: int | None = None,
                 performance: Any = None, file_timeout: float | None = None) -> None:
        if file_timeout is not None and file_timeout <= 0:
            raise ValueError("file_timeout must be a positive number of seconds")
        self.file_timeout = file_timeout
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.map_workers = map_workers
        self.performance = performance
        self.retries = retries
        self.files_in_flight = files_in_flight
        self.credits_per_file = credits_per_file
        self.buffer_bytes = buffer_bytes
        self.fail_fast = fail_fast
        self.grace_s = grace_s
        self.caches = caches
        self._snapshot: MetricsSnapshot | None = None
        self._last = ExecutionReport(workers=self.workers)  # of the last run

    def snapshot(self) -> MetricsSnapshot | None:
        """The latest figures of the run going on, or of the last one (None before any); safe from any thread."""
        return self._snapshot

    @property
    def peak_slots(self) -> int:
        """Most frame slots leased at once in the last run."""
        return self._last.peak_slots

    @property
    def actor_count(self) -> int:
        """File actors of the last run."""
        return self._last.actor_count

    @property
    def map_stats(self) -> dict[str, StageStats]:
        """The map stages' records of the last run."""
        return dict(self._last.stage_stats)

    @property
    def decisions(self) -> list[Any]:
        """The optimizer's ``RunDecision`` s in the last run."""
        return list(self._last.decisions)

    # ------------------------------------------------------------------------------------------

    def prepare(self, pipeline: Pipeline) -> None:
        """Start the workers' server (importing the stages' modules) while the caller looks for its inputs."""
        start_server(stage_modules(pipeline))

    def run(self, pipeline: Pipeline, tasks: Sequence[FileTask], events: RunEvents, *,
            trace: RunTrace | None = None) -> ExecutionReport:
        """Run every task on this machine's worker processes (see the module's diagram)."""
        if not tasks:
            return ExecutionReport(workers=self.workers, trace=trace)
        run = _Run(self, pipeline, tasks, events, trace)
        results: list[FileResult] = []
        try:
            with capture_interrupts() as interrupt:
                results = run.loop(interrupt)
        except Exception as exc:  # the scheduler itself ran out (a slot's segment, a descriptor): one line
            reason = None if isinstance(exc, FramepipeError) else limit_reason(exc)
            if reason is None:
                raise
            raise ResourceExhausted(f"the run stopped: {reason}") from exc
        finally:
            try:
                self._snapshot = run.take_snapshot(running=False)
            except Exception:  # figures must never hide the run's own outcome
                log.debug("could not take the last snapshot", exc_info=True)
            run.close()
            self._last = ExecutionReport(
                tuple(results), self.workers, MappingProxyType(dict(run.map_stats)), len(run.actors),
                run.slots.peak_leased, tuple(run.optimizer.decisions) if run.optimizer is not None else (), trace,
                self._snapshot)
        return self._last


class _Run:
    """One batch on the local executor (the scheduler's state; the loop is ``loop``)."""

    def __init__(self, ex: LocalExecutor, pipeline: Pipeline, tasks: Sequence[FileTask], events: RunEvents,
                 trace: RunTrace | None) -> None:
        self.ex = ex
        self.pipeline = pipeline
        self.tasks = tasks
        self.events = events
        self.token = uuid.uuid4().hex
        self.order = pipeline.order()
        self.stages = pipeline.stages
        self.maps = frozenset(n for n in self.order if self.stages[n].is_map)
        for m in self.maps:
            if len(pipeline.inputs(m)) > 1 and any(u in self.maps for u in pipeline.inputs(m)):
                raise ValueError(f"map stage {m!r} has several inputs; map stages take one")
        self.children = {n: pipeline.children(n) for n in self.order}
        # Map stages reachable from each map stage through map stages only (they see the same frames).
        self.subtree = {m: self._map_subtree(m) for m in self.maps}
        self.ordered_maps = {m for m in self.maps if any(c not in self.maps for c in self.children[m])}
        self.queue: queue.SimpleQueue[tuple[str, Any, Future[Any]]] = queue.SimpleQueue()
        self.sent: dict[Future[Any], tuple[str, Any, Any]] = {}  # calls whose completion is not taken yet
        self.done_seen: dict[Future[Any], float] = {}  # when a call of those was first seen done
        self.next_lost_check = 0.0
        self.slots = SlotAllocator(ex.buffer_bytes)
        self.budget = CoreBudget(ex.workers)
        start_server(stage_modules(pipeline))  # if prepare() has not started it already
        self.pools: dict[str, WorkerPool] = {}
        self.actors: list[WorkerPool] = []
        try:
            for m in sorted(self.maps):
                pool_name = self.stages[m].pool
                if pool_name not in self.pools:
                    priority = Priority(max(self.stages[s].priority for s in self.maps
                                            if self.stages[s].pool == pool_name))
                    config = pipeline.pools.get(pool_name) or TaskPoolConfig(ex.map_workers or ex.workers,
                                                                             priority=priority)
                    # keep_alive: a worker's RSS grows with the slots it maps (shared, not leaked); loky's leak
                    # guard would otherwise restart map workers in the middle of a run.
                    self.pools[pool_name] = WorkerPool(f"{pipeline.name}.{pool_name}", config, budget=self.budget,
                                                       keep_alive=True)
            n_actors = ex.files_in_flight or min(len(tasks),
                                                 ex.workers if not self.maps else max(1, ex.workers // 2))
            for i in range(max(1, min(n_actors, len(tasks)))):
                self.actors.append(WorkerPool(f"{pipeline.name}.file{i}",
                                              TaskPoolConfig(1, priority=Priority.HIGH, retries=0), keep_alive=True))
            self.free_actors = list(self.actors)
            self.unstartable: set[int] = set()  # ids of actors that could not start (resources ran out)
            # Start the map workers now, beside the first actor, instead of after its first frames.
            for pool in self.pools.values():
                for _ in range(pool.max_concurrent_tasks):
                    pool.submit(_warm_up)
            map_workers = sum(p.max_concurrent_tasks for p in self.pools.values())
            self.credits_per_file = ex.credits_per_file or credits_per_file(map_workers)
            self.cpu_budget = max(1, (os.cpu_count() or 1) // len(self.actors)) if not self.maps else 1
            self.board = ProgressBoard.create(len(tasks))
        except BaseException as exc:  # a pool could not start (out of descriptors, threads, memory): none is left
            for pool in [*self.pools.values(), *self.actors]:
                pool.shutdown(wait=True, kill=True)
            self.slots.close()
            reason = None if isinstance(exc, FramepipeError) or not isinstance(exc, Exception) else limit_reason(exc)
            if reason is None:
                raise
            raise PoolUnavailable(f"could not start the run's workers: {reason}") from exc
        self.stage_numbers = {n: i for i, n in enumerate(self.order)}
        self.files = [_File(t, i) for i, t in enumerate(tasks)]
        self.waiting = deque(self.files)
        self.active: list[_File] = []
        self.results: dict[int, FileResult] = {}
        self.ready: dict[str, deque[tuple[_File, int, Any, SlotLease | None]]] = {m: deque() for m in self.maps}
        self.running: dict[str, int] = dict.fromkeys(self.maps, 0)
        self.latencies: dict[str, list[float]] = {m: [] for m in self.maps}
        self.map_stats = {m: StageStats(m, workers=self.pools[self.stages[m].pool].max_concurrent_tasks,
                                        where=f"map:{self.stages[m].pool}") for m in self.maps}
        self.seen_progress: dict[int, tuple[int, int]] = {}
        self.last_tick = time.monotonic()
        self.stopping = False
        self.trace = trace
        self.actor_numbers = {id(a): i for i, a in enumerate(self.actors)}
        self.last_sample: tuple[int, int, int] | None = None
        self.started = time.monotonic()
        self.next_snapshot = 0.0
        self.memo_counts = [0, 0]  # stage memo hits, misses of the files finished so far
        self.optimizer = None
        if ex.performance is not None and ex.performance.optimize:
            from ..tuning.optimizer import RunOptimizer
            self.optimizer = RunOptimizer(ex.performance, ex.workers)
        log.debug("local run: %d file(s) on %d actor(s), map pools %s, %d credits per file, %d bytes of slots",
                  len(tasks), len(self.actors), {n: p.max_concurrent_tasks for n, p in self.pools.items()},
                  self.credits_per_file, ex.buffer_bytes)

    def _map_subtree(self, m: str) -> list[str]:
        out, todo = [], [m]
        while todo:
            n = todo.pop()
            out.append(n)
            todo += [c for c in self.children[n] if c in self.maps]
        return out

    # The loop -------------------------------------------------------------------------------------

    def loop(self, interrupt: InterruptFlag) -> list[FileResult]:
        while len(self.results) < len(self.files):
            self._admit()
            for fs in list(self.active):
                self._advance(fs)
            self._dispatch_maps()
            try:
                kind, ctx, fut = self.queue.get(timeout=_TICK_S)
                self.done_seen.pop(getattr(fut, "fut", fut), None)
                if self.sent.pop(getattr(fut, "fut", fut), None) is None:
                    kind = ""  # taken already, as lost (below)
            except queue.Empty:
                kind = ""
            if not kind:
                kind, ctx, fut = self._lost_completion()
            self._account_time()
            if self.optimizer is not None and not self.stopping:
                self.optimizer.tick(self)  # decides at most every 0.5 s: buffer budget, map pool sizes, caches
            if interrupt.event.is_set():
                self._stop(interrupt)
            if self.ex.file_timeout is not None:
                self._kill_overdue_files()
            if kind == "actor":
                self._on_actor(ctx, fut)
            elif kind == "map":
                m, held, sent_at = ctx
                self._on_map(m, held, sent_at, fut)
            for pool in [*self.pools.values(), *self.actors]:
                pool.check()  # a pool whose thread died (out of memory) fails its calls instead of hanging
            self._forward_progress()
            if self.trace is not None:
                self._sample()
            if time.monotonic() >= self.next_snapshot:
                self.ex._snapshot = self.take_snapshot()
                self.next_snapshot = time.monotonic() + SNAPSHOT_EVERY_S
        return [self.results[i] for i in range(len(self.files))]

    def _lost_completion(self) -> tuple[str, Any, Any]:
        """A call done for a while whose completion never reached the queue (its callback failed: out of memory),
        taken here instead of waited for forever; ("", None, None) when there is none. Looked for twice a second."""
        now = time.monotonic()
        if now < self.next_lost_check:
            return "", None, None
        self.next_lost_check = now + _LOST_CHECK_S
        for fut, (kind, ctx, wrap) in list(self.sent.items()):
            if fut.done():
                if now - self.done_seen.setdefault(fut, now) >= _LOST_CHECK_S:
                    del self.sent[fut]
                    self.done_seen.pop(fut, None)
                    log.warning("a call's completion was lost (its callback failed); taking it now")
                    return kind, ctx, wrap(fut)
        return "", None, None

    def _submit(self, pool: WorkerPool, kind: str, ctx: Any, fn: Any, *args: Any,
                label: tuple[str, str, dict[str, Any]] | None = None, timeout: float | None = None) -> None:
        """Send a call; its completion comes back on the queue. ``label``: (track, span name, args) when tracing.

        ``timeout``: the pool kills the call's worker when the call runs longer (None: the pool's own).
        """
        if kind == "actor":
            ctx[0].calls += 1
        if label is None:
            wrap: Any = lambda f: f  # noqa: E731
            fut = pool.submit_task(fn, args, timeout=timeout)
        else:
            sent = time.perf_counter()
            wrap = lambda f: _TimedFuture(f, label, sent)  # noqa: E731
            fut = pool.submit_task(_timed, (fn, *args), timeout=timeout)
        self.sent[fut] = (kind, ctx, wrap)
        fut.add_done_callback(lambda f: self.queue.put((kind, ctx, wrap(f))))

    def _actor_label(self, fs: _File, name: str, **args: Any) -> tuple[str, str, dict[str, Any]] | None:
        if self.trace is None:
            return None
        assert fs.actor is not None
        return f"actor {self.actor_numbers[id(fs.actor)]}", name, {"file": fs.task.file.relpath, **args}

    def _admit(self) -> None:
        while self.waiting and self.free_actors and not self.stopping:
            fs = self.waiting.popleft()
            fs.actor = self.free_actors.pop()
            self.active.append(fs)
            if not fs.announced:
                fs.announced = True
                self.events.file_started(fs.task)

    # Actors --------------------------------------------------------------------------------------

    def _advance(self, fs: _File) -> None:
        """Make the file's next actor call if it has something to do and is not busy."""
        if fs.busy or fs.actor is None or self.stopping:
            return
        task = dataclasses.replace(fs.task, cpu_budget=self.cpu_budget)
        if not fs.started:
            fs.started = fs.busy = True
            if self.ex.file_timeout is not None:
                fs.deadline = time.monotonic() + self.ex.file_timeout
            self._submit(fs.actor, "actor", (fs, []), actor_start, self.token, self.pipeline, task, self.maps,
                         self.board.segment.name, self.board.rows, fs.row, self.stage_numbers,
                         label=self._actor_label(fs, f"start {fs.task.file.relpath}"), timeout=self._time_left(fs))
            return
        timeout = self._time_left(fs)
        if timeout is not None and timeout <= 0:
            self._time_out(fs, abort_actor=True)
            return
        inbox = [(stage, items) for stage, items in fs.inbox.items() if items]
        credits: list[FrameRef] = []
        if not fs.exhausted and fs.need_nbytes:
            # Every slot the file holds counts: credits out, frames in map stages, results waiting for order.
            held_now = len(fs.credits) + fs.in_maps + sum(len(d) for d in fs.done.values()) \
                + sum(len(v) for v in fs.inbox.values())
            while held_now + len(credits) < self.credits_per_file:
                stuck = not fs.credits and not fs.in_maps and not credits  # holds nothing: must get one
                lease = self.slots.grant(fs.need_nbytes, force=stuck)
                if lease is None:
                    break
                ref = lease.ref((lease.nbytes,))
                fs.credits[_key(ref)] = lease
                credits.append(ref)
        if inbox or credits or (not fs.exhausted and not fs.need_nbytes):
            fs.busy = True
            sent = [(stage, [item for item, _ in pairs]) for stage, pairs in inbox]
            held = [lease for _stage, pairs in inbox for _item, lease in pairs if lease is not None]
            fs.inbox = {}
            self._submit(fs.actor, "actor", (fs, held), actor_step, fs.row, credits, sent,
                         label=self._actor_label(fs, "step", credits=len(credits),
                                                 delivered={stage: len(items) for stage, items in sent}),
                         timeout=timeout)
        elif fs.exhausted and not fs.in_maps and not fs.finishing and not any(fs.order.values()):
            fs.finishing = fs.busy = True
            self._submit(fs.actor, "actor", (fs, []), actor_finish, fs.row, label=self._actor_label(fs, "finish"),
                         timeout=timeout)

    def _time_left(self, fs: _File) -> float | None:
        """Seconds the file's attempt has left before its timeout (None: no timeout)."""
        return None if fs.deadline is None else fs.deadline - time.monotonic()

    def _kill_overdue_files(self) -> None:
        """Fail the files past their timeout that wait on map stages (a running actor call is killed by its pool)."""
        now = time.monotonic()
        for fs in list(self.active):
            if fs.deadline is not None and now >= fs.deadline and not fs.busy and fs.error is None:
                self._time_out(fs, abort_actor=True)

    def _time_out(self, fs: _File, abort_actor: bool) -> None:
        """Fail the file for its timeout; ``abort_actor``: its session still lives in the actor (not killed)."""
        self._fail(fs, timed_out(fs.task, self.ex.file_timeout or 0.0, fs.attempts), abort_actor=abort_actor)

    def _on_actor(self, ctx: Any, fut: Future[ActorReply]) -> None:
        fs, held = ctx
        fs.busy = False
        fs.calls -= 1
        for lease in held:  # items the actor has now consumed
            lease.release()
        try:
            reply = fut.result()
        except Exception as exc:  # the actor's worker died, or the call could not be made
            reply = None
            failure = exc
        if isinstance(fut, _TimedFuture):
            self._trace_actor(fs, fut, reply)
        if fs.row in self.results:  # a late reply for a file already retired
            self._release_credits(fs)
            if fs.calls == 0 and fs.actor is not None and fs.actor not in self.free_actors:
                self.free_actors.append(fs.actor)
            return
        if reply is None:
            if isinstance(failure, ResourceExhausted) and not fs.answered:
                self._unable_to_start(fs, failure)
                return
            if isinstance(failure, TaskTimeout) and fs.deadline is not None:
                self._time_out(fs, abort_actor=False)  # its worker was killed, and the session with it
                return
            if isinstance(failure, WorkerCrashed) and fs.attempts <= self.ex.retries:
                log.warning("worker died running %s: starting the file again on a new worker (attempt %d)",
                            fs.task.file.relpath, fs.attempts + 1,
                            extra={"file": fs.task.file.relpath, "attempt": fs.attempts + 1})
                self._restart(fs)
                return
            if isinstance(failure, WorkerCrashed):
                self._fail(fs, worker_died(fs.task, fs.attempts, failure))
            else:
                reason = failure.reason if isinstance(failure, ResourceExhausted) \
                    else f"{type(failure).__name__}: {failure}"
                self._fail(fs, worker_failed(fs.task, reason, type(failure).__name__, fs.attempts))
            return
        fs.answered = True
        if reply.result is not None:
            if reply.result.ok:
                self._complete(fs, reply.result)
            else:
                self._fail(fs, reply.result)
            return
        step = reply.step
        assert step is not None
        for ref in step.unused:
            lease = fs.credits.pop(_key(ref), None)
            if lease is not None:
                lease.release()
        fs.need_nbytes = step.need_nbytes
        fs.exhausted = step.exhausted
        for out in step.outbox:
            out_ref = getattr(out.item, "ref", None)
            lease = fs.credits.pop(_key(out_ref), None) if out_ref is not None else None
            seq = fs.seq
            fs.seq += 1
            for target in out.targets:
                for m in self.subtree[target]:
                    if m in self.ordered_maps:
                        fs.order.setdefault(m, deque()).append(seq)
                self._enqueue(fs, target, seq, out.item, lease.retain() if lease is not None else None)
            if lease is not None:
                lease.release()

    def _unable_to_start(self, fs: _File, failure: ResourceExhausted) -> None:
        """The file's actor could not start its thread or worker (resources ran out) before doing anything: the
        actor is let go and the file waits for another; with none left the run stops, with the limit named."""
        actor = fs.actor
        fs.actor, fs.started, fs.deadline = None, False, None
        self._release_credits(fs)
        if fs in self.active:
            self.active.remove(fs)
        self.waiting.appendleft(fs)
        log.warning("a file worker could not start: %s", failure.reason, extra={"file": fs.task.file.relpath})
        self.unstartable.add(id(actor))
        if len(self.unstartable) == len(self.actors):
            raise PoolUnavailable(f"could not start a file worker: {failure.reason}") from failure

    # Map stages ------------------------------------------------------------------------------------

    def _enqueue(self, fs: _File, stage: str, seq: int, item: Any, lease: SlotLease | None) -> None:
        fs.in_maps += 1
        self.ready[stage].append((fs, seq, item, lease))
        self.map_stats[stage].items_in += 1
        ref = getattr(item, "ref", None)
        if ref is not None:
            self.map_stats[stage].frames += 1
            self.map_stats[stage].bytes += ref.nbytes

    def _dispatch_maps(self) -> None:
        if self.stopping:
            return
        for m in sorted(self.maps, key=lambda n: -self.stages[n].priority):
            stage = self.stages[m]
            pool = self.pools[stage.pool]
            limit = stage.concurrency or pool.max_concurrent_tasks
            while self.ready[m] and self.running[m] < limit:
                batch: list[tuple[int, int, Any, FrameRef | None, FileItem]] = []
                held: list[tuple[_File, int, SlotLease | None, SlotLease | None, int]] = []
                while self.ready[m] and len(batch) < stage.batch_size:
                    fs, seq, item, lease = self.ready[m][0]
                    if fs.error is not None or fs.row in self.results:  # its file ended meanwhile: drop it
                        self.ready[m].popleft()
                        fs.in_maps -= 1
                        if lease is not None:
                            lease.release()
                        continue
                    out_lease = None
                    if lease is not None:
                        out_lease = self.slots.grant(lease.pool.slot_size)
                        if out_lease is None:
                            break  # no slot for its result: blocked until one frees
                    self.ready[m].popleft()
                    out_ref = out_lease.ref((out_lease.nbytes,)) if out_lease is not None else None
                    batch.append((fs.row, seq, item, out_ref, fs.task.file))
                    held.append((fs, seq, lease, out_lease, fs.epoch))
                if not batch:
                    break
                self.running[m] += 1
                label = None
                if self.trace is not None:
                    label = (stage.pool, f"map {m} x{len(batch)}",
                             {"stage": m, "frames": len(batch), "files": sorted({b[4].relpath for b in batch})})
                self._submit(pool, "map", (m, held, time.perf_counter()), run_map, self.token, stage, batch,
                             label=label, timeout=self.ex.file_timeout)

    def _on_map(self, m: str, held: list[tuple[_File, int, SlotLease | None, SlotLease | None, int]], sent_at: float,
                fut: Future[list[MapOutcome]]) -> None:
        self.running[m] -= 1
        self.latencies[m].append(time.perf_counter() - sent_at)
        if isinstance(fut, _TimedFuture):
            self._trace_map(fut)
        try:
            outcomes = fut.result()
        except TaskTimeout as exc:  # a map task past the file timeout: its worker was killed
            error = map_task_timed_out(m, exc.timeout)
            outcomes = [MapOutcome(h[0].row, h[1], error=error) for h in held]
        except ResourceExhausted as exc:  # its pool could not start a thread or a worker: the limit is named
            outcomes = [MapOutcome(h[0].row, h[1], error=f"[{m}] {exc.reason}") for h in held]
        except Exception as exc:  # the task could not run (pool killed, worker crashed past its retries)
            outcomes = [MapOutcome(h[0].row, h[1], error=map_task_failed(m, exc)) for h in held]
        stats = self.map_stats[m]
        for (fs, seq, in_lease, out_lease, epoch), outcome in zip(held, outcomes):
            stats.busy_s += outcome.busy_s
            out_ref = getattr(outcome.output, "ref", None)
            if in_lease is not None and out_ref is not None and not outcome.used_slot and \
                    _key(out_ref) == (in_lease.pool.pool_id, in_lease.slot, in_lease.generation):
                # The stage passed its input on unchanged: the input's slot now carries the output.
                if out_lease is not None:
                    out_lease.release()
                out_lease, in_lease = in_lease, None
                outcome.used_slot = True
            if in_lease is not None:
                in_lease.release()
            if epoch != fs.epoch:  # the file restarted since: this frame belongs to the lost run
                if out_lease is not None:
                    out_lease.release()
                continue
            fs.in_maps -= 1
            if outcome.error is not None:
                stats.failures += 1
                if out_lease is not None:
                    out_lease.release()
                self._fail(fs, FileResult(fs.task.file, FAILED, error=outcome.error, failed_stage=m,
                                          traceback=outcome.traceback, error_type="StageError"), abort_actor=True)
                continue
            fs.records.update(outcome.records)
            fs.warnings += outcome.warnings
            output = outcome.output
            if out_lease is not None and not outcome.used_slot:
                out_lease.release()
                out_lease = None
            if fs.error is not None:
                if out_lease is not None:
                    out_lease.release()
                continue
            if output is not None:
                stats.items_out += 1
            self._route(fs, m, seq, output, out_lease)

    def _route(self, fs: _File, m: str, seq: int, output: Any, lease: SlotLease | None) -> None:
        """Send a map stage's result on: to map children at once, to local children in order."""
        kind = getattr(output, "kind", None) if output is not None else None
        for child in self.children[m]:
            if child not in self.maps:
                continue
            if output is not None and kind in self.stages[child].accepts:
                self._enqueue(fs, child, seq, output, lease.retain() if lease is not None else None)
            else:  # nothing goes to this branch for this frame: it completes empty all the way down
                for d in self.subtree[child]:
                    if d in self.ordered_maps:
                        self._complete_in_order(fs, d, seq, _SKIP, None)
        if m in self.ordered_maps:
            self._complete_in_order(fs, m, seq, output if output is not None else _SKIP,
                                    lease.retain() if lease is not None else None)
        if lease is not None:
            lease.release()

    def _complete_in_order(self, fs: _File, m: str, seq: int, output: Any, lease: SlotLease | None) -> None:
        done = fs.done.setdefault(m, {})
        done[seq] = (output, lease)
        order = fs.order.get(m, deque())
        while order and order[0] in done:
            item, item_lease = done.pop(order.popleft())
            if item is not _SKIP:
                kind = getattr(item, "kind", None)
                for child in self.children[m]:
                    if child not in self.maps and kind in self.stages[child].accepts:
                        fs.inbox.setdefault(child, []).append(
                            (item, item_lease.retain() if item_lease is not None else None))
            if item_lease is not None:
                item_lease.release()

    # Outcomes ---------------------------------------------------------------------------------------

    def _complete(self, fs: _File, result: FileResult) -> None:
        result.record.update(fs.records)
        result.warnings += fs.warnings
        result.attempts = fs.attempts
        self._retire(fs, result)

    def _restart(self, fs: _File) -> None:
        """The file's actor died with its session: drop what is in flight for it and start it over."""
        self._release_credits(fs)
        for m, ready in self.ready.items():
            keep: deque[tuple[_File, int, Any, SlotLease | None]] = deque()
            for entry in ready:
                if entry[0] is fs:
                    if entry[3] is not None:
                        entry[3].release()
                else:
                    keep.append(entry)
            self.ready[m] = keep
        self._release_waiting(fs)
        fs.in_maps = 0  # map tasks still running for it belong to the old epoch and are dropped
        fs.reset()

    @staticmethod
    def _release_waiting(fs: _File) -> None:
        """Free the slots of the file's results that wait for order or for delivery to its actor."""
        for pairs in fs.inbox.values():
            for _item, lease in pairs:
                if lease is not None:
                    lease.release()
        fs.inbox.clear()
        for done in fs.done.values():
            for _item, lease in done.values():
                if lease is not None:
                    lease.release()
        fs.done.clear()

    def _release_credits(self, fs: _File) -> None:
        """Free the slots granted to the file's actor (only once no call of it is in flight)."""
        if fs.calls:
            return
        for lease in list(fs.credits.values()):
            lease.release()
        fs.credits.clear()

    def _fail(self, fs: _File, result: FileResult, abort_actor: bool = False) -> None:
        if fs.error is not None or fs.row in self.results:
            return
        fs.error = result
        if abort_actor and fs.actor is not None and fs.started:
            # The actor's stages must discard what they wrote; the abort call also frees the actor.
            fs.busy = True
            self._submit(fs.actor, "actor", (fs, []), actor_abort, fs.row, result.error or "failed",
                         label=self._actor_label(fs, "abort"), timeout=self.ex.file_timeout)
        self._retire(fs, result, keep_actor=abort_actor and fs.started)
        if self.ex.fail_fast:
            self.stopping = True

    def _retire(self, fs: _File, result: FileResult, keep_actor: bool = False) -> None:
        self.results[fs.row] = result
        for st in result.stats.values():
            self.memo_counts[0] += st.cache_hits
            self.memo_counts[1] += st.cache_misses
        self._release_credits(fs)  # else when its call in flight returns: the actor may be writing into them
        self._release_waiting(fs)
        fs.order.clear()
        if fs in self.active:
            self.active.remove(fs)
        if fs.actor is not None and not keep_actor and fs.calls == 0:
            self.free_actors.append(fs.actor)
        self.events.file_done(result)
        if self.stopping:  # fail fast: the files not started yet are not run
            while self.waiting:
                rest = self.waiting.popleft()
                self.results[rest.row] = FileResult(rest.task.file, FAILED, error="not run: an earlier file failed "
                                                    "and fail_fast is set", error_type=Cancelled.__name__)

    # Tracing ------------------------------------------------------------------------------------------

    def _trace_actor(self, fs: _File, fut: _TimedFuture, reply: ActorReply | None) -> None:
        """A span for an actor call on its worker's track; at the file's end, its frames spread over its spans."""
        assert self.trace is not None
        track, name, args = fut.label
        pid, t0, t1 = fut.where()
        if reply is not None and reply.step is not None:
            args["sent_to_maps"] = len(reply.step.outbox)
        span = self.trace.span(f"{track} (pid {pid})" if pid else track, name, self.trace.since(t0),
                               self.trace.since(t1), args, group="actors")
        fs.spans.append(span)
        if reply is not None and reply.result is not None:
            # Per-stage frames are known only at the file's end: shared out by each call's duration.
            spans, fs.spans = fs.spans, []
            total = sum(s.duration_s for s in spans)
            frames = {n: st.frames for n, st in reply.result.stats.items() if st.frames}
            for s in spans:
                share = s.duration_s / total if total > 0 else 1 / len(spans)
                assert s.args is not None
                s.args["frames"] = {n: round(f * share, 3) for n, f in frames.items()}

    def _trace_map(self, fut: _TimedFuture) -> None:
        assert self.trace is not None
        pool, name, args = fut.label
        pid, t0, t1 = fut.where()
        track = f"{pool} worker (pid {pid})" if pid else f"{pool} worker"
        self.trace.span(track, name, self.trace.since(t0), self.trace.since(t1), args, group=f"map:{pool}")

    def _sample(self) -> None:
        """Counters of this tick (only when they changed): slots in use, files in flight, map tasks running."""
        assert self.trace is not None
        now = (self.slots.leased_slots, len(self.active), sum(self.running.values()))
        if now != self.last_sample:
            self.last_sample = now
            t = self.trace.now()
            self.trace.counter("slots in use", t, {"slots": now[0]})
            self.trace.counter("files in flight", t, {"files": now[1]})
            self.trace.counter("map tasks running", t, {"tasks": now[2]})

    # Time, progress, interrupts -----------------------------------------------------------------------

    def take_snapshot(self, running: bool = True) -> MetricsSnapshot:
        """The run's figures now (called from the loop's thread, where its state is consistent)."""
        pools = [pool_snapshot(name, pool.metrics()) for name, pool in self.pools.items()]
        pools.append(actors_snapshot(a.metrics() for a in self.actors))
        failed = sum(not r.ok for r in self.results.values())
        return MetricsSnapshot(time.time(), time.monotonic() - self.started, running, len(self.files),
                               len(self.results), failed, len(self.active), tuple(pools), memory_snapshot(self.slots),
                               cache_snapshots((self.memo_counts[0], self.memo_counts[1]), self.ex.caches))

    def _account_time(self) -> None:
        now = time.monotonic()
        dt, self.last_tick = now - self.last_tick, now
        for m in self.maps:
            limit = self.stages[m].concurrency or self.pools[self.stages[m].pool].max_concurrent_tasks
            idle = max(0, limit - self.running[m])
            if not self.ready[m]:
                self.map_stats[m].starved_s += dt * idle / limit
            elif idle:
                self.map_stats[m].blocked_s += dt * idle / limit  # input ready, no slot for its result

    def _forward_progress(self) -> None:
        snapshot = self.board.snapshot()
        for fs in self.active:
            state, _pid, stage, done, total, _t = (int(v) for v in snapshot[fs.row])
            if state and stage >= 0 and self.seen_progress.get(fs.row) != (stage, done):
                self.seen_progress[fs.row] = (stage, done)
                self.events.file_progress(fs.task.file.index, self.order[stage], done, None if total < 0 else total)

    def _stop(self, interrupt: InterruptFlag) -> None:
        """Stop dispatching, give running calls ``grace_s`` to finish, then kill them and raise."""
        self.stopping = True
        deadline = time.monotonic() + self.ex.grace_s

        def busy() -> bool:
            return any(fs.busy for fs in self.active) or any(self.running.values())

        while busy() and time.monotonic() < deadline:
            try:
                kind, ctx, fut = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if self.sent.pop(getattr(fut, "fut", fut), None) is None:
                continue  # taken already, as lost
            if kind == "actor":
                ctx[0].busy = False
            elif kind == "map":
                self.running[ctx[0]] -= 1
        for pool in [*self.pools.values(), *self.actors]:
            pool.shutdown(wait=True, kill=True)
        interrupt.raise_if_set()

    def close(self) -> None:
        for pool in [*self.pools.values(), *self.actors]:
            pool.shutdown(wait=True, cancel_pending=True)
        for lat_stage, samples in self.latencies.items():
            self.map_stats[lat_stage].record_latencies(samples)
        self.board.close()
        self.slots.close()
