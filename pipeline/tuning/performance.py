"""``PerformanceConfig``: how a local run is sized, its profiles, and the optimizer that retunes it as it goes.

Three parts, each answering one question:

- ``size_profile(name, cores, available_bytes)`` — a pure function: what a
  profile means on a machine with these figures. ``PerformanceConfig.video_processing()``
  and friends call it with psutil's figures; tests call it with plain numbers.
- ``plan_run_moves(observation, limits)`` — a pure function: given what the
  scheduler saw over the last interval, which settings should change, from what
  to what, and why. Deterministic, so its rules are tested as tables.
- ``RunOptimizer`` — the glue inside a local run: samples the scheduler every
  tick, asks ``plan_run_moves`` at most every ``interval_s``, applies the answer
  (``SlotAllocator.budget_bytes``, ``WorkerPool.resize``, ``Cache.resize``) and
  logs each decision on ``framepipe.tuning``.

Profiles (``cores``: CPU count, ``avail``: memory available when the run starts):

=================  =========================================================================
video_processing   workers = cores; files in flight = max(1, cores // 2); map pools of
                   ``cores`` workers; frame buffer = min(1.5 GiB, 25% avail), the optimizer
                   may take it up to min(4 GiB, 50% avail); credits per file: the executors'
                   rule (``credits_per_file``: 2 per map worker + 2); memory caches min(512 MiB, 5% avail).
low_memory         workers = cores; files in flight = max(1, cores // 2); map pools of
                   max(1, cores // 2); frame buffer = min(256 MiB, 10% avail) and no more;
                   4 credits per file; memory caches min(64 MiB, 2% avail).
auto               video_processing with the optimizer on.
=================  =========================================================================
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psutil

from ..executors.base import Executor, credits_per_file
from ..executors.local import LocalExecutor
from .monitor import log

__all__ = ["PerformanceConfig", "PROFILES", "size_profile", "RunDecision", "PoolFigures", "CacheFigures",
           "Observation", "OptimizerLimits", "plan_run_moves", "RunOptimizer", "describe"]

PROFILES = ("video_processing", "low_memory", "auto")
_MiB, _GiB = 1 << 20, 1 << 30


@dataclass(frozen=True, slots=True)
class PerformanceConfig:
    """Runtime, memory and cache settings of a local run, and whether the optimizer retunes them.

    ``None`` leaves a setting to the executor's own default. ``max_buffer_bytes``
    and ``min_buffer_bytes`` bound what the optimizer may do to the frame buffer.
    """

    name: str = "custom"
    # runtime
    workers: int | None = None  # the core budget of the map pools
    files_in_flight: int | None = None  # actors: files decoded and encoded at once
    map_workers: int | None = None  # starting size of each map pool (None: ``workers``)
    # memory
    buffer_bytes: int = 512 * _MiB  # shared memory for frames in flight (SlotAllocator budget)
    min_buffer_bytes: int = 64 * _MiB
    max_buffer_bytes: int | None = None  # None: never grown
    credits_per_file: int | None = None
    # caches
    cache_bytes: int | None = None  # bound given to registered memory caches (None: theirs)
    # the optimizer
    optimize: bool = False

    @classmethod
    def video_processing(cls) -> PerformanceConfig:
        """Batch video work on this machine (see the module's table)."""
        return size_profile("video_processing", *_machine())

    @classmethod
    def low_memory(cls) -> PerformanceConfig:
        """A small memory footprint on this machine (see the module's table)."""
        return size_profile("low_memory", *_machine())

    @classmethod
    def auto(cls) -> PerformanceConfig:
        """``video_processing`` with the optimizer on."""
        return size_profile("auto", *_machine())

    @classmethod
    def named(cls, profile: PerformanceConfig | str) -> PerformanceConfig:
        """The profile called ``profile`` on this machine (a config is returned as it is)."""
        if isinstance(profile, PerformanceConfig):
            return profile
        if profile not in PROFILES:
            raise ValueError(f"unknown performance profile {profile!r} (choose {', '.join(PROFILES)})")
        return size_profile(profile, *_machine())

    def replace(self, **changes: Any) -> PerformanceConfig:
        """A copy with ``changes`` (e.g. ``PerformanceConfig.auto().replace(map_workers=1)``)."""
        return dataclasses.replace(self, **changes)

    def apply(self, executor: Executor) -> None:
        """Set these figures on a ``LocalExecutor`` (other executors have nothing to size: left alone)."""
        if not isinstance(executor, LocalExecutor):
            return
        if self.workers is not None:
            executor.workers = self.workers
        executor.files_in_flight = self.files_in_flight
        executor.map_workers = self.map_workers
        executor.buffer_bytes = self.buffer_bytes
        executor.credits_per_file = self.credits_per_file
        executor.performance = self
        if self.cache_bytes is not None and executor.caches is not None:
            for name in executor.caches.list_caches():
                resize = getattr(executor.caches.get(name), "resize", None)
                if callable(resize):
                    resize(max_size_bytes=self.cache_bytes)


def _machine() -> tuple[int, int]:
    return os.cpu_count() or 1, psutil.virtual_memory().available


def size_profile(name: str, cores: int, available_bytes: int) -> PerformanceConfig:
    """The profile ``name`` on a machine of ``cores`` CPUs with ``available_bytes`` of memory free (pure)."""
    cores = max(1, cores)
    if name in ("video_processing", "auto"):
        buffer = min(3 * _GiB // 2, available_bytes // 4)
        return PerformanceConfig(
            name, workers=cores, files_in_flight=max(1, cores // 2), map_workers=cores,
            buffer_bytes=buffer, min_buffer_bytes=min(256 * _MiB, buffer),
            max_buffer_bytes=max(buffer, min(4 * _GiB, available_bytes // 2)),
            cache_bytes=min(512 * _MiB, available_bytes // 20), optimize=name == "auto")
    if name == "low_memory":
        buffer = min(256 * _MiB, available_bytes // 10)
        return PerformanceConfig(
            name, workers=cores, files_in_flight=max(1, cores // 2), map_workers=max(1, cores // 2),
            buffer_bytes=buffer, min_buffer_bytes=min(64 * _MiB, buffer), max_buffer_bytes=buffer,
            credits_per_file=4, cache_bytes=min(64 * _MiB, available_bytes // 50))
    raise ValueError(f"unknown performance profile {name!r} (choose {', '.join(PROFILES)})")


# -- Decisions --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunDecision:
    """One change the optimizer made during a run: when (seconds into the run), what, from -> to, and why."""

    at_s: float
    what: str  # "frame buffer", "map pool <name>", "cache <name>"
    old: int
    new: int
    why: str

    def line(self) -> str:
        """One line for the console and the log."""
        change = f"{_fmt(self.what, self.old)} -> {_fmt(self.what, self.new)}"
        return f"{self.at_s:7.2f} s  {self.what}: {change}  ({self.why})"

    def to_dict(self) -> dict[str, Any]:
        return {"at_s": round(self.at_s, 3), "what": self.what, "from": self.old, "to": self.new, "why": self.why}


def _fmt(what: str, value: int) -> str:
    return f"{value / _MiB:.0f} MiB" if what == "frame buffer" or what.startswith("cache ") else str(value)


@dataclass(frozen=True, slots=True)
class PoolFigures:
    """A map pool over the last interval: fractions of its worker-time busy, starved (no input) and blocked."""

    name: str
    workers: int
    busy: float
    starved: float
    blocked: float
    queued: float  # frames waiting for one of its workers, on average


@dataclass(frozen=True, slots=True)
class CacheFigures:
    """A memory cache: the bytes it holds now."""

    name: str
    bytes: int


@dataclass(frozen=True, slots=True)
class Observation:
    """What the scheduler saw over one interval (the only input of ``plan_run_moves``)."""

    at_s: float  # seconds into the run
    buffer_budget: int
    buffer_leased: int  # bytes of slots leased now
    buffer_use_min: float  # lowest and highest leased / budget seen in the interval
    buffer_use_max: float
    available_fraction: float  # memory available / total on the machine
    available_bytes: int
    pools: tuple[PoolFigures, ...] = ()
    actors_idle: float = 0.0  # fraction of the files in flight whose actor waited (for credits or map results)
    since_pool_change_s: float = float("inf")
    caches: tuple[CacheFigures, ...] = ()
    buffer_reserved: int | None = None  # bytes of slots that exist now, leased or free (None: the whole budget)


@dataclass(frozen=True, slots=True)
class OptimizerLimits:
    """The bounds the optimizer keeps to."""

    core_budget: int  # map workers in all pools together
    min_buffer: int
    max_buffer: int
    buffer_step: int = 64 * _MiB
    grow_above: float = 0.90
    shrink_below: float = 0.30
    pressure_below: float = 0.10  # memory available / total under which caches shrink
    min_cache_bytes: int = 8 * _MiB
    warm_up_s: float = 1.0  # no pool changes before this (workers start, the first frames decode)
    cool_down_s: float = 2.0  # after a pool change, its figures settle (a resize starts new workers)
    busy_high: float = 0.80
    starved_low: float = 0.20
    starved_high: float = 0.50
    actors_waiting: float = 0.25


def plan_run_moves(obs: Observation, limits: OptimizerLimits) -> list[RunDecision]:
    """The changes to make now, each with its reason (pure: the same figures give the same decisions).

    Frame buffer: grown by a step (``buffer_step`` or a quarter of the budget, the
    larger; to at most ``max_buffer``, and only while memory is not under pressure)
    when its use stayed above ``grow_above`` the whole interval; when its use
    stayed below ``shrink_below`` (or memory is under pressure), the slots that
    exist are halved and the budget with them (so use after is still under 60%:
    no see-saw) — never under ``min_buffer`` nor under what is leased now. A
    budget that no slot has been made for yet (the start of a run, a pipeline
    without map stages) holds no memory: there is nothing to give back.

    Map pools (at most one change per interval, none during warm-up or cool-down):
    a pool whose workers were busy and seldom starved while frames queued for it or
    the actors waited on it is the bottleneck — it grows by one worker if the core
    budget has room; a pool whose workers starved over half the time while the
    actors kept busy gives one back.

    Caches: under memory pressure each memory cache is halved (not below ``min_cache_bytes``).
    """
    out: list[RunDecision] = []
    t = obs.at_s
    pressure = obs.available_fraction < limits.pressure_below
    budget = obs.buffer_budget
    if obs.buffer_use_min >= limits.grow_above and budget < limits.max_buffer and not pressure \
            and obs.available_bytes > limits.buffer_step:
        new = min(limits.max_buffer, budget + max(limits.buffer_step, budget // 4))
        out.append(RunDecision(t, "frame buffer", budget, new,
                               f"slot use stayed above {limits.grow_above:.0%} (lowest {obs.buffer_use_min:.0%}) "
                               f"and {obs.available_fraction:.0%} of memory is available"))
    elif obs.buffer_use_max < limits.shrink_below or pressure:
        held = budget if obs.buffer_reserved is None else min(budget, obs.buffer_reserved)
        new = max(limits.min_buffer, obs.buffer_leased, held // 2)
        if new < held:
            why = (f"memory under pressure ({obs.available_fraction:.0%} available)" if pressure else
                   f"slot use stayed below {limits.shrink_below:.0%} (highest {obs.buffer_use_max:.0%})")
            gives = _fmt("frame buffer", held - new)
            out.append(RunDecision(t, "frame buffer", budget, new, f"{why}: {gives} of slots given back"))
    if obs.at_s >= limits.warm_up_s and obs.since_pool_change_s >= limits.cool_down_s and obs.pools:
        out += _pool_move(obs, limits)
    if pressure:
        for c in obs.caches:
            new = max(limits.min_cache_bytes, c.bytes // 2)
            if new < c.bytes:
                out.append(RunDecision(t, f"cache {c.name}", c.bytes, new,
                                       f"memory under pressure ({obs.available_fraction:.0%} available)"))
    return out


def _pool_move(obs: Observation, limits: OptimizerLimits) -> list[RunDecision]:
    total = sum(p.workers for p in obs.pools)
    bottleneck = [p for p in obs.pools if p.busy >= limits.busy_high and p.starved <= limits.starved_low
                  and (p.queued > 0 or obs.actors_idle >= limits.actors_waiting)]
    if bottleneck and total < limits.core_budget:
        p = max(bottleneck, key=lambda p: (p.busy + p.queued / p.workers, p.name))
        return [RunDecision(obs.at_s, f"map pool {p.name}", p.workers, p.workers + 1,
                            f"the bottleneck: busy {p.busy:.0%}, starved {p.starved:.0%}, {p.queued:.1f} frame(s) "
                            f"queued, actors waiting {obs.actors_idle:.0%}; {limits.core_budget - total} core(s) "
                            "of the budget free")]
    idle = [p for p in obs.pools if p.workers > 1 and p.starved >= limits.starved_high
            and obs.actors_idle < limits.actors_waiting]
    if idle:
        p = max(idle, key=lambda p: (p.starved, p.name))
        return [RunDecision(obs.at_s, f"map pool {p.name}", p.workers, p.workers - 1,
                            f"starved {p.starved:.0%} of the time while the actors kept busy "
                            f"(waiting {obs.actors_idle:.0%}): a core goes back to them")]
    return []


# -- In the run -------------------------------------------------------------------------------------


class RunOptimizer:
    """Samples a local run's scheduler every tick and applies ``plan_run_moves`` at most every ``interval_s``.

    ``run`` is the executor's ``_Run`` (the scheduler state); only its public-ish
    figures are read: ``slots``, ``pools``, ``maps``, ``stages``, ``map_stats``,
    ``ready``, ``active``, ``started`` and the executor's ``caches``.
    """

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

    def tick(self, run: Any) -> None:
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

    def observe(self, run: Any, now: float) -> Observation:
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
        if run.ex.caches is not None:
            for name, figures in run.ex.caches.stats().items():
                held = getattr(figures, "bytes", None)
                if isinstance(held, int) and callable(getattr(run.ex.caches.get(name), "resize", None)):
                    caches.append(CacheFigures(name, held))
        return Observation(now - run.started, run.slots.budget_bytes, _leased_bytes(run.slots),
                           0.0 if self._use_min == float("inf") else self._use_min, self._use_max,
                           vm.available / vm.total, vm.available, tuple(pools),
                           self._idle_sum / max(1, self._ticks), now - self._last_pool_change, tuple(caches),
                           run.slots.reserved_bytes)

    def _apply(self, run: Any, d: RunDecision) -> None:
        if d.what == "frame buffer":
            run.slots.budget_bytes = d.new
            run.slots.trim()
        elif d.what.startswith("map pool "):
            run.pools[d.what.removeprefix("map pool ")].resize(d.new)
            self._last_pool_change = time.monotonic()
            if not run.ex.credits_per_file:  # the executors' rule: enough slots per file to feed every worker
                run.credits_per_file = credits_per_file(sum(p.max_concurrent_tasks for p in run.pools.values()))
            for m in run.maps:
                if run.stages[m].pool == d.what.removeprefix("map pool "):
                    run.map_stats[m].workers = d.new
        elif d.what.startswith("cache "):
            run.ex.caches.get(d.what.removeprefix("cache ")).resize(max_size_bytes=d.new)
        self.decisions.append(d)
        log.info("optimizer: %s", d.line(), extra={"what": d.what, "from": d.old, "to": d.new, "why": d.why})


def _leased_bytes(slots: Any) -> int:
    return sum(p.slot_size * p.leased_slots for p in slots.pools)


def describe(decisions: Sequence[RunDecision]) -> str:
    """The decisions as lines under the stage table (empty when there are none)."""
    if not decisions:
        return ""
    return "optimizer decisions:\n" + "\n".join("  " + d.line() for d in decisions)
