"""PerformanceConfig profiles, the optimizer's decision rules, and one run with ``performance="auto"``."""

from __future__ import annotations

import gc
import json
import warnings
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.arrays import array_pipeline, write_frames

from pipeline import run
from pipeline.cli import build_parser
from pipeline.tuning.performance import PerformanceConfig, size_profile
from pipeline.tuning.plan import (
    FRAME_BUFFER,
    CacheFigures,
    Knob,
    Observation,
    OptimizerLimits,
    PoolFigures,
    RunDecision,
    Target,
    plan_run_moves,
)

MiB, GiB = 1 << 20, 1 << 30


# Profiles from machine facts ----------------------------------------------------------------------------


def test_video_processing_takes_every_core_and_a_quarter_of_free_memory_up_to_1_5_gib() -> None:
    small = size_profile("video_processing", 2, 2 * GiB)
    assert (small.workers, small.files_in_flight, small.map_workers) == (2, 1, 2)
    assert small.buffer_bytes == 512 * MiB and small.max_buffer_bytes == 1 * GiB and not small.optimize
    big = size_profile("video_processing", 16, 64 * GiB)
    assert (big.workers, big.files_in_flight, big.map_workers) == (16, 8, 16)
    assert big.buffer_bytes == 3 * GiB // 2 and big.max_buffer_bytes == 4 * GiB and big.cache_bytes == 512 * MiB


def test_low_memory_keeps_the_buffer_under_256_mib_and_a_tenth_of_free_memory() -> None:
    lm = size_profile("low_memory", 8, 1 * GiB)
    assert lm.buffer_bytes == GiB // 10 and lm.max_buffer_bytes == lm.buffer_bytes
    assert (lm.files_in_flight, lm.map_workers, lm.credits_per_file) == (4, 4, 4)
    assert size_profile("low_memory", 1, 64 * GiB).buffer_bytes == 256 * MiB
    assert size_profile("low_memory", 1, 64 * GiB).files_in_flight == 1


def test_auto_is_video_processing_with_the_optimizer_on() -> None:
    auto, vp = size_profile("auto", 4, 8 * GiB), size_profile("video_processing", 4, 8 * GiB)
    assert auto.optimize and auto.replace(name="video_processing", optimize=False) == vp


def test_an_unknown_profile_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown performance profile 'fast'"):
        PerformanceConfig.named("fast")


def test_the_cli_takes_a_profile() -> None:
    args = build_parser().parse_args(["run", "in", "-o", "out", "--profile", "auto"])
    assert args.profile == "auto"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "in", "-o", "out", "--profile", "fast"])


def test_a_profile_sizes_the_local_executor() -> None:
    from pipeline.executors.local import LocalExecutor
    ex = LocalExecutor(2)
    size_profile("low_memory", 4, 4 * GiB).apply(ex)
    assert (ex.workers, ex.files_in_flight, ex.map_workers, ex.credits_per_file) == (4, 2, 2, 4)
    assert ex.buffer_bytes == 256 * MiB and ex.performance.name == "low_memory"


def test_a_profile_bounds_memory_caches_and_leaves_async_ones_alone() -> None:
    from pipeline.cache import AsyncCache, Cache, CacheConfig, CacheManager
    from pipeline.executors.local import LocalExecutor
    memory, behind_async = Cache(CacheConfig(max_size_bytes=64 * MiB)), Cache(CacheConfig(max_size_bytes=64 * MiB))
    manager = CacheManager()
    manager.add_cache("memory", memory)
    manager.add_cache("async", AsyncCache(behind_async))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # an AsyncCache's resize called but never awaited would warn here
        size_profile("low_memory", 4, 4 * GiB).replace(cache_bytes=1024).apply(LocalExecutor(2, caches=manager))
        gc.collect()
    assert [str(w.message) for w in caught] == []
    memory.insert("big", b"x" * 4096)
    behind_async.insert("big", b"x" * 4096)
    assert memory.get("big") is None and memory.statistics().rejected == 1  # over the new bound
    assert behind_async.get("big") == b"x" * 4096


# The decision function -------------------------------------------------------------------------------------

LIMITS = OptimizerLimits(core_budget=4, min_buffer=64 * MiB, max_buffer=1 * GiB)


def obs(**kw) -> Observation:  # noqa: ANN003
    base = dict(at_s=5.0, buffer_budget=256 * MiB, buffer_leased=128 * MiB, buffer_use_min=0.5, buffer_use_max=0.5,
                available_fraction=0.5, available_bytes=8 * GiB)
    return Observation(**{**base, **kw})


