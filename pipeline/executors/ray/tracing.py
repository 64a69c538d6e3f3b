"""A traced Ray run's timeline: what its Ray processes send back of their work, and how the driver places it.

Nothing here costs a round trip: a traced file's ``run_file`` returns a ``FileTrace`` beside its result, holding
its actor call's start and end, the spans of its stages' work (``observe.stage_timeline``), and a ``TaskSpan``
for each map task and part it started, which came back with those tasks' own results. Each reading is of the
``perf_counter`` of the process that took it, sent with that process's ``Clock``.

Clocks: Ray processes booted with the driver's kernel share its ``perf_counter`` (CLOCK_MONOTONIC; they have the
same ``/proc/sys/kernel/random/boot_id``), and their readings are used as they are. Those of another machine
are mapped through the wall clock: a reply carries its process's ``time.time()`` and ``perf_counter()`` read
together at send, so a reading ``p`` there was at wall time ``wall - (perf - p)``, which the driver turns into
its own ``perf_counter`` with its own wall clock read at receipt. That is as good as the two machines' wall
clocks agree (NTP: a few ms; without it, any skew), so every span is also clipped into what the driver knows:
an actor call into the time from its sending to its result's arrival, the tasks and stage spans into that call.
A span may so be squeezed at an edge, never placed outside the call or the run.

Map tasks are many (a task per batch of frames), so a file's actor merges their spans before sending them
(``merge_map_spans``) the way ``observe.stage_timeline`` gathers a session's work: per worker track, in windows
of ``WINDOW_S`` (0.1 s), one span per stage per window, laid end to end from the window's start, each as long as
that stage's tasks' time in it, with their frames summed in its args. A long file so makes at most a span per
stage per 100 ms per worker, never one per frame; the names and args are the local executor's map task spans'
(``map <stage> x<items>``; ``stage``, ``frames``, ``files``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import ray

from ...observe.stage_timeline import WINDOW_S, StageSpan, record_stage_spans
from ...observe.trace import RunTrace

__all__ = ["Clock", "TaskSpan", "FileTrace", "clock", "record_file", "merge_map_spans"]


@dataclass(frozen=True, slots=True)
class Clock:
    """Which Ray process sent a reply (its node, its pid) and its clocks, read together as it sent it."""

    node: str  # Ray's node id, first 8 hex digits
    pid: int
    boot: str  # the kernel's boot id ("" where unknown): one CLOCK_MONOTONIC per boot
    wall: float  # time.time()
    perf: float  # time.perf_counter()

    def shift(self, boot: str, perf_minus_wall: float) -> float:
        """What to add to this process's ``perf_counter`` readings to put them on that of the process of ``boot``
        whose ``perf_counter() - time.time()`` is ``perf_minus_wall`` now."""
        if self.boot and self.boot == boot:
            return 0.0  # the same CLOCK_MONOTONIC
        return self.wall - self.perf + perf_minus_wall


@cache
def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:  # not Linux: mapped through the wall clock
        return ""


_NODE: list[str] = []  # this process's node, once known


def _node() -> str:
    if _NODE:
        return _NODE[0]
    if not ray.is_initialized():  # not a Ray process: asking Ray would start one here
        return "?"
    try:
        _NODE.append(str(ray.get_runtime_context().get_node_id())[:8])
    except Exception:
        return "?"
    return _NODE[0]


def clock() -> Clock:
    """This process's ``Clock`` now (call it last, just before the reply leaves)."""
    return Clock(_node(), os.getpid(), _boot_id(), time.time(), time.perf_counter())


@dataclass(slots=True)
class TaskSpan:
    """A Ray task a file started (a map task, a part) as the process that ran it saw it: ``name`` from ``start``
    to ``end`` (its ``perf_counter``), on the track of ``who`` in ``group``; a part's ``stages``' work inside it."""

    clock: Clock
    who: str  # the track's name before its node and pid: "default worker", "part worker"
    group: str
    name: str
    start: float
    end: float
    args: dict[str, Any]
    stages: list[StageSpan] = field(default_factory=list)
    items: int = 1  # a map task's items (its batch); merged spans add them up


