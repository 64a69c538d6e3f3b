"""Per-stage statistics of a run, the bottleneck, and the table printed at its end."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["StageStats", "Bottleneck", "merge_stats", "find_bottleneck", "format_stage_table", "stats_table",
           "percentile"]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``sorted_values`` (ascending), nearest rank; 0.0 when there are none.

    Nearest rank rather than interpolation: the figure is one that was measured. Every p95 framepipe reports
    (stage latencies, pool task durations, the benchmarks') comes from here.
    """
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))]


@dataclass(slots=True)
class StageStats:
    """What one stage did: items in and out, frames and bytes handled, and where its time went.

    ``busy_s`` is time inside the stage (not in the stages it feeds);
    ``starved_s`` time its workers sat idle for want of input; ``blocked_s``
    time input was ready but could not go on (no free slot downstream);
    ``workers`` how many could run it at once; ``where`` ``file`` (in each
    file's own process, in order) or ``map:<pool>`` (frame-parallel).
    """

    name: str
    files: int = 0
    items_in: int = 0
    items_out: int = 0
    frames: int = 0
    bytes: int = 0
    busy_s: float = 0.0
    starved_s: float = 0.0
    blocked_s: float = 0.0
    failures: int = 0
    p50_s: float = 0.0
    p95_s: float = 0.0
    workers: int = 1
    where: str = "file"
    cache_hits: int = 0  # files whose results were replayed from the cache
    cache_misses: int = 0  # files it ran for, and whose results it remembered

    @property
    def frames_per_s(self) -> float:
        """Frames handled per busy second (0 when the stage handled none)."""
        return self.frames / self.busy_s if self.busy_s > 0 and self.frames else 0.0

    def add(self, other: StageStats) -> None:
        """Accumulate ``other`` (the same stage on another file) into this record."""
        self.files += other.files
        self.items_in += other.items_in
        self.items_out += other.items_out
        self.frames += other.frames
        self.bytes += other.bytes
        self.busy_s += other.busy_s
        self.starved_s += other.starved_s
        self.blocked_s += other.blocked_s
        self.failures += other.failures
        self.cache_hits += other.cache_hits
        self.cache_misses += other.cache_misses
        self.p50_s = max(self.p50_s, other.p50_s)
        self.p95_s = max(self.p95_s, other.p95_s)

    def record_latencies(self, samples: Iterable[float]) -> None:
        """Set ``p50_s`` and ``p95_s`` from the latencies of its tasks (left as they are when there are none)."""
        ordered = sorted(samples)
        if ordered:
            self.p50_s = statistics.median(ordered)
            self.p95_s = percentile(ordered, 0.95)

    def utilization(self, wall_s: float) -> float:
        """Busy share of the time its workers had during the run."""
        return self.busy_s / (wall_s * max(self.workers, 1)) if wall_s > 0 else 0.0

    def to_dict(self) -> dict[str, float | int | str]:
        """A JSON-ready dict, with the derived frames/s."""
        d: dict[str, float | int | str] = asdict(self)
        d["frames_per_s"] = round(self.frames_per_s, 2)
        return d


@dataclass(frozen=True, slots=True)
class Bottleneck:
    """The stage that limits throughput, and why."""

    stage: str
    utilization: float
    reason: str


def merge_stats(per_file: Iterable[Mapping[str, StageStats]], order: Iterable[str]) -> list[StageStats]:
    """Sum per-file stage statistics into one record per stage, in ``order``."""
    totals = {name: StageStats(name) for name in order}
    for stats in per_file:
        for name, s in stats.items():
            total = totals.setdefault(name, StageStats(name))
            total.workers, total.where = s.workers, s.where
            total.add(s)
    return list(totals.values())


def find_bottleneck(stats: Sequence[StageStats], wall_s: float) -> Bottleneck | None:
    """The stage whose workers were busiest; the others waited for it."""
    busy = [s for s in stats if s.busy_s > 0]
    if not busy or wall_s <= 0:
        return None
    top = max(busy, key=lambda s: s.utilization(wall_s))
    u = top.utilization(wall_s)
    others = [s for s in busy if s is not top]
    waiting = max(others, key=lambda s: s.starved_s, default=None)
    reason = f"busy {u:.0%} of the time of its {top.workers} worker(s)"
    if others:
        reason += f"; the next busiest, {max(others, key=lambda s: s.utilization(wall_s)).name}, " \
                  f"{max(s.utilization(wall_s) for s in others):.0%}"
    if waiting is not None and waiting.starved_s > 0.05 * wall_s:
        reason += f"; {waiting.name} sat starved for input {waiting.starved_s:.1f} s"
    return Bottleneck(top.name, u, reason)


def text_table(rows: Sequence[Sequence[object]], left: int = 1) -> str:
    """Rows as aligned plain text: the first row a header underlined with dashes, the first
    ``left`` columns left-aligned (names), the others right-aligned (figures)."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    lines = []
    for n, r in enumerate(cells):
        lines.append("  ".join([c.ljust(w) for c, w in zip(r[:left], widths[:left])]
                               + [c.rjust(w) for c, w in zip(r[left:], widths[left:])]))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_stage_table(stats: Iterable[StageStats], wall_s: float | None = None) -> str:
    """A plain-text table of the per-stage statistics, with the bottleneck under it."""
    stats = list(stats)
    cached = any(s.cache_hits or s.cache_misses for s in stats)
    rows = [("stage", "where", "files", "items", "frames", "MB", "busy s", "starved s", "blocked s", "frames/s",
             "p95 ms", "fail") + (("cache hit/miss",) if cached else ())]
    for s in stats:
        rows.append((s.name, s.where, str(s.files), str(s.items_in), str(s.frames), f"{s.bytes / 1e6:.0f}",
                     f"{s.busy_s:.2f}", f"{s.starved_s:.2f}", f"{s.blocked_s:.2f}",
                     f"{s.frames_per_s:.1f}" if s.frames else "-", f"{s.p95_s * 1e3:.1f}" if s.p95_s else "-",
                     str(s.failures))
                    + ((f"{s.cache_hits}/{s.cache_misses}" if s.cache_hits or s.cache_misses else "-",)
                       if cached else ()))
    lines = text_table(rows, left=2).split("\n")
    if wall_s is not None:
        lines.append(f"wall time {wall_s:.2f} s")
        neck = find_bottleneck(stats, wall_s)
        if neck is not None:
            lines.append(f"bottleneck: {neck.stage} ({neck.reason})")
    return "\n".join(lines)


def stats_table(stats: Iterable[StageStats]) -> pa.Table:
    """The per-stage statistics as an Arrow table (one row per stage)."""
    import pyarrow as pa  # here: the statistics themselves are needed where pyarrow is not (the pools, the command)
    rows = [s.to_dict() for s in stats]
    names = [f.name for f in fields(StageStats)] + ["frames_per_s"]
    return pa.Table.from_pylist(rows) if rows else pa.table({n: [] for n in names})
