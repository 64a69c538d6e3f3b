"""Shared-memory buffer pools: pre-allocated slots that frames live in, and ``FrameRef`` handles to them.

Layout of one pool segment (a pool grows by adding segments, "extents")::

    | header 32 B | generation[n] (uint64) | pad | slot 0 | slot 1 | ... |
                                                 ^ data_offset, aligned; slots every ``stride`` bytes

The owner process (the scheduler) keeps each slot's state — free, leased
with a reference count, or retired — and bumps the slot's generation in the
segment every time the slot is freed. A ``FrameRef`` records the generation
it was made at, so any process that resolves it after the slot was recycled
gets ``StaleFrameRef`` instead of another frame's pixels. Other processes only
resolve refs (attach by name, once per process, outside the resource
tracker); they never acquire or release.
"""

from __future__ import annotations

import atexit
import dataclasses
import mmap
import secrets
import signal
import struct
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import BufferPoolExhausted, PoolClosed, StaleFrameRef
from .segments import SharedSegment

__all__ = ["BufferPool", "BufferPoolStats", "SlotLease", "FrameRef", "detach_all"]

_HEADER = struct.Struct("<8sQQQ")  # magic, slots, stride, data_offset
_MAGIC = b"FPBUF001"
_GEN_DTYPE = np.dtype("<u8")


