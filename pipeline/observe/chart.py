"""``write_chart``: a PNG of a run — per-stage throughput and each worker group's utilization over time.

Both come from a ``RunTrace``'s spans, binned (about 0.25 s): a span's frames
(``args["frames"]``: a count for ``args["stage"]``, or a count per stage)
are spread evenly over its duration; a group's utilization is its tracks'
busy time in a bin over the time they had. Drawn with matplotlib (Agg) when
it is installed (``pip install framepipe[chart]``), else plainly with Pillow.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from ..outputs import atomic_output
from .metrics import StageStats
from .trace import RunTrace, Span

__all__ = ["write_chart", "throughput_series", "utilization_series", "bin_width"]

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
        _spread(busy.setdefault(trace.groups[span.track], [0.0] * n), span, span.duration_s, width)
    out = {}
    for group, values in busy.items():
        tracks = len(trace.tracks(group))
        out[group] = [min(1.0, v / (width * tracks)) for v in values]
    return width, out


def write_chart(trace: RunTrace, stats: Sequence[StageStats] | None, path: str | os.PathLike[str]) -> Path:
    """Write the run's chart as a PNG at ``path`` (atomically); return the path."""
    width, throughput = throughput_series(trace)
    _, utilization = utilization_series(trace, width)
    order = [s.name for s in stats or ()]
    throughput = dict(sorted(throughput.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
    with atomic_output(path) as part:
        try:
            _draw_matplotlib(part, width, throughput, utilization)
        except ImportError:
            _draw_pillow(part, width, throughput, utilization)
    return Path(path)


def _draw_matplotlib(path: Path, width: float, throughput: dict[str, list[float]],
                     utilization: dict[str, list[float]]) -> None:
    import matplotlib
    matplotlib.use("Agg")  # no display needed; only PNGs are drawn here
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 6), dpi=100, layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    for i, (stage, values) in enumerate(throughput.items()):
        top.stairs(values, [b * width for b in range(len(values) + 1)], label=stage, color=_COLOURS[i % len(_COLOURS)],
                   linewidth=1.5)
    top.set_ylabel("frames/s")
    top.set_title(f"throughput per stage ({width * 1e3:.0f} ms bins)")
    for i, (group, values) in enumerate(utilization.items()):
        bottom.stairs([v * 100 for v in values], [b * width for b in range(len(values) + 1)], label=group,
                      color=_COLOURS[i % len(_COLOURS)], linewidth=1.5)
    bottom.set_ylabel("busy %")
    bottom.set_ylim(0, 105)
    bottom.set_xlabel("seconds since the run began")
    bottom.set_title("utilization per worker group")
    for ax, data in ((top, throughput), (bottom, utilization)):
        ax.grid(alpha=0.3)
        if data:
            ax.legend(loc="upper right", fontsize="small")
    fig.savefig(path, format="png")


def _draw_pillow(path: Path, width: float, throughput: dict[str, list[float]],
                 utilization: dict[str, list[float]]) -> None:
    """The same two panels drawn plainly, for when matplotlib is not installed."""
    from PIL import Image, ImageDraw

    w, h, margin = 1000, 600, 60
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    panel_h = (h - 3 * margin) // 2
    panels = [("throughput per stage (frames/s)", throughput, None),
              ("utilization per worker group (busy %)", {k: [v * 100 for v in vs] for k, vs in utilization.items()},
               100.0)]
    for p, (title, data, top_value) in enumerate(panels):
        y0 = margin + p * (panel_h + margin)
        x0, x1, y1 = margin, w - margin, y0 + panel_h
        peak = top_value or max((max(vs) for vs in data.values() if vs), default=0.0) or 1.0
        draw.rectangle((x0, y0, x1, y1), outline="black")
        draw.text((x0, y0 - 15), f"{title}; max {peak:.1f}", fill="black")
        n = max((len(vs) for vs in data.values()), default=1)
        for i, (name, values) in enumerate(data.items()):
            colour = _COLOURS[i % len(_COLOURS)]
            points = []
            for b, v in enumerate(values):
                x = x0 + (x1 - x0) * b / n
                points += [(x, y1 - (y1 - y0) * v / peak), (x0 + (x1 - x0) * (b + 1) / n, y1 - (y1 - y0) * v / peak)]
            if len(points) > 1:
                draw.line(points, fill=colour, width=2)
            draw.text((x1 - 200, y0 + 5 + 12 * i), name, fill=colour)
        draw.text((x0, y1 + 3), "0 s", fill="black")
        draw.text((x1 - 50, y1 + 3), f"{n * width:.1f} s", fill="black")
    img.save(path, format="PNG")
