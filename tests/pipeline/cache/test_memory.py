"""The in-memory cache against plain reference models, one per eviction policy, plus threads and asyncio.

Each model below keeps its entries in a dict and picks a victim by a linear
scan over plainly stated rules; the cache must evict exactly what the model
evicts, step by step, and its metrics must count the same.
"""

from __future__ import annotations

import asyncio
import math
import random
import sys
import threading
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pipeline.cache.config import CacheConfig, EvictionPolicy, HybridPolicy
from pipeline.cache.memory import ENTRY_OVERHEAD, AsyncCache, Cache, CacheMetrics, default_sizeof
from pipeline.cache.policies import PolicyTuning

P = EvictionPolicy
MODELLED = (P.LRU, P.LFU, P.FIFO, P.TTL)
AGING_FACTOR = 2  # LFU halves its counts every 2 x capacity events here, so runs do reach it
KEYS = st.integers(0, 7)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def value_sizeof(obj: object) -> int:
    """Values are bytes counted by length; keys (ints) count nothing: entry size = len + overhead."""
    return len(obj) if isinstance(obj, bytes) else 0


# ---- the reference model --------------------------------------------------------------------------


@dataclass
class Item:
    size: int
    expires: float
    written: int  # tick of the last insert or rewrite (FIFO and TTL order)
    used: int  # tick of the last insert, rewrite or hit (LRU order, LFU ties)
    count: int = 1  # LFU use count, aged


@dataclass
class Model:
    """What the cache should hold: victims chosen by linear scans over plain rules."""

    kind: EvictionPolicy
    max_entries: int | None
    max_bytes: int | None
    hybrid: HybridPolicy
    items: dict[int, Item] = field(default_factory=dict)
    tick: int = 0
    lfu_events: dict[EvictionPolicy, int] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    expirations: int = 0
    rejected: int = 0

    # LFU aging: after every `period` events (insert, rewrite, hit) every count is halved.
    def period(self) -> int:
        return AGING_FACTOR * (self.max_entries or 10_000)

    def lfu_kinds(self) -> list[EvictionPolicy]:
        kinds = [self.hybrid.primary, self.hybrid.secondary] if self.kind is P.HYBRID else [self.kind]
        return [k for k in kinds if k is P.LFU]

    def lfu_event(self) -> None:
        for k in self.lfu_kinds():  # a hybrid's LFU counts the same events (one LFU at most here)
            self.lfu_events[k] = self.lfu_events.get(k, 0) + 1
            if self.lfu_events[k] >= self.period():
                self.lfu_events[k] = 0
                for item in self.items.values():
                    item.count //= 2

    def bytes(self) -> int:
        return sum(i.size for i in self.items.values())

    def fill(self) -> float:
        fill = 0.0
        if self.max_entries is not None:
            fill = len(self.items) / self.max_entries
        if self.max_bytes is not None:
            fill = max(fill, self.bytes() / self.max_bytes)
        return fill

    def victim(self) -> int:
        kind = self.kind
        if kind is P.HYBRID:
            kind = self.hybrid.primary if self.fill() < self.hybrid.switch_threshold else self.hybrid.secondary
        rank = {
            P.LRU: lambda k: self.items[k].used,
            P.FIFO: lambda k: self.items[k].written,
            P.LFU: lambda k: (self.items[k].count, self.items[k].used),
            P.TTL: lambda k: (self.items[k].expires, self.items[k].written),
        }[kind]
        return min(self.items, key=rank)

    def expire(self, now: float) -> None:
        for k in [k for k, i in self.items.items() if i.expires <= now]:
            del self.items[k]
            self.expirations += 1

    def over(self, extra_entries: int, extra_bytes: int) -> bool:
        return ((self.max_entries is not None and len(self.items) + extra_entries > self.max_entries)
                or (self.max_bytes is not None and self.bytes() + extra_bytes > self.max_bytes))

    def evict_until_fits(self, extra_entries: int, extra_bytes: int) -> None:
        while self.items and self.over(extra_entries, extra_bytes):
            del self.items[self.victim()]
            self.evictions += 1

    def insert(self, key: int, size: int, expires: float) -> bool:
        self.tick += 1
        if self.max_bytes is not None and size > self.max_bytes:
            self.rejected += 1
            self.items.pop(key, None)
            return False
        old = self.items.get(key)
        if old is not None:  # a rewrite: a use for LRU/LFU, a new insertion for FIFO/TTL
            old.size, old.expires, old.written, old.used = size, expires, self.tick, self.tick
            old.count += 1
            self.lfu_event()
            self.evict_until_fits(0, 0)
            return key in self.items
        self.evict_until_fits(1, size)
        self.items[key] = Item(size, expires, self.tick, self.tick)
        self.lfu_event()
        return True

    def get(self, key: int) -> bool:
        self.tick += 1
        item = self.items.get(key)
        if item is None:
            self.misses += 1
            return False
        self.hits += 1
        item.used = self.tick
        item.count += 1
        self.lfu_event()
        return True

    def rebuild(self, kind: EvictionPolicy) -> None:
        """change_eviction_policy: the new policy learns the entries oldest use first, counts from 1."""
        self.kind = kind
        self.lfu_events = {}
        for key in sorted(self.items, key=lambda k: self.items[k].used):
            item = self.items[key]
            item.written, item.count = item.used, 1
            self.lfu_event()


