"""The tuners' rules, as pure functions, and the decisions they return.

Two tuners, one kind of input and one kind of answer. Each pool is seen as
``PoolFigures`` (workers, busy share, backlog, ``pressure``); each change is a
``RunDecision`` that names its target as a typed ``Target`` (a ``Knob`` and a
name), never as display text: whoever applies it matches on the knob.

* ``plan_run_moves(observation, limits)``: what a local run's optimizer
  changes (frame buffer, map pools, caches), given what its scheduler saw
  over the last interval.
* ``plan_pool_moves(observation, limits)``: what a ``RuntimeCoordinator``
  changes (the sizes of the pools it groups) when ``auto_tune()`` is called.

Deterministic, so the rules are tested as tables.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Knob", "Target", "FRAME_BUFFER", "RunDecision", "PoolFigures", "CacheFigures", "Observation",
           "OptimizerLimits", "plan_run_moves", "PoolsObservation", "CoordinatorLimits", "plan_pool_moves",
           "describe"]

_MiB = 1 << 20


class Knob(enum.Enum):
    """What a decision changes."""

    FRAME_BUFFER = "frame buffer"  # the bytes of shared-memory slots a run may hold
    MAP_POOL = "map pool"  # the workers of a map stage's pool in a run
    POOL = "pool"  # the workers of a pool a RuntimeCoordinator groups
    CACHE = "cache"  # the bytes a memory cache may hold

    @property
    def in_bytes(self) -> bool:
        return self in (Knob.FRAME_BUFFER, Knob.CACHE)


@dataclass(frozen=True, slots=True)
class Target:
    """The thing a decision changes: a knob and, for pools and caches, which one."""

    knob: Knob
    name: str = ""

    def __str__(self) -> str:
        return f"{self.knob.value} {self.name}" if self.name else self.knob.value


FRAME_BUFFER = Target(Knob.FRAME_BUFFER)


@dataclass(frozen=True, slots=True)
class RunDecision:
    """One change a tuner made: when, to what target, from -> to, and why.

    ``at_s`` counts seconds from the start of the run (the optimizer) or from
    the making of the ``RuntimeCoordinator`` (its ``auto_tune``).
    """

    at_s: float
    target: Target
    old: int
    new: int
    why: str

    @property
    def what(self) -> str:
        """The target as people read it: "frame buffer", "map pool <name>", "pool <name>", "cache <name>"."""
        return str(self.target)

    def line(self) -> str:
        """One line for the console and the log."""
        change = f"{self._fmt(self.old)} -> {self._fmt(self.new)}"
        return f"{self.at_s:7.2f} s  {self.what}: {change}  ({self.why})"

    def to_dict(self) -> dict[str, Any]:
        return {"at_s": round(self.at_s, 3), "what": self.what, "from": self.old, "to": self.new, "why": self.why}

    def _fmt(self, value: int) -> str:
        return f"{value / _MiB:.0f} MiB" if self.target.knob.in_bytes else str(value)


@dataclass(frozen=True, slots=True)
class PoolFigures:
    """A pool over the last interval: fractions of its worker-time busy, starved (no input) and blocked.

    A run's map pools count frames as ``queued`` (an average over the
    interval); a coordinator's pools count the tasks in their queue when
    read, and give the resident memory of a worker (``worker_bytes``).
    """

    name: str
    workers: int
    busy: float
    starved: float
    blocked: float
    queued: float  # frames (a run's map pool) or tasks (a coordinator's pool) waiting for one of its workers
    worker_bytes: int = 0  # resident memory of one of its workers (0: not measured)

    @property
    def pressure(self) -> float:
        """How much the pool wants another worker: its backlog per worker plus how busy it was."""
        return self.queued / self.workers + self.busy


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
        out.append(RunDecision(t, FRAME_BUFFER, budget, new,
                               f"slot use stayed above {limits.grow_above:.0%} (lowest {obs.buffer_use_min:.0%}) "
                               f"and {obs.available_fraction:.0%} of memory is available"))
    elif obs.buffer_use_max < limits.shrink_below or pressure:
        held = budget if obs.buffer_reserved is None else min(budget, obs.buffer_reserved)
        new = max(limits.min_buffer, obs.buffer_leased, held // 2)
        if new < held:
            why = (f"memory under pressure ({obs.available_fraction:.0%} available)" if pressure else
                   f"slot use stayed below {limits.shrink_below:.0%} (highest {obs.buffer_use_max:.0%})")
            gives = f"{(held - new) / _MiB:.0f} MiB"
            out.append(RunDecision(t, FRAME_BUFFER, budget, new, f"{why}: {gives} of slots given back"))
    if obs.at_s >= limits.warm_up_s and obs.since_pool_change_s >= limits.cool_down_s and obs.pools:
        out += _pool_move(obs, limits)
    if pressure:
        for c in obs.caches:
            new = max(limits.min_cache_bytes, c.bytes // 2)
            if new < c.bytes:
                out.append(RunDecision(t, Target(Knob.CACHE, c.name), c.bytes, new,
                                       f"memory under pressure ({obs.available_fraction:.0%} available)"))
    return out


def _pool_move(obs: Observation, limits: OptimizerLimits) -> list[RunDecision]:
    total = sum(p.workers for p in obs.pools)
    bottleneck = [p for p in obs.pools if p.busy >= limits.busy_high and p.starved <= limits.starved_low
                  and (p.queued > 0 or obs.actors_idle >= limits.actors_waiting)]
    if bottleneck and total < limits.core_budget:
        p = max(bottleneck, key=lambda p: (p.pressure, p.name))
        return [RunDecision(obs.at_s, Target(Knob.MAP_POOL, p.name), p.workers, p.workers + 1,
                            f"the bottleneck: busy {p.busy:.0%}, starved {p.starved:.0%}, {p.queued:.1f} frame(s) "
                            f"queued, actors waiting {obs.actors_idle:.0%}; {limits.core_budget - total} core(s) "
                            "of the budget free")]
    idle = [p for p in obs.pools if p.workers > 1 and p.starved >= limits.starved_high
            and obs.actors_idle < limits.actors_waiting]
    if idle:
        p = max(idle, key=lambda p: (p.starved, p.name))
        return [RunDecision(obs.at_s, Target(Knob.MAP_POOL, p.name), p.workers, p.workers - 1,
                            f"starved {p.starved:.0%} of the time while the actors kept busy "
                            f"(waiting {obs.actors_idle:.0%}): a core goes back to them")]
    return []


@dataclass(frozen=True, slots=True)
class PoolsObservation:
    """What a ``RuntimeCoordinator`` read of its pools and the machine (the only input of ``plan_pool_moves``)."""

    at_s: float  # seconds since the coordinator was made
    pools: tuple[PoolFigures, ...]
    available_bytes: int  # memory available on the machine now


@dataclass(frozen=True, slots=True)
class CoordinatorLimits:
    """The bounds a coordinator's tuner keeps to."""

    core_budget: int  # workers in all pools together
    memory_budget: int  # bytes the workers of all pools may hold together
    min_workers: int = 1  # no pool gives away its last workers


