"""Progress display: a live block drawn with ``rich`` on a terminal or in a notebook, plain lines otherwise.

The figures come from ``tally.BatchTally``; this module only shows them.
``rich`` is loaded when the live block is first drawn (when a file starts),
so plain lines, and a run with nothing left to do, never load it.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO, cast

from ..items import readable
from ..results import FileResult
from .tally import BatchFigures, BatchTally

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live

    from ..executors.base import FileTask

__all__ = ["ConsoleProgress", "SilentProgress"]

BAR_WIDTH = 16


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
    """Overall and per-file progress; finished files are printed one line each (``FileResult.summary_line``).

    Live (a terminal, a notebook, or ``console``, a rich ``Console`` of the
    caller's): below the finished files' lines, a block redrawn in place with
    files done / total, frames/s, MB/s of input, the ETA, and a line per file
    in flight with its stage and %. ``live=False`` (``-q``, or a stream that is
    no terminal): plain lines, a file's start and its end. ``total_bytes``: the
    input size of all files, for an ETA by bytes rather than by files.
    """

    def __init__(self, total_files: int, stream: TextIO | None = None, live: bool | None = None, *,
                 total_bytes: int | None = None, console: Console | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream: TextIO = cast(TextIO, console.file) if console is not None else stream or sys.stderr
        self.live = (console is not None or _interactive(self.stream)) if live is None else live
        self.tally = BatchTally(total_files, total_bytes, clock)
        self._console = console
        self._display: Live | None = None  # started when the first file starts
        self._rerouted: list[tuple[logging.StreamHandler[TextIO], TextIO]] = []
        # _lock guards the tally; rich is never called while it is held (rich's thread holds its own lock while it
        # asks _render for the block, which takes _lock: the other order would deadlock). _drawing orders the
        # starting, printing through and stopping of the live block.
        self._lock = threading.Lock()
        self._drawing = threading.RLock()

    @property
    def total(self) -> int:
        return self.tally.total_files

    @property
    def done(self) -> int:
        return self.tally.files_done

    @property
    def failed(self) -> int:
        return self.tally.files_failed

    def file_started(self, task: FileTask) -> None:
        with self._lock:
            self.tally.started(task)
        if self.live:
            self._show()
        else:
            self._line(f"start  {readable(task.file.relpath)}")

    def file_progress(self, index: int, stage: str, done: int, total: int | None) -> None:
        with self._lock:
            self.tally.progressed(index, stage, done, total)

    def file_done(self, result: FileResult) -> None:
        with self._lock:
            self.tally.finished(result)
        self._line(result.summary_line())

    def refresh(self) -> None:
        """Draw the live block now (it is also redrawn a few times a second)."""
        if self._display is not None:
            self._display.refresh()

    def close(self) -> None:
        """Take the live block away (the finished files' lines stay) and give log lines their stream back."""
        with self._drawing:
            display, self._display = self._display, None
        if display is not None:
            display.stop()
        for handler, stream in self._rerouted:
            handler.setStream(stream)
        self._rerouted.clear()

    def figures(self) -> BatchFigures:
        """Where the batch stands now (what the live block shows)."""
        with self._lock:
            return self.tally.figures()

    # Drawing (never under _lock) -----------------------------------------------------------------------------

    def _line(self, text: str) -> None:
        with self._drawing:
            if self._display is not None:  # above the live block
                self._display.console.print(text, markup=False, highlight=False, emoji=False)
            else:
                print(text, file=self.stream, flush=True)

    def _show(self) -> None:
        """Start the live block, the first time a file starts."""
        with self._drawing:
            if self._display is None:
                self._start_display()

    def _start_display(self) -> None:
        from rich.console import Console
        from rich.live import Live
        console = self._console or Console(file=self.stream)
        if not (console.is_terminal or console.is_jupyter):  # live was asked for on a stream that is no terminal
            console = Console(file=self.stream, force_terminal=True)
        owns_terminal = self.stream is sys.stderr or self.stream is sys.stdout
        self._display = Live(get_renderable=self._render, console=console, refresh_per_second=4, transient=True,
                             redirect_stdout=owns_terminal, redirect_stderr=owns_terminal)
        self._display.start()
        self._reroute_log_lines(console)

    def _reroute_log_lines(self, console: Console) -> None:
        """framepipe's log lines on this stream go above the live block (not through it) while it is shown."""
        from rich.file_proxy import FileProxy
        for handler in logging.getLogger("framepipe").handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is self.stream:
                self._rerouted.append((handler, handler.stream))
                handler.setStream(FileProxy(console, self.stream))

    def _render(self) -> RenderableType:
        """The live block: the batch's line, then one line per file in flight (called from rich's thread)."""
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        with self._lock:
            f = self.tally.figures()
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True, overflow="ellipsis")
        grid.add_row(ProgressBar(total=max(f.files_total, 1), completed=f.files_done, width=BAR_WIDTH),
                     batch_line(f))
        for file in f.in_flight:
            bar = ProgressBar(total=file.total or None, completed=file.done, width=BAR_WIDTH)
            grid.add_row(bar, file_line(file.name, file.stage, file.done, file.total))
        return grid


def batch_line(f: BatchFigures) -> str:
    """``3/10 files, 1 failed · 240 frames/s · 12.5 MB/s · ETA 0:01:05 · 0:00:42`` (the last: time so far)."""
    failed = f", {f.files_failed} failed" if f.files_failed else ""
    eta = "ETA " + (clock_time(f.eta_s) if f.eta_s is not None else "-:--:--")
    return " · ".join((f"{f.files_done}/{f.files_total} files{failed}", f"{f.frames_per_s:.0f} frames/s",
                         f"{f.bytes_per_s / 1e6:.1f} MB/s", eta, clock_time(f.elapsed_s)))


def file_line(name: str, stage: str, done: int, total: int | None) -> str:
    """``clip.mp4  decode 120/300  40%`` (the stage and its share once a stage has said how far it is)."""
    if not stage:
        return f"{name}  starting"
    pct = f"  {100 * done / total:3.0f}%" if total else ""
    return f"{name}  {stage} {done}{f'/{total}' if total else ''}{pct}"


def clock_time(seconds: float) -> str:
    """Seconds as ``h:mm:ss``."""
    s = max(0, round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _interactive(stream: TextIO) -> bool:
    """Whether a live block can be drawn on ``stream``: a terminal, or a Jupyter notebook's output."""
    try:
        if stream.isatty():
            return True
    except (AttributeError, ValueError):  # no isatty, or closed
        return False
    if "IPython" not in sys.modules:  # no notebook without IPython: rich is not loaded to find out
        return False
    from rich.console import Console
    return Console(file=stream).is_jupyter
