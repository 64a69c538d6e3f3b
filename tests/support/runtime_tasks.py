"""Task functions the runtime tests send to worker processes (importable there by name)."""

from __future__ import annotations

import ctypes
import os
import signal
import time
from pathlib import Path


def wait_for(path: str, limit_s: float = 120.0) -> None:
    """Block until ``path`` exists: the test's event that lets a task go on."""
    end = time.monotonic() + limit_s
    while not os.path.exists(path):
        if time.monotonic() > end:
            raise TimeoutError(f"gate {path} never opened")
        time.sleep(0.002)


def add(a: int, b: int) -> int:
    return a + b


def fail_with(message: str) -> None:
    raise ValueError(message)


def record_span(task_id: int, hold_s: float = 0.0) -> tuple[int, float, float]:
    """Return (id, start, end) on the machine-wide monotonic clock, holding the worker ``hold_s``."""
    start = time.monotonic()
    if hold_s:
        time.sleep(hold_s)
    return task_id, start, time.monotonic()


def gated(task_id: int, gate: str) -> tuple[int, float]:
    """Wait for the gate, then return (id, time it went on)."""
    wait_for(gate)
    return task_id, time.monotonic()


def started_at(task_id: int) -> tuple[int, float]:
    return task_id, time.monotonic()


def log_once(task_id: int, log: str) -> int:
    with open(log, "a") as f:
        f.write(f"{task_id}\n")
    return task_id


def hang_in_python() -> None:
    time.sleep(3600)


def hang_in_native_code() -> None:
    signal.pause()


def hang_holding_the_gil() -> None:
    """Hang inside native code without releasing the GIL (``PyDLL`` calls keep it): only SIGKILL ends it."""
    ctypes.PyDLL(None).sleep(3600)


def die_first_time(marker: str, pid_file: str, gate: str) -> str:
    """First run: post the pid and wait to be killed. A later run (the retry) finishes."""
    if os.path.exists(marker):
        return "done on retry"
    Path(marker).write_text("1")
    Path(pid_file + ".tmp").write_text(str(os.getpid()))
    os.replace(pid_file + ".tmp", pid_file)
    wait_for(gate)
    return "was never killed"


def always_die() -> None:
    os._exit(7)


def niceness() -> int:
    return os.nice(0)


def burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total
