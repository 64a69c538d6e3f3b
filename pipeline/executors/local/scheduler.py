"""The local run's start-up and its loop: the pools and actors a batch gets, then one thread that admits files,
makes calls, and takes completions until every file has a result.

Each pass of the loop: admit files to free actors, advance each file in flight (its next actor call), send
map tasks, then take one completion (or wait ``TICK_S`` for it), account time, let the optimizer sample,
stop on Ctrl-C / SIGTERM, time files out, handle the completion, and forward progress, trace counters and
snapshots.
"""

from __future__ import annotations

import logging
import os
import queue
import time
import uuid
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ...dataplane.board import ProgressBoard
from ...dataplane.frame_pools import SlotAllocator
from ...errors import FramepipeError, PoolUnavailable
from ...graph import Pipeline
from ...observe.metrics import StageStats
from ...observe.snapshots import SNAPSHOT_EVERY_S
from ...observe.trace import RunTrace
from ...results import FileResult
from ...runtime.forkserver import start_server
from ...runtime.interrupts import InterruptFlag
from ...runtime.limits import limit_reason
from ...runtime.pool import CoreBudget, Priority, TaskPoolConfig, WorkerPool
from ..base import FileTask, RunEvents, credits_per_file
from ..parts import split_plan
from . import actors, maps, observe, outcomes
from .state import ActorCall, FileInFlight, LocalRun, MapQueues, RunGraph, Sampling, Workers

if TYPE_CHECKING:
    from .executor import LocalExecutor

__all__ = ["start", "loop", "close", "stage_modules"]

TICK_S = 0.1  # the loop wakes at least this often: progress, timeouts, Ctrl-C
log = logging.getLogger("framepipe.executor")


def _warm_up() -> None:
    """A no-op task: makes loky start a pool's workers (and import their modules) ahead of need."""
    import numpy  # noqa: F401  (what map stages nearly always need)


def stage_modules(pipeline: Pipeline) -> set[str]:
    """The modules that define the pipeline's stages (and the functions of function stages), and those their
    work imports (``Stage.preload``)."""
    stages = pipeline.stages.values()
    return {type(s).__module__ for s in stages} | {getattr(s, "fn", _warm_up).__module__ for s in stages} | \
        {m for s in stages for m in s.preload}


# Start-up -------------------------------------------------------------------------------------------