def pool(workers: int = 1, busy: float = 0.5, starved: float = 0.3, blocked: float = 0.0,
         queued: float = 0.0) -> PoolFigures:
    return PoolFigures("default", workers, busy, starved, blocked, queued)


@pytest.mark.parametrize("figures, expected", [
    (dict(buffer_use_min=0.95, buffer_use_max=1.0), [("frame buffer", 256 * MiB, 320 * MiB)]),
    (dict(buffer_use_min=0.95, buffer_use_max=1.0, buffer_budget=1 * GiB), []),  # at the profile's max
    (dict(buffer_use_min=0.95, buffer_use_max=1.0, available_fraction=0.05),
     [("frame buffer", 256 * MiB, 128 * MiB)]),  # full, but memory is pressed: halved, not grown
    (dict(buffer_use_min=0.85, buffer_use_max=1.0), []),  # dipped under 90%: not "stayed above"
    (dict(buffer_use_min=0.1, buffer_use_max=0.2, buffer_leased=20 * MiB), [("frame buffer", 256 * MiB, 128 * MiB)]),
    (dict(buffer_budget=100 * MiB, buffer_use_min=0.0, buffer_use_max=0.1, buffer_leased=0),
     [("frame buffer", 100 * MiB, 64 * MiB)]),  # not below the floor
    (dict(buffer_budget=64 * MiB, buffer_use_min=0.0, buffer_use_max=0.1), []),  # at the floor already
    (dict(buffer_use_min=0.2, buffer_use_max=0.6), []),  # between the thresholds: hold
    (dict(buffer_use_min=0.0, buffer_use_max=0.0, buffer_leased=0, buffer_reserved=0), []),  # no slot made yet
    (dict(buffer_use_min=0.0, buffer_use_max=0.1, buffer_leased=0, buffer_reserved=96 * MiB),
     [("frame buffer", 256 * MiB, 64 * MiB)]),  # what exists is halved (not below the floor), the budget with it
    (dict(buffer_use_min=0.0, buffer_use_max=0.1, buffer_leased=0, buffer_reserved=100 * GiB),
     [("frame buffer", 256 * MiB, 128 * MiB)]),  # more made than the budget (forced slots): the budget is halved
], ids=["grow", "grow-at-max", "grow-under-pressure", "grow-dipped", "shrink", "shrink-floor", "at-floor", "hold",
        "nothing-made", "shrink-made", "shrink-forced"])
def test_frame_buffer_rules(figures: dict, expected: list) -> None:
    assert [(d.what, d.old, d.new) for d in plan_run_moves(obs(**figures), LIMITS)] == expected


@pytest.mark.parametrize("p, extra, expected", [
    (pool(1, busy=0.95, starved=0.0, queued=3), {}, ("map pool default", 1, 2)),  # bottleneck: grow
    (pool(1, busy=0.95, starved=0.0), dict(actors_idle=0.5), ("map pool default", 1, 2)),  # actors wait on it
    (pool(4, busy=0.95, starved=0.0, queued=3), {}, None),  # the core budget is spent
    (pool(1, busy=0.95, starved=0.0, queued=3), dict(at_s=0.5), None),  # warm-up
    (pool(1, busy=0.95, starved=0.0, queued=3), dict(since_pool_change_s=1.0), None),  # cool-down
    (pool(1, busy=0.95, starved=0.0), dict(actors_idle=0.0), None),  # busy but nothing waits for it
    (pool(3, busy=0.2, starved=0.8), dict(actors_idle=0.0), ("map pool default", 3, 2)),  # starved: shrink
    (pool(3, busy=0.2, starved=0.8), dict(actors_idle=0.6), None),  # actors idle too: not the actors' fault
    (pool(1, busy=0.0, starved=1.0), {}, None),  # never below one worker
], ids=["grow-queued", "grow-actors-wait", "budget-spent", "warm-up", "cool-down", "no-demand", "shrink",
        "both-idle", "min-one"])
def test_map_pool_rules(p: PoolFigures, extra: dict, expected: tuple | None) -> None:
    decisions = [(d.what, d.old, d.new) for d in plan_run_moves(obs(pools=(p,), **extra), LIMITS)]
    assert decisions == ([expected] if expected else [])


