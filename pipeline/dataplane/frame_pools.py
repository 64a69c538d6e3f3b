"""Size classes of buffer pools for video: a frame goes to the smallest class it fits.

Default classes: a 1080p RGB24 frame, a 4K RGB24 frame, and one second of
48 kHz stereo float32 audio. A YUV 4:2:0 frame takes its real size (half of
RGB24), so a 4K YUV frame fits the 4K class and a 1080p YUV frame the 1080p
class with room to spare. How many bytes a frame of a pixel format takes is
the video library's to say (``stages.pixels``); here are only byte counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BufferPoolExhausted
from .buffers import BufferPool, BufferPoolStats, SlotLease

__all__ = ["SizeClass", "BufferConfig", "VideoBufferPool", "SlotAllocator", "AUDIO_SECOND_BYTES"]

AUDIO_SECOND_BYTES = 48_000 * 2 * 4
"""One second of 48 kHz stereo float32 samples."""

_RGB24_1080P = 1920 * 1080 * 3
_RGB24_4K = 3840 * 2160 * 3


@dataclass(frozen=True, slots=True)
class SizeClass:
    """One pool of a :class:`VideoBufferPool`: its name, slot size in bytes and slot count."""

    name: str
    slot_size: int
    slots: int


@dataclass(frozen=True, slots=True)
class BufferConfig:
    """The size classes of a :class:`VideoBufferPool`, smallest first once built."""

    classes: tuple[SizeClass, ...]
    alignment: int = 64
    page_aligned: bool = False

    @classmethod
    def video_processing(cls, frames_1080p: int = 16, frames_4k: int = 4, audio_seconds: int = 8) -> BufferConfig:
        """For batch work on HD and UHD footage: about 100 MB of 1080p slots and 100 MB of 4K slots."""
        return cls((SizeClass("audio_1s", AUDIO_SECOND_BYTES, audio_seconds),
                    SizeClass("rgb24_1080p", _RGB24_1080P, frames_1080p),
                    SizeClass("rgb24_4k", _RGB24_4K, frames_4k)))

    @classmethod
    def low_memory(cls) -> BufferConfig:
        """For small machines: a few slots per class (about 40 MB in all)."""
        return cls.video_processing(frames_1080p=3, frames_4k=1, audio_seconds=2)

    def total_bytes(self) -> int:
        """Shared memory the configuration reserves."""
        return sum(c.slot_size * c.slots for c in self.classes)


class VideoBufferPool:
    """A set of :class:`BufferPool` s by size class; frames go to the smallest class that fits."""

    def __init__(self, config: BufferConfig | None = None, *, prefault: bool = True) -> None:
        self.config = config or BufferConfig.video_processing()
        classes = sorted(self.config.classes, key=lambda c: c.slot_size)
        self.pools: dict[str, BufferPool] = {}
        try:
            for c in classes:
                self.pools[c.name] = BufferPool(c.slot_size, c.slots, name=c.name,
                                                alignment=self.config.alignment,
                                                page_aligned=self.config.page_aligned, prefault=prefault)
        except BaseException:
            self.close()
            raise

    def _fitting(self, nbytes: int) -> list[BufferPool]:
        fits = [p for p in self.pools.values() if p.slot_size >= nbytes]
        if not fits:
            largest = max((p.slot_size for p in self.pools.values()), default=0)
            raise ValueError(f"a {nbytes}-byte buffer is larger than the largest size class ({largest} bytes)")
        return fits

    def allocate(self, nbytes: int, timeout: float | None = None) -> SlotLease:
        """A slot of at least ``nbytes``: the smallest class with a free slot, else wait on the smallest fit."""
        fits = self._fitting(nbytes)
        for pool in fits:
            lease = pool.try_acquire()
            if lease is not None:
                return lease
        return fits[0].acquire(timeout)

    def allocate_audio(self, samples: int, channels: int = 2, dtype: Any = np.float32,
                       timeout: float | None = None) -> SlotLease:
        """A slot for ``samples`` x ``channels`` audio samples."""
        return self.allocate(samples * channels * np.dtype(dtype).itemsize, timeout)

    def try_allocate(self, nbytes: int) -> SlotLease | None:
        """Like :meth:`allocate` but returns None instead of waiting."""
        try:
            return self.allocate(nbytes, timeout=0)
        except BufferPoolExhausted:
            return None

    def statistics(self) -> list[BufferPoolStats]:
        """Each size class's statistics, smallest first."""
        return [p.statistics() for p in self.pools.values()]

    def pool(self, name: str) -> BufferPool:
        """The pool of size class ``name``."""
        return self.pools[name]

    def close(self) -> None:
        """Unlink every pool's memory."""
        for p in self.pools.values():
            p.close()

    def __enter__(self) -> VideoBufferPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[BufferPool]:
        return iter(self.pools.values())


