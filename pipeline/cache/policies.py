"""Eviction policies: each one small class that answers "which key goes next?".

The cache (``pipeline.cache.memory.Cache``) tells a policy what happens to its
entries (``on_insert``, ``on_update``, ``on_access``, ``on_remove``) and calls
``evict()`` (``victim()`` and ``on_remove()`` of it, in one call) when it must
make room, then drops that key's value. Every operation is O(1) or amortised
O(1). A policy holds keys, never values.

``make_eviction`` builds one from a ``CacheConfig``'s ``EvictionPolicy``.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol

from .config import EvictionPolicy, HybridPolicy
from .sketch import CountMinSketch

__all__ = [
    "Eviction", "PolicyTuning", "NothingToEvict", "make_eviction",
    "LRUEviction", "FIFOEviction", "LFUEviction", "TTLEviction", "HybridEviction", "TinyLFUEviction",
]

DEFAULT_CAPACITY = 10_000
"""The capacity policies are sized for when a cache has no entry bound (LFU aging, TinyLFU sizes)."""


class NothingToEvict(LookupError):
    """``victim()`` was asked of a policy that tracks no key."""


@dataclass(frozen=True, slots=True)
class PolicyTuning:
    """Knobs of the policies that have any, as multiples or fractions of the cache's capacity.

    ``lfu_aging_factor``: LFU halves every count after this many x capacity
    events (``None``: plain LFU, counts never age). ``tinylfu_window`` and
    ``tinylfu_protected``: W-TinyLFU's LRU window share of the capacity and the
    protected share of the main space (Caffeine: 1% and 80%).
    ``sketch_reset_factor``: the frequency sketch halves its counters after this
    many x capacity requests (Caffeine: 10).
    """

    lfu_aging_factor: float | None = 10.0
    tinylfu_window: float = 0.01
    tinylfu_protected: float = 0.8
    sketch_reset_factor: float = 10.0


class Eviction(Protocol):
    """What the cache tells a policy, and the one question it asks it."""

    def on_insert(self, key: Hashable, expires_at: float) -> None:
        """A new key was stored (``expires_at`` on the cache's clock; ``math.inf`` if never)."""

    rewrite_is_access: bool
    """True when ``on_update(key, e)`` does exactly ``on_access(key)`` whatever ``e`` (the cache's fast path)."""

    def on_update(self, key: Hashable, expires_at: float) -> None:
        """A stored key was written again (counts as a use)."""

    def on_access(self, key: Hashable) -> None:
        """A stored key was read (a hit)."""

    def on_remove(self, key: Hashable) -> None:
        """A stored key is gone (removed, evicted or expired)."""

    def victim(self) -> Hashable:
        """The key to evict next; raises ``NothingToEvict`` when no key is tracked."""

    def evict(self) -> Hashable:
        """Forget the next victim and return it: ``victim()`` then ``on_remove()`` in one call."""

    def admit(self, candidate: Hashable, victim: Hashable) -> bool:
        """Whether ``candidate`` deserves its place more than ``victim`` (only TinyLFU says no)."""

    def resize(self, capacity: int) -> None:
        """The cache's entry bound changed; sizes derived from it follow."""

    def clear(self) -> None:
        """Forget every key."""

    def __len__(self) -> int:
        """How many keys are tracked."""


class _AlwaysAdmit:
    """Mixin: policies without an admission filter admit everything and have no size to follow."""

    __slots__ = ()

    def evict(self) -> Hashable:
        key: Hashable = self.victim()  # type: ignore[attr-defined]
        self.on_remove(key)  # type: ignore[attr-defined]
        return key

    def admit(self, candidate: Hashable, victim: Hashable) -> bool:
        return True

    def resize(self, capacity: int) -> None:
        return None


def _first(order: OrderedDict[Hashable, Any]) -> Hashable:
    try:
        key: Hashable = next(iter(order))
        return key
    except StopIteration:
        raise NothingToEvict("no key to evict") from None


class _OrderedEviction(_AlwaysAdmit):
    """Keys in an ``OrderedDict``, the one to go first at the front (LRU and FIFO differ only in reads)."""

    __slots__ = ("_order", "on_insert", "on_remove")

    def __init__(self) -> None:
        self._order: OrderedDict[Hashable, float] = OrderedDict()
        # The hottest calls of a cache, bound straight to OrderedDict's C methods (no Python
        # frame): on_insert(key, expires_at) stores the expiry as the (unused) value.
        self.on_insert: Callable[[Hashable, float], None] = self._order.__setitem__
        self.on_remove: Callable[[Hashable], None] = self._order.__delitem__

    def on_update(self, key: Hashable, expires_at: float = math.inf) -> None:
        self._order.move_to_end(key)

    def evict(self) -> Hashable:
        try:
            return self._order.popitem(last=False)[0]
        except KeyError:
            raise NothingToEvict("no key to evict") from None

    def victim(self) -> Hashable:
        return _first(self._order)

    def clear(self) -> None:
        self._order.clear()

    def __len__(self) -> int:
        return len(self._order)


class LRUEviction(_OrderedEviction):
    """Least recently used goes first; a write counts as a use."""

    rewrite_is_access = True

    __slots__ = ("on_access",)

    def __init__(self) -> None:
        super().__init__()
        self.on_access: Callable[[Hashable], None] = self._order.move_to_end


class FIFOEviction(_OrderedEviction):
    """Oldest written goes first; reads change nothing, a rewrite counts as a new insertion."""

    rewrite_is_access = False

    __slots__ = ()

    def on_access(self, key: Hashable) -> None:
        return None


class LFUEviction(_AlwaysAdmit):
    """Least frequently used goes first; among equal counts, the least recently used.

    A key's count starts at 1 when inserted and grows by 1 on each read or
    rewrite. Aging: after every ``aging_period`` such events (inserts, rewrites,
    hits; the event that reaches the period included) every count is halved,
    rounded down, so a hot set that moved on is not pinned by old counts.
    ``aging_period=None`` is plain LFU.

    Keys sit in one bucket per count, each bucket in recency order (a key
    enters a bucket when it is used), so a use and ``victim()`` are O(1); a
    halving rebuilds the buckets in O(n) from one recency list, once every
    ``aging_period`` events: amortised O(1) when the period is ~10x capacity.
    """

    rewrite_is_access = True

    __slots__ = ("_count", "_buckets", "_recency", "_min", "_events", "_period", "_factor")

    def __init__(self, aging_period: int | None = None, *, aging_factor: float | None = None) -> None:
        if aging_period is not None and aging_period < 1:
            raise ValueError(f"aging_period must be at least 1, not {aging_period}")
        self._period = aging_period
        self._factor = aging_factor  # when given, resize() sets the period to factor x capacity
        self._count: dict[Hashable, int] = {}
        self._buckets: dict[int, OrderedDict[Hashable, None]] = {}
        self._recency: OrderedDict[Hashable, None] = OrderedDict()
        self._min: int | None = None  # the lowest count with a bucket; None: unknown, found on demand
        self._events = 0

    @property
    def aging_period(self) -> int | None:
        """Events between two halvings (``None``: counts never age)."""
        return self._period

    def count(self, key: Hashable) -> int:
        """The key's current (aged) use count."""
        return self._count[key]

    def _bucket(self, count: int) -> OrderedDict[Hashable, None]:
        bucket = self._buckets.get(count)
        if bucket is None:
            bucket = self._buckets[count] = OrderedDict()
        return bucket

    def _use(self, key: Hashable) -> None:
        c = self._count[key]
        bucket = self._buckets[c]
        del bucket[key]
        if not bucket:
            del self._buckets[c]
            if self._min == c:
                self._min = c + 1
        self._count[key] = c + 1
        self._bucket(c + 1)[key] = None
        self._recency.move_to_end(key)
        self._event()

    def _event(self) -> None:
        self._events += 1
        if self._period is not None and self._events >= self._period:
            self._events = 0
            self._halve()

    def _halve(self) -> None:
        # Rebuild every bucket from the recency list so each stays in recency order.
        buckets: dict[int, OrderedDict[Hashable, None]] = {}
        count = self._count
        for key in self._recency:
            c = count[key] >> 1
            count[key] = c
            bucket = buckets.get(c)
            if bucket is None:
                bucket = buckets[c] = OrderedDict()
            bucket[key] = None
        self._buckets = buckets
        self._min = min(buckets) if buckets else None

    def on_insert(self, key: Hashable, expires_at: float = math.inf) -> None:
        self._count[key] = 1
        self._bucket(1)[key] = None
        self._recency[key] = None
        if self._min is not None and self._min > 1:
            self._min = 1  # (None stays None: found on demand)
        self._event()

    def on_update(self, key: Hashable, expires_at: float = math.inf) -> None:
        self._use(key)

    def on_access(self, key: Hashable) -> None:
        self._use(key)

    def on_remove(self, key: Hashable) -> None:
        c = self._count.pop(key)
        bucket = self._buckets[c]
        del bucket[key]
        if not bucket:
            del self._buckets[c]
            if self._min == c:
                self._min = None
        del self._recency[key]

    def victim(self) -> Hashable:
        if not self._buckets:
            raise NothingToEvict("no key to evict")
        if self._min is None or self._min not in self._buckets:
            self._min = min(self._buckets)  # O(distinct counts), only after an explicit removal
        return next(iter(self._buckets[self._min]))

    def resize(self, capacity: int) -> None:
        if self._factor is not None:
            self._period = max(1, round(self._factor * max(1, capacity)))

    def clear(self) -> None:
        self._count.clear()
        self._buckets.clear()
        self._recency.clear()
        self._min = None
        self._events = 0

    def __len__(self) -> int:
        return len(self._count)


class TTLEviction(_AlwaysAdmit):
    """Soonest to expire goes first; ties (and keys that never expire) in order of writing.

    A min-heap of ``(expires_at, sequence, key)`` with lazy deletion: removed or
    rewritten keys leave stale records that ``victim()`` pops; the heap is
    rebuilt when stale records outnumber live ones.
    """

    rewrite_is_access = False

    __slots__ = ("_heap", "_live", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Hashable]] = []
        self._live: dict[Hashable, int] = {}  # key -> sequence number of its live record
        self._seq = itertools.count()

    def _push(self, key: Hashable, expires_at: float) -> None:
        seq = next(self._seq)
        self._live[key] = seq
        heapq.heappush(self._heap, (expires_at, seq, key))
        if len(self._heap) > 2 * len(self._live) + 64:
            live = self._live
            self._heap = [rec for rec in self._heap if live.get(rec[2]) == rec[1]]
            heapq.heapify(self._heap)

    def on_insert(self, key: Hashable, expires_at: float = math.inf) -> None:
        self._push(key, expires_at)

    def on_update(self, key: Hashable, expires_at: float = math.inf) -> None:
        self._push(key, expires_at)

    def on_access(self, key: Hashable) -> None:
        return None

    def on_remove(self, key: Hashable) -> None:
        del self._live[key]

    def victim(self) -> Hashable:
        heap, live = self._heap, self._live
        while heap:
            _, seq, key = heap[0]
            if live.get(key) == seq:
                return key
            heapq.heappop(heap)
        raise NothingToEvict("no key to evict")

    def clear(self) -> None:
        self._heap.clear()
        self._live.clear()

    def __len__(self) -> int:
        return len(self._live)


