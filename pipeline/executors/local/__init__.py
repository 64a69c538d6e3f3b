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

Without map stages each file's whole graph runs in its actor in one call, streaming depth-first; with
them, the actor pauses whenever it has no credit for a frame that must cross.

The parts, each a module: ``executor`` (``LocalExecutor``: settings, one run), ``scheduler`` (start-up and the
loop), ``state`` (the typed scheduler state: ``LocalRun``, ``FileInFlight`` and its ``FileState``),
``actors`` (admission, a file's actor calls and their replies), ``maps`` (map tasks, routing, in-order
completion, slot lifetime), ``outcomes`` (a file's end: completion, failure, timeouts, restarts),
``observe`` (trace, progress, snapshots), ``calls`` (calls to pools and the queue of their completions).
"""

from .executor import LocalExecutor

__all__ = ["LocalExecutor"]
