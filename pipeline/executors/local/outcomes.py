"""How a file in flight ends or starts over: it completes, or fails (a stage's error, its timeout, its worker
lost), or starts again on a new worker after its worker died (``retries``); whatever slots it held are freed.

Timeouts (``file_timeout``): each attempt at a file gets a deadline when its first call is sent. Every actor
call carries the time left as its pool timeout, so the pool SIGKILLs a call hung even in native code holding
the GIL; a file idle past its deadline (waiting on map stages) is failed by the loop; a map task gets the
whole timeout. The file fails with ``FileTimeout``; the other files go on.

The texts of these failures are ``pipeline.executors.failures``', shared with the Ray executor.
"""

from __future__ import annotations

import logging
import time
from collections import deque

from ...errors import Cancelled, PoolUnavailable, ResourceExhausted, TaskTimeout, WorkerCrashed
from ...results import FAILED, FileResult
from ..failures import timed_out, worker_died, worker_failed
from ..parts import remove_scratch
from ..worker import actor_abort
from .observe import actor_label
from .state import FileInFlight, FileState, LocalRun, ReadyEntry

__all__ = ["complete", "fail", "retire", "restart", "call_failed", "part_call_failed", "time_left", "time_out",
           "kill_overdue", "release_credits"]

log = logging.getLogger("framepipe.executor")


def complete(run: LocalRun, fs: FileInFlight, result: FileResult) -> None:
    """The file's actor finished it: its result takes what the map stages recorded."""
    result.record.update(fs.records)
    result.warnings += fs.warnings
    result.attempts = fs.attempts
    retire(run, fs, result)


def fail(run: LocalRun, fs: FileInFlight, result: FileResult, abort_actor: bool = False) -> None:
    """The file failed (once: a second failure is not recorded); ``abort_actor``: its session is still alive."""
    if fs.error is not None or fs.row in run.results:
        return
    fs.error = result
    started = fs.state is not FileState.NEW
    if abort_actor and fs.actor is not None and started:
        # The actor's stages must discard what they wrote; the abort call also frees the actor.
        fs.busy = True
        run.call_actor(fs, actor_abort, fs.row, result.error or "failed", held=[],
                       label=actor_label(run, fs, "abort"), timeout=run.ex.file_timeout)
    retire(run, fs, result, keep_actor=abort_actor and started)
    if run.ex.fail_fast:
        run.stopping = True


def retire(run: LocalRun, fs: FileInFlight, result: FileResult, keep_actor: bool = False) -> None:
    """Record the file's result, free what it held, and give its actor back (unless a call still uses it)."""
    run.results[fs.row] = result
    memo = run.sampling.memo_counts
    for st in result.stats.values():
        memo[0] += st.cache_hits
        memo[1] += st.cache_misses
    release_credits(fs)  # else when its call in flight returns: the actor may be writing into them
    _release_waiting(fs)
    _drop_parts(run, fs)
    fs.order.clear()
    if fs in run.active:
        run.active.remove(fs)
    if fs.actor is not None and not keep_actor and fs.calls == 0 and fs.lent_to is None:
        run.workers.free_actors.append(fs.actor)
    run.events.file_done(result)
    if run.stopping:  # fail fast: the files not started yet are not run
        while run.waiting:
            rest = run.waiting.popleft()
            run.results[rest.row] = FileResult(rest.task.file, FAILED, error="not run: an earlier file failed "
                                               "and fail_fast is set", error_type=Cancelled.__name__)


def _drop_parts(run: LocalRun, fs: FileInFlight) -> None:
    """Forget the file's parts: those not started are not run, those running are dropped as they return, and
    the scratch files of those done are removed."""
    for part in fs.parts:
        if part in run.parts_waiting:
            run.parts_waiting.remove(part)
    remove_scratch(fs.scratch)
    fs.scratch.clear()


def restart(run: LocalRun, fs: FileInFlight) -> None:
    """The file's actor died with its session: drop what is in flight for it and start it over."""
    _drop_parts(run, fs)
    release_credits(fs)
    for m, ready in run.queues.ready.items():
        keep: deque[ReadyEntry] = deque()
        for entry in ready:
            if entry.file is fs:
                if entry.lease is not None:
                    entry.lease.release()
            else:
                keep.append(entry)
        run.queues.ready[m] = keep
    _release_waiting(fs)
    fs.in_maps = 0  # map tasks still running for it belong to the old epoch and are dropped
    fs.reset()