class HybridEviction:
    """``primary``'s victim while the cache's fill is below ``threshold``, ``secondary``'s above.

    ``fill()`` is the cache's fill at the moment a victim is needed, before the
    entry being inserted is counted: the larger of entries / entry bound and
    bytes / byte bound. Both policies see every event, so either can take
    over at any time without losing a key.
    """

    rewrite_is_access = False

    __slots__ = ("primary", "secondary", "threshold", "_fill")

    def __init__(self, primary: Eviction, secondary: Eviction, threshold: float,
                 fill: Callable[[], float]) -> None:
        self.primary = primary
        self.secondary = secondary
        self.threshold = threshold
        self._fill = fill

    def active(self) -> Eviction:
        """The policy that picks victims right now."""
        return self.primary if self._fill() < self.threshold else self.secondary

    def on_insert(self, key: Hashable, expires_at: float = math.inf) -> None:
        self.primary.on_insert(key, expires_at)
        self.secondary.on_insert(key, expires_at)

    def on_update(self, key: Hashable, expires_at: float = math.inf) -> None:
        self.primary.on_update(key, expires_at)
        self.secondary.on_update(key, expires_at)

    def on_access(self, key: Hashable) -> None:
        self.primary.on_access(key)
        self.secondary.on_access(key)

    def on_remove(self, key: Hashable) -> None:
        self.primary.on_remove(key)
        self.secondary.on_remove(key)

    def victim(self) -> Hashable:
        return self.active().victim()

    def evict(self) -> Hashable:
        key = self.active().victim()
        self.on_remove(key)
        return key

    def admit(self, candidate: Hashable, victim: Hashable) -> bool:
        return self.active().admit(candidate, victim)

    def resize(self, capacity: int) -> None:
        self.primary.resize(capacity)
        self.secondary.resize(capacity)

    def clear(self) -> None:
        self.primary.clear()
        self.secondary.clear()

    def __len__(self) -> int:
        return len(self.primary)


