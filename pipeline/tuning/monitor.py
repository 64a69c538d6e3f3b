"""Reading the machine: ``SystemMonitor`` gives cores, load and memory (psutil).

The tuners read the machine through it (profiles sizing a run, the
coordinator's auto-tuning); the rules that decide from those figures are in
``plan``. ``log`` is the tuners' logger, ``framepipe.tuning``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

__all__ = ["SystemMonitor", "SystemSnapshot", "log"]

log = logging.getLogger("framepipe.tuning")


@dataclass(frozen=True, slots=True)
class SystemSnapshot:
    """The machine at one moment."""

    cores: int
    load_1m: float
    cpu_percent: float
    available_bytes: int
    total_bytes: int


class SystemMonitor:
    """Reads the machine's state through psutil."""

    def snapshot(self) -> SystemSnapshot:
        vm = psutil.virtual_memory()
        return SystemSnapshot(os.cpu_count() or 1, psutil.getloadavg()[0], psutil.cpu_percent(interval=None),
                              vm.available, vm.total)

    @staticmethod
    def memory_of(pids: Iterable[int]) -> int:
        """Resident memory of these processes in bytes (those gone are skipped)."""
        total = 0
        for pid in pids:
            try:
                total += psutil.Process(pid).memory_info().rss
            except psutil.Error:
                pass
        return total
