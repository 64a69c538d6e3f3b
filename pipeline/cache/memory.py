"""The in-memory cache: bounded in entries and bytes, one swappable eviction policy, thread-safe.

Life of an entry, on the cache's clock (injectable, ``time.monotonic`` by
default): it is stored by ``insert`` (after making room: expired entries go
first, then the policy's victims), read by ``get``, and leaves by ``remove``,
eviction, or expiry. An entry whose ``expires_at`` has come is gone at once
as far as any caller can tell: ``get``, ``in``, ``remove`` and the counts
treat it as absent (and count it as an expiration when they notice it); the
physical sweep of everything expired runs lazily every ``cleanup_interval``
during ordinary calls, or on ``force_cleanup()``. No background thread.

One ``threading.Lock`` guards everything and is held for a few microseconds
per call; sizes are measured before it is taken. ``AsyncCache`` is the
asyncio face.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
import math
import sys
import threading
import time
import warnings
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .config import CacheConfig, EvictionPolicy
from .policies import Eviction, PolicyTuning, make_eviction

__all__ = ["Cache", "AsyncCache", "CacheMetrics", "default_sizeof", "ENTRY_OVERHEAD"]

ENTRY_OVERHEAD = 200
"""Bytes counted per entry on top of key and value: the dict slot, the entry record, the policy's node."""

_SAMPLE_MASK = 63  # one get or insert in 64 is timed for the average access time (literal in the hot paths)
_SWEEP_BATCH = 1024  # force_cleanup releases the lock between batches of this many expirations
_MISSING = object()
_INF = math.inf


