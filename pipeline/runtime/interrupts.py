"""Ctrl-C and SIGTERM as events the scheduler checks, instead of exceptions thrown anywhere."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["Interrupted", "capture_interrupts"]


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal; workers were stopped and partial outputs removed."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_status(self) -> int:
        """The shell's convention: 128 + signal number (130 for Ctrl-C)."""
        return 128 + self.signum


class InterruptFlag:
    """Set by SIGINT/SIGTERM while a run is in progress; remembers which signal came first."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum = 0

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if not self.event.is_set():
            self.signum = signum
        self.event.set()

    def raise_if_set(self) -> None:
        if self.event.is_set():
            raise Interrupted(self.signum)


@contextmanager
def capture_interrupts() -> Iterator[InterruptFlag]:
    """Turn SIGINT and SIGTERM into a flag for the duration of the block (main thread only).

    Elsewhere (a run started from a worker thread) the flag is never set and
    signals keep their usual behaviour.
    """
    flag = InterruptFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {s: signal.signal(s, flag) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