def test_caches_halve_under_memory_pressure_and_not_below_their_floor() -> None:
    caches = (CacheFigures("thumbs", 100 * MiB), CacheFigures("tiny", 4 * MiB))
    assert [(d.what, d.new) for d in plan_run_moves(obs(caches=caches), LIMITS)] == []
    pressed = plan_run_moves(obs(caches=caches, available_fraction=0.05), LIMITS)
    assert [(d.what, d.old, d.new) for d in pressed if d.what.startswith("cache")] == [
        ("cache thumbs", 100 * MiB, 50 * MiB)]
    assert all("pressure" in d.why for d in pressed)


def test_decisions_name_their_target_as_a_typed_knob_not_as_text() -> None:
    grow = plan_run_moves(obs(pools=(pool(1, busy=0.95, starved=0.0, queued=3),), buffer_use_min=0.95,
                              buffer_use_max=1.0), LIMITS)
    assert [d.target for d in grow] == [FRAME_BUFFER, Target(Knob.MAP_POOL, "default")]
    pressed = plan_run_moves(obs(caches=(CacheFigures("thumbs", 100 * MiB),), available_fraction=0.05), LIMITS)
    assert Target(Knob.CACHE, "thumbs") in [d.target for d in pressed]
    shown = RunDecision(1.5, Target(Knob.CACHE, "thumbs"), 100 * MiB, 50 * MiB, "memory under pressure")
    assert shown.to_dict()["what"] == "cache thumbs" and "100 MiB -> 50 MiB" in shown.line()


@given(budget=st.integers(1, 4 * GiB), leased_frac=st.floats(0, 1), lo=st.floats(0, 1), hi=st.floats(0, 1),
       avail=st.floats(0, 1), workers=st.integers(1, 8), busy=st.floats(0, 1), starved=st.floats(0, 1),
       queued=st.floats(0, 10), idle=st.floats(0, 1), at=st.floats(0, 60), since=st.floats(0, 60))
def test_decisions_stay_within_bounds_and_are_deterministic(budget: int, leased_frac: float, lo: float, hi: float,
                                                            avail: float, workers: int, busy: float, starved: float,
                                                            queued: float, idle: float, at: float,
                                                            since: float) -> None:
    lo, hi = min(lo, hi), max(lo, hi)
    o = Observation(at, budget, int(budget * leased_frac), lo, hi, avail, int(avail * 16 * GiB),
                    (PoolFigures("default", workers, busy, starved, 0.0, queued),), idle, since)
    decisions = plan_run_moves(o, LIMITS)
    assert decisions == plan_run_moves(o, LIMITS)
    assert len([d for d in decisions if d.what.startswith("map pool")]) <= 1
    for d in decisions:
        assert d.what and d.why and d.old != d.new
        if d.what == "frame buffer":
            if d.new > d.old:
                assert d.new <= LIMITS.max_buffer
            else:
                assert d.new >= max(LIMITS.min_buffer, o.buffer_leased)
        else:
            assert 1 <= d.new <= max(LIMITS.core_budget, workers) and abs(d.new - d.old) == 1
            if d.new > d.old:
                assert d.new <= LIMITS.core_budget


# A real run -----------------------------------------------------------------------------------------------------


def test_a_run_with_the_auto_profile_matches_the_inline_executor_and_lists_its_decisions(tmp_path: Path) -> None:
    clips = tmp_path / "in"
    clips.mkdir()
    for i in range(3):
        write_frames(clips / f"c{i}.npy", 30, height=90, width=160, seed=i)
    # No cache: with the suite's, the second run replayed the first's thumbnails, and compared them with themselves.
    inline = run(array_pipeline("tuned", keep_every=8), clips, tmp_path / "inline", executor="inline", cache=False)
    auto = run(array_pipeline("tuned", keep_every=8), clips, tmp_path / "auto", performance="auto", cache=False)
    assert all(s.frames > 0 for s in auto.stages)  # every stage did its own work: nothing replayed
    assert all(f.ok for f in auto.files), [f.error for f in auto.files]
    for a, b in zip(inline.files, auto.files):
        assert sorted(a.outputs) == sorted(b.outputs)
        for name in a.outputs:
            assert (tmp_path / "inline" / name).read_bytes() == (tmp_path / "auto" / name).read_bytes(), name
    assert isinstance(auto.decisions, list)
    for d in auto.decisions:
        assert isinstance(d, RunDecision) and d.what and d.why and d.old != d.new
    report = json.loads((tmp_path / "auto" / "report.json").read_text())
    assert report["decisions"] == [d.to_dict() for d in auto.decisions]
