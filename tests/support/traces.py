"""Reading a run's Chrome trace (engine-only)."""

from __future__ import annotations

from typing import Any


def spans(trace: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in trace["traceEvents"] if e["ph"] == "X"]


def track_names(trace: dict[str, Any]) -> dict[tuple[int, int], str]:
    return {(e["pid"], e["tid"]): e["args"]["name"] for e in trace["traceEvents"]
            if e["ph"] == "M" and e["name"] == "thread_name"}


def check_events(trace: dict[str, Any], wall_s: float) -> None:
    """Every complete event is well formed, lies within the run, and sits on a named track."""
    assert trace["displayTimeUnit"] == "ms"
    names = track_names(trace)
    assert spans(trace)
    for e in spans(trace):
        assert {"ph", "ts", "dur", "pid", "tid", "name"} <= e.keys()
        assert e["dur"] >= 0 and e["ts"] >= 0
        assert e["ts"] + e["dur"] <= wall_s * 1e6 + 1  # microseconds, rounded
        assert (e["pid"], e["tid"]) in names
