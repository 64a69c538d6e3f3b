"""``RuntimeCoordinator``: the pools of a run, one core budget, task placement and auto-tuning."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from types import MappingProxyType
from typing import Any

import psutil

from ..runtime.pool import CoreBudget, PoolMetrics, Priority, TaskPoolConfig, WorkerPool
from .monitor import PoolLoad, SystemMonitor, TuningDecision, log, plan_moves

__all__ = ["RuntimeCoordinator"]

_DEFAULT_WORKER_BYTES = 150 << 20  # before a worker has started, assume this much resident memory


class RuntimeCoordinator:
    """Registers pools that share one core budget; places tasks by priority and load; tunes pool sizes.

    ``memory_budget`` (bytes, default half of the memory available now) bounds
    what auto-tuning may add in workers.
    """

    def __init__(self, *, cores: int | None = None, memory_budget: int | None = None,
                 monitor: SystemMonitor | None = None) -> None:
        self.budget = CoreBudget(cores)
        self.monitor = monitor or SystemMonitor()
        self.memory_budget = memory_budget or psutil.virtual_memory().available // 2
        self._pools: dict[str, WorkerPool] = {}
        self._last_busy: dict[str, tuple[float, float]] = {}
        self.decisions: list[TuningDecision] = []

    # Pools -----------------------------------------------------------------------

    def register_pool(self, pool_id: str, config: TaskPoolConfig | None = None) -> WorkerPool:
        """Create a pool on this coordinator's core budget and register it under ``pool_id``."""
        if pool_id in self._pools:
            raise ValueError(f"a pool named {pool_id!r} is already registered")
        pool = WorkerPool(pool_id, config, budget=self.budget)
        self._pools[pool_id] = pool
        self._last_busy[pool_id] = (time.monotonic(), 0.0)
        return pool

    def get_pool(self, pool_id: str) -> WorkerPool:
        try:
            return self._pools[pool_id]
        except KeyError:
            raise KeyError(f"no pool {pool_id!r} (pools: {', '.join(self._pools) or 'none'})") from None

    @property
    def pools(self) -> list[WorkerPool]:
        """Registered pools, highest priority first."""
        return sorted(self._pools.values(), key=lambda p: -p.config.priority)

    def schedule_task(self, fn: Callable[..., Any], /, *args: Any, priority: Priority = Priority.MEDIUM,
                      **kwargs: Any) -> Future[Any]:
        """Submit ``fn`` to the least loaded pool of ``priority`` (else the nearest priority above, else any)."""
        if not self._pools:
            raise ValueError("no pools registered")
        pools = list(self._pools.values())
        exact = [p for p in pools if p.config.priority == priority]
        above = sorted((p for p in pools if p.config.priority > priority), key=lambda p: p.config.priority)
        if exact:
            candidates = exact
        elif above:
            candidates = [p for p in above if p.config.priority == above[0].config.priority]
        else:
            candidates = pools
        pool = min(candidates, key=lambda p: p.current_load())
        return pool.submit_task(fn, args, kwargs, priority=priority)

    def statistics(self) -> Mapping[str, PoolMetrics]:
        """Each pool's figures (``WorkerPool.statistics()``) by pool id, read-only."""
        return MappingProxyType({pool.pool_id: pool.statistics() for pool in self.pools})

    def metrics(self) -> dict[str, dict[str, Any]]:
        """Per pool: utilization, average task duration, queue length, failures and more (display names)."""
        out = {}
        for pool in self.pools:
            m = pool.statistics()
            out[pool.pool_id] = {
                "priority": m.priority.name, "workers": m.max_concurrent_tasks, "utilization": m.load,
                "avg_task_s": m.avg_s, "p95_task_s": m.p95_s, "queue_length": m.queue_size,
                "active": m.active_tasks, "executed": m.executed, "failures": m.failed, "timeouts": m.timeouts,
            }
        return out

    # Tuning ----------------------------------------------------------------------

    def _loads(self) -> list[PoolLoad]:
        loads = []
        now = time.monotonic()
        for pool in self._pools.values():
            m = pool.metrics()
            last_t, last_busy = self._last_busy.get(pool.pool_id, (now, 0.0))
            interval = max(now - last_t, 1e-6)
            self._last_busy[pool.pool_id] = (now, m.busy_s)
            busy = min(1.0, (m.busy_s - last_busy) / (interval * m.max_concurrent_tasks))
            pids = pool.worker_pids()
            per_worker = self.monitor.memory_of(pids) // len(pids) if pids else _DEFAULT_WORKER_BYTES
            loads.append(PoolLoad(pool.pool_id, m.max_concurrent_tasks, m.queue_size, m.active_tasks, busy,
                                  per_worker or _DEFAULT_WORKER_BYTES))
        return loads

    def auto_tune(self) -> TuningDecision:
        """Move one worker toward the bottleneck (or grow it into idle cores); log and return the decision."""
        snapshot = self.monitor.snapshot()
        decision = plan_moves(self._loads(), core_budget=self.budget.cores,
                              memory_budget=min(self.memory_budget, snapshot.available_bytes))
        if decision.action == "grow" and decision.target:
            target = self._pools[decision.target]
            target.resize(target.max_concurrent_tasks + 1)
        elif decision.action == "move" and decision.target and decision.source:
            source, target = self._pools[decision.source], self._pools[decision.target]
            source.resize(source.max_concurrent_tasks - 1)
            target.resize(target.max_concurrent_tasks + 1)
        self.decisions.append(decision)
        log.info("auto_tune: %s %s%s: %s", decision.action, decision.target or "-",
                 f" from {decision.source}" if decision.source else "", decision.reason)
        return decision

    # Presets and life cycle --------------------------------------------------------

    @classmethod
    def video_processing(cls, cores: int | None = None) -> RuntimeCoordinator:
        """Pools for batch video work: decode and encode HIGH, per-frame work MEDIUM, thumbnails and I/O LOW."""
        rc = cls(cores=cores)
        n = rc.budget.cores
        rc.register_pool("decode", TaskPoolConfig(max(1, n // 2), queue_size=4 * n, priority=Priority.HIGH))
        rc.register_pool("process", TaskPoolConfig(n, queue_size=8 * n, priority=Priority.MEDIUM))
        rc.register_pool("encode", TaskPoolConfig(max(1, n // 2), queue_size=4 * n, priority=Priority.HIGH))
        rc.register_pool("io", TaskPoolConfig(max(1, n // 4), queue_size=16 * n, priority=Priority.LOW))
        return rc

    @classmethod
    def low_memory(cls, cores: int | None = None) -> RuntimeCoordinator:
        """One worker per pool, short queues, and a quarter of the available memory for tuning."""
        rc = cls(cores=cores, memory_budget=psutil.virtual_memory().available // 4)
        for name, prio in (("decode", Priority.HIGH), ("process", Priority.MEDIUM), ("encode", Priority.HIGH),
                           ("io", Priority.LOW)):
            rc.register_pool(name, TaskPoolConfig(1, queue_size=4, priority=prio))
        return rc

    def shutdown(self, wait: bool = True, cancel_pending: bool = False) -> None:
        """Shut every pool down."""
        for pool in self._pools.values():
            pool.shutdown(wait=wait, cancel_pending=cancel_pending)

    def __enter__(self) -> RuntimeCoordinator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(cancel_pending=exc[0] is not None)
