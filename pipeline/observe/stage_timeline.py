"""``StageTimeline``: where one file session's stages spent their time, in a few spans however long the file.

A session that is traced tells its timeline each stretch of a stage's work (the two ``perf_counter`` readings it
takes for the stage's busy time anyway). Work is gathered in *windows*: a window closes once it spans
``WINDOW_S`` (0.1 s) of wall time, and when an actor call ends (``take``). At its close every stage that worked or
counted frames in it becomes one ``StageSpan``, laid end to end from the window's start in the pipeline's order,
each as long as that stage's busy time in the window: exact in length, placed to within the window, and nested in
the actor call's span without overlapping another (stages take turns frame by frame, so their true stretches
interleave). A span carries the stage's frames in the window and their index range in the file (in a part of a
file: in the part). So a file makes at most one span per stage per 100 ms of its work and per actor call.

The spans travel back with each actor call's reply; the parent puts them on the actor's track
(``record_stage_spans``: ``perf_counter`` is system-wide, as ``calls.timed`` relies on too; a Ray process on
another machine has its readings shifted onto the driver's clock first).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .trace import RunTrace

__all__ = ["StageTimeline", "StageSpan", "WINDOW_S", "record_stage_spans"]

WINDOW_S = 0.1  # a window's wall time: at most one span per stage per this much of a file's work


@dataclass(frozen=True, slots=True)
class StageSpan:
    """A stage's work in one window: ``start``..``end`` on ``perf_counter``, and the ``frames`` it took or made
    there, from frame number ``first`` (counted from the start of the file or part)."""

    stage: str
    start: float
    end: float
    frames: int
    first: int

    def args(self) -> dict[str, int | str]:
        """The span's trace arguments: the stage, and its frames with their index range when it had any."""
        if not self.frames:
            return {"stage": self.stage, "frames": 0}
        return {"stage": self.stage, "frames": self.frames, "first": self.first, "last": self.first + self.frames - 1}


class StageTimeline:
    """Collects a session's ``StageSpan`` s: ``work`` per stretch of a stage's work, ``take`` at each call's end.

    ``frames_done(stage)``: the frames the stage has taken or made so far (read only when a window closes).
    """

    __slots__ = ("_frames_done", "_busy", "_marks", "_start", "_last", "_spans")

    def __init__(self, stages: list[str], frames_done: Callable[[str], int]) -> None:
        self._frames_done = frames_done
        self._busy = dict.fromkeys(stages, 0.0)  # in the window, per stage (in the pipeline's order)
        self._marks = dict.fromkeys(stages, 0)  # frames per stage when the window began
        self._start = -1.0  # the window's start (<0: no work in it yet)
        self._last = 0.0  # the end of its last work
        self._spans: list[StageSpan] = []

    def work(self, stage: str, t0: float, t1: float) -> None:
        """``stage`` worked from ``t0`` to ``t1`` (``perf_counter``)."""
        self._busy[stage] += t1 - t0
        self._last = t1
        if self._start < 0:
            self._start = t0
        elif t1 - self._start >= WINDOW_S:
            self._close()

    def take(self) -> list[StageSpan]:
        """Close the window and hand over the spans recorded since the last ``take``."""
        if self._start < 0:  # frames counted after the last work (rare) still get their span, of no length
            self._start = self._last
        self._close()
        spans, self._spans = self._spans, []
        return spans

    def _close(self) -> None:
        at = self._start
        for stage, busy in self._busy.items():
            done = self._frames_done(stage)
            frames = done - self._marks[stage]
            if busy > 0 or frames > 0:
                self._spans.append(StageSpan(stage, at, at + busy, frames, self._marks[stage]))
                at += busy
                self._busy[stage] = 0.0
                self._marks[stage] = done
        self._start = -1.0


def record_stage_spans(trace: RunTrace, track: str, spans: Iterable[StageSpan], t0: float, t1: float,
                       where: dict[str, Any], *, group: str, shift: float = 0.0) -> None:
    """Put the stage spans of one call on ``track``, kept inside the call's ``t0``..``t1`` (this process's
    ``perf_counter``), each with ``where`` (the file, a part) in its args. They are not busy time: the call's own
    span counts it once. ``shift``: added to each span's readings first, when they are another clock's."""
    for s in spans:  # kept inside the call's span (the same clock; rounding aside)
        start = min(max(s.start + shift, t0), t1)
        end = min(max(s.end + shift, start), t1)
        trace.span(track, s.stage, trace.since(start), trace.since(end), {**where, **s.args()}, group=group,
                   busy=False)
