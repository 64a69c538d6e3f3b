"""How a cache is bounded and which entries it gives up first."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = ["EvictionPolicy", "HybridPolicy", "CacheConfig"]


class EvictionPolicy(str, enum.Enum):
    """Which entry goes when a cache is full.

    ``LRU`` least recently used; ``LFU`` least frequently used, with counts
    halved as they age so that a hot set that moves is not pinned by old
    counts; ``FIFO`` oldest inserted; ``TTL`` soonest to expire (entries also
    expire on their own under every policy that has a ``ttl``); ``HYBRID`` one
    policy until the cache is ``switch_threshold`` full, another beyond;
    ``TINYLFU`` W-TinyLFU (Caffeine's): a small LRU window, a segmented LRU
    main space, and a frequency sketch that admits a newcomer only if it is
    asked for more often than the entry it would push out (scan resistant).
    """

    LRU = "lru"
    LFU = "lfu"
    FIFO = "fifo"
    TTL = "ttl"
    HYBRID = "hybrid"
    TINYLFU = "tinylfu"


@dataclass(frozen=True, slots=True)
class HybridPolicy:
    """``primary`` while the cache is below ``switch_threshold`` of its bounds, ``secondary`` above."""

    primary: EvictionPolicy = EvictionPolicy.LRU
    secondary: EvictionPolicy = EvictionPolicy.LFU
    switch_threshold: float = 0.8


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """Bounds and policy of a cache. ``None`` means unbounded on that axis.

    ``max_size_bytes`` counts what an entry really takes: its key, its value
    and the cache's own per-entry overhead. ``ttl`` (seconds) is the default
    lifetime of an entry; ``cleanup_interval`` how often expired entries are
    swept (they are never returned, swept or not).
    """

    max_entries: int | None = 10_000
    max_size_bytes: int | None = None
    ttl: float | None = None
    cleanup_interval: float = 60.0
    eviction_policy: EvictionPolicy = EvictionPolicy.LRU
    hybrid: HybridPolicy = field(default_factory=HybridPolicy)
