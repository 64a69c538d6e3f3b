"""A file's calls to its actor: admission (a free actor for the next file), the next call (start, a step with
credits and the results of map stages, finish), and what a reply brings back.

A step's credits are slots leased for the frames its session will send to map stages: a file holds at most
``credits_per_file`` slots, counting credits out, frames in map stages and results waiting for order or
delivery. When it holds none it gets one even past the budget, so that every file can make progress.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque

from ...dataplane.buffers import FrameRef
from ...items import slot_of
from ..worker import ActorReply, actor_finish, actor_start, actor_step
from . import maps, outcomes
from .calls import Done, TimedFuture
from .observe import actor_label, trace_actor
from .state import ActorCall, FileInFlight, FileState, LocalRun, slot_key

__all__ = ["admit", "advance", "on_reply"]


def admit(run: LocalRun) -> None:
    """Give free actors to the files waiting, in order (none once the run is stopping)."""
    while run.waiting and run.workers.free_actors and not run.stopping:
        fs = run.waiting.popleft()
        fs.actor = run.workers.free_actors.pop()
        run.active.append(fs)
        if not fs.announced:
            fs.announced = True
            run.events.file_started(fs.task)


def advance(run: LocalRun, fs: FileInFlight) -> None:
    """Make the file's next actor call if it has something to do and is not busy."""
    if fs.busy or fs.actor is None or run.stopping:
        return
    task = dataclasses.replace(fs.task, cpu_budget=run.workers.cpu_budget)
    if fs.state is FileState.NEW:
        fs.state, fs.busy = FileState.RUNNING, True
        if run.ex.file_timeout is not None:
            fs.deadline = time.monotonic() + run.ex.file_timeout
        run.call_actor(fs, actor_start, run.token, run.pipeline, task, run.graph.maps,
                       run.workers.board.segment.name, run.workers.board.rows, fs.row, run.graph.numbers, held=[],
                       label=actor_label(run, fs, f"start {fs.task.file.relpath}"), timeout=outcomes.time_left(fs))
        return
    timeout = outcomes.time_left(fs)
    if timeout is not None and timeout <= 0:
        outcomes.time_out(run, fs, abort_actor=True)
        return
    running = fs.state is FileState.RUNNING  # its sources are not drained
    inbox = [(stage, items) for stage, items in fs.inbox.items() if items]
    credits: list[FrameRef] = []
    if running and fs.need_nbytes:
        # Every slot the file holds counts: credits out, frames in map stages, results waiting for order.
        held_now = len(fs.credits) + fs.in_maps + sum(len(d) for d in fs.done.values()) \
            + sum(len(v) for v in fs.inbox.values())
        while held_now + len(credits) < run.credits_per_file:
            stuck = not fs.credits and not fs.in_maps and not credits  # holds nothing: must get one
            lease = run.slots.grant(fs.need_nbytes, force=stuck)
            if lease is None:
                break
            ref = lease.ref((lease.nbytes,))
            fs.credits[slot_key(ref)] = lease
            credits.append(ref)
    if inbox or credits or (running and not fs.need_nbytes):
        fs.busy = True
        sent = [(stage, [item for item, _ in pairs]) for stage, pairs in inbox]
        held = [lease for _stage, pairs in inbox for _item, lease in pairs if lease is not None]
        fs.inbox = {}
        run.call_actor(fs, actor_step, fs.row, credits, sent, held=held,
                       label=actor_label(run, fs, "step", credits=len(credits),
                                         delivered={stage: len(items) for stage, items in sent}),
                       timeout=timeout)
    elif fs.state is FileState.EXHAUSTED and not fs.in_maps and not any(fs.order.values()):
        fs.state, fs.busy = FileState.FINISHING, True
        run.call_actor(fs, actor_finish, fs.row, held=[], label=actor_label(run, fs, "finish"), timeout=timeout)


def on_reply(run: LocalRun, call: ActorCall, fut: Done) -> None:
    """An actor call returned: free what it consumed, then end the file, or take its step's frames on."""
    fs, held = call
    fs.busy = False
    fs.calls -= 1
    for consumed in held:  # items the actor has now consumed
        consumed.release()
    reply: ActorReply | None
    try:
        reply = fut.result()
    except Exception as exc:  # the actor's worker died, or the call could not be made
        reply = None
        failure = exc
    if isinstance(fut, TimedFuture):
        trace_actor(run, fs, fut, reply)
    if fs.row in run.results:  # a late reply for a file already retired
        outcomes.release_credits(fs)
        if fs.calls == 0 and fs.actor is not None and fs.actor not in run.workers.free_actors:
            run.workers.free_actors.append(fs.actor)
        return
    if reply is None:
        outcomes.call_failed(run, fs, failure)
        return
    fs.answered = True
    if reply.result is not None:
        if reply.result.ok:
            outcomes.complete(run, fs, reply.result)
        else:
            outcomes.fail(run, fs, reply.result)
        return
    step = reply.step
    assert step is not None
    for ref in step.unused:
        lease = fs.credits.pop(slot_key(ref), None)
        if lease is not None:
            lease.release()
    fs.need_nbytes = step.need_nbytes
    fs.state = FileState.EXHAUSTED if step.exhausted else FileState.RUNNING
    for out in step.outbox:
        out_ref = slot_of(out.item)
        lease = fs.credits.pop(slot_key(out_ref), None) if out_ref is not None else None
        seq = fs.seq
        fs.seq += 1
        for target in out.targets:
            for m in run.graph.subtree[target]:
                if m in run.graph.ordered_maps:
                    fs.order.setdefault(m, deque()).append(seq)
            maps.enqueue(run, fs, target, seq, out.item, lease.retain() if lease is not None else None)
        if lease is not None:
            lease.release()

