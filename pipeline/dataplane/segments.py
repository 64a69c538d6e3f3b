"""Named shared-memory segments with one owner.

The process that creates a segment owns it: only the owner registers it with
Python's resource tracker and unlinks it. Other processes attach with a plain
``shm_open`` + ``mmap`` that the tracker never sees. (On Python < 3.13 an
attaching ``SharedMemory`` registers the segment too, and loky workers share
the parent's tracker, so unregistering in the worker would remove the
parent's own entry; attaching outside the tracker avoids both problems.)

Every process, the owner too, maps a segment with its own ``mmap``, so that
closing it while numpy arrays made by ``np.frombuffer`` still view it leaves
the mapping to those arrays (undone when the last goes) instead of pulling
the memory out from under them.
"""

from __future__ import annotations

import _posixshmem
import mmap
import os
import secrets
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # loaded (with the resource tracker) where a segment is made: a run that makes none loads neither
    from multiprocessing import shared_memory

__all__ = ["SharedSegment", "SEGMENT_PREFIX", "sweep_stale_segments"]

SEGMENT_PREFIX = "framepipe_"


class SharedSegment:
    """A block of shared memory, created (owned) by one process and attached by others."""

    __slots__ = ("name", "size", "owner", "_shm", "_mmap", "buf")

    def __init__(self, name: str, size: int, owner: bool, shm: shared_memory.SharedMemory | None,
                 mm: mmap.mmap | None) -> None:
        self.name = name
        self.size = size
        self.owner = owner
        self._shm = shm
        self._mmap = mm
        self.buf: memoryview = memoryview(mm)  # type: ignore[arg-type]

    @classmethod
    def create(cls, size: int, tag: str = "seg") -> SharedSegment:
        """Create a new segment of ``size`` bytes (zero-filled), owned by this process."""
        from multiprocessing import shared_memory
        name = f"{SEGMENT_PREFIX}{os.getpid()}_{tag}_{secrets.token_hex(8)}"
        shm = shared_memory.SharedMemory(name=name, create=True, size=max(1, size))
        try:
            mm = _map(name, size)
        except BaseException:
            shm.close()
            shm.unlink()
            raise
        shm.close()  # its mapping and descriptor; it is kept to unlink the name (and unregister it)
        return cls(name, size, True, shm, mm)

    @classmethod
    def attach(cls, name: str, size: int) -> SharedSegment:
        """Map an existing segment without registering it anywhere (the owner unlinks it)."""
        return cls(name, size, False, None, _map(name, size))

    def close(self) -> None:
        """Unmap this process's view, or leave that to the numpy arrays still viewing it.

        Arrays made with ``np.frombuffer(buf)`` hold the mapping: while one
        lives, ``mmap.close`` refuses, and the memory is unmapped when the
        last of them is freed — never while one can still read it.
        """
        try:
            self.buf.release()
        except BufferError:
            return
        if self._mmap is not None:
            try:
                self._mmap.close()
            except BufferError:
                pass  # arrays still view it: the mmap is closed when they are gone

    def unlink(self) -> None:
        """Remove the segment's name (owner only); memory goes when the last view is closed."""
        if self.owner and self._shm is not None:
            try:
                self._shm.unlink()
            except FileNotFoundError:
                pass

    def __repr__(self) -> str:
        return f"<SharedSegment {self.name} {self.size} B{' owner' if self.owner else ''}>"


def _map(name: str, size: int) -> mmap.mmap:
    """Segment ``name`` mapped read-write (``mmap`` keeps its own descriptor; ours is closed)."""
    fd = _posixshmem.shm_open("/" + name, os.O_RDWR, mode=0o600)
    try:
        return mmap.mmap(fd, max(1, size))
    finally:
        os.close(fd)


def sweep_stale_segments(shm_dir: str = "/dev/shm") -> list[str]:
    """Unlink segments whose creating process is gone (a run killed with SIGKILL); return their names."""
    removed: list[str] = []
    try:
        names = os.listdir(shm_dir)
    except OSError:  # no /dev/shm on this system: nothing to sweep
        return removed
    for name in names:
        if not name.startswith(SEGMENT_PREFIX):
            continue
        pid_text = name[len(SEGMENT_PREFIX):].split("_", 1)[0]
        import psutil  # here: most starts find nothing to sweep
        if not pid_text.isdigit() or psutil.pid_exists(int(pid_text)):
            continue
        try:
            _posixshmem.shm_unlink("/" + name)
            removed.append(name)
        except FileNotFoundError:
            pass
    return removed
