"""A file's calls to its actor: admission (a free actor for the next file), the next call (start, a step with
credits and the results of map stages, finish), and what a reply brings back.

A file cut into parts (its first step names them) queues them ahead of every new file; a part is one call
(``actor_part``) on a free actor, or on its own file's actor while that file waits for its parts. The file's
finish joins them. Each call's codec threads are the cores shared among the files and parts running then
(``core_share``): a file that starts alone at the end of a batch gets every core.

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
from ...stage import FilePart
from ..parts import remove_scratch
from ..worker import ActorReply, actor_finish, actor_part, actor_start, actor_step
from . import maps, outcomes
from .calls import Done, TimedFuture
from .observe import actor_label, trace_actor
from .state import ActorCall, FileInFlight, FileState, LocalRun, slot_key

__all__ = ["admit", "advance", "on_reply", "core_share"]


def core_share(run: LocalRun) -> int:
    """The codec threads a call that opens codecs now may use: the cores over the files and parts at work or
    about to be (a file waiting for its parts does no work); one each when map stages do the heavy work."""
    if not run.workers.cores:
        return 1
    working = sum(1 for f in run.active if not f.waits_for_parts) + len(run.parts_waiting)  # (parts start soon)
    return max(1, run.workers.cores // max(1, min(working, len(run.workers.actors))))


def admit(run: LocalRun) -> None:
    """Give free actors to the parts waiting, then to the files waiting, in order (none once the run is
    stopping); a file that waits for its parts lends its actor to one of them."""
    while run.parts_waiting and not run.stopping:
        lender = None
        if not run.workers.free_actors:
            lender = next((f for f in run.active if f.waits_for_parts and f.lent_to is None), None)
            if lender is None:
                break
        part = run.parts_waiting.popleft()
        if lender is not None:
            part.actor, part.lender, lender.lent_to = lender.actor, lender, part
        else:
            part.actor = run.workers.free_actors.pop()
        run.active.append(part)
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
    # Parts run their stages in one call, map stages too: a pipeline with map stages keeps its files whole here.
    part_workers = len(run.workers.actors) if not run.graph.maps else 1
    task = dataclasses.replace(fs.task, cpu_budget=core_share(run), part_workers=part_workers,
                               traced=run.trace is not None)
    if fs.parent is not None:
        if fs.state is FileState.NEW:
            fs.state, fs.busy, fs.deadline = FileState.FINISHING, True, fs.parent.deadline
            assert fs.task.part is not None
            run.call_actor(fs, actor_part, run.token, run.pipeline, task, held=[],
                           label=actor_label(run, fs, f"part {fs.task.part.index + 1}/{fs.task.part.count}"),
                           timeout=outcomes.time_left(fs))
        return
    if fs.state is FileState.NEW:
        task = dataclasses.replace(task, batch_ending=not run.waiting)
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
    elif fs.state is FileState.EXHAUSTED and not fs.in_maps and not any(fs.order.values()) and not fs.parts_left \
            and fs.lent_to is None:
        fs.state, fs.busy = FileState.FINISHING, True
        parts = [fs.part_results[i] for i in range(len(fs.parts))] or None
        run.call_actor(fs, actor_finish, fs.row, parts, held=[], label=actor_label(run, fs, "finish"),
                       timeout=timeout)


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
    if fs.parent is not None:
        on_part_reply(run, fs, reply, None if reply is not None else failure)
        return
    if fs.row in run.results:  # a late reply for a file already retired
        outcomes.release_credits(fs)
        if fs.calls == 0 and fs.actor is not None and fs.lent_to is None and fs.actor not in run.workers.free_actors:
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
    if step.parts:
        cut(run, fs, step.parts)
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



# Parts of a file -------------------------------------------------------------------------------------

def cut(run: LocalRun, fs: FileInFlight, spans: list[object]) -> None:
    """The file's session cut it into parts: queue them, in order, ahead of every file not started."""
    for i, span in enumerate(spans):
        task = dataclasses.replace(fs.task, part=FilePart(i, len(spans), span), cache_dir=None)
        part = FileInFlight(task, fs.row, parent=fs, parent_epoch=fs.epoch, announced=True)
        fs.parts.append(part)
    run.parts_waiting.extend(fs.parts)


def on_part_reply(run: LocalRun, part: FileInFlight, reply: ActorReply | None, failure: Exception | None) -> None:
    """A part's call returned: give its actor back, then hand its pieces to its file, or fail the file."""
    parent, lender = part.parent, part.lender
    assert parent is not None
    _give_back_actor(run, part)
    stale = parent.row in run.results or parent.epoch != part.parent_epoch or parent.error is not None
    if reply is not None and reply.part is not None:
        if stale:
            remove_scratch(reply.part.scratch)  # its file is done, failed, or started over
            return
        parent.part_results[part.task.part.index if part.task.part else 0] = reply.part
        parent.scratch += reply.part.scratch
        return
    if stale:
        return
    if failure is not None:
        outcomes.part_call_failed(run, part, failure, lender)
    else:
        assert reply is not None and reply.result is not None
        outcomes.fail(run, parent, reply.result, abort_actor=True)


def _give_back_actor(run: LocalRun, part: FileInFlight) -> None:
    """The part is off its actor: back to its lender, or to the free actors."""
    if part in run.active:
        run.active.remove(part)
    lender = part.lender
    if lender is not None:
        if lender.lent_to is part:
            lender.lent_to = None
        part.lender = None
        if lender.row in run.results and lender.calls == 0 and lender.actor is not None \
                and lender.actor not in run.workers.free_actors:
            run.workers.free_actors.append(lender.actor)  # the file it was lent by is done
    elif part.actor is not None and part.actor not in run.workers.free_actors:
        run.workers.free_actors.append(part.actor)
    part.actor = None
