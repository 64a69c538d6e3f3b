"""Printing benchmark tables and target verdicts the same way in every benchmark."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence

from pipeline.observe.metrics import text_table


def machine_line() -> str:
    """One line naming the machine the numbers come from."""
    try:
        import psutil
        mem = f"{psutil.virtual_memory().total / 2**30:.0f} GiB"
    except Exception:
        mem = "?"
    return f"machine: {platform.machine()}, {os.cpu_count()} cores, {mem}, Python {platform.python_version()}"


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A left-aligned first column and right-aligned others."""
    print(f"\n{title}")
    print(text_table([list(header), *rows], left=1))


def verdict(name: str, measured: float, target: float, unit: str = "x", *, at_most: bool = False) -> bool:
    """Print whether ``measured`` meets ``target`` (at least it, or ``at_most`` it) and return it."""
    ok = measured <= target if at_most else measured >= target
    goal = f"{'<=' if at_most else '>='} {target:g}{unit}"
    print(f"  target {name}: {measured:.2f}{unit} (goal {goal}) {'MET' if ok else 'MISSED'}")
    return ok


def median_call_us(call: Callable[[], object], n: int) -> float:
    """Median microseconds of ``call()`` over ``n`` calls, after a warm-up of n/10 (at least 2)."""
    for _ in range(max(2, n // 10)):
        call()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6
