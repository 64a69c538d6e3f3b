"""``BatchTally``: how far a batch has got, from the run's events: files, frames and input bytes done, rates, ETA.

The progress display draws its ``figures()``; the tally itself draws
nothing, so its arithmetic is tested with a clock of the test's own.
Files done by an earlier run or replayed from the cache took no work: they
count as done, but neither in the rates nor in the work left.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..items import readable

if TYPE_CHECKING:
    from ..executors.base import FileTask
    from ..results import FileResult

__all__ = ["BatchTally", "BatchFigures", "FileInFlight"]


@dataclass(slots=True)
class FileInFlight:
    """A file being worked on: its name, input size, and the last progress its stages told (``total`` None: unknown)."""

    name: str
    size: int
    stage: str = ""
    done: int = 0
    total: int | None = None
    frames: int = 0  # most units a stage has reported done (frames, for the decoders)

    @property
    def fraction(self) -> float | None:
        """How far its current stage is (0..1), None when the stage did not say how much there is."""
        return min(1.0, self.done / self.total) if self.total else None


@dataclass(frozen=True, slots=True)
class BatchFigures:
    """The batch at one moment. Rates are per second of the batch's work so far; ``eta_s`` None: no estimate yet.

    ``bytes_per_s`` counts input bytes (a file in flight by the share of it its stage has done).
    """

    files_total: int
    files_done: int
    files_failed: int
    elapsed_s: float
    frames_per_s: float
    bytes_per_s: float
    eta_s: float | None
    in_flight: tuple[FileInFlight, ...]


class BatchTally:
    """Counts a batch's events: ``started``, ``progressed``, ``finished``; ``figures()`` tells where it stands.

    ``total_bytes``: the input size of all files (the ETA is then by bytes; without it, by files).
    """

    def __init__(self, total_files: int, total_bytes: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total_files = total_files
        self.total_bytes = total_bytes
        self.clock = clock
        self.files_done = 0
        self.files_failed = 0
        self._worked_files = 0  # of files_done: those that took work (not resumed, nor replayed)
        self._skipped_bytes = 0  # input of the files that took none
        self._bytes_done = 0  # input of the worked files done
        self._frames_done = 0
        self._began: float | None = None  # when the first file started
        self._ended: float | None = None  # when the last file finished: the pace stops there
        self._active: dict[int, FileInFlight] = {}

    def started(self, task: FileTask) -> None:
        if self._began is None:
            self._began = self.clock()
        self._active[task.file.index] = FileInFlight(readable(task.file.relpath), task.file.size)

    def progressed(self, index: int, stage: str, done: int, total: int | None) -> None:
        f = self._active.get(index)
        if f is not None:
            f.stage, f.done, f.total = stage, done, total
            f.frames = max(f.frames, done)

    def finished(self, result: FileResult) -> None:
        f = self._active.pop(result.file.index, None)
        self.files_done += 1
        self.files_failed += 0 if result.ok else 1
        if self.files_done >= self.total_files and self._ended is None:
            self._ended = self.clock()
        if result.resumed or result.replayed:
            self._skipped_bytes += result.file.size
            return
        self._worked_files += 1
        self._bytes_done += result.file.size
        frames = max((s.frames for s in result.stats.values()), default=0)
        self._frames_done += frames or (f.frames if f is not None else 0)

    def figures(self) -> BatchFigures:
        """Where the batch stands now."""
        now = self._ended if self._ended is not None else self.clock()
        elapsed = now - self._began if self._began is not None else 0.0
        in_flight = tuple(FileInFlight(f.name, f.size, f.stage, f.done, f.total, f.frames)
                          for f in self._active.values())
        frames = self._frames_done + sum(f.frames for f in in_flight)
        done_bytes = self._bytes_done + sum(int(f.size * (f.fraction or 0.0)) for f in in_flight)
        frames_per_s = frames / elapsed if elapsed > 0 else 0.0
        bytes_per_s = done_bytes / elapsed if elapsed > 0 else 0.0
        return BatchFigures(self.total_files, self.files_done, self.files_failed, elapsed, frames_per_s,
                            bytes_per_s, self._eta(elapsed, done_bytes, bytes_per_s), in_flight)

    def _eta(self, elapsed: float, done_bytes: int, bytes_per_s: float) -> float | None:
        """Seconds left at the pace so far: by input bytes when their total is known, else by files."""
        if self.files_done == self.total_files:
            return 0.0
        if self.total_bytes and bytes_per_s > 0:
            left = self.total_bytes - self._skipped_bytes - done_bytes
            return max(0.0, left / bytes_per_s)
        if self._worked_files and elapsed > 0:
            return (self.total_files - self.files_done) * elapsed / self._worked_files
        return None