def default_sizeof(obj: object) -> int:
    """Bytes ``obj`` takes: ``nbytes`` of numpy and pyarrow objects, ``size`` of pyarrow buffers,
    ``sys.getsizeof`` of anything else (exact for bytes and str, shallow for containers)."""
    if type(obj) in _PLAIN_TYPES or isinstance(obj, (bytes, bytearray, str, int, float)):
        return sys.getsizeof(obj)
    nbytes = getattr(obj, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    if type(obj).__module__.startswith("pyarrow"):
        size = getattr(obj, "size", None)
        if isinstance(size, int):
            return size
    return sys.getsizeof(obj)


@dataclass(frozen=True, slots=True)
class CacheMetrics:
    """What a cache has done since it was made: a value to assert on or log.

    ``rejected`` counts values too big to store at all (over ``max_size_bytes``).
    ``avg_access_us`` is the mean time of one ``get`` or ``insert`` inside the
    lock, sampled on one call in 64 (0.0 before the first sample).
    """

    hits: int
    misses: int
    evictions: int
    expirations: int
    rejected: int
    entries: int
    bytes: int
    avg_access_us: float

    @property
    def hit_rate(self) -> float:
        """Hits / lookups (0.0 before any lookup)."""
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0


# An entry is a list, not an object: creating one is ~5x cheaper, and it is made on every insert.
#   [value, entry size in bytes, expires_at (math.inf: never), tick of the last write or read,
#    value size in bytes]
# The tick orders entries by recency for change_eviction_policy; the value size lets a rewrite
# measure only the new value.
_Entry = list[Any]
_VALUE, _SIZE, _EXPIRES, _TICK, _VSIZE = 0, 1, 2, 3, 4
# Types whose instances the garbage collector does not track: for them obj.__sizeof__() equals
# sys.getsizeof(obj), and costs ~9 ns against ~60 ns.
_PLAIN_TYPES = frozenset({int, str, bytes, float, bool, type(None)})


def _check_bound(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{name} must be at least 1 or None (unbounded), not {value}")


def _check_ttl(ttl: float | None) -> None:
    if ttl is not None and not ttl > 0:
        raise ValueError(f"ttl must be positive seconds or None (never expires), not {ttl}")


class Cache:
    """A bounded key-value cache in memory with a swappable eviction policy and metrics.

    ``sizeof(obj)`` measures keys and values for ``max_size_bytes`` and
    ``memory_usage()`` (default: ``default_sizeof``); an entry counts
    ``sizeof(key) + sizeof(value) + ENTRY_OVERHEAD``. A value whose entry
    alone is over ``max_size_bytes`` is not stored (``metrics().rejected``),
    and an older value under its key is dropped. ``tuning`` sets the policies'
    knobs (LFU aging, TinyLFU shares).

    ``get`` and ``insert`` have an inlined fast path for the common case (no
    deadline anywhere, no byte bound, not the 1-in-64 timed call); every other
    case takes the general path (``_get``, ``_store``), which is the reference.
    """

    __slots__ = ("_config", "_clock", "_sizeof", "_plain_sizes", "_tuning", "_lock", "_entries", "_max_entries",
                 "_max_bytes", "_default_ttl", "_interval", "_bytes", "_hits", "_misses", "_evictions",
                 "_expirations", "_rejected", "_expiry", "_seq", "_ops", "_timed_ns", "_timed", "_next_sweep",
                 "_kind", "_policy", "_simple", "_on_access", "_on_insert", "_on_update", "_on_rewrite", "_on_remove",
                 "_evict",
                 "__weakref__")

    def __init__(self, config: CacheConfig = CacheConfig(), *, clock: Callable[[], float] = time.monotonic,
                 sizeof: Callable[[object], int] | None = None, tuning: PolicyTuning = PolicyTuning()) -> None:
        _check_bound("max_entries", config.max_entries)
        _check_bound("max_size_bytes", config.max_size_bytes)
        _check_ttl(config.ttl)
        self._config = config
        self._clock = clock
        self._sizeof = sizeof or default_sizeof
        self._plain_sizes = sizeof is None  # sizes of plain types via sys.getsizeof, inline
        self._tuning = tuning
        self._lock = threading.Lock()
        self._entries: dict[Hashable, _Entry] = {}
        self._max_entries = config.max_entries
        self._max_bytes = config.max_size_bytes
        self._default_ttl = None if config.ttl is None or math.isinf(config.ttl) else config.ttl
        self._interval = config.cleanup_interval
        self._bytes = 0
        self._hits = self._misses = self._evictions = self._expirations = self._rejected = 0
        self._expiry: list[tuple[float, int, Hashable]] = []  # (expires_at, seq, key), lazily deleted
        self._seq = itertools.count()
        self._ops = 0  # gets and inserts so far: the recency tick, and which call is timed
        self._timed_ns = 0
        self._timed = 0
        self._next_sweep = clock() + self._interval
        self._simple = self._max_bytes is None and self._default_ttl is None  # insert's fast path applies
        self._kind = EvictionPolicy(config.eviction_policy)
        self._set_policy(self._new_policy(self._kind))

    def _set_policy(self, policy: Eviction) -> None:
        self._policy = policy
        self._on_access = policy.on_access  # bound once: the hot paths call these
        self._on_insert = policy.on_insert
        self._on_update = policy.on_update
        # A rewrite without a deadline (insert's fast path): one C call for LRU.
        self._on_rewrite = (policy.on_access if policy.rewrite_is_access
                            else functools.partial(policy.on_update, expires_at=_INF))
        self._on_remove = policy.on_remove
        self._evict = policy.evict

    def _size_of(self, key: Hashable, value: Any) -> tuple[int, int]:
        """(entry size, value size) of a new entry."""
        if self._plain_sizes:
            ks = key.__sizeof__() if type(key) in _PLAIN_TYPES else default_sizeof(key)
            vs = value.__sizeof__() if type(value) in _PLAIN_TYPES else default_sizeof(value)
        else:
            ks, vs = self._sizeof(key), self._sizeof(value)
        return ks + vs + ENTRY_OVERHEAD, vs

    # ---- reading ---------------------------------------------------------------------------------

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value under ``key``, or ``default`` if absent or expired (a hit or a miss)."""
        lock = self._lock
        lock.acquire()  # (acquire/release in try/finally: ~70 ns less than `with` on CPython 3.11)
        self._ops = ops = self._ops + 1
        t0 = 0 if ops & 63 else time.perf_counter_ns()  # one call in 64 (_SAMPLE_MASK) is timed
        try:
            if self._expiry:
                return self._get(key, default)
            entry = self._entries.get(key)
            if entry is None:
                self._misses += 1
                return default
            entry[3] = ops  # _TICK
            self._on_access(key)
            self._hits += 1
            return entry[0]  # _VALUE
        finally:
            if t0:
                self._timed_ns += time.perf_counter_ns() - t0
                self._timed += 1
            lock.release()

    def get_many(self, keys: Iterable[Hashable]) -> dict[Hashable, Any]:
        """The keys found (each a hit or a miss), under one hold of the lock."""
        found: dict[Hashable, Any] = {}
        with self._lock:
            for key in keys:
                self._ops += 1
                value = self._get(key, _MISSING)
                if value is not _MISSING:
                    found[key] = value
        return found

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is stored and not expired; neither a hit nor a use."""
        with self._lock:
            return self._live_entry(key) is not None  # type: ignore[arg-type,unused-ignore]

    def _get(self, key: Hashable, default: Any) -> Any:
        if self._expiry:
            now = self._clock()
            if now >= self._next_sweep:
                self._sweep(now)
            entry = self._entries.get(key)
            if entry is not None and entry[_EXPIRES] <= now:
                self._drop(key, entry)
                self._expirations += 1
                entry = None
        else:
            entry = self._entries.get(key)  # nothing can expire: no entry has a deadline
        if entry is None:
            self._misses += 1
            return default
        entry[_TICK] = self._ops
        self._on_access(key)
        self._hits += 1
        return entry[_VALUE]

    def _live_entry(self, key: Hashable) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and entry[_EXPIRES] <= self._clock():
            self._drop(key, entry)
            self._expirations += 1
            return None
        return entry

    # ---- writing ---------------------------------------------------------------------------------

    def insert(self, key: Hashable, value: Any) -> bool:
        """Store ``value`` under ``key`` with the configured ``ttl``; False if it was too big to store."""
        if self._plain_sizes and type(value) in _PLAIN_TYPES:
            size, vsize = -1, value.__sizeof__()  # the key is measured under the lock, only if new
        else:
            size, vsize = self._size_of(key, value)
        lock = self._lock
        lock.acquire()
        self._ops = ops = self._ops + 1
        t0 = 0 if ops & 63 else time.perf_counter_ns()  # one call in 64 is timed
        try:
            if self._expiry or not self._simple:
                if size < 0:
                    size = default_sizeof(key) + vsize + ENTRY_OVERHEAD
                return self._store(key, value, size, vsize, self._default_ttl, ops)
            # Fast path: nothing expires and only the entry count is bounded.
            entries = self._entries
            old = entries.get(key)
            if old is not None:
                grown = vsize - old[4]  # _VSIZE
                self._bytes += grown
                old[0] = value
                old[1] += grown  # _SIZE
                old[3] = ops  # _TICK
                old[4] = vsize
                self._on_rewrite(key)
                return True
            if size < 0:
                size = ((key.__sizeof__() if type(key) in _PLAIN_TYPES else default_sizeof(key))
                        + vsize + ENTRY_OVERHEAD)
            me = self._max_entries
            if me is not None and (n := len(entries)) >= me:
                if n == me:  # full: one victim makes room (inlined _make_room)
                    self._bytes -= entries.pop(self._evict())[1]
                    self._evictions += 1
                else:
                    self._make_room(1, size, 0.0)
            entries[key] = [value, size, _INF, ops, vsize]
            self._bytes += size
            self._on_insert(key, _INF)
            return True
        finally:
            if t0:
                self._timed_ns += time.perf_counter_ns() - t0
                self._timed += 1
            lock.release()

    def insert_with_ttl(self, key: Hashable, value: Any, ttl: float | None) -> bool:
        """Store ``value`` under ``key`` for ``ttl`` seconds (``None``: never expires)."""
        _check_ttl(ttl)
        size, vsize = self._size_of(key, value)
        with self._lock:
            self._ops += 1
            return self._store(key, value, size, vsize, None if ttl is None or math.isinf(ttl) else ttl, self._ops)

    def insert_many(self, items: Mapping[Hashable, Any]) -> int:
        """Store every item (configured ``ttl``) under one hold of the lock; how many were stored."""
        sized = [(k, v, *self._size_of(k, v)) for k, v in items.items()]
        stored = 0
        with self._lock:
            for k, v, size, vsize in sized:
                self._ops += 1
                stored += self._store(k, v, size, vsize, self._default_ttl, self._ops)
        return stored

    def _store(self, key: Hashable, value: Any, size: int, vsize: int, ttl: float | None, tick: int) -> bool:
        """The general path of every write: ``size`` is the whole entry's, ``vsize`` the value's."""
        entries = self._entries
        now = self._clock() if ttl is not None or self._expiry else 0.0  # 0.0: unused, nothing expires
        if self._expiry and now >= self._next_sweep:
            self._sweep(now)
        old = entries.get(key)
        if old is not None and old[_EXPIRES] <= now:
            self._drop(key, old)
            self._expirations += 1
            old = None
        if self._max_bytes is not None and size > self._max_bytes:
            self._rejected += 1
            if old is not None:
                self._drop(key, old)  # the caller replaced it; keeping the old value would be stale
            return False
        expires_at = now + ttl if ttl is not None else math.inf
        if old is not None:
            # A rewrite is a use; it may grow the entry, so evict after (possibly this very key).
            self._bytes += size - old[_SIZE]
            old[_VALUE], old[_SIZE], old[_TICK], old[_VSIZE] = value, size, tick, vsize
            if old[_EXPIRES] != expires_at:
                old[_EXPIRES] = expires_at
                if expires_at != math.inf:
                    self._push_expiry(key, expires_at)
            self._on_update(key, expires_at)
            self._make_room(0, 0, now)
            return key in entries
        self._make_room(1, size, now)
        entries[key] = [value, size, expires_at, tick, vsize]
        self._bytes += size
        if expires_at != math.inf:
            self._push_expiry(key, expires_at)
        self._on_insert(key, expires_at)
        return True

    def remove(self, key: Hashable) -> bool:
        """Take ``key`` out; whether it was there (an expired entry was not)."""
        with self._lock:
            entry = self._live_entry(key)
            if entry is None:
                return False
            self._drop(key, entry)
            return True

    def clear(self) -> None:
        """Drop every entry (metrics counters are kept)."""
        with self._lock:
            self._entries.clear()
            self._expiry.clear()
            self._policy.clear()
            self._bytes = 0

    # ---- bounds, eviction, expiry --------------------------------------------------------------------

    def _fill(self) -> float:
        fill = 0.0
        if self._max_entries is not None:
            fill = len(self._entries) / self._max_entries
        if self._max_bytes is not None:
            fill = max(fill, self._bytes / self._max_bytes)
        return fill

    def _make_room(self, entries: int, size: int, now: float) -> None:
        """Evict until ``entries`` more entries and ``size`` more bytes fit; expired entries go first."""
        me, mb, table = self._max_entries, self._max_bytes, self._entries
        swept = False
        while table and ((me is not None and len(table) + entries > me)
                         or (mb is not None and self._bytes + size > mb)):
            if not swept and self._expiry:
                self._sweep(now)
                swept = True
                continue
            key = self._evict()
            self._bytes -= table.pop(key)[_SIZE]
            self._evictions += 1

    def _drop(self, key: Hashable, entry: _Entry) -> None:
        del self._entries[key]
        self._bytes -= entry[_SIZE]
        self._on_remove(key)

    def _push_expiry(self, key: Hashable, expires_at: float) -> None:
        heapq.heappush(self._expiry, (expires_at, next(self._seq), key))
        if len(self._expiry) > 2 * len(self._entries) + 64:  # mostly stale records: rebuild
            self._expiry = [(e[_EXPIRES], next(self._seq), k) for k, e in self._entries.items()
                            if e[_EXPIRES] != math.inf]
            heapq.heapify(self._expiry)

    def _sweep(self, now: float, limit: int | None = None) -> int:
        """Drop entries expired at ``now`` (at most ``limit``); how many were dropped."""
        heap, table, dropped = self._expiry, self._entries, 0
        while heap and heap[0][0] <= now and (limit is None or dropped < limit):
            _, _, key = heapq.heappop(heap)
            entry = table.get(key)
            if entry is not None and entry[_EXPIRES] <= now:  # else a stale record of a rewritten key
                self._drop(key, entry)
                self._expirations += 1
                dropped += 1
        self._next_sweep = now + self._interval
        return dropped

    def force_cleanup(self) -> int:
        """Sweep every expired entry now; how many went. Releases the lock between batches."""
        total = 0
        while True:
            with self._lock:
                dropped = self._sweep(self._clock(), _SWEEP_BATCH)
            total += dropped
            if dropped < _SWEEP_BATCH:
                return total

    def resize(self, max_entries: int | None = None, max_size_bytes: int | None = None) -> None:
        """Set new bounds (``None``: leave that bound as it is) and evict down to them at once."""
        _check_bound("max_entries", max_entries)
        _check_bound("max_size_bytes", max_size_bytes)
        with self._lock:
            if max_entries is not None:
                self._max_entries = max_entries
                self._policy.resize(max_entries)
            if max_size_bytes is not None:
                self._max_bytes = max_size_bytes
                self._simple = False
            self._make_room(0, 0, self._clock())

    def _new_policy(self, kind: EvictionPolicy) -> Eviction:
        return make_eviction(kind, self._max_entries, hybrid=self._config.hybrid, fill=self._fill,
                             tuning=self._tuning)

    def change_eviction_policy(self, policy: EvictionPolicy | str) -> None:
        """Switch policy now, keeping every entry: the new one learns them oldest use first.

        Whatever the old policy knew beyond recency (use counts, sketch) is not carried over.
        """
        kind = EvictionPolicy(policy)
        with self._lock:
            fresh = self._new_policy(kind)
            for key, entry in sorted(self._entries.items(), key=lambda item: item[1][_TICK]):
                fresh.on_insert(key, entry[_EXPIRES])
            self._set_policy(fresh)
            self._kind = kind

    # ---- what it holds and has done ------------------------------------------------------------------

    @property
    def eviction_policy(self) -> EvictionPolicy:
        """The policy in force."""
        return self._kind

    @property
    def policy(self) -> Eviction:
        """The policy object in force (for inspection)."""
        return self._policy

    def _sweep_if_due(self) -> None:
        if self._expiry:
            self._sweep(self._clock())

    def size(self) -> int:
        """Live entries."""
        with self._lock:
            self._sweep_if_due()
            return len(self._entries)

    def __len__(self) -> int:
        return self.size()

    def keys(self) -> list[Hashable]:
        """The live keys, least recently written or read first (a snapshot; neither hits nor uses)."""
        with self._lock:
            self._sweep_if_due()
            return [k for k, _ in sorted(self._entries.items(), key=lambda item: item[1][_TICK])]

    def memory_usage(self) -> int:
        """Bytes counted for the live entries (keys, values, per-entry overhead)."""
        with self._lock:
            self._sweep_if_due()
            return self._bytes

    def hit_rate(self) -> float:
        """Hits / lookups since the cache was made (0.0 before any lookup)."""
        with self._lock:
            lookups = self._hits + self._misses
            return self._hits / lookups if lookups else 0.0

    def metrics(self) -> CacheMetrics:
        """Deprecated: the older name of :meth:`statistics`."""
        warnings.warn(f"{type(self).__name__}.metrics() is deprecated: use statistics()", DeprecationWarning,
                      stacklevel=2)
        return self.statistics()

    def statistics(self) -> CacheMetrics:
        """Counters and sizes now, as one frozen record."""
        with self._lock:
            self._sweep_if_due()
            return CacheMetrics(self._hits, self._misses, self._evictions, self._expirations, self._rejected,
                                len(self._entries), self._bytes,
                                self._timed_ns / self._timed / 1e3 if self._timed else 0.0)


class AsyncCache:
    """The asyncio face of a ``Cache``, for coroutines that must not block the event loop.

    Per-key calls run inline: the lock is held for microseconds, less than a
    thread hop costs. Calls that walk every entry (``force_cleanup``,
    ``clear``, ``resize``, ``change_eviction_policy``) run in a worker thread
    via ``asyncio.to_thread``; ``force_cleanup`` also releases the lock between
    batches so inline calls wait at most one batch.
    """

    def __init__(self, cache: Cache | None = None) -> None:
        self.cache = cache if cache is not None else Cache()

    async def get(self, key: Hashable, default: Any = None) -> Any:
        return self.cache.get(key, default)

    async def get_many(self, keys: Iterable[Hashable]) -> dict[Hashable, Any]:
        return self.cache.get_many(keys)

    async def insert(self, key: Hashable, value: Any) -> bool:
        return self.cache.insert(key, value)

    async def insert_with_ttl(self, key: Hashable, value: Any, ttl: float | None) -> bool:
        return self.cache.insert_with_ttl(key, value, ttl)

    async def insert_many(self, items: Mapping[Hashable, Any]) -> int:
        return self.cache.insert_many(items)

    async def remove(self, key: Hashable) -> bool:
        return self.cache.remove(key)

    async def contains(self, key: Hashable) -> bool:
        return key in self.cache

    async def force_cleanup(self) -> int:
        return await asyncio.to_thread(self.cache.force_cleanup)

    async def clear(self) -> None:
        await asyncio.to_thread(self.cache.clear)

    async def resize(self, max_entries: int | None = None, max_size_bytes: int | None = None) -> None:
        await asyncio.to_thread(self.cache.resize, max_entries, max_size_bytes)

    async def change_eviction_policy(self, policy: EvictionPolicy | str) -> None:
        await asyncio.to_thread(self.cache.change_eviction_policy, policy)

    def statistics(self) -> CacheMetrics:
        """The wrapped cache's counters and sizes now, as one frozen record."""
        return self.cache.statistics()

    def metrics(self) -> CacheMetrics:
        """Deprecated: the older name of :meth:`statistics`."""
        warnings.warn(f"{type(self).__name__}.metrics() is deprecated: use statistics()", DeprecationWarning,
                      stacklevel=2)
        return self.statistics()
