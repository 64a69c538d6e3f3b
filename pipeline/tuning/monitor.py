"""Watching the machine and moving workers toward the bottleneck.

``SystemMonitor`` reads cores, load and memory (psutil). ``plan_moves`` is a
plain function over pool snapshots: it answers one question — which pool
should get a worker, from where, and why — so it can be tested without
processes. The coordinator applies and logs what it returns.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import psutil

__all__ = ["SystemMonitor", "SystemSnapshot", "PoolLoad", "TuningDecision", "plan_moves"]

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


@dataclass(frozen=True, slots=True)
class PoolLoad:
    """What the planner knows of one pool since the last tuning round."""

    pool_id: str
    workers: int
    queued: int
    active: int
    busy_fraction: float  # busy worker-seconds over available worker-seconds in the interval
    worker_bytes: int  # resident memory of one worker (average)

    @property
    def pressure(self) -> float:
        """How much the pool wants another worker: its backlog per worker plus how busy it was."""
        return self.queued / self.workers + self.busy_fraction


@dataclass(frozen=True, slots=True)
class TuningDecision:
    """One change the tuner made (or chose not to make), and why."""

    action: str  # "grow", "move" or "hold"
    target: str | None
    source: str | None
    reason: str
    at: float


def plan_moves(pools: Sequence[PoolLoad], *, core_budget: int, memory_budget: int,
               min_workers: int = 1) -> TuningDecision:
    """Pick one change: give the most pressed pool a worker from idle cores or from the least pressed pool.

    A pool counts as a bottleneck only when tasks wait in its queue. Growing
    needs a free core in ``core_budget`` and room in ``memory_budget`` for
    another worker; otherwise a worker moves from a pool with no backlog.
    """
    now = time.time()
    if not pools:
        return TuningDecision("hold", None, None, "no pools", now)
    target = max(pools, key=lambda p: p.pressure)
    if target.queued == 0:
        return TuningDecision("hold", None, None, "no pool has tasks waiting", now)
    workers = sum(p.workers for p in pools)
    memory = sum(p.workers * p.worker_bytes for p in pools)
    if workers < core_budget and memory + target.worker_bytes <= memory_budget:
        return TuningDecision("grow", target.pool_id, None,
                              f"{target.pool_id} has {target.queued} queued, busy {target.busy_fraction:.0%}; "
                              f"{core_budget - workers} core(s) of the budget unused", now)
    donors = [p for p in pools if p is not target and p.workers > min_workers and p.queued == 0]
    if not donors:
        return TuningDecision("hold", target.pool_id, None,
                              f"{target.pool_id} is the bottleneck ({target.queued} queued) but no pool can spare "
                              "a worker", now)
    source = min(donors, key=lambda p: p.pressure)
    if source.pressure >= target.pressure:
        return TuningDecision("hold", target.pool_id, source.pool_id, "pressures are balanced", now)
    return TuningDecision("move", target.pool_id, source.pool_id,
                          f"{target.pool_id} has {target.queued} queued, busy {target.busy_fraction:.0%}; "
                          f"{source.pool_id} idles (busy {source.busy_fraction:.0%}, none queued)", now)