def merge_map_spans(tasks: list[TaskSpan]) -> list[TaskSpan]:
    """``tasks`` with the map tasks' spans merged per worker track and window (``WINDOW_S``): a window opens with
    a task's start and closes with the first task that ends ``WINDOW_S`` or more after it; in it, one span per
    stage (in the order they first ran), laid end to end from the window's start, each as long as its tasks'
    time (a Ray worker runs one task at a time: they fit in the window), its frames, items and files summed.
    Other spans (parts) are kept as they are."""
    kept = [t for t in tasks if not t.group.startswith("map:")]
    tracks: dict[tuple[str, str, int], list[TaskSpan]] = {}
    for t in tasks:
        if t.group.startswith("map:"):
            tracks.setdefault((t.who, t.clock.node, t.clock.pid), []).append(t)
    for track in tracks.values():
        track.sort(key=lambda t: t.start)
        window: list[TaskSpan] = []
        for t in track:
            window.append(t)
            if t.end - window[0].start >= WINDOW_S:
                kept += _laid_end_to_end(window)
                window = []
        if window:
            kept += _laid_end_to_end(window)
    return kept


def _laid_end_to_end(window: list[TaskSpan]) -> list[TaskSpan]:
    """One window's map task spans of one track: a span per stage, end to end from the window's start."""
    merged: dict[str, TaskSpan] = {}
    for t in window:
        stage = t.args["stage"]
        m = merged.get(stage)
        if m is None:
            merged[stage] = TaskSpan(t.clock, t.who, t.group, "", 0.0, t.end - t.start, dict(t.args), items=t.items)
            continue
        m.end += t.end - t.start  # busy time, for now
        m.items += t.items
        m.args["frames"] += t.args["frames"]
        m.args["files"] = sorted({*m.args["files"], *t.args["files"]})
    at = window[0].start
    for stage, m in merged.items():
        busy = m.end
        m.start, m.end, m.name = at, at + busy, f"map {stage} x{m.items}"
        at += busy
    return list(merged.values())


@dataclass(slots=True)
class FileTrace:
    """What a traced ``run_file`` sends back beside the file's result: the actor call's ``start`` and ``end``,
    the spans of its stages' work, and its tasks' spans; all on the ``perf_counter`` of their own ``Clock``."""

    start: float
    end: float
    stages: list[StageSpan]
    tasks: list[TaskSpan]
    clock: Clock


def _track(who: str, c: Clock) -> str:
    return f"{who} (node {c.node}, pid {c.pid})"


def record_file(trace: RunTrace, actor: int, file: str, sent: float, done: float, status: str,
                reply: FileTrace | None) -> None:
    """Put one ``run_file`` call on the driver's timeline: ``sent`` and ``done`` (when its result came) on the
    driver's ``perf_counter``. The call is a span on its actor's track, its stages' work inside it, and each
    task it started a span on the track of the process that ran it. Without a ``reply`` (the actor died) the
    call is one span on ``actor N``."""
    if reply is None:
        trace.span(f"actor {actor}", f"file {file}", trace.since(sent), trace.since(done),
                   {"file": file, "status": status}, group="actors")
        return
    here = time.perf_counter() - time.time()
    shift = reply.clock.shift(_boot_id(), here)
    t0 = min(max(reply.start + shift, sent), done)
    t1 = min(max(reply.end + shift, t0), done)
    track = _track(f"actor {actor}", reply.clock)
    trace.span(track, f"file {file}", trace.since(t0), trace.since(t1), {"file": file, "status": status},
               group="actors")
    record_stage_spans(trace, track, reply.stages, t0, t1, {"file": file}, group="actors", shift=shift)
    for task in reply.tasks:  # started and joined within the call
        shift = task.clock.shift(_boot_id(), here)
        a = min(max(task.start + shift, t0), t1)
        b = min(max(task.end + shift, a), t1)
        track = _track(task.who, task.clock)
        trace.span(track, task.name, trace.since(a), trace.since(b), task.args, group=task.group)
        record_stage_spans(trace, track, task.stages, a, b, task.args, group=task.group, shift=shift)