def start(ex: LocalExecutor, pipeline: Pipeline, tasks: Sequence[FileTask], events: RunEvents,
          trace: RunTrace | None) -> LocalRun:
    """Start a batch: its map pools (their workers warming up), one actor per file in flight, its slots."""
    token = uuid.uuid4().hex
    graph = RunGraph.of(pipeline)
    stages, maps_ = graph.stages, graph.maps
    slots = SlotAllocator(ex.buffer_bytes)
    budget = CoreBudget(ex.workers)
    start_server(stage_modules(pipeline))  # if prepare() has not started it already
    pools: dict[str, WorkerPool] = {}
    actor_pools: list[WorkerPool] = []
    try:
        for m in sorted(maps_):
            pool_name = stages[m].pool
            if pool_name not in pools:
                priority = Priority(max(stages[s].priority for s in maps_ if stages[s].pool == pool_name))
                config = pipeline.pools.get(pool_name) or TaskPoolConfig(ex.map_workers or ex.workers,
                                                                         priority=priority)
                # keep_alive: a worker's RSS grows with the slots it maps (shared, not leaked); loky's leak
                # guard would otherwise restart map workers in the middle of a run.
                pools[pool_name] = WorkerPool(f"{pipeline.name}.{pool_name}", config, budget=budget,
                                              keep_alive=True)
        # A pipeline that can cut files into parts keeps an actor per worker even for one file: its parts need them.
        splits = split_plan(pipeline) is not None and not maps_
        n_actors = ex.files_in_flight or (ex.workers if splits else
                                          min(len(tasks), ex.workers if not maps_ else max(1, ex.workers // 2)))
        for i in range(max(1, n_actors if splits else min(n_actors, len(tasks)))):
            actor_pools.append(WorkerPool(f"{pipeline.name}.file{i}",
                                          TaskPoolConfig(1, priority=Priority.HIGH, retries=0), keep_alive=True))
        # Start the map workers now, beside the first actor, instead of after its first frames.
        for pool in pools.values():
            for _ in range(pool.max_concurrent_tasks):
                pool.submit(_warm_up)
        map_workers = sum(p.max_concurrent_tasks for p in pools.values())
        credits = ex.credits_per_file or credits_per_file(map_workers)
        cores = (os.cpu_count() or 1) if not maps_ else 0
        board = ProgressBoard.create(len(tasks))
    except BaseException as exc:  # a pool could not start (out of descriptors, threads, memory): none is left
        for pool in [*pools.values(), *actor_pools]:
            pool.shutdown(wait=True, kill=True)
        slots.close()
        reason = None if isinstance(exc, FramepipeError) or not isinstance(exc, Exception) else limit_reason(exc)
        if reason is None:
            raise
        raise PoolUnavailable(f"could not start the run's workers: {reason}") from exc
    workers = Workers(pools, actor_pools, board, cores, free_actors=list(actor_pools),
                      numbers={id(a): i for i, a in enumerate(actor_pools)})
    files = [FileInFlight(t, i) for i, t in enumerate(tasks)]
    queues = MapQueues(ready={m: deque() for m in maps_}, running=dict.fromkeys(maps_, 0),
                       latencies={m: [] for m in maps_},
                       stats={m: StageStats(m, workers=pools[stages[m].pool].max_concurrent_tasks,
                                            where=f"map:{stages[m].pool}") for m in maps_})
    sampling = Sampling(last_tick=time.monotonic())
    run = LocalRun(ex, pipeline, events, trace, token, graph, workers, slots, credits, files, queues, sampling,
                   started=time.monotonic(), waiting=deque(files))
    if ex.performance is not None and ex.performance.optimize:
        from ...tuning.optimizer import RunOptimizer  # (tuning imports this package: not at the top)
        run.optimizer = RunOptimizer(ex.performance, ex.workers)
    log.debug("local run: %d file(s) on %d actor(s), map pools %s, %d credits per file, %d bytes of slots",
              len(tasks), len(actor_pools), {n: p.max_concurrent_tasks for n, p in pools.items()},
              credits, ex.buffer_bytes)
    return run


# The loop -------------------------------------------------------------------------------------------

def loop(run: LocalRun, interrupt: InterruptFlag) -> list[FileResult]:
    """Run the batch to its end; the results in task order."""
    while len(run.results) < len(run.files):
        actors.admit(run)
        for fs in list(run.active):
            actors.advance(run, fs)
        maps.dispatch(run)
        done = run.calls.take(TICK_S)
        observe.account_time(run)
        if run.optimizer is not None and not run.stopping:
            run.optimizer.tick(run)  # decides at most every 0.5 s: buffer budget, map pool sizes, caches
        if interrupt.event.is_set():
            _stop(run, interrupt)
        if run.ex.file_timeout is not None:
            outcomes.kill_overdue(run)
        if done is not None:
            call, fut = done
            if isinstance(call, ActorCall):
                actors.on_reply(run, call, fut)
            else:
                maps.on_done(run, call, fut)
        for pool in run.workers.all_pools():
            pool.check()  # a pool whose thread died (out of memory) fails its calls instead of hanging
        observe.forward_progress(run)
        if run.trace is not None:
            observe.sample(run)
        if time.monotonic() >= run.sampling.next_snapshot:
            run.ex._snapshot = observe.snapshot(run)
            run.sampling.next_snapshot = time.monotonic() + SNAPSHOT_EVERY_S
    return [run.results[i] for i in range(len(run.files))]


def _stop(run: LocalRun, interrupt: InterruptFlag) -> None:
    """Stop dispatching, give running calls ``grace_s`` to finish, then kill them and raise."""
    run.stopping = True
    deadline = time.monotonic() + run.ex.grace_s

    def busy() -> bool:
        return any(fs.busy for fs in run.active) or any(run.queues.running.values())

    while busy() and time.monotonic() < deadline:
        try:
            call, fut = run.calls.queue.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if not run.calls.claim(fut):
            continue  # taken already, as lost
        if isinstance(call, ActorCall):
            call.file.busy = False
        else:
            run.queues.running[call.stage] -= 1
    for pool in run.workers.all_pools():
        pool.shutdown(wait=True, kill=True)
    interrupt.raise_if_set()


def close(run: LocalRun) -> None:
    """Shut the pools down, keep the map stages' latencies, free the board and the slots."""
    for pool in run.workers.all_pools():
        pool.shutdown(wait=True, cancel_pending=True)
    for lat_stage, samples in run.queues.latencies.items():
        run.queues.stats[lat_stage].record_latencies(samples)
    run.workers.board.close()
    run.slots.close()