# ---- the state machine ------------------------------------------------------------------------------


class CacheVsModel(RuleBasedStateMachine):
    """Random operations on a ``Cache`` and a ``Model``; after each, both must agree."""

    kinds: tuple[EvictionPolicy, ...] = MODELLED

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.version = 0
        self.values: dict[int, bytes] = {}  # the last value written under each key
        self.cache: Cache
        self.model: Model

    @initialize(data=st.data(), max_entries=st.one_of(st.none(), st.integers(1, 5)),
                byte_room=st.one_of(st.none(), st.integers(0, 800)), byte_entries=st.integers(2, 5),
                ttl=st.sampled_from([None, None, 3.0]), threshold=st.sampled_from([0.3, 0.5, 0.8]))
    def make(self, data: st.DataObject, max_entries: int | None, byte_room: int | None, byte_entries: int,
             ttl: float | None, threshold: float) -> None:
        if max_entries is None and byte_room is None:
            max_entries = 3
        kind = data.draw(st.sampled_from(self.kinds))
        primary, secondary = data.draw(st.permutations(MODELLED))[:2]
        hybrid = HybridPolicy(primary, secondary, threshold)
        max_bytes = None if byte_room is None else byte_entries * ENTRY_OVERHEAD + byte_room
        config = CacheConfig(max_entries=max_entries, max_size_bytes=max_bytes, ttl=ttl, cleanup_interval=2.0,
                             eviction_policy=kind, hybrid=hybrid)
        self.ttl = ttl
        self.cache = Cache(config, clock=self.clock, sizeof=value_sizeof,
                           tuning=PolicyTuning(lfu_aging_factor=AGING_FACTOR))
        self.model = Model(kind, max_entries, max_bytes, hybrid)

    def _value(self, size: int) -> bytes:
        self.version += 1
        return bytes([self.version % 251]) * size

    def _expires(self, ttl: float | None) -> float:
        return math.inf if ttl is None else self.clock.now + ttl

    @rule(key=KEYS, size=st.one_of(st.integers(0, 40), st.integers(0, 600)))
    def insert(self, key: int, size: int) -> None:
        self.model.expire(self.clock.now)
        value = self._value(size)
        self.values[key] = value
        stored = self.cache.insert(key, value)
        assert stored == self.model.insert(key, size + ENTRY_OVERHEAD, self._expires(self.ttl))

    @rule(key=KEYS, size=st.one_of(st.integers(0, 40), st.integers(0, 600)), ttl=st.sampled_from([None, 0.5, 1.0, 4.0]))
    def insert_with_ttl(self, key: int, size: int, ttl: float | None) -> None:
        self.model.expire(self.clock.now)
        value = self._value(size)
        self.values[key] = value
        stored = self.cache.insert_with_ttl(key, value, ttl)
        assert stored == self.model.insert(key, size + ENTRY_OVERHEAD, self._expires(ttl))

    @rule(key=KEYS)
    def get(self, key: int) -> None:
        self.model.expire(self.clock.now)
        found = self.model.get(key)
        value = self.cache.get(key, "absent")
        if found:
            assert value == self.values[key]
        else:
            assert value == "absent"

    @rule(keys=st.lists(KEYS, max_size=4))
    def get_many(self, keys: list[int]) -> None:
        self.model.expire(self.clock.now)
        expected = {k for k in keys if self.model.get(k)}
        assert set(self.cache.get_many(keys)) == expected

    @rule(key=KEYS)
    def remove(self, key: int) -> None:
        self.model.expire(self.clock.now)
        assert self.cache.remove(key) == (self.model.items.pop(key, None) is not None)

    @rule(key=KEYS)
    def contains(self, key: int) -> None:
        self.model.expire(self.clock.now)
        assert (key in self.cache) == (key in self.model.items)

    @rule(dt=st.sampled_from([0.25, 0.5, 1.0, 3.0]))
    def advance_clock(self, dt: float) -> None:
        self.clock.now += dt

    @rule()
    def force_cleanup(self) -> None:
        self.cache.force_cleanup()
        self.model.expire(self.clock.now)

    @rule(kind=st.sampled_from(MODELLED + (P.HYBRID,)))
    def change_eviction_policy(self, kind: EvictionPolicy) -> None:
        self.model.expire(self.clock.now)
        before = set(self.cache.keys())
        self.cache.change_eviction_policy(kind)
        assert set(self.cache.keys()) == before  # no entry lost
        self.model.rebuild(kind)

    @precondition(lambda self: self.model.max_entries is not None)
    @rule(max_entries=st.integers(1, 5))
    def resize(self, max_entries: int) -> None:
        self.model.expire(self.clock.now)
        self.cache.resize(max_entries=max_entries)
        self.model.max_entries = max_entries
        self.model.evict_until_fits(0, 0)

    @invariant()
    def within_bounds(self) -> None:
        # Reads the books without sweeping, so expired entries stay until an operation meets them.
        bounds = self.cache._max_entries, self.cache._max_bytes
        assert bounds[0] is None or len(self.cache._entries) <= bounds[0]
        assert bounds[1] is None or self.cache._bytes <= bounds[1]

    # A rule, not an invariant: the checks sweep expired entries, which must not happen after every step.
    @rule()
    def agrees_with_model(self) -> None:
        self.model.expire(self.clock.now)
        assert set(self.cache.keys()) == set(self.model.items)
        m = self.cache.statistics()
        model = self.model
        assert (m.hits, m.misses, m.evictions, m.expirations, m.rejected, m.entries, m.bytes) == (
            model.hits, model.misses, model.evictions, model.expirations, model.rejected,
            len(model.items), model.bytes())
        if model.max_entries is not None:
            assert len(self.cache) <= model.max_entries
        if model.max_bytes is not None:
            assert self.cache.memory_usage() <= model.max_bytes

    def teardown(self) -> None:
        if hasattr(self, "model"):
            self.agrees_with_model()



