"""Sizing and retuning: how many workers, slots and credits a run gets, and moving them.

:class:`PerformanceConfig` sizes a local run (profiles by machine);
the run optimizer retunes it as it goes. :class:`RuntimeCoordinator` groups
pools under one core budget for programs that drive :class:`WorkerPool` s
themselves. ``monitor`` reads the machine (cores, load, memory).
"""

from .coordinator import RuntimeCoordinator
from .performance import PerformanceConfig, RunDecision

__all__ = ["PerformanceConfig", "RunDecision", "RuntimeCoordinator"]  # sorted
