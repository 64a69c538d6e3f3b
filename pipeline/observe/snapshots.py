"""``MetricsSnapshot``: a run's figures at one moment (pools, memory slots, caches, files), as one frozen value.

The local executor takes one at most every ``SNAPSHOT_EVERY_S`` from its
scheduling loop (where its state is consistent) and keeps the latest;
``LocalExecutor.snapshot()`` returns it, to a test, a log line or the
Prometheus endpoint (``pipeline.observe.prometheus``), from any thread.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ..dataplane.frame_pools import SlotAllocator
from ..runtime.pool import PoolMetrics

__all__ = ["SNAPSHOT_EVERY_S", "PoolSnapshot", "BufferSnapshot", "MemorySnapshot", "CacheSnapshot",
           "MetricsSnapshot", "pool_snapshot", "actors_snapshot", "memory_snapshot", "cache_snapshots"]

SNAPSHOT_EVERY_S = 0.5


@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    """One pool of worker processes: size, tasks now, tasks so far, task durations.

    ``kind``: ``map`` (a map stage pool) or ``files`` (the per-file actors,
    summed: one worker each; their p50/p95 are the largest of any actor's).
    ``utilization``: running tasks over workers, now. ``busy_s``: task time so far.
    """

    name: str
    kind: str
    workers: int
    running: int
    queued: int
    executed: int
    failed: int
    retried: int
    utilization: float
    busy_s: float
    p50_s: float
    p95_s: float


@dataclass(frozen=True, slots=True)
class BufferSnapshot:
    """One buffer pool of frame slots (one slot size). ``fragmentation`` is None: its statistics do not give it."""

    name: str
    slot_size: int
    slots: int
    leased: int
    peak_leased: int
    utilization: float
    allocations: int
    allocations_per_s: float
    fragmentation: float | None = None


@dataclass(frozen=True, slots=True)
class MemorySnapshot:
    """Shared memory for frames: the byte budget, what is reserved and leased, and each buffer pool."""

    budget_bytes: int
    reserved_bytes: int
    slots_in_use: int
    peak_slots: int
    bytes_in_use: int
    buffers: tuple[BufferSnapshot, ...] = ()


@dataclass(frozen=True, slots=True)
class CacheSnapshot:
    """A cache's lookups so far; ``entries`` and ``bytes`` where the cache tells them (else None).

    ``stage_memo`` is the run's remembered stage results, counted per stage
    and file as files finish (a hit: a stage replayed; a miss: it ran).
    """

    name: str
    hits: int
    misses: int
    entries: int | None = None
    bytes: int | None = None

    @property
    def hit_rate(self) -> float:
        """Hits / lookups (0.0 before any lookup)."""
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """A run at one moment. ``files_done`` counts finished files, failed ones included (``files_failed``).

    ``time``: when it was taken (``time.time()``); ``elapsed_s``: since the
    run started. ``running``: False once the run has ended (the last snapshot).
    """

    time: float
    elapsed_s: float
    running: bool
    files_total: int
    files_done: int
    files_failed: int
    files_in_flight: int
    pools: tuple[PoolSnapshot, ...] = ()
    memory: MemorySnapshot | None = None
    caches: tuple[CacheSnapshot, ...] = ()

    @property
    def files_waiting(self) -> int:
        """Files not started yet."""
        return self.files_total - self.files_done - self.files_in_flight

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (nested dicts and lists)."""
        d = dataclasses.asdict(self)
        d["files_waiting"] = self.files_waiting
        return d


# Building one from the engine's own records ---------------------------------------------------------


def pool_snapshot(name: str, m: PoolMetrics, kind: str = "map") -> PoolSnapshot:
    """A map pool's figures from its ``WorkerPool.statistics()``."""
    return PoolSnapshot(name, kind, m.max_concurrent_tasks, m.active_tasks, m.queue_size, m.executed, m.failed,
                        m.retried, m.active_tasks / m.max_concurrent_tasks if m.max_concurrent_tasks else 0.0,
                        m.busy_s, m.p50_s, m.p95_s)


def actors_snapshot(metrics: Iterable[PoolMetrics], name: str = "files") -> PoolSnapshot:
    """The per-file actors (one-worker pools) summed into one pool of kind ``files``."""
    ms = list(metrics)
    workers = sum(m.max_concurrent_tasks for m in ms)
    running = sum(m.active_tasks for m in ms)
    return PoolSnapshot(name, "files", workers, running, sum(m.queue_size for m in ms),
                        sum(m.executed for m in ms), sum(m.failed for m in ms), sum(m.retried for m in ms),
                        running / workers if workers else 0.0, sum(m.busy_s for m in ms),
                        max((m.p50_s for m in ms), default=0.0), max((m.p95_s for m in ms), default=0.0))


def memory_snapshot(slots: SlotAllocator) -> MemorySnapshot:
    """The slot allocator's budget and use, and each of its buffer pools."""
    stats = slots.statistics()
    buffers = tuple(BufferSnapshot(s.name, s.slot_size, s.total_slots, s.leased_slots, s.peak_leased, s.utilization,
                                   s.allocations, s.allocation_rate, getattr(s, "fragmentation", None))
                    for s in stats)
    return MemorySnapshot(slots.budget_bytes, sum(s.slot_size * s.total_slots for s in stats),
                          sum(s.leased_slots for s in stats), slots.peak_leased,
                          sum(s.slot_size * s.leased_slots for s in stats), buffers)


@runtime_checkable
class CacheCounts(Protocol):
    """What a cache's figures have for a snapshot: ``CacheMetrics`` (memory) and ``DiskCacheStats`` (disk) both."""

    hits: int
    misses: int
    entries: int


def _cache_snapshot(name: str, figures: Any) -> CacheSnapshot | None:
    """A cache's figures (a ``CacheCounts``: ``CacheMetrics``, ``DiskCacheStats``) as a ``CacheSnapshot``; None for
    a cache that reports none."""
    if not isinstance(figures, CacheCounts):
        return None
    size = getattr(figures, "bytes", getattr(figures, "size_bytes", None))  # the memory tier's name, the disk's
    return CacheSnapshot(name, int(figures.hits), int(figures.misses), figures.entries, size)


def cache_snapshots(memo: tuple[int, int] | None = None, caches: Any = None) -> tuple[CacheSnapshot, ...]:
    """The run's stage memo (hits, misses), then each cache a ``CacheManager`` holds that reports figures."""
    out = [CacheSnapshot("stage_memo", *memo)] if memo is not None else []
    stats: Mapping[str, Any] = caches.statistics() if caches is not None else {}
    for name, figures in stats.items():
        snap = _cache_snapshot(name, figures)
        if snap is not None:
            out.append(snap)
    return tuple(out)

