"""``PerformanceConfig``: how a local run is sized, and its profiles.

``size_profile(name, cores, available_bytes)`` is a pure function: what a
profile means on a machine with these figures. ``PerformanceConfig.video_processing()``
and friends call it with the machine's figures (``SystemMonitor``); tests call
it with plain numbers. ``RuntimeCoordinator.video_processing()`` sizes its
pools from it too. The rules that retune a run as it goes are in ``plan``, the
glue that applies them in ``optimizer``.

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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..executors.base import Executor

__all__ = ["PerformanceConfig", "PROFILES", "size_profile"]

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
        from ..cache.memory import Cache  # here, not at the top: the command's parser imports PROFILES alone
        from ..executors.local import LocalExecutor
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
                cache = executor.caches.get(name)
                if isinstance(cache, Cache):  # memory caches; an AsyncCache's resize is a coroutine
                    cache.resize(max_size_bytes=self.cache_bytes)


def _machine() -> tuple[int, int]:
    from .monitor import SystemMonitor
    machine = SystemMonitor().snapshot()
    return machine.cores, machine.available_bytes


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