def _machine(kind: EvictionPolicy) -> type[CacheVsModel]:
    return type(f"CacheVsModel{kind.name}", (CacheVsModel,), {"kinds": (kind,)})


_SETTINGS = settings(max_examples=60, stateful_step_count=40, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])

TestLRUAgainstModel = _machine(P.LRU).TestCase
TestLFUAgainstModel = _machine(P.LFU).TestCase
TestFIFOAgainstModel = _machine(P.FIFO).TestCase
TestTTLAgainstModel = _machine(P.TTL).TestCase
TestHybridAgainstModel = _machine(P.HYBRID).TestCase
for _case in (TestLRUAgainstModel, TestLFUAgainstModel, TestFIFOAgainstModel, TestTTLAgainstModel,
              TestHybridAgainstModel):
    _case.settings = _SETTINGS
del _case


# ---- W-TinyLFU: properties, not a model -----------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(capacity=st.integers(1, 30), ops=st.lists(st.tuples(st.booleans(), st.integers(0, 60)), max_size=200))
def test_tinylfu_stays_in_bounds_and_finds_what_it_just_stored(capacity: int, ops: list[tuple[bool, int]]) -> None:
    cache = Cache(CacheConfig(max_entries=capacity, eviction_policy=P.TINYLFU))
    for write, key in ops:
        if write:
            assert cache.insert(key, key)
            assert cache.get(key) == key  # a newcomer is never its own victim
        else:
            cache.get(key)
        assert len(cache) <= capacity
        assert len(cache.policy) == len(cache)


