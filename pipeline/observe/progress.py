"""Progress display: a live block on a terminal, plain lines otherwise."""

from __future__ import annotations

import shutil
import sys
import threading
import time
from typing import TYPE_CHECKING, TextIO

from ..items import readable
from ..results import FileResult

if TYPE_CHECKING:
    from ..executors.base import FileTask

__all__ = ["ConsoleProgress", "SilentProgress"]


class SilentProgress:
    """Reports nothing (for library use and tests)."""

    def file_started(self, task: FileTask) -> None:
        pass

    def file_progress(self, index: int, stage: str, done: int, total: int | None) -> None:
        pass

    def file_done(self, result: FileResult) -> None:
        pass

    def close(self) -> None:
        pass


class ConsoleProgress:
    """Overall and per-file progress; finished files are printed one line each.

    On a TTY the block of running files is redrawn in place (at most 10 times a
    second); elsewhere only start and finish lines are printed.
    """

    def __init__(self, total_files: int, stream: TextIO | None = None, live: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.total = total_files
        self.done = 0
        self.failed = 0
        self.start = time.monotonic()
        self._active: dict[int, list[object]] = {}
        self._lock = threading.Lock()
        self._drawn = 0
        self._last_draw = 0.0

    def file_started(self, task: FileTask) -> None:
        with self._lock:
            self._active[task.file.index] = [readable(task.file.relpath), "", 0, None]
            if not self.live:
                self._line(f"start  {readable(task.file.relpath)}")
            self._redraw(force=True)

    def file_progress(self, index: int, stage: str, done: int, total: int | None) -> None:
        with self._lock:
            entry = self._active.get(index)
            if entry is not None:
                entry[1:] = [stage, done, total]
                self._redraw()

    def file_done(self, result: FileResult) -> None:
        with self._lock:
            self._active.pop(result.file.index, None)
            self.done += 1
            self.failed += 0 if result.ok else 1
            self._line(result.summary_line())
            self._redraw(force=True)

    def close(self) -> None:
        with self._lock:
            self._clear()

    # Drawing (callers hold the lock) --------------------------------------

    def _line(self, text: str) -> None:
        self._clear()
        print(text, file=self.stream, flush=True)

    def _clear(self) -> None:
        if self.live and self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self.stream.flush()
            self._drawn = 0

    def _redraw(self, force: bool = False) -> None:
        if not self.live:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        self._clear()
        width = shutil.get_terminal_size((100, 20)).columns
        bar_w = 24
        filled = int(bar_w * self.done / max(self.total, 1))
        lines = [f"[{'#' * filled}{'.' * (bar_w - filled)}] {self.done}/{self.total} files"
                 f"{f', {self.failed} failed' if self.failed else ''}  {now - self.start:.1f} s"]
        for name, stage, done, total in self._active.values():
            pct = f" {100 * int(done) / int(total):3.0f}%" if total else ""  # type: ignore[call-overload]
            of = f"/{total}" if total else ""
            lines.append(f"  {name}  {stage} {done}{of}{pct}"[:width - 1])
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()
        self._drawn = len(lines)
