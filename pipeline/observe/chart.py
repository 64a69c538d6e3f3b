"""``write_chart``: a PNG of a run — per-stage throughput and each worker group's utilization over time.

Both come from a ``RunTrace``'s spans, binned (about 0.25 s): a span's frames
(``args["frames"]``: a count for ``args["stage"]``, or a count per stage)
are spread evenly over its duration; a group's utilization is its tracks'
busy time in a bin over the time they had, from their busy spans only
(``Span.busy``: a stage's span nested in an actor call, or a wait, is not
counted again). Drawn with matplotlib (Agg), as a
PNG beside the run or as the SVG inside its report page.
"""

from __future__ import annotations

import io
import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..outputs import write_atomic
from .metrics import StageStats, find_bottleneck
from .trace import RunTrace, Span

__all__ = ["write_chart", "draw_timeline", "load_in_background", "timeline", "throughput_series", "utilization_series",
           "bin_width"]

_BIN_S = 0.25
_MIN_BINS, _MAX_BINS = 20, 2000
_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf"]


def bin_width(trace: RunTrace) -> float:
    """0.25 s; narrower for runs under 5 s (at least 20 bins), wider for long ones (at most 2000)."""
    return max(min(_BIN_S, trace.end_s / _MIN_BINS), trace.end_s / _MAX_BINS, 1e-3)


def _bins(trace: RunTrace, width: float) -> int:
    return max(1, math.ceil(trace.end_s / width))


def _spread(values: list[float], span: Span, amount: float, width: float) -> None:
    """Add ``amount`` to the bins ``span`` covers, in proportion to how much of it each one holds."""
    n = len(values)
    if span.duration_s <= 0:
        values[min(n - 1, max(0, int(span.start_s / width)))] += amount
        return
    first, last = max(0, int(span.start_s / width)), min(n - 1, int(span.end_s / width))
    for b in range(first, last + 1):
        overlap = min(span.end_s, (b + 1) * width) - max(span.start_s, b * width)
        if overlap > 0:
            values[b] += amount * overlap / span.duration_s


def throughput_series(trace: RunTrace, width: float | None = None) -> tuple[float, dict[str, list[float]]]:
    """Frames per second of each stage in each bin, and the bin width."""
    width = width or bin_width(trace)
    n = _bins(trace, width)
    series: dict[str, list[float]] = {}
    for span in trace.spans:
        frames = (span.args or {}).get("frames")
        if isinstance(frames, (int, float)):
            frames = {str(span.args.get("stage", span.name)): frames} if span.args else {}
        if not isinstance(frames, dict):
            continue
        for stage, count in frames.items():
            if count:
                _spread(series.setdefault(stage, [0.0] * n), span, float(count) / width, width)
    return width, series


def utilization_series(trace: RunTrace, width: float | None = None) -> tuple[float, dict[str, list[float]]]:
    """Busy share (0..1) of each track group in each bin, and the bin width."""
    width = width or bin_width(trace)
    n = _bins(trace, width)
    busy: dict[str, list[float]] = {}
    for span in trace.spans:
        if span.busy:
            _spread(busy.setdefault(trace.groups[span.track], [0.0] * n), span, span.duration_s, width)
    out = {}
    for group, values in busy.items():
        tracks = len(trace.tracks(group))
        out[group] = [min(1.0, v / (width * tracks)) for v in values]
    return width, out


def timeline(trace: RunTrace, order: Sequence[str] = ()) -> dict[str, Any]:
    """The run's series as a JSON-ready record, kept in ``report.json`` so that a report page drawn later (``framepipe
    report``) has its charts: ``bin_s``, ``throughput`` (frames/s per stage, in ``order``) and ``utilization``
    (busy share per worker group), values rounded to what a chart shows."""
    width, throughput = throughput_series(trace)
    _, utilization = utilization_series(trace, width)
    ranked = sorted(throughput, key=lambda k: order.index(k) if k in order else len(order))
    return {"bin_s": round(width, 6),
            "throughput": {k: [round(v, 2) for v in throughput[k]] for k in ranked},
            "utilization": {k: [round(v, 4) for v in vs] for k, vs in utilization.items()}}


def load_in_background() -> threading.Thread | None:
    """Import matplotlib in a thread of its own (0.3-0.5 s on 2 cores), started while a run's workers work, so
    that drawing its charts at the end does not wait for the import; join it before drawing. None where no
    thread can start (a process limit): the drawing imports it then."""
    thread = threading.Thread(target=_load_matplotlib, name="framepipe-load-matplotlib", daemon=True)
    try:
        thread.start()
    except RuntimeError:  # "can't start new thread"
        return None
    return thread


def _load_matplotlib() -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.backends.backend_svg  # noqa: F401 - what draw_timeline uses, loaded ahead
        import matplotlib.figure  # noqa: F401
    except Exception:  # drawing will say what is wrong
        pass


def draw_timeline(series: dict[str, Any], fmt: str = "png", bottleneck: str | None = None) -> bytes:
    """The charts of a ``timeline`` record as ``png`` or ``svg`` bytes: a throughput panel per stage (so that
    stages with equal frame counts do not hide each other), then utilization per worker group; the
    ``bottleneck`` stage's panel is highlighted."""
    import matplotlib
    matplotlib.use("Agg")  # no display needed
    from matplotlib.figure import Figure

    width = float(series.get("bin_s") or 1.0)
    throughput: dict[str, list[float]] = series.get("throughput") or {}
    utilization: dict[str, list[float]] = series.get("utilization") or {}
    panels = max(1, len(throughput)) + 1
    with matplotlib.rc_context({"svg.fonttype": "none", "font.size": 9}):  # SVG text stays text: small, searchable
        fig = Figure(figsize=(9, 1.5 + 1.45 * panels), dpi=100, layout="constrained")
        axes = fig.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
        for ax, (stage, values) in zip(axes, throughput.items() or [("no frames", [])]):
            neck = stage == bottleneck
            colour = "#d62728" if neck else "#1f77b4"
            if values:
                ax.stairs(values, [b * width for b in range(len(values) + 1)], color=colour, fill=True, alpha=0.35)
                ax.stairs(values, [b * width for b in range(len(values) + 1)], color=colour, linewidth=1.2)
            ax.set_ylabel("frames/s")
            ax.set_ylim(bottom=0)
            ax.set_title(f"{stage}: throughput" + ("  (the bottleneck)" if neck else ""), loc="left",
                         color=colour, fontweight="bold" if neck else "normal")
        util = axes[-1]
        for i, (group, values) in enumerate(utilization.items()):
            util.stairs([v * 100 for v in values], [b * width for b in range(len(values) + 1)], label=group,
                        color=_COLOURS[i % len(_COLOURS)], linewidth=1.5)
        util.set_ylabel("busy %")
        util.set_ylim(0, 105)
        util.set_title("utilization per worker group", loc="left")
        util.set_xlabel(f"seconds since the run began ({width * 1e3:.0f} ms bins)")
        if utilization:
            util.legend(loc="upper right", fontsize="small")
        for ax in axes:
            ax.grid(alpha=0.3)
            ax.set_xlim(left=0)
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
    return buf.getvalue()


def write_chart(trace: RunTrace, stats: Sequence[StageStats] | None, path: str | os.PathLike[str]) -> Path:
    """Write the run's charts as a PNG at ``path`` (atomically); return the path."""
    series = timeline(trace, [s.name for s in stats or ()])
    neck = find_bottleneck(stats, trace.end_s) if stats else None
    return write_atomic(path, draw_timeline(series, "png", neck.stage if neck else None))
