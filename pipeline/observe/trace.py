"""``RunTrace``: a timeline of what every worker did during a run, written in the Chrome trace format.

Spans ("actor 0 ran ``step`` from 1.20 s to 1.35 s") sit on named *tracks*
(one per worker), tracks in *groups* (actors, a map pool, the inline
process); counters are sampled values over time (slots in use, files in
flight). ``to_chrome_json`` gives what Perfetto (ui.perfetto.dev) and
chrome://tracing load: a group is a process row, a track a thread row in it.
Recording is a list append; times are seconds since the run began.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..outputs import write_atomic

__all__ = ["RunTrace", "Span", "CounterSample"]


@dataclass(slots=True)
class Span:
    """One piece of work on one track: from ``start_s`` to ``end_s`` seconds after the run began.

    ``busy``: the span counts as its track's busy time; False for one inside another (a stage's work within an
    actor call) and for a wait, so that utilization counts a track's time once.
    """

    track: str
    name: str
    start_s: float
    end_s: float
    args: dict[str, Any] | None = None
    busy: bool = True

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(slots=True)
class CounterSample:
    """Values of counter ``name`` (one per series) at ``t_s`` seconds after the run began."""

    name: str
    t_s: float
    values: dict[str, float]


@dataclass
class RunTrace:
    """Records spans and counter samples of one run; ``origin`` is the run's start on ``time.perf_counter``."""

    origin: float = field(default_factory=time.perf_counter)
    spans: list[Span] = field(default_factory=list)
    counters: list[CounterSample] = field(default_factory=list)
    groups: dict[str, str] = field(default_factory=dict)  # track -> its group, in order of first use

    def now(self) -> float:
        """Seconds since the run began."""
        return time.perf_counter() - self.origin

    def since(self, t_perf: float) -> float:
        """A ``time.perf_counter()`` reading as seconds since the run began."""
        return t_perf - self.origin

    def span(self, track: str, name: str, start_s: float, end_s: float, args: dict[str, Any] | None = None,
             *, group: str = "run", busy: bool = True) -> Span:
        """Record work ``name`` on ``track`` (a track keeps the ``group`` of its first span); return the span.

        ``busy=False``: a span nested in another, or a wait (left out of the track's busy time)."""
        if track not in self.groups:
            self.groups[track] = group
        span = Span(track, name, start_s, max(start_s, end_s), args, busy)
        self.spans.append(span)
        return span

    def counter(self, name: str, t_s: float, values: dict[str, float]) -> None:
        """Record the values of counter ``name`` (each key a series) at ``t_s``."""
        self.counters.append(CounterSample(name, t_s, values))

    @property
    def end_s(self) -> float:
        """When the last recorded event ended (0 for an empty trace)."""
        ends = [s.end_s for s in self.spans] + [c.t_s for c in self.counters]
        return max(ends, default=0.0)

    def tracks(self, group: str | None = None) -> list[str]:
        """Track names in order of first use, of one ``group`` or all."""
        return [t for t, g in self.groups.items() if group is None or g == group]

    # Export ------------------------------------------------------------------------------------

    def to_chrome_json(self) -> dict[str, Any]:
        """The trace in the Chrome trace-event format (``ts``/``dur`` in microseconds)."""
        group_ids: dict[str, int] = {}
        track_ids: dict[str, tuple[int, int]] = {}
        threads: dict[int, int] = {}  # group id -> tracks so far
        meta: list[dict[str, Any]] = [_meta("process_name", 0, 0, "scheduler"),
                                      _meta("process_sort_index", 0, 0, 0, key="sort_index")]
        for track, group in self.groups.items():
            if group not in group_ids:
                gid = group_ids[group] = len(group_ids) + 1
                meta += [_meta("process_name", gid, 0, group),
                         _meta("process_sort_index", gid, 0, gid, key="sort_index")]
            gid = group_ids[group]
            tid = threads[gid] = threads.get(gid, 0) + 1
            track_ids[track] = (gid, tid)
            meta += [_meta("thread_name", gid, tid, track), _meta("thread_sort_index", gid, tid, tid, key="sort_index")]
        events = meta
        for s in self.spans:
            pid, tid = track_ids[s.track]
            event: dict[str, Any] = {"name": s.name, "cat": self.groups[s.track], "ph": "X", "pid": pid, "tid": tid,
                                     "ts": _us(s.start_s), "dur": max(0.0, _us(s.end_s) - _us(s.start_s))}
            if s.args:
                event["args"] = s.args
            events.append(event)
        for c in self.counters:
            events.append({"name": c.name, "ph": "C", "pid": 0, "tid": 0, "ts": _us(c.t_s), "args": c.values})
        return {"traceEvents": events, "displayTimeUnit": "ms"}

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the Chrome trace JSON to ``path`` atomically; return the path."""
        return write_atomic(path, json.dumps(self.to_chrome_json(), separators=(",", ":"), default=str).encode())


def _us(seconds: float) -> float:
    return round(seconds * 1e6, 3)


def _meta(name: str, pid: int, tid: int, value: Any, *, key: str = "name") -> dict[str, Any]:
    return {"name": name, "ph": "M", "pid": pid, "tid": tid, "args": {key: value}}
