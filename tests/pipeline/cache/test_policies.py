"""Each eviction policy on its own: the order it gives keys up in, LFU aging, W-TinyLFU, the sketch."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.cache.config import EvictionPolicy, HybridPolicy
from pipeline.cache.policies import (
    FIFOEviction,
    HybridEviction,
    LFUEviction,
    LRUEviction,
    NothingToEvict,
    PolicyTuning,
    TinyLFUEviction,
    TTLEviction,
    make_eviction,
)
from pipeline.cache.sketch import CountMinSketch


def drain(policy) -> list:  # type: ignore[no-untyped-def]
    """Every tracked key, in the order the policy would evict them."""
    out = []
    while len(policy):
        out.append(policy.evict())
    return out


def test_lru_gives_up_the_least_recently_used() -> None:
    p = LRUEviction()
    for k in "abcd":
        p.on_insert(k, math.inf)
    p.on_access("a")
    p.on_update("b", math.inf)
    assert drain(p) == ["c", "d", "a", "b"]


def test_fifo_ignores_reads_and_treats_a_rewrite_as_new() -> None:
    p = FIFOEviction()
    for k in "abc":
        p.on_insert(k, math.inf)
    p.on_access("a")
    p.on_update("b", math.inf)
    assert drain(p) == ["a", "c", "b"]


def test_lfu_ties_go_to_the_least_recently_used() -> None:
    p = LFUEviction()
    for k in "abc":
        p.on_insert(k, math.inf)
    p.on_access("a")
    p.on_access("c")
    p.on_access("a")
    assert [p.count(k) for k in "abc"] == [3, 1, 2]
    assert drain(p) == ["b", "c", "a"]


def test_lfu_aging_halves_every_count_once_per_period() -> None:
    p = LFUEviction(aging_period=10)
    for k in "ab":
        p.on_insert(k, math.inf)  # events 1, 2
    for _ in range(7):
        p.on_access("a")  # events 3..9: a = 8
    assert p.count("a") == 8
    p.on_access("b")  # event 10: b = 2, then every count halved
    assert (p.count("a"), p.count("b")) == (4, 1)


def test_lfu_aging_lets_a_new_hot_key_overtake_an_old_one() -> None:
    def run(period: int | None) -> str:
        p = LFUEviction(aging_period=period)
        p.on_insert("old", math.inf)
        for _ in range(100):
            p.on_access("old")  # the old hot key, long ago
        p.on_insert("new", math.inf)
        for _ in range(60):
            p.on_access("new")  # the hot set moved
        return p.victim()

    assert run(None) == "new"  # plain LFU: the stale count pins "old"
    assert run(20) == "old"


def test_ttl_gives_up_the_soonest_to_expire_then_the_oldest_written() -> None:
    p = TTLEviction()
    p.on_insert("never", math.inf)
    p.on_insert("late", 50.0)
    p.on_insert("soon", 10.0)
    p.on_insert("also_never", math.inf)
    p.on_update("late", 5.0)  # rewritten with a sooner deadline
    assert drain(p) == ["late", "soon", "never", "also_never"]


def test_ttl_heap_stays_small_under_rewrites() -> None:
    p = TTLEviction()
    for i in range(10_000):
        p.on_update("k", float(i))
    assert len(p._heap) < 200


@pytest.mark.parametrize("kind", list(EvictionPolicy))
def test_an_empty_policy_has_nothing_to_evict(kind: EvictionPolicy) -> None:
    p = make_eviction(kind, 10)
    with pytest.raises(NothingToEvict):
        p.victim()


@pytest.mark.parametrize("kind", list(EvictionPolicy))
@settings(max_examples=25, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from("iarv"), st.integers(0, 12)), max_size=80))
def test_every_policy_tracks_exactly_the_stored_keys(kind: EvictionPolicy, ops: list[tuple[str, int]]) -> None:
    p, stored = make_eviction(kind, 5, tuning=PolicyTuning(lfu_aging_factor=1)), set()
    for op, key in ops:
        if op == "i":
            (p.on_update if key in stored else p.on_insert)(key, float(key))
            stored.add(key)
        elif op == "a" and key in stored:
            p.on_access(key)
        elif op == "r" and key in stored:
            p.on_remove(key)
            stored.discard(key)
        elif op == "v" and stored:
            victim = p.victim()
            assert victim in stored
            assert p.evict() == victim
            stored.discard(victim)
        assert len(p) == len(stored)
    assert set(drain(p)) == stored


def test_hybrid_asks_the_primary_below_the_threshold_and_the_secondary_above() -> None:
    fill = [0.5]
    p = HybridEviction(LRUEviction(), FIFOEviction(), 0.8, lambda: fill[0])
    for k in "abc":
        p.on_insert(k, math.inf)
    p.on_access("a")
    assert p.victim() == "b"  # LRU
    fill[0] = 0.9
    assert p.victim() == "a"  # FIFO, which had seen every event too


def test_a_hybrid_cannot_nest_a_hybrid() -> None:
    with pytest.raises(ValueError):
        make_eviction(EvictionPolicy.HYBRID, 10, hybrid=HybridPolicy(EvictionPolicy.HYBRID, EvictionPolicy.LRU))


# ---- W-TinyLFU ---------------------------------------------------------------------------------------


def test_tinylfu_sizes_follow_caffeine() -> None:
    p = TinyLFUEviction(1000)
    assert (p._window_cap, p._protected_cap) == (10, 792)
    assert p.sketch.sample_size == 10_000


def test_tinylfu_rejects_a_cold_candidate_and_admits_a_hot_one() -> None:
    # Int keys: an int hashes to itself, so their sketch counters are the same in every process. A str's hash
    # changes with each process (PYTHONHASHSEED): in this 16-counter-wide sketch, 7 of 200 seeds gave "b" or "c"
    # all four counters shared with hotter keys, so a cold key looked hot and the other victim was chosen.
    a, b, c = 1, 2, 3
    p = TinyLFUEviction(3, window=0.34)  # window of 1, main of 2
    for k in (a, b, c):
        p.on_insert(k, math.inf)  # a, b overflow into probation; c in the window
    for _ in range(3):
        p.on_access(a)  # a promoted to protected, and frequent
    assert p.victim() == c  # cold candidate c loses against probation's b (tie)
    for _ in range(3):
        p.on_access(c)
    assert [p.sketch.frequency(k) for k in (a, b, c)] == [4, 1, 4]  # exact: no key takes another's counts
    assert p.victim() == b  # now c is asked for more often than b


def test_tinylfu_protected_overflow_is_demoted_to_probation() -> None:
    p = TinyLFUEviction(10, window=0.1, protected=0.25)  # protected holds 2
    for k in range(6):
        p.on_insert(k, math.inf)
    for k in (0, 1, 2):
        p.on_access(k)  # promoted in turn; 0 is demoted back when 2 arrives
    assert list(p._protected) == [1, 2]
    assert list(p._probation)[-1] == 0


# ---- the count-min sketch --------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(keys=st.lists(st.integers(0, 300), max_size=400))
def test_sketch_never_undercounts_before_a_reset(keys: list[int]) -> None:
    s = CountMinSketch(1000)  # sample size 10_000: no reset here
    for k in keys:
        s.increment(k)
    for k in set(keys):
        assert s.frequency(k) >= min(15, keys.count(k))


def test_sketch_counters_saturate_and_reset_halves_them() -> None:
    s = CountMinSketch(4, reset_factor=10)  # resets after 40 increments
    for _ in range(20):
        s.increment("hot")
    assert s.frequency("hot") == 15
    for i in range(19):
        s.increment(i)
    assert s.frequency("hot") == 15
    s.increment("x")  # the 40th increment
    assert s.frequency("hot") == 7
    s.clear()
    assert s.frequency("hot") == 0