def call_failed(run: LocalRun, fs: FileInFlight, failure: Exception) -> None:
    """An actor call failed (its worker died, ran past the timeout, or could not be made or started)."""
    if isinstance(failure, ResourceExhausted) and not fs.answered:
        _unable_to_start(run, fs, failure)
        return
    if isinstance(failure, TaskTimeout) and fs.deadline is not None:
        time_out(run, fs, abort_actor=False)  # its worker was killed, and the session with it
        return
    if isinstance(failure, WorkerCrashed) and fs.attempts <= run.ex.retries:
        log.warning("worker died running %s: starting the file again on a new worker (attempt %d)",
                    fs.task.file.relpath, fs.attempts + 1,
                    extra={"file": fs.task.file.relpath, "attempt": fs.attempts + 1})
        restart(run, fs)
        return
    if isinstance(failure, WorkerCrashed):
        fail(run, fs, worker_died(fs.task, fs.attempts, failure))
    else:
        reason = failure.reason if isinstance(failure, ResourceExhausted) \
            else f"{type(failure).__name__}: {failure}"
        fail(run, fs, worker_failed(fs.task, reason, type(failure).__name__, fs.attempts))


def part_call_failed(run: LocalRun, part: FileInFlight, failure: Exception, lender: FileInFlight | None) -> None:
    """A part's call failed: its worker died (the part runs again, while retries last), ran past the file's
    timeout, or could not be made; failing, it fails its file. On an actor lent by a file, that file's session
    died with the worker: the file starts over."""
    parent = part.parent
    assert parent is not None
    if lender is not None and isinstance(failure, (WorkerCrashed, TaskTimeout)) and lender.row not in run.results:
        if lender is not parent or isinstance(failure, WorkerCrashed):
            restart(run, lender)  # (its parts, this one among them if it is the part's file, are dropped)
            if lender is parent:
                return
    if isinstance(failure, TaskTimeout) and parent.deadline is not None:
        time_out(run, parent, abort_actor=lender is not parent)
        return
    if isinstance(failure, WorkerCrashed) and part.attempts <= run.ex.retries:
        log.warning("worker died running a part of %s: running the part again (attempt %d)",
                    parent.task.file.relpath, part.attempts + 1,
                    extra={"file": parent.task.file.relpath, "attempt": part.attempts + 1})
        part.state, part.attempts = FileState.NEW, part.attempts + 1
        run.parts_waiting.appendleft(part)
        return
    if isinstance(failure, WorkerCrashed):
        fail(run, parent, worker_died(parent.task, part.attempts, failure), abort_actor=True)
    else:
        reason = failure.reason if isinstance(failure, ResourceExhausted) \
            else f"{type(failure).__name__}: {failure}"
        fail(run, parent, worker_failed(parent.task, reason, type(failure).__name__, part.attempts),
             abort_actor=True)


def _unable_to_start(run: LocalRun, fs: FileInFlight, failure: ResourceExhausted) -> None:
    """The file's actor could not start its thread or worker (resources ran out) before doing anything: the
    actor is let go and the file waits for another; with none left the run stops, with the limit named."""
    actor = fs.actor
    fs.actor, fs.state, fs.deadline = None, FileState.NEW, None
    release_credits(fs)
    if fs in run.active:
        run.active.remove(fs)
    run.waiting.appendleft(fs)
    log.warning("a file worker could not start: %s", failure.reason, extra={"file": fs.task.file.relpath})
    run.workers.unstartable.add(id(actor))
    if len(run.workers.unstartable) == len(run.workers.actors):
        raise PoolUnavailable(f"could not start a file worker: {failure.reason}") from failure


# Timeouts -----------------------------------------------------------------------------------------

def time_left(fs: FileInFlight) -> float | None:
    """Seconds the file's attempt has left before its timeout (None: no timeout)."""
    return None if fs.deadline is None else fs.deadline - time.monotonic()


def time_out(run: LocalRun, fs: FileInFlight, abort_actor: bool) -> None:
    """Fail the file for its timeout; ``abort_actor``: its session still lives in the actor (not killed)."""
    fail(run, fs, timed_out(fs.task, run.ex.file_timeout or 0.0, fs.attempts), abort_actor=abort_actor)


def kill_overdue(run: LocalRun) -> None:
    """Fail the files past their timeout that wait on map stages (a running actor call is killed by its pool)."""
    now = time.monotonic()
    for fs in list(run.active):
        if fs.deadline is not None and now >= fs.deadline and not fs.busy and fs.error is None:
            time_out(run, fs, abort_actor=True)


# Slots a file holds ----------------------------------------------------------------------------------

def release_credits(fs: FileInFlight) -> None:
    """Free the slots granted to the file's actor (only once no call of it is in flight)."""
    if fs.calls:
        return
    for lease in list(fs.credits.values()):
        lease.release()
    fs.credits.clear()


def _release_waiting(fs: FileInFlight) -> None:
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