def _round_up(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


# -----------------------------------------------------------------------------
# Segments as any process sees them


class _MappedExtent:
    """A pool segment mapped in this process: its slots' memory and generation counters."""

    __slots__ = ("segment", "slots", "stride", "data_offset", "generations", "array")

    def __init__(self, segment: SharedSegment) -> None:
        magic, slots, stride, data_offset = _HEADER.unpack_from(segment.buf, 0)
        if magic != _MAGIC:
            raise StaleFrameRef(f"segment {segment.name} is not a framepipe buffer pool")
        self.segment = segment
        self.slots, self.stride, self.data_offset = slots, stride, data_offset
        # frombuffer, not ndarray(buffer=): its arrays hold the mapping, so a view still alive when
        # the pool closes keeps the memory mapped (see SharedSegment.close) rather than dangling.
        self.generations = np.frombuffer(segment.buf, _GEN_DTYPE, slots, _HEADER.size)
        self.array = np.frombuffer(segment.buf, np.uint8, segment.size)

    def slot_bytes(self, index: int, nbytes: int, offset: int = 0) -> np.ndarray:
        start = self.data_offset + index * self.stride + offset
        return self.array[start:start + nbytes]

    def release_views(self) -> None:
        del self.generations, self.array


_ATTACHED: dict[str, _MappedExtent] = {}
_ATTACH_LOCK = threading.Lock()


def _extent(name: str) -> _MappedExtent:
    """The extent ``name`` mapped in this process (attached on first use)."""
    ext = _ATTACHED.get(name)
    if ext is not None:
        return ext
    with _ATTACH_LOCK:
        ext = _ATTACHED.get(name)
        if ext is None:
            try:
                probe = SharedSegment.attach(name, _HEADER.size)
                _, slots, stride, data_offset = _HEADER.unpack_from(probe.buf, 0)
                probe.close()
                ext = _MappedExtent(SharedSegment.attach(name, data_offset + slots * stride))
            except FileNotFoundError:
                raise PoolClosed(f"buffer pool segment {name} no longer exists (pool closed)") from None
            _ATTACHED[name] = ext
    return ext


def detach_all() -> None:
    """Unmap every pool segment this (non-owner) process attached."""
    with _ATTACH_LOCK:
        for name, ext in list(_ATTACHED.items()):
            if not ext.segment.owner:
                ext.release_views()
                ext.segment.close()
            del _ATTACHED[name]


# -----------------------------------------------------------------------------
# FrameRef: the handle that travels


def array_nbytes(shape: tuple[int, ...], dtype: str) -> int:
    """Bytes of an array of this shape and dtype (what a ``FrameRef`` or the Ray executor's ``ArrayRef`` holds)."""
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


@dataclass(frozen=True, slots=True)
class FrameRef:
    """A picklable handle to a frame in a pool slot; resolves to a numpy view in any process of the run.

    ``time_base`` is kept as ``(numerator, denominator)`` so the pickle stays small. ``offset``: where the frame
    starts in the slot, in bytes (one row of a batch of frames that share a slot; 0 for a frame of its own).
    """

    pool_id: str
    segment: str
    slot: int
    index: int
    generation: int
    shape: tuple[int, ...]
    dtype: str
    pixel_format: str | None = None
    pts: int | None = None
    time_base: tuple[int, int] | None = None
    stream: int = 0
    seq: int = 0
    offset: int = 0

    @property
    def nbytes(self) -> int:
        """Bytes of the frame (not of the slot)."""
        return array_nbytes(self.shape, self.dtype)

    @property
    def time(self) -> float | None:
        """``pts`` in seconds, when both pts and time base are known."""
        if self.pts is None or self.time_base is None:
            return None
        return float(Fraction(*self.time_base) * self.pts)

    def _check(self) -> _MappedExtent:
        ext = _extent(self.segment)
        current = int(ext.generations[self.index])
        if current != self.generation:
            raise StaleFrameRef(f"frame ref to slot {self.slot} of pool {self.pool_id} is stale "
                                f"(generation {self.generation}, slot now at {current})")
        return ext

    def array(self) -> np.ndarray:
        """A numpy view of the frame (no copy); writable, so a stage can fill a granted slot."""
        ext = self._check()
        return ext.slot_bytes(self.index, self.nbytes, self.offset).view(self.dtype).reshape(self.shape)

    def memoryview(self) -> memoryview:
        """The frame's bytes as a flat memoryview (no copy)."""
        ext = self._check()
        return memoryview(ext.slot_bytes(self.index, self.nbytes, self.offset))  # type: ignore[arg-type]

    def arrow_buffer(self) -> pa.Buffer:
        """The frame's bytes as a pyarrow buffer over the same memory (no copy)."""
        view = self.array()
        return pa.foreign_buffer(view.ctypes.data, view.nbytes, base=view)

    def arrow_tensor(self) -> pa.Tensor:
        """The frame as a pyarrow tensor over the same memory (no copy)."""
        return pa.Tensor.from_numpy(self.array())

    def replace(self, **changes: Any) -> FrameRef:
        """A copy with some metadata changed (pts, seq, shape for a smaller frame...)."""
        return dataclasses.replace(self, **changes)


# -----------------------------------------------------------------------------
# Leases: the owner's side


class SlotLease:
    """One reference to a leased slot; the slot is freed when its last lease is released.

    Release by ``with lease:``, ``lease.release()``, or by dropping the lease
    (garbage collection). ``retain()`` makes another lease on the same slot
    for fan-out: a frame read by two stages is freed after both release it.
    """

    __slots__ = ("pool", "slot", "generation", "_released", "__weakref__")

    def __init__(self, pool: BufferPool, slot: int, generation: int) -> None:
        self.pool = pool
        self.slot = slot
        self.generation = generation
        self._released = False

    @property
    def released(self) -> bool:
        return self._released

    @property
    def nbytes(self) -> int:
        """Capacity of the slot."""
        return self.pool.slot_size

    def buffer(self) -> memoryview:
        """The whole slot as a writable memoryview."""
        return self.pool._slot_view(self.slot, self.generation)

    def array(self, shape: tuple[int, ...], dtype: Any = np.uint8) -> np.ndarray:
        """A numpy view of the slot as ``shape`` / ``dtype`` (must fit the slot)."""
        dt = np.dtype(dtype)
        n = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        if n > self.pool.slot_size:
            raise ValueError(f"{shape} {dt} needs {n} bytes; slots of pool {self.pool.name} hold "
                             f"{self.pool.slot_size}")
        array: np.ndarray = np.frombuffer(self.buffer(), np.uint8, count=n).view(dt).reshape(shape)
        return array

    def ref(self, shape: tuple[int, ...], dtype: Any = np.uint8, *, pixel_format: str | None = None,
            pts: int | None = None, time_base: Fraction | tuple[int, int] | None = None, stream: int = 0,
            seq: int = 0) -> FrameRef:
        """A :class:`FrameRef` to this slot holding a frame of ``shape`` / ``dtype``."""
        dt = np.dtype(dtype)
        if int(np.prod(shape, dtype=np.int64)) * dt.itemsize > self.pool.slot_size:
            raise ValueError(f"{shape} {dt} does not fit a slot of pool {self.pool.name}")
        if isinstance(time_base, Fraction):
            time_base = (time_base.numerator, time_base.denominator)
        segment, index = self.pool._locate(self.slot)
        return FrameRef(self.pool.pool_id, segment, self.slot, index, self.generation, tuple(shape), dt.str,
                        pixel_format, pts, time_base, stream, seq)

    def retain(self) -> SlotLease:
        """Another lease on the same slot (reference count + 1)."""
        self.pool._retain(self.slot, self.generation)
        return SlotLease(self.pool, self.slot, self.generation)

    def release(self) -> None:
        """Drop this reference; the slot is freed (and its generation bumped) with the last one."""
        if not self._released:
            self._released = True
            self.pool._release(self.slot, self.generation)

    def __enter__(self) -> SlotLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<SlotLease {self.pool.name}[{self.slot}] gen {self.generation}{' released' if self._released else ''}>"


@dataclass(frozen=True, slots=True)
class BufferPoolStats:
    """A snapshot of a pool: size, use, and what it has done since it was created."""

    name: str
    slot_size: int
    total_slots: int
    free_slots: int
    leased_slots: int
    utilization: float
    peak_leased: int
    allocations: int
    releases: int
    waits: int
    timeouts: int
    allocation_rate: float  # allocations per second since creation


_FREE, _RETIRED = 0, -1
_LIVE_POOLS: weakref.WeakSet[BufferPool] = weakref.WeakSet()


class BufferPool:
    """Fixed-size slots in shared memory, leased by the owner process and read by any process.

    ``slot_size`` bytes each, ``slots`` of them, every slot starting on an
    ``alignment`` boundary (64 bytes by default; ``page_aligned=True`` for page
    boundaries). The memory is touched at creation so that the first frame
    does not pay for page faults.
    """

    def __init__(self, slot_size: int, slots: int, *, name: str = "pool", alignment: int = 64,
                 page_aligned: bool = False, prefault: bool = True) -> None:
        if slot_size <= 0 or slots < 0:
            raise ValueError("slot_size must be positive and slots non-negative")
        self.name = name
        self.pool_id = f"{name}-{secrets.token_hex(4)}"
        self.slot_size = slot_size
        self.alignment = mmap.PAGESIZE if page_aligned else alignment
        self.stride = _round_up(slot_size, self.alignment)
        self.prefault = prefault
        self._cond = threading.Condition()
        self._extents: list[_MappedExtent] = []
        self._starts: list[int] = []  # first slot number of each extent
        self._refs: list[int] = []  # per slot: 0 free, n > 0 leased n times, -1 retired
        self._free: list[int] = []  # free slot numbers, used as a stack (a warm slot is reused first)
        self._closed = False
        self._created = time.monotonic()
        self._allocations = self._releases = self._waits = self._timeouts = self._peak = 0
        _install_exit_cleanup()
        _LIVE_POOLS.add(self)
        if slots:
            self.expand(slots)

    # Size -------------------------------------------------------------------

    @property
    def total_slots(self) -> int:
        """Slots in service (leased or free; retired ones excluded)."""
        with self._cond:
            return sum(1 for r in self._refs if r != _RETIRED)

    @property
    def free_slots(self) -> int:
        with self._cond:
            return len(self._free)

    @property
    def leased_slots(self) -> int:
        with self._cond:
            return sum(1 for r in self._refs if r > 0)

    @property
    def utilization(self) -> float:
        """Leased slots over slots in service (0.0 for an empty pool)."""
        with self._cond:
            total = sum(1 for r in self._refs if r != _RETIRED)
            return (total - len(self._free)) / total if total else 0.0

    def expand(self, n: int) -> int:
        """Add ``n`` slots (a new segment, pre-faulted); return the new total."""
        if n <= 0:
            return self.total_slots
        self._check_open()
        # Retired slots come back first: their memory is still mapped.
        with self._cond:
            for slot, r in enumerate(self._refs):
                if n and r == _RETIRED:
                    self._refs[slot] = _FREE
                    self._free.append(slot)
                    n -= 1
            self._cond.notify_all()
        if n:
            extent = self._create_extent(n)
            with self._cond:
                first = len(self._refs)
                self._extents.append(extent)
                self._starts.append(first)
                self._refs.extend([_FREE] * n)
                self._free.extend(range(first + n - 1, first - 1, -1))
                self._cond.notify_all()
        return self.total_slots

    def shrink(self, target: int) -> int:
        """Retire free slots until ``target`` remain in service (leased slots are never dropped).

        Segments whose slots are all retired are unlinked. Returns the new total.
        """
        with self._cond:
            total = sum(1 for r in self._refs if r != _RETIRED)
            for slot in sorted(self._free, reverse=True):
                if total <= target:
                    break
                self._free.remove(slot)
                self._refs[slot] = _RETIRED
                total -= 1
            self._drop_retired_extents()
            return total

    def _drop_retired_extents(self) -> None:
        # Only trailing extents can go without renumbering the slots of the others.
        while self._extents:
            first = self._starts[-1]
            if any(r != _RETIRED for r in self._refs[first:]):
                return
            ext = self._extents.pop()
            self._starts.pop()
            del self._refs[first:]
            _ATTACHED.pop(ext.segment.name, None)
            ext.release_views()
            ext.segment.close()
            ext.segment.unlink()

    def _create_extent(self, n: int) -> _MappedExtent:
        data_offset = _round_up(_HEADER.size + n * _GEN_DTYPE.itemsize, max(self.alignment, 64))
        size = data_offset + n * self.stride
        segment = SharedSegment.create(size, tag="pool")
        if self.prefault:  # one write per page faults the whole segment in now, not at the first frame
            np.ndarray((size,), np.uint8, buffer=segment.buf)[::mmap.PAGESIZE] = 0
        _HEADER.pack_into(segment.buf, 0, _MAGIC, n, self.stride, data_offset)
        extent = _MappedExtent(segment)
        _ATTACHED[segment.name] = extent  # the owner resolves refs through its own mapping
        return extent

    # Leasing ----------------------------------------------------------------

    def try_acquire(self) -> SlotLease | None:
        """A lease on a free slot, or None when every slot is leased."""
        with self._cond:
            self._check_open()
            return self._take() if self._free else None

    def acquire(self, timeout: float | None = None) -> SlotLease:
        """A lease on a free slot, waiting up to ``timeout`` seconds (None: forever) for one."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._check_open()
            if not self._free:
                self._waits += 1
                while not self._free:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        self._timeouts += 1
                        raise BufferPoolExhausted(
                            f"no free slot in pool {self.name} ({self._total()} slots, all leased) "
                            f"within {timeout} s")
                    self._cond.wait(remaining)
                    self._check_open()
            return self._take()

    def _total(self) -> int:
        return sum(1 for r in self._refs if r != _RETIRED)

    def _take(self) -> SlotLease:
        slot = self._free.pop()
        self._refs[slot] = 1
        self._allocations += 1
        leased = self._total() - len(self._free)
        self._peak = max(self._peak, leased)
        return SlotLease(self, slot, self._generation(slot))

    def _generation(self, slot: int) -> int:
        ext, index = self._extent_of(slot)
        return int(ext.generations[index])

    def _extent_of(self, slot: int) -> tuple[_MappedExtent, int]:
        for i in range(len(self._starts) - 1, -1, -1):
            if slot >= self._starts[i]:
                return self._extents[i], slot - self._starts[i]
        raise IndexError(slot)

    def _locate(self, slot: int) -> tuple[str, int]:
        with self._cond:
            ext, index = self._extent_of(slot)
            return ext.segment.name, index

    def _slot_view(self, slot: int, generation: int) -> memoryview:
        with self._cond:
            self._check_lease(slot, generation)
            ext, index = self._extent_of(slot)
            return memoryview(ext.slot_bytes(index, self.slot_size))  # type: ignore[arg-type]

    def _check_lease(self, slot: int, generation: int) -> None:
        self._check_open()
        if self._refs[slot] <= 0 or self._generation(slot) != generation:
            raise StaleFrameRef(f"slot {slot} of pool {self.name} is no longer leased at generation {generation}")

    def _retain(self, slot: int, generation: int) -> None:
        with self._cond:
            self._check_lease(slot, generation)
            self._refs[slot] += 1

    def _release(self, slot: int, generation: int) -> None:
        with self._cond:
            if self._closed:
                return
            self._check_lease(slot, generation)
            self._refs[slot] -= 1
            if self._refs[slot] == 0:
                ext, index = self._extent_of(slot)
                ext.generations[index] += 1  # every ref made before now is stale
                self._free.append(slot)
                self._releases += 1
                self._cond.notify()

    def release_ref(self, ref: FrameRef) -> None:
        """Drop one reference to the slot ``ref`` points at (for refs that came back from a worker)."""
        if ref.pool_id != self.pool_id:
            raise ValueError(f"{ref.pool_id} is not pool {self.pool_id}")
        self._release(ref.slot, ref.generation)

    def retain_ref(self, ref: FrameRef) -> None:
        """Add one reference to the slot ``ref`` points at (fan-out of a ref to another consumer)."""
        self._retain(ref.slot, ref.generation)

    # Introspection and life cycle -----------------------------------------------

    def statistics(self) -> BufferPoolStats:
        """A snapshot of size, use and counters."""
        with self._cond:
            total = self._total()
            free = len(self._free)
            elapsed = max(time.monotonic() - self._created, 1e-9)
            return BufferPoolStats(self.name, self.slot_size, total, free, total - free,
                                   (total - free) / total if total else 0.0, self._peak, self._allocations,
                                   self._releases, self._waits, self._timeouts, self._allocations / elapsed)

    def segment_names(self) -> list[str]:
        """Names of this pool's shared segments (for tests and diagnostics)."""
        with self._cond:
            return [e.segment.name for e in self._extents]

    def _check_open(self) -> None:
        if self._closed:
            raise PoolClosed(f"buffer pool {self.name} is closed")

    def close(self) -> None:
        """Unlink every segment; outstanding leases and refs become invalid. Idempotent.

        A numpy array already taken from a ref stays readable (the memory is
        unmapped when the last such array is freed), never a dangling view.
        """
        with self._cond:
            if self._closed:
                return
            self._closed = True
            for ext in self._extents:
                _ATTACHED.pop(ext.segment.name, None)
                ext.release_views()
                ext.segment.close()
                ext.segment.unlink()
            self._extents.clear()
            self._cond.notify_all()
        _LIVE_POOLS.discard(self)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> BufferPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<BufferPool {self.name}: {self.slot_size} B x {len(self._refs)} slots>"


# -----------------------------------------------------------------------------
# Cleanup at exit, on exceptions and on SIGTERM

_cleanup_installed = False


def close_all_pools() -> None:
    """Close (unlink) every pool this process owns."""
    for pool in list(_LIVE_POOLS):
        pool.close()


def _on_sigterm(signum: int, frame: object) -> None:
    # Unwind like an exception so that ``finally`` blocks and atexit run.
    sys.exit(128 + signum)


def _install_exit_cleanup() -> None:
    """On first pool: unlink pools at exit, and turn a default SIGTERM into an orderly exit."""
    global _cleanup_installed
    if _cleanup_installed:
        return
    _cleanup_installed = True
    atexit.register(close_all_pools)
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)
