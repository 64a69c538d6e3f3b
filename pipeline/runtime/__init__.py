"""The worker runtime: priority process pools and the processes behind them.

:class:`WorkerPool` runs tasks on loky processes by :class:`Priority`, under a
shared :class:`CoreBudget`. Internal parts: ``forkserver`` (workers forked
from a process that has imported the stages already), ``lifecycle`` (no
process outlives the run), ``interrupts`` (Ctrl-C and SIGTERM as events) and
``limits`` (naming the resource limit a failure ran into).
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .pool import CoreBudget, PoolMetrics, Priority, TaskPoolConfig, WorkerPool
else:  # loky loads with the pools, not with ``interrupts`` or ``lifecycle`` (which the command needs at once)
    from .._lazy import lazy_exports

    __getattr__, __dir__ = lazy_exports(__name__, {
        ".pool": ("CoreBudget", "PoolMetrics", "Priority", "TaskPoolConfig", "WorkerPool"),
    })
    del lazy_exports

__all__ = ["CoreBudget", "PoolMetrics", "Priority", "TaskPoolConfig", "WorkerPool"]  # sorted