class TinyLFUEviction:
    """W-TinyLFU as in Caffeine: an LRU window, a segmented-LRU main space, a frequency filter.

    New keys enter the window (``window`` x capacity, at least 1). When the
    window is full, its least recent key is the *candidate* to move into the
    main space's probation segment; the main space's *victim* is probation's
    least recent key (protected's if probation is empty). ``victim()`` returns
    whichever of the two the sketch says is asked for less often (``admit``),
    so a burst of one-off keys churns through the window without pushing out
    keys that are asked for often. A hit in probation promotes the key to
    protected (``protected`` x main capacity), whose overflow is demoted back
    to probation. Caffeine's hash-flooding guard is kept: a candidate with a
    warm count (>= 6) that does not beat the victim is still let in 1 time in
    128. Not done: Caffeine's hill climbing of the window size, the doorkeeper.
    """

    rewrite_is_access = True

    __slots__ = ("_window", "_probation", "_protected", "_window_cap", "_protected_cap",
                 "_window_share", "_protected_share", "sketch", "_random")

    def __init__(self, capacity: int, *, window: float = 0.01, protected: float = 0.8,
                 sketch_reset_factor: float = 10.0, seed: int = 0) -> None:
        self._window: OrderedDict[Hashable, None] = OrderedDict()
        self._probation: OrderedDict[Hashable, None] = OrderedDict()
        self._protected: OrderedDict[Hashable, None] = OrderedDict()
        self._window_share = window
        self._protected_share = protected
        self._window_cap = self._protected_cap = 1
        self.resize(capacity)
        self.sketch = CountMinSketch(max(1, capacity), reset_factor=sketch_reset_factor)
        self._random = random.Random(seed)

    def resize(self, capacity: int) -> None:
        # The sketch keeps its width; the segments rebalance lazily on the next insert or hit.
        capacity = max(1, capacity)
        self._window_cap = max(1, round(capacity * self._window_share))
        self._protected_cap = max(1, int((capacity - self._window_cap) * self._protected_share))

    def on_insert(self, key: Hashable, expires_at: float = math.inf) -> None:
        self.sketch.increment(key)
        self._window[key] = None
        # A window over its share (the cache had room, so nothing was evicted): the
        # overflow enters probation without a contest, as in Caffeine.
        while len(self._window) > self._window_cap:
            moved, _ = self._window.popitem(last=False)
            self._probation[moved] = None

    def on_access(self, key: Hashable) -> None:
        self.sketch.increment(key)
        if key in self._window:
            self._window.move_to_end(key)
        elif key in self._protected:
            self._protected.move_to_end(key)
        else:
            del self._probation[key]
            self._protected[key] = None
            while len(self._protected) > self._protected_cap:
                demoted, _ = self._protected.popitem(last=False)
                self._probation[demoted] = None

    def on_update(self, key: Hashable, expires_at: float = math.inf) -> None:
        self.on_access(key)

    def on_remove(self, key: Hashable) -> None:
        for segment in (self._window, self._probation, self._protected):
            if key in segment:
                del segment[key]
                return
        raise KeyError(key)

    def admit(self, candidate: Hashable, victim: Hashable) -> bool:
        cand = self.sketch.frequency(candidate)
        vict = self.sketch.frequency(victim)
        if cand > vict:
            return True
        return cand >= 6 and self._random.random() < 1 / 128

    def victim(self) -> Hashable:
        main = self._probation or self._protected
        if not main:
            return _first(self._window)
        main_victim = next(iter(main))
        if len(self._window) < self._window_cap:
            return main_victim  # the window has room: the newcomer will not push a candidate out
        candidate = next(iter(self._window))
        return main_victim if self.admit(candidate, main_victim) else candidate

    def evict(self) -> Hashable:
        key = self.victim()
        self.on_remove(key)
        return key

    def clear(self) -> None:
        self._window.clear()
        self._probation.clear()
        self._protected.clear()
        self.sketch.clear()

    def __len__(self) -> int:
        return len(self._window) + len(self._probation) + len(self._protected)


