"""``RuntimeCoordinator``: the pools of a run, one core budget, task placement and auto-tuning.

Auto-tuning is the run optimizer's system applied to these pools: each round
reads every pool as ``PoolFigures``, asks ``plan.plan_pool_moves`` what to
change, and applies and logs the ``RunDecision`` s it returns (targets of
``Knob.POOL``). The machine is read through ``SystemMonitor``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from types import MappingProxyType
from typing import Any

from ..runtime.pool import CoreBudget, PoolMetrics, Priority, TaskPoolConfig, WorkerPool
from .monitor import SystemMonitor, log
from .performance import size_profile
from .plan import CoordinatorLimits, Knob, PoolFigures, PoolsObservation, RunDecision, plan_pool_moves

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
        self.memory_budget = memory_budget or self.monitor.snapshot().available_bytes // 2
        self._pools: dict[str, WorkerPool] = {}
        self._last_busy: dict[str, tuple[float, float]] = {}
        self._started = time.monotonic()
        self.decisions: list[RunDecision] = []  # every change auto_tune made, oldest first

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

    def observe(self) -> PoolsObservation:
        """Each pool since the last reading (busy share, queue, memory per worker) and the memory available now.

        Each call starts a new interval. A pool's idle worker-time counts as
        starved when nothing waits in its queue, as blocked when tasks wait
        (for cores that higher priorities hold, or for workers still starting).
        """
        now = time.monotonic()
        figures = []
        for pool in self._pools.values():
            m = pool.statistics()
            last_t, last_busy = self._last_busy.get(pool.pool_id, (now, 0.0))
            interval = max(now - last_t, 1e-6)
            self._last_busy[pool.pool_id] = (now, m.busy_s)
            busy = min(1.0, (m.busy_s - last_busy) / (interval * m.max_concurrent_tasks))
            idle, waiting = 1.0 - busy, m.queue_size > 0
            pids = pool.worker_pids()
            per_worker = self.monitor.memory_of(pids) // len(pids) if pids else 0
            figures.append(PoolFigures(pool.pool_id, m.max_concurrent_tasks, busy,
                                       starved=0.0 if waiting else idle, blocked=idle if waiting else 0.0,
                                       queued=m.queue_size, worker_bytes=per_worker or _DEFAULT_WORKER_BYTES))
        return PoolsObservation(now - self._started, tuple(figures), self.monitor.snapshot().available_bytes)

    def auto_tune(self) -> list[RunDecision]:
        """Move one worker toward the bottleneck (or grow it into idle cores); log and return the decisions.

        Empty when nothing should change; a move is two decisions, the donor's
        shrink first. Each decision is also kept in ``decisions``.
        """
        decisions = plan_pool_moves(self.observe(), CoordinatorLimits(self.budget.cores, self.memory_budget))
        for d in decisions:
            if d.target.knob is not Knob.POOL:
                raise ValueError(f"a coordinator changes pools, not the {d.what}")
            self._pools[d.target.name].resize(d.new)
            self.decisions.append(d)
            log.info("auto_tune: %s", d.line(), extra={"what": d.what, "from": d.old, "to": d.new, "why": d.why})
        return decisions

    # Presets and life cycle --------------------------------------------------------

    @classmethod
    def video_processing(cls, cores: int | None = None) -> RuntimeCoordinator:
        """Pools for batch video work: decode and encode HIGH, per-frame work MEDIUM, thumbnails and I/O LOW.

        Sized by the ``video_processing`` performance profile on ``cores``
        cores: decode and encode get a worker per file in flight, per-frame
        work one per map worker; I/O a quarter of the cores.
        """
        rc = cls(cores=cores)
        n = rc.budget.cores
        profile = size_profile("video_processing", n, rc.monitor.snapshot().available_bytes)
        files, maps = profile.files_in_flight or 1, profile.map_workers or n
        rc.register_pool("decode", TaskPoolConfig(files, queue_size=4 * n, priority=Priority.HIGH))
        rc.register_pool("process", TaskPoolConfig(maps, queue_size=8 * n, priority=Priority.MEDIUM))
        rc.register_pool("encode", TaskPoolConfig(files, queue_size=4 * n, priority=Priority.HIGH))
        rc.register_pool("io", TaskPoolConfig(max(1, n // 4), queue_size=16 * n, priority=Priority.LOW))
        return rc

    @classmethod
    def low_memory(cls, cores: int | None = None) -> RuntimeCoordinator:
        """One worker per pool, short queues, and a quarter of the available memory for tuning."""
        monitor = SystemMonitor()
        rc = cls(cores=cores, memory_budget=monitor.snapshot().available_bytes // 4, monitor=monitor)
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
