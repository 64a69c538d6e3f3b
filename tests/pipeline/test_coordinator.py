"""RuntimeCoordinator: one core budget, placement by priority and load, auto-tuning toward the bottleneck."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from support import runtime_tasks as rt

from pipeline.runtime.pool import Priority, TaskPoolConfig
from pipeline.tuning.coordinator import RuntimeCoordinator
from pipeline.tuning.performance import size_profile
from pipeline.tuning.plan import (
    CoordinatorLimits,
    Knob,
    Observation,
    OptimizerLimits,
    PoolFigures,
    PoolsObservation,
    RunDecision,
    Target,
    plan_pool_moves,
    plan_run_moves,
)

MiB, GiB, TiB = 1 << 20, 1 << 30, 1 << 40


def test_pools_are_registered_found_and_listed_by_priority() -> None:
    with RuntimeCoordinator(cores=2) as rc:
        rc.register_pool("thumbs", TaskPoolConfig(1, priority=Priority.LOW))
        rc.register_pool("encode", TaskPoolConfig(1, priority=Priority.HIGH))
        assert [p.pool_id for p in rc.pools] == ["encode", "thumbs"]
        assert rc.get_pool("thumbs").config.priority is Priority.LOW
        with pytest.raises(KeyError, match="no pool 'nope'"):
            rc.get_pool("nope")
        with pytest.raises(ValueError, match="already registered"):
            rc.register_pool("encode")


def test_schedule_task_uses_the_pool_of_that_priority_or_the_nearest_above() -> None:
    with RuntimeCoordinator(cores=2) as rc:
        rc.register_pool("low", TaskPoolConfig(1, priority=Priority.LOW))
        rc.register_pool("high", TaskPoolConfig(1, priority=Priority.HIGH))
        assert rc.schedule_task(rt.add, 1, 2, priority=Priority.LOW).result() == 3
        assert rc.schedule_task(rt.add, 2, 2, priority=Priority.MEDIUM).result() == 4  # goes to "high"
        metrics = rc.metrics()
        assert metrics["low"]["executed"] == 1 and metrics["high"]["executed"] == 1
        assert set(metrics["high"]) >= {"utilization", "avg_task_s", "queue_length", "failures"}


def test_low_priority_pools_fill_idle_cores_but_never_hold_back_a_high_priority_task(tmp_path: Path) -> None:
    gate = tmp_path / "open"
    with RuntimeCoordinator(cores=1) as rc:
        low = rc.register_pool("low", TaskPoolConfig(2, priority=Priority.LOW))
        high = rc.register_pool("high", TaskPoolConfig(1, priority=Priority.HIGH))
        blocked = [low.submit(rt.gated, i, str(gate)) for i in range(2)]
        # One core: the second LOW task waits for it ...
        assert high.execute(rt.add, 1, 1) == 2  # ... but a HIGH task runs at once, beside the LOW one
        assert low.statistics().active_tasks == 1 and low.statistics().queue_size == 1
        gate.write_text("go")
        assert sorted(f.result()[0] for f in blocked) == [0, 1]


def test_auto_tune_moves_a_worker_to_a_deliberately_slow_stage(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    gate = tmp_path / "open"
    with RuntimeCoordinator(cores=3) as rc:
        fast = rc.register_pool("fast", TaskPoolConfig(2, priority=Priority.MEDIUM))
        slow = rc.register_pool("slow", TaskPoolConfig(1, priority=Priority.MEDIUM))
        assert fast.execute(rt.add, 1, 1) == 2
        backlog = [slow.submit(rt.gated, i, str(gate)) for i in range(4)]
        with caplog.at_level(logging.INFO, logger="framepipe.tuning"):
            shrink, grow = rc.auto_tune()  # the cores are spent: a move, the donor's shrink first
        assert (shrink.target, shrink.old, shrink.new) == (Target(Knob.POOL, "fast"), 2, 1)
        assert (grow.target, grow.old, grow.new) == (Target(Knob.POOL, "slow"), 1, 2)
        assert "slow has 3 queued" in grow.why and "fast idles" in grow.why
        assert (slow.max_concurrent_tasks, fast.max_concurrent_tasks) == (2, 1)
        assert rc.decisions == [shrink, grow]
        assert any("auto_tune:" in r.getMessage() and "pool slow: 1 -> 2" in r.getMessage() for r in caplog.records)
        gate.write_text("go")
        assert sorted(f.result()[0] for f in backlog) == [0, 1, 2, 3]


def test_auto_tune_without_a_backlog_changes_nothing() -> None:
    with RuntimeCoordinator(cores=2) as rc:
        pool = rc.register_pool("only", TaskPoolConfig(1))
        assert pool.execute(rt.add, 1, 1) == 2
        assert rc.auto_tune() == [] and rc.decisions == []
        assert pool.max_concurrent_tasks == 1


# The coordinator's rule (plan.plan_pool_moves) -------------------------------------------------------------


def _pool(name: str, workers: int, queued: int, busy: float) -> PoolFigures:
    idle = 1.0 - busy
    return PoolFigures(name, workers, busy, starved=0.0 if queued else idle, blocked=idle if queued else 0.0,
                       queued=queued, worker_bytes=100 * MiB)


DECODE_BEHIND = (_pool("decode", 1, 5, 1.0), _pool("thumbs", 2, 0, 0.1))


@pytest.mark.parametrize("pools, cores, memory, available, expected", [
    (DECODE_BEHIND, 4, TiB, TiB, [("pool decode", 1, 2)]),  # grows into idle cores
    (DECODE_BEHIND, 3, TiB, TiB, [("pool thumbs", 2, 1), ("pool decode", 1, 2)]),  # cores spent: a move
    (DECODE_BEHIND, 4, 350 * MiB, TiB, [("pool thumbs", 2, 1), ("pool decode", 1, 2)]),  # 4 workers > budget
    (DECODE_BEHIND, 4, TiB, 350 * MiB, [("pool thumbs", 2, 1), ("pool decode", 1, 2)]),  # ... > available now
    ((_pool("a", 1, 0, 1.0), _pool("b", 1, 0, 0.0)), 2, TiB, TiB, []),  # busy, but nothing waits
    ((_pool("a", 1, 3, 1.0), _pool("b", 1, 0, 0.0)), 2, TiB, TiB, []),  # b has only its last worker
    ((_pool("a", 1, 3, 1.0), _pool("b", 2, 1, 0.5)), 3, TiB, TiB, []),  # b has a backlog of its own
    ((_pool("a", 4, 1, 0.0), _pool("b", 2, 0, 0.5)), 6, TiB, TiB, []),  # b is the more pressed: balanced
    ((_pool("a", 1, 0, 1.0), _pool("b", 4, 1, 0.5)), 6, TiB, TiB, [("pool b", 4, 5)]),  # busy a keeps up
    ((), 2, TiB, TiB, []),
], ids=["grow", "move-cores-spent", "move-memory-budget", "move-memory-available", "no-backlog",
        "donor-at-minimum", "donor-busy", "balanced", "backlog-under-a-busier-pool", "no-pools"])
def test_pool_rules(pools: tuple[PoolFigures, ...], cores: int, memory: int, available: int,
                    expected: list[tuple[str, int, int]]) -> None:
    decisions = plan_pool_moves(PoolsObservation(2.5, pools, available), CoordinatorLimits(cores, memory))
    assert [(d.what, d.old, d.new) for d in decisions] == expected
    assert all(d.at_s == 2.5 and d.target.knob is Knob.POOL and d.why for d in decisions)


def test_a_coordinator_decision_and_a_run_optimizer_decision_are_one_type_with_a_typed_target() -> None:
    behind = PoolFigures("default", 1, busy=0.95, starved=0.0, blocked=0.0, queued=3)
    (coordinator,) = plan_pool_moves(PoolsObservation(2.0, (behind,), TiB), CoordinatorLimits(4, TiB))
    (run,) = plan_run_moves(Observation(2.0, 256 * MiB, 128 * MiB, 0.5, 0.5, 0.5, 8 * GiB, (behind,)),
                            OptimizerLimits(core_budget=4, min_buffer=64 * MiB, max_buffer=GiB))
    assert type(coordinator) is type(run) is RunDecision
    assert (coordinator.target, run.target) == (Target(Knob.POOL, "default"), Target(Knob.MAP_POOL, "default"))
    assert (coordinator.old, coordinator.new) == (run.old, run.new) == (1, 2)  # the same pool figures, the same step
    assert coordinator.to_dict()["what"] == "pool default" and "1 -> 2" in coordinator.line()


# Presets ---------------------------------------------------------------------------------------------------


def test_presets_build_the_video_and_low_memory_pool_sets() -> None:
    with RuntimeCoordinator.video_processing(cores=4) as rc:
        assert {p.pool_id for p in rc.pools} == {"decode", "process", "encode", "io"}
        assert rc.get_pool("io").config.priority is Priority.LOW
    with RuntimeCoordinator.low_memory(cores=4) as rc:
        assert all(p.max_concurrent_tasks == 1 for p in rc.pools)


@pytest.mark.parametrize("cores", [1, 4, 16])
def test_video_processing_pools_are_sized_by_the_video_processing_profile(cores: int) -> None:
    profile = size_profile("video_processing", cores, 8 * GiB)
    with RuntimeCoordinator.video_processing(cores=cores) as rc:
        sizes = {p.pool_id: p.max_concurrent_tasks for p in rc.pools}
    assert sizes == {"decode": profile.files_in_flight, "encode": profile.files_in_flight,
                     "process": profile.map_workers, "io": max(1, cores // 4)}
