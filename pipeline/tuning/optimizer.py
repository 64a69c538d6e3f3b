"""``RunOptimizer``: the tuner inside a local run.

It samples the scheduler every tick, asks ``plan_run_moves`` at most every
``interval_s``, applies the answer (``SlotAllocator.budget_bytes``,
``WorkerPool.resize``, ``Cache.resize``) and logs each decision on
``framepipe.tuning``.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence, Sized
from typing import Protocol

import psutil

from ..cache.manager import CacheManager
from ..cache.memory import Cache
from ..dataplane.frame_pools import SlotAllocator
from ..executors.base import credits_per_file
from ..observe.metrics import StageStats
from ..runtime.pool import WorkerPool
from ..stage import Stage
from .monitor import log
from .performance import PerformanceConfig
from .plan import CacheFigures, Knob, Observation, OptimizerLimits, PoolFigures, RunDecision, plan_run_moves

__all__ = ["RunOptimizer", "TunableRun", "TunableFile"]


class TunableFile(Protocol):
    """A file in flight, as the optimizer sees it."""

    @property
    def busy(self) -> bool: ...  # a call of its actor is in flight


class TunableRun(Protocol):
    """What ``RunOptimizer`` reads of a run as it goes, and the settings it turns; the local executor's
    scheduler state (``LocalRun``) is one."""

    credits_per_file: int  # most slots a file may hold: set again when a map pool is resized

    @property
    def started(self) -> float: ...  # time.monotonic() at the run's start

    @property
    def slots(self) -> SlotAllocator: ...  # the frame buffer: its budget_bytes is set, then trim()

    @property
    def pools(self) -> Mapping[str, WorkerPool]: ...  # the map pools by name: resized

    @property
    def maps(self) -> Collection[str]: ...  # the map stages' names

    @property
    def stages(self) -> Mapping[str, Stage]: ...  # every stage by name (a map stage's pool)

    @property
    def map_stats(self) -> Mapping[str, StageStats]: ...  # per map stage; its ``workers`` follow a resize

    @property
    def ready(self) -> Mapping[str, Sized]: ...  # per map stage: the frames waiting to be sent

    @property
    def active(self) -> Sequence[TunableFile]: ...  # the files in flight

    @property
    def caches(self) -> CacheManager | None: ...  # the caches whose memory ones it may resize

    @property
    def fixed_credits_per_file(self) -> int | None: ...  # set by the caller: left alone when pools change


class RunOptimizer:
    """Samples a run's scheduler every tick and applies ``plan_run_moves`` at most every ``interval_s``."""

    def __init__(self, config: PerformanceConfig, core_budget: int, interval_s: float = 0.5) -> None:
        self.limits = OptimizerLimits(core_budget, min(config.min_buffer_bytes, config.buffer_bytes),
                                      max(config.max_buffer_bytes or config.buffer_bytes, config.buffer_bytes))
        self.interval_s = interval_s
        self.decisions: list[RunDecision] = []
        self._next = 0.0
        self._last_pool_change = -float("inf")
        self._window_start = 0.0
        self._last: dict[str, tuple[float, float, float]] = {}  # per map stage: busy_s, starved_s, blocked_s
        self._reset_samples()

    def _reset_samples(self) -> None:
        self._use_min, self._use_max = float("inf"), 0.0
        self._ticks = 0
        self._idle_sum = 0.0
        self._queued: dict[str, float] = {}

    def tick(self, run: TunableRun) -> None:
        """Sample this tick; every ``interval_s``, decide and apply."""
        now = time.monotonic()
        if not self._window_start:
            self._window_start = now
            self._next = now + self.interval_s
            self._last = {m: (s.busy_s, s.starved_s, s.blocked_s) for m, s in run.map_stats.items()}
        slots = run.slots
        budget = max(1, slots.budget_bytes)
        use = _leased_bytes(slots) / budget
        self._use_min, self._use_max = min(self._use_min, use), max(self._use_max, use)
        if run.active:
            self._idle_sum += sum(not fs.busy for fs in run.active) / len(run.active)
        self._ticks += 1
        for m in run.maps:
            pool = run.stages[m].pool
            self._queued[pool] = self._queued.get(pool, 0.0) + len(run.ready[m])
        if now < self._next:
            return
        obs = self.observe(run, now)
        self._reset_samples()
        self._window_start, self._next = now, now + self.interval_s
        for d in plan_run_moves(obs, self.limits):
            self._apply(run, d)

    def observe(self, run: TunableRun, now: float) -> Observation:
        dt = max(1e-6, now - self._window_start)
        pools = []
        for name, pool in sorted(run.pools.items()):
            stages = [m for m in run.maps if run.stages[m].pool == name]
            busy = starved = blocked = 0.0
            for m in stages:
                s = run.map_stats[m]
                b0, s0, k0 = self._last.get(m, (0.0, 0.0, 0.0))
                busy += s.busy_s - b0
                starved += (s.starved_s - s0) / len(stages)
                blocked += (s.blocked_s - k0) / len(stages)
                self._last[m] = (s.busy_s, s.starved_s, s.blocked_s)
            workers = pool.max_concurrent_tasks
            pools.append(PoolFigures(name, workers, min(1.0, busy / (dt * workers)), min(1.0, starved / dt),
                                     min(1.0, blocked / dt), self._queued.get(name, 0.0) / max(1, self._ticks)))
        vm = psutil.virtual_memory()
        caches = []
        if run.caches is not None:
            for name in run.caches.list_caches():
                cache = run.caches.get(name)
                if isinstance(cache, Cache):  # a memory cache of ours: the one kind the optimizer resizes
                    caches.append(CacheFigures(name, cache.statistics().bytes))
        return Observation(now - run.started, run.slots.budget_bytes, _leased_bytes(run.slots),
                           0.0 if self._use_min == float("inf") else self._use_min, self._use_max,
                           vm.available / vm.total, vm.available, tuple(pools),
                           self._idle_sum / max(1, self._ticks), now - self._last_pool_change, tuple(caches),
                           run.slots.reserved_bytes)

    def _apply(self, run: TunableRun, d: RunDecision) -> None:
        knob, name = d.target.knob, d.target.name
        if knob is Knob.FRAME_BUFFER:
            run.slots.budget_bytes = d.new
            run.slots.trim()
        elif knob is Knob.MAP_POOL:
            run.pools[name].resize(d.new)
            self._last_pool_change = time.monotonic()
            if not run.fixed_credits_per_file:  # the executors' rule: enough slots per file to feed every worker
                run.credits_per_file = credits_per_file(sum(p.max_concurrent_tasks for p in run.pools.values()))
            for m in run.maps:
                if run.stages[m].pool == name:
                    run.map_stats[m].workers = d.new
        elif knob is Knob.CACHE and run.caches is not None:  # caches are observed only when there are some
            cache = run.caches.get(name)
            if isinstance(cache, Cache):
                cache.resize(max_size_bytes=d.new)
        self.decisions.append(d)
        log.info("optimizer: %s", d.line(), extra={"what": d.what, "from": d.old, "to": d.new, "why": d.why})


def _leased_bytes(slots: SlotAllocator) -> int:
    return sum(p.slot_size * p.leased_slots for p in slots.pools)