def plan_pool_moves(obs: PoolsObservation, limits: CoordinatorLimits) -> list[RunDecision]:
    """Give the most pressed pool a worker, from idle cores or from the least pressed pool (pure).

    A pool is the bottleneck only when tasks wait in its queue; of several,
    the one of highest ``pressure`` (ties: the name). It grows by one worker
    when the pools together hold fewer workers than ``core_budget`` and one
    more worker fits in memory (what all workers hold, plus one of its own,
    within ``memory_budget`` and within the memory available now). Otherwise
    a pool with no backlog and more than ``min_workers`` gives it one — the
    least pressed, and only if it is less pressed than the bottleneck: two
    decisions, the donor's shrink first. No bottleneck, or no donor: no
    decision.
    """
    waiting = [p for p in obs.pools if p.queued > 0]
    if not waiting:
        return []
    target = max(waiting, key=lambda p: (p.pressure, p.name))
    workers = sum(p.workers for p in obs.pools)
    memory = sum(p.workers * p.worker_bytes for p in obs.pools)
    room = min(limits.memory_budget, obs.available_bytes)
    grow = Target(Knob.POOL, target.name)
    demand = f"{target.name} has {target.queued:.0f} queued, busy {target.busy:.0%}"
    if workers < limits.core_budget and memory + target.worker_bytes <= room:
        return [RunDecision(obs.at_s, grow, target.workers, target.workers + 1,
                            f"{demand}; {limits.core_budget - workers} core(s) of the budget unused")]
    donors = [p for p in obs.pools if p is not target and p.workers > limits.min_workers and p.queued == 0
              and p.pressure < target.pressure]
    if not donors:
        return []
    source = min(donors, key=lambda p: (p.pressure, p.name))
    why = f"{demand}; {source.name} idles (busy {source.busy:.0%}, none queued)"
    return [RunDecision(obs.at_s, Target(Knob.POOL, source.name), source.workers, source.workers - 1, why),
            RunDecision(obs.at_s, grow, target.workers, target.workers + 1, why)]


def describe(decisions: Sequence[RunDecision]) -> str:
    """The decisions as lines under the stage table (empty when there are none)."""
    if not decisions:
        return ""
    return "optimizer decisions:\n" + "\n".join("  " + d.line() for d in decisions)
