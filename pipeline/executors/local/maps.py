"""Map stages: each has a queue of frames ready; tasks of up to ``batch_size`` frames go to its pool while it
has room and a slot is free for each result. A result goes on to map children at once, and to local children
(through the file's actor) in frame order: results that come back early wait in the file's ``done`` until
those before them are in (an encoder sees frames in order).

Slot lifetime: a frame's slot is leased by the parent, filled by the actor, retained once per consumer (each
map stage it goes to, each ordered delivery to an actor) and freed with its last release.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from ...dataplane.buffers import FrameRef, SlotLease
from ...errors import ResourceExhausted, TaskTimeout
from ...items import FileItem, slot_of
from ...results import FAILED, FileResult
from ..failures import map_task_failed, map_task_timed_out
from ..worker import MapOutcome, run_map
from .calls import Done, TimedFuture
from .observe import trace_map
from .outcomes import fail
from .state import FileInFlight, LocalRun, MapCall, MapFrame, ReadyEntry, slot_key

__all__ = ["enqueue", "dispatch", "on_done"]

_SKIP = object()  # a frame that sends nothing down a branch: it completes empty there, to keep the order


def enqueue(run: LocalRun, fs: FileInFlight, stage: str, seq: int, item: Any, lease: SlotLease | None) -> None:
    """Put a frame of the file in a map stage's queue."""
    fs.in_maps += 1
    run.queues.ready[stage].append(ReadyEntry(fs, seq, item, lease))
    stats = run.queues.stats[stage]
    stats.items_in += 1
    ref = slot_of(item)
    if ref is not None:
        stats.frames += 1
        stats.bytes += ref.nbytes


def dispatch(run: LocalRun) -> None:
    """Send map tasks from the queues, highest priority stage first, while each stage has room."""
    if run.stopping:
        return
    stages = run.graph.stages
    queues = run.queues
    for m in sorted(run.graph.maps, key=lambda n: -stages[n].priority):
        stage = stages[m]
        pool = run.workers.pools[stage.pool]
        limit = stage.concurrency or pool.max_concurrent_tasks
        ready = queues.ready[m]
        while ready and queues.running[m] < limit:
            batch: list[tuple[int, int, Any, FrameRef | None, FileItem]] = []
            frames: list[MapFrame] = []
            while ready and len(batch) < stage.batch_size:
                fs, seq, item, lease = ready[0]
                if fs.error is not None or fs.row in run.results:  # its file ended meanwhile: drop it
                    ready.popleft()
                    fs.in_maps -= 1
                    if lease is not None:
                        lease.release()
                    continue
                out_lease = None
                if lease is not None:
                    out_lease = run.slots.grant(lease.pool.slot_size)
                    if out_lease is None:
                        break  # no slot for its result: blocked until one frees
                ready.popleft()
                out_ref = out_lease.ref((out_lease.nbytes,)) if out_lease is not None else None
                batch.append((fs.row, seq, item, out_ref, fs.task.file))
                frames.append(MapFrame(fs, seq, lease, out_lease, fs.epoch))
            if not batch:
                break
            queues.running[m] += 1
            label = None
            if run.trace is not None:
                label = (stage.pool, f"map {m} x{len(batch)}",
                         {"stage": m, "frames": len(batch), "files": sorted({b[4].relpath for b in batch})})
            run.calls.submit(pool, MapCall(m, frames, time.perf_counter()), run_map, run.token, stage, batch,
                             label=label, timeout=run.ex.file_timeout)


def on_done(run: LocalRun, call: MapCall, fut: Done) -> None:
    """A map task returned: each frame's result goes on, or fails its file; slots no longer needed are freed."""
    m, frames, sent_at = call
    run.queues.running[m] -= 1
    run.queues.latencies[m].append(time.perf_counter() - sent_at)
    if isinstance(fut, TimedFuture):
        trace_map(run, fut)
    outcomes: list[MapOutcome]
    try:
        outcomes = fut.result()
    except TaskTimeout as exc:  # a map task past the file timeout: its worker was killed
        error = map_task_timed_out(m, exc.timeout)
        outcomes = [MapOutcome(f.file.row, f.seq, error=error) for f in frames]
    except ResourceExhausted as exc:  # its pool could not start a thread or a worker: the limit is named
        outcomes = [MapOutcome(f.file.row, f.seq, error=f"[{m}] {exc.reason}") for f in frames]
    except Exception as exc:  # the task could not run (pool killed, worker crashed past its retries)
        outcomes = [MapOutcome(f.file.row, f.seq, error=map_task_failed(m, exc)) for f in frames]
    stats = run.queues.stats[m]
    for (fs, seq, in_lease, out_lease, epoch), outcome in zip(frames, outcomes):
        stats.busy_s += outcome.busy_s
        out_ref = slot_of(outcome.output)
        if in_lease is not None and out_ref is not None and not outcome.used_slot and \
                slot_key(out_ref) == (in_lease.pool.pool_id, in_lease.slot, in_lease.generation):
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
            fail(run, fs, FileResult(fs.task.file, FAILED, error=outcome.error, failed_stage=m,
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
        _route(run, fs, m, seq, output, out_lease)


def _route(run: LocalRun, fs: FileInFlight, m: str, seq: int, output: Any, lease: SlotLease | None) -> None:
    """Send a map stage's result on: to map children at once, to local children in order."""
    graph = run.graph
    kind = getattr(output, "kind", None) if output is not None else None
    for child in graph.children[m]:
        if child not in graph.maps:
            continue
        if output is not None and kind in graph.stages[child].accepts:
            enqueue(run, fs, child, seq, output, lease.retain() if lease is not None else None)
        else:  # nothing goes to this branch for this frame: it completes empty all the way down
            for d in graph.subtree[child]:
                if d in graph.ordered_maps:
                    _complete_in_order(run, fs, d, seq, _SKIP, None)
    if m in graph.ordered_maps:
        _complete_in_order(run, fs, m, seq, output if output is not None else _SKIP,
                           lease.retain() if lease is not None else None)
    if lease is not None:
        lease.release()


def _complete_in_order(run: LocalRun, fs: FileInFlight, m: str, seq: int, output: Any,
                       lease: SlotLease | None) -> None:
    """Record frame ``seq``'s result of map stage ``m``; hand on, to the local children, every result now due."""
    done = fs.done.setdefault(m, {})
    done[seq] = (output, lease)
    order = fs.order.get(m, deque())
    while order and order[0] in done:
        item, item_lease = done.pop(order.popleft())
        if item is not _SKIP:
            kind = getattr(item, "kind", None)
            for child in run.graph.children[m]:
                if child not in run.graph.maps and kind in run.graph.stages[child].accepts:
                    fs.inbox.setdefault(child, []).append(
                        (item, item_lease.retain() if item_lease is not None else None))
        if item_lease is not None:
            item_lease.release()
