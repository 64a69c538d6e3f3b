"""Sizing and retuning: how many workers, slots and credits a run gets, and moving them.

:class:`PerformanceConfig` sizes a local run (profiles by machine);
the run optimizer (``optimizer``) retunes it as it goes by the rules
in ``plan``, whose decisions name a typed ``Target``. :class:`RuntimeCoordinator` groups
pools under one core budget for programs that drive :class:`WorkerPool` s
themselves; its ``auto_tune`` uses ``plan``'s rules and decisions too.
``monitor`` reads the machine (cores, load, memory).
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .coordinator import RuntimeCoordinator
    from .performance import PerformanceConfig
    from .plan import Knob, RunDecision, Target
else:  # the command's parser needs ``performance.PROFILES``, not the coordinator's pools
    from .._lazy import lazy_exports

    __getattr__, __dir__ = lazy_exports(__name__, {
        ".coordinator": ("RuntimeCoordinator",),
        ".performance": ("PerformanceConfig",),
        ".plan": ("Knob", "RunDecision", "Target"),
    })
    del lazy_exports

__all__ = ["Knob", "PerformanceConfig", "RunDecision", "RuntimeCoordinator", "Target"]  # sorted
