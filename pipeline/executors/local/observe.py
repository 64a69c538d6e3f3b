"""What the local run shows of itself: trace spans and counters, per-file progress, the map stages' busy,
starved and blocked time, and ``MetricsSnapshot`` s.

Tracing (``run(..., trace=RunTrace)``): each call is sent wrapped in ``calls.timed``, which returns the worker's
pid and its own start and end with the result; the parent records a span per actor call and map task on the
track of that worker, and a counter sample per scheduler tick. Inside an actor call's span go the spans of its
stages' work that its reply brings (``observe.stage_timeline``: a stage's frames and their range in the file, per
window of about 100 ms), and before it a "wait for slots" span when the file's session sat paused for a slot
since its last call. Stage spans and waits are not busy time (``Span.busy``): the call's span counts it once.
Without a trace nothing of this runs.
"""

from __future__ import annotations

import time
from typing import Any

from ...observe.snapshots import MetricsSnapshot, actors_snapshot, cache_snapshots, memory_snapshot, pool_snapshot
from ...observe.stage_timeline import record_stage_spans
from ..worker import ActorReply
from .calls import Label, TimedFuture
from .state import FileInFlight, LocalRun

__all__ = ["actor_label", "trace_actor", "trace_map", "sample", "snapshot", "account_time", "forward_progress"]


# Tracing ------------------------------------------------------------------------------------------

def actor_label(run: LocalRun, fs: FileInFlight, name: str, **args: Any) -> Label | None:
    """The label of an actor call's span (its actor's track), or None when the run is not traced."""
    if run.trace is None:
        return None
    assert fs.actor is not None
    return f"actor {run.workers.numbers[id(fs.actor)]}", name, {"file": fs.task.file.relpath, **args}


def trace_actor(run: LocalRun, fs: FileInFlight, fut: TimedFuture, reply: ActorReply | None) -> None:
    """A span for an actor call on its worker's track, the spans of its stages' work inside it, and before it the
    time the file's session waited for a slot (since a call that left it paused)."""
    trace = run.trace
    assert trace is not None
    label_track, name, args = fut.label
    pid, t0, t1 = fut.where()
    track = f"{label_track} (pid {pid})" if pid else label_track
    file = fs.task.file.relpath
    if fs.waiting_since is not None:
        trace.span(track, "wait for slots", trace.since(fs.waiting_since), trace.since(t0), {"file": file},
                   group="actors", busy=False)
        fs.waiting_since = None
    if reply is not None and reply.step is not None:
        args["sent_to_maps"] = len(reply.step.outbox)
    trace.span(track, name, trace.since(t0), trace.since(t1), args, group="actors")
    if reply is None:
        return
    part = fs.task.part
    where = {"file": file} if part is None else {"file": file, "part": f"{part.index + 1}/{part.count}"}
    record_stage_spans(trace, track, reply.spans, t0, t1, where, group="actors")
    if reply.step is not None and reply.step.need_nbytes:
        fs.waiting_since = t1  # paused: an item waits for a slot


def trace_map(run: LocalRun, fut: TimedFuture) -> None:
    """A span for a map task on its worker's track."""
    assert run.trace is not None
    pool, name, args = fut.label
    pid, t0, t1 = fut.where()
    track = f"{pool} worker (pid {pid})" if pid else f"{pool} worker"
    run.trace.span(track, name, run.trace.since(t0), run.trace.since(t1), args, group=f"map:{pool}")


def sample(run: LocalRun) -> None:
    """Counters of this tick (only when they changed): slots in use, files in flight, map tasks running."""
    assert run.trace is not None
    now = (run.slots.leased_slots, len(run.active), sum(run.queues.running.values()))
    if now != run.sampling.last_sample:
        run.sampling.last_sample = now
        t = run.trace.now()
        run.trace.counter("slots in use", t, {"slots": now[0]})
        run.trace.counter("files in flight", t, {"files": now[1]})
        run.trace.counter("map tasks running", t, {"tasks": now[2]})


# Figures and progress ------------------------------------------------------------------------------

def snapshot(run: LocalRun, running: bool = True) -> MetricsSnapshot:
    """The run's figures now (called from the loop's thread, where its state is consistent)."""
    pools = [pool_snapshot(name, pool.statistics()) for name, pool in run.workers.pools.items()]
    pools.append(actors_snapshot(a.statistics() for a in run.workers.actors))
    failed = sum(not r.ok for r in run.results.values())
    memo = run.sampling.memo_counts
    return MetricsSnapshot(time.time(), time.monotonic() - run.started, running, len(run.files),
                           len(run.results), failed, len(run.active), tuple(pools), memory_snapshot(run.slots),
                           cache_snapshots((memo[0], memo[1]), run.ex.caches))


def account_time(run: LocalRun) -> None:
    """Add the time since the last tick to each map stage's starved (no input) or blocked (no slot) time."""
    now = time.monotonic()
    dt, run.sampling.last_tick = now - run.sampling.last_tick, now
    stages, queues = run.graph.stages, run.queues
    for m in run.graph.maps:
        limit = stages[m].concurrency or run.workers.pools[stages[m].pool].max_concurrent_tasks
        idle = max(0, limit - queues.running[m])
        if not queues.ready[m]:
            queues.stats[m].starved_s += dt * idle / limit
        elif idle:
            queues.stats[m].blocked_s += dt * idle / limit  # input ready, no slot for its result


def forward_progress(run: LocalRun) -> None:
    """Tell the caller how far each file in flight has got, from the workers' progress board."""
    board = run.workers.board.snapshot()
    seen = run.sampling.seen_progress
    for fs in run.active:
        state, _pid, stage, done, total, _t = (int(v) for v in board[fs.row])
        if state and stage >= 0 and seen.get(fs.row) != (stage, done):
            seen[fs.row] = (stage, done)
            run.events.file_progress(fs.task.file.index, run.graph.order[stage], done, None if total < 0 else total)
