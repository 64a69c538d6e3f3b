"""The worker runtime: priority process pools and the processes behind them.

:class:`WorkerPool` runs tasks on loky processes by :class:`Priority`, under a
shared :class:`CoreBudget`. Internal parts: ``forkserver`` (workers forked
from a process that has imported the stages already), ``lifecycle`` (no
process outlives the run), ``interrupts`` (Ctrl-C and SIGTERM as events) and
``limits`` (naming the resource limit a failure ran into).
"""

from .pool import CoreBudget, PoolMetrics, Priority, TaskPoolConfig, WorkerPool

__all__ = ["CoreBudget", "PoolMetrics", "Priority", "TaskPoolConfig", "WorkerPool"]  # sorted
