"""Per-stage statistics of a run, and the table printed at its end."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

__all__ = ["StageStats", "merge_stats", "format_stage_table"]


@dataclass(slots=True)
class StageStats:
    """What one stage did: items in and out, frames handled, and seconds spent busy."""

    name: str
    files: int = 0
    items_in: int = 0
    items_out: int = 0
    frames: int = 0
    busy_s: float = 0.0
    failures: int = 0

    @property
    def frames_per_s(self) -> float:
        """Frames handled per busy second (0 when the stage handled none)."""
        return self.frames / self.busy_s if self.busy_s > 0 and self.frames else 0.0

    def add(self, other: "StageStats") -> None:
        """Accumulate ``other`` (the same stage on another file) into this record."""
        self.files += other.files
        self.items_in += other.items_in
        self.items_out += other.items_out
        self.frames += other.frames
        self.busy_s += other.busy_s
        self.failures += other.failures

    def to_dict(self) -> dict[str, float | int | str]:
        """A JSON-ready dict, with the derived frames/s."""
        d: dict[str, float | int | str] = asdict(self)
        d["frames_per_s"] = round(self.frames_per_s, 2)
        return d


def merge_stats(per_file: Iterable[Mapping[str, StageStats]], order: Iterable[str]) -> list[StageStats]:
    """Sum per-file stage statistics into one record per stage, in ``order``."""
    totals = {name: StageStats(name) for name in order}
    for stats in per_file:
        for name, s in stats.items():
            totals.setdefault(name, StageStats(name)).add(s)
    return list(totals.values())


def format_stage_table(stats: Iterable[StageStats], wall_s: float | None = None) -> str:
    """A plain-text table: stage, files, items, frames, busy seconds, frames/s."""
    rows = [("stage", "files", "items", "frames", "busy s", "frames/s", "fail")]
    for s in stats:
        rows.append((s.name, str(s.files), str(s.items_in), str(s.frames), f"{s.busy_s:.2f}",
                     f"{s.frames_per_s:.1f}" if s.frames else "-", str(s.failures)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, r in enumerate(rows):
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    if wall_s is not None:
        lines.append(f"wall time {wall_s:.2f} s")
    return "\n".join(lines)
