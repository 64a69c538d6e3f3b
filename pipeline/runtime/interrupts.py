"""Ctrl-C and SIGTERM as events the scheduler checks, instead of exceptions thrown anywhere."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["Interrupted", "capture_interrupts", "cancelled_by", "cancel_requested"]


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
    """Set by SIGINT/SIGTERM while a run is in progress, or by whoever holds its ``event`` (a consumer of
    ``stream()`` that stopped early); remembers which signal came first (SIGINT when none did)."""

    def __init__(self, event: threading.Event | None = None) -> None:
        self.event = event or threading.Event()
        self.signum = 0

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if not self.event.is_set():
            self.signum = signum
        self.event.set()

    def raise_if_set(self) -> None:
        if self.event.is_set():
            raise Interrupted(self.signum or signal.SIGINT)


_CANCEL = threading.local()  # this thread's cancel event (``cancelled_by``), if any


@contextmanager
def cancelled_by(event: threading.Event) -> Iterator[None]:
    """Runs started in this thread inside the block stop, as on Ctrl-C, once ``event`` is set from any thread:
    workers stopped, partial outputs removed, ``Interrupted`` raised out of ``run()``."""
    before = getattr(_CANCEL, "event", None)
    _CANCEL.event = event
    try:
        yield
    finally:
        _CANCEL.event = before


def cancel_requested() -> bool:
    """Whether this thread's run was asked to stop (``cancelled_by``): for loops that capture no interrupts."""
    event: threading.Event | None = getattr(_CANCEL, "event", None)
    return event is not None and event.is_set()


@contextmanager
def capture_interrupts() -> Iterator[InterruptFlag]:
    """Turn SIGINT and SIGTERM into a flag for the duration of the block (main thread only).

    Elsewhere (a run started from a worker thread) signals keep their usual behaviour and the flag is set only
    through this thread's ``cancelled_by`` event.
    """
    flag = InterruptFlag(getattr(_CANCEL, "event", None))
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {s: signal.signal(s, flag) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