class SlotAllocator:
    """Byte slots of whatever size the run's frames turn out to need, within a fixed memory budget.

    The first request for a size creates a pool for it (sizes within 25% share
    one); pools grow slot by slot while the budget allows. When nothing is
    free and the budget is spent, ``grant`` returns None: the caller waits for
    a release. That bound is what keeps a run's memory flat however long its
    inputs are.
    """

    def __init__(self, budget_bytes: int, *, alignment: int = 64) -> None:
        self.budget_bytes = budget_bytes
        self.alignment = alignment
        self.pools: list[BufferPool] = []
        self._peak = 0

    @property
    def reserved_bytes(self) -> int:
        return sum(p.slot_size * p.total_slots for p in self.pools)

    def grant(self, nbytes: int, *, force: bool = False) -> SlotLease | None:
        """A free slot of at least ``nbytes``, or None when the budget is spent and all are leased.

        Pools of other sizes with nothing leased are closed to make room. ``force``
        grants one slot beyond the budget (for a file that holds none and could
        otherwise never move).
        """
        nbytes = max(1, nbytes)
        fitting = sorted((p for p in self.pools if nbytes <= p.slot_size <= nbytes * 1.25 + 4096),
                         key=lambda p: p.slot_size)
        for pool in fitting:
            lease = pool.try_acquire()
            if lease is not None:
                return self._track(lease)
        size = -(-nbytes // self.alignment) * self.alignment
        if self.reserved_bytes + size > self.budget_bytes:
            for idle in [p for p in self.pools if p not in fitting and p.leased_slots == 0]:
                idle.close()  # another size that nothing uses now: give its memory back
                self.pools.remove(idle)
        if self.reserved_bytes + size > self.budget_bytes and not force:
            return None
        if fitting:
            fitting[0].expand(1)
            return self._track(fitting[0].acquire(timeout=0))
        pool = BufferPool(size, 1, name=f"slots_{size}", alignment=self.alignment)
        self.pools.append(pool)
        return self._track(pool.acquire(timeout=0))

    def trim(self) -> int:
        """Give free slots back until what exists fits the budget (leased slots stay); return the bytes kept."""
        for pool in sorted(self.pools, key=lambda p: p.slot_size, reverse=True):
            excess = self.reserved_bytes - self.budget_bytes
            if excess <= 0:
                break
            pool.shrink(max(pool.leased_slots, pool.total_slots - -(-excess // pool.slot_size)))
            if pool.total_slots == 0:
                pool.close()
                self.pools.remove(pool)
        return self.reserved_bytes

    def _track(self, lease: SlotLease) -> SlotLease:
        self._peak = max(self._peak, self.leased_slots)
        return lease

    @property
    def leased_slots(self) -> int:
        return sum(p.leased_slots for p in self.pools)

    @property
    def peak_leased(self) -> int:
        """Most slots leased at once so far."""
        return self._peak

    def statistics(self) -> list[BufferPoolStats]:
        return [p.statistics() for p in self.pools]

    def close(self) -> None:
        for p in self.pools:
            p.close()