@settings(max_examples=20, deadline=None)
@given(capacity=st.integers(20, 200), hot=st.integers(1, 5), reads=st.integers(8, 14),
       scan_factor=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_tinylfu_keeps_hot_keys_through_a_scan(capacity: int, hot: int, reads: int, scan_factor: int,
                                               seed: int) -> None:
    # A scan of up to 5x capacity cold keys: fewer requests in all than a sketch reset takes (10x capacity),
    # so the hot keys' counts are never halved. (A much longer scan rightly ages them out.)
    # Int keys: an int hashes to itself, so each key's sketch counters are the same in every process. With str
    # keys they changed with PYTHONHASHSEED (as in test_policies' admission test, 51a03d4), so whether a cold key
    # fell on all four of a hot key's counters, and looked as hot, was left to the hash seed: the test failed
    # about one run in six (capacity=31, hot=2, reads=8, scan_factor=5).
    hot_keys = list(range(hot))
    caches = {kind: Cache(CacheConfig(max_entries=capacity, eviction_policy=kind)) for kind in (P.TINYLFU, P.LRU)}
    tiny = caches[P.TINYLFU]
    for cache in caches.values():
        for k in hot_keys:
            cache.insert(k, k)
        for _ in range(reads):
            for k in hot_keys:
                cache.get(k)
    sketch = tiny.policy.sketch
    assert [sketch.frequency(k) for k in hot_keys] == [1 + reads] * hot  # hot, and counted exactly
    # A cold key the sketch already counts before it is ever seen has each of its four counters shared with a
    # hot key: a count-min sketch cannot tell it from a hot key (collisions only add), so it is rightly let in.
    # Such aliases (1 in 8192 per hot and cold key pair at width 128: 2% of examples like the one above, with int
    # keys too) are drawn again; any other cold key must lose against every hot key.
    rng = random.Random(seed)
    cold: list[int] = []
    seen = set(hot_keys)
    while len(cold) < scan_factor * capacity:
        k = rng.randrange(hot, 10**9)
        if k not in seen:
            seen.add(k)
            if sketch.frequency(k) == 0:
                cold.append(k)
    assert len(seen) - hot - len(cold) <= 5  # aliases are rare: the scan is not picked to suit the cache
    for cache in caches.values():
        for k in cold:  # a one-off scan: each cold key written once, never read
            cache.insert(k, k)
    assert all(k in tiny for k in hot_keys)
    assert not any(k in caches[P.LRU] for k in hot_keys)  # the scan does flush a plain LRU


# ---- bounds, sizes, expiry, metrics --------------------------------------------------------------


def test_a_value_bigger_than_the_byte_bound_is_not_stored_and_drops_the_old_one() -> None:
    cache = Cache(CacheConfig(max_entries=None, max_size_bytes=ENTRY_OVERHEAD + 10), sizeof=value_sizeof)
    assert cache.insert("k", b"x" * 10)
    assert not cache.insert("k", b"x" * 11)
    assert "k" not in cache
    assert cache.statistics().rejected == 1
    assert cache.memory_usage() == 0


def test_byte_bound_evicts_until_the_newcomer_fits() -> None:
    cache = Cache(CacheConfig(max_entries=None, max_size_bytes=3 * ENTRY_OVERHEAD + 30), sizeof=value_sizeof)
    for k in "abc":
        cache.insert(k, b"x" * 10)
    cache.insert("d", b"x" * 25)  # needs the room of two old entries
    assert cache.keys() == ["c", "d"]
    assert cache.memory_usage() == 2 * ENTRY_OVERHEAD + 35


def test_expired_entries_are_never_returned_and_are_swept_lazily() -> None:
    clock = FakeClock()
    cache = Cache(CacheConfig(ttl=5.0, cleanup_interval=10.0), clock=clock)
    cache.insert("a", 1)
    cache.insert_with_ttl("b", 2, 20.0)
    clock.now += 5.0
    assert cache.get("a") is None
    assert cache.get("b") == 2
    cache.insert_with_ttl("c", 3, 1.0)
    clock.now += 11.0  # past the cleanup interval: the next call sweeps "c"
    cache.get("zzz")
    assert cache.statistics().expirations == 2
    assert cache.keys() == ["b"]


def test_force_cleanup_counts_what_it_swept() -> None:
    clock = FakeClock()
    cache = Cache(CacheConfig(max_entries=None, cleanup_interval=1e9), clock=clock)
    for i in range(3000):  # more than one sweep batch
        cache.insert_with_ttl(i, i, 1.0 if i % 3 else 100.0)
    clock.now += 2.0
    assert cache.force_cleanup() == 2000
    assert len(cache) == 1000


def test_resize_evicts_down_at_once() -> None:
    cache = Cache(CacheConfig(max_entries=10))
    for i in range(10):
        cache.insert(i, i)
    cache.resize(max_entries=4)
    assert cache.keys() == [6, 7, 8, 9]
    assert cache.statistics().evictions == 6
    cache.resize(max_size_bytes=2 * (ENTRY_OVERHEAD + 2 * default_sizeof(9)))
    assert cache.keys() == [8, 9]


def test_change_eviction_policy_keeps_entries_in_recency_order() -> None:
    cache = Cache(CacheConfig(max_entries=3, eviction_policy=P.FIFO))
    for k in "abc":
        cache.insert(k, k)
    cache.get("a")  # FIFO ignores this read; the new LRU must not
    cache.change_eviction_policy(P.LRU)
    assert cache.eviction_policy is P.LRU
    cache.insert("d", "d")
    assert set(cache.keys()) == {"a", "c", "d"}


def test_metrics_are_a_frozen_record_with_sampled_access_time() -> None:
    cache = Cache(CacheConfig(max_entries=100))
    for i in range(200):
        cache.insert(i % 150, i)
        cache.get(i % 170)
    m = cache.statistics()
    assert isinstance(m, CacheMetrics)
    assert (m.hits + m.misses, m.entries) == (200, 100)
    assert m.avg_access_us > 0
    assert m.hit_rate == pytest.approx(cache.hit_rate())
    with pytest.raises(AttributeError):
        m.hits = 0  # type: ignore[misc]


def test_default_sizeof_counts_buffers_and_arrays() -> None:
    import pyarrow as pa

    assert default_sizeof(b"x" * 1000) == sys.getsizeof(b"x" * 1000)
    assert default_sizeof(np.zeros(1000)) == 8000
    assert default_sizeof(pa.py_buffer(b"x" * 500)) == 500
    assert default_sizeof(pa.array(np.arange(100, dtype=np.int64))) == 800
    cache = Cache(CacheConfig(max_entries=None))
    cache.insert("a", np.zeros(1000))
    assert cache.memory_usage() == default_sizeof("a") + 8000 + ENTRY_OVERHEAD


@pytest.mark.parametrize("bad", [CacheConfig(max_entries=0), CacheConfig(max_size_bytes=0), CacheConfig(ttl=0)])
def test_bad_bounds_are_refused(bad: CacheConfig) -> None:
    with pytest.raises(ValueError):
        Cache(bad)


# ---- threads and asyncio ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(P))
def test_threads_hammering_the_same_keys_leave_a_consistent_cache(kind: EvictionPolicy) -> None:
    cache = Cache(CacheConfig(max_entries=40, max_size_bytes=40 * (ENTRY_OVERHEAD + 100), ttl=0.05,
                              cleanup_interval=0.01, eviction_policy=kind))
    errors: list[BaseException] = []

    def hammer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(3000):
                key, op = rng.randrange(100), rng.random()
                if op < 0.45:
                    cache.insert(key, b"v" * rng.randrange(60))
                elif op < 0.9:
                    cache.get(key)
                elif op < 0.97:
                    cache.remove(key)
                else:
                    cache.get_many([key, key + 1])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert not errors
    m = cache.statistics()
    assert m.entries <= 40 and m.bytes <= 40 * (ENTRY_OVERHEAD + 100)
    entries = cache._entries  # the books balance: bytes, and the policy tracks exactly the stored keys
    assert m.bytes == sum(e[1] for e in entries.values())
    assert len(cache.policy) == len(entries)


def test_async_cache_serves_coroutines() -> None:
    clock = FakeClock()

    async def main() -> None:
        cache = AsyncCache(Cache(CacheConfig(max_entries=10), clock=clock))
        assert await cache.insert("a", 1)
        assert await cache.insert_with_ttl("b", 2, 1.0)
        assert await cache.insert_many({"c": 3, "d": 4}) == 2
        results = await asyncio.gather(*(cache.get(k) for k in "abcdz"))
        assert results == [1, 2, 3, 4, None]
        assert await cache.get_many(["a", "z"]) == {"a": 1}
        assert await cache.contains("c")
        assert await cache.remove("c")
        clock.now += 2.0
        assert await cache.force_cleanup() == 1
        await cache.change_eviction_policy(P.TINYLFU)
        await cache.resize(max_entries=1)
        assert cache.statistics().entries == 1
        await cache.clear()
        assert cache.statistics().entries == 0

    asyncio.run(main())