def make_eviction(kind: EvictionPolicy | str, capacity: int | None, *, hybrid: HybridPolicy = HybridPolicy(),
                  fill: Callable[[], float] = lambda: 1.0, tuning: PolicyTuning = PolicyTuning()) -> Eviction:
    """A fresh policy of ``kind`` for a cache bounded to ``capacity`` entries (``None``: unbounded).

    ``fill`` reports the cache's fill for ``HYBRID`` (see ``HybridEviction``);
    a hybrid's two policies may not themselves be ``HYBRID``.
    """
    kind = EvictionPolicy(kind)
    cap = capacity if capacity is not None else DEFAULT_CAPACITY
    if kind is EvictionPolicy.LRU:
        return LRUEviction()
    if kind is EvictionPolicy.FIFO:
        return FIFOEviction()
    if kind is EvictionPolicy.TTL:
        return TTLEviction()
    if kind is EvictionPolicy.LFU:
        factor = tuning.lfu_aging_factor
        return LFUEviction(None if factor is None else max(1, round(factor * cap)), aging_factor=factor)
    if kind is EvictionPolicy.TINYLFU:
        return TinyLFUEviction(cap, window=tuning.tinylfu_window, protected=tuning.tinylfu_protected,
                               sketch_reset_factor=tuning.sketch_reset_factor)
    if EvictionPolicy.HYBRID in (EvictionPolicy(hybrid.primary), EvictionPolicy(hybrid.secondary)):
        raise ValueError("a hybrid policy cannot contain another hybrid policy")
    return HybridEviction(make_eviction(hybrid.primary, capacity, tuning=tuning),
                          make_eviction(hybrid.secondary, capacity, tuning=tuning),
                          hybrid.switch_threshold, fill)
