"""Inter-process file locks: a lock file per key, released by the OS if its holder dies.

On POSIX the lock is ``flock`` on an open file, so a killed holder releases it
with its last descriptor. A per-key lock file is unlinked by the holder before
it lets go; an acquirer that wins the lock on a file that was unlinked (or
replaced) meanwhile sees that its inode is no longer the one at the path and
tries again, so lock files never pile up and no two holders coexist.
On Windows ``msvcrt.locking`` is polled instead (and files are left in place:
an open file cannot be unlinked there).

A lock file is never reached through a link: it is opened with ``O_NOFOLLOW``,
so a symbolic link planted at its name fails the open (``ELOOP``) instead of
creating or changing the file it points to, and a name that is not a regular
file (a FIFO) is refused.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from ..errors import LockTimeout

__all__ = ["FileLock", "LockTimeout"]

_WINDOWS = sys.platform == "win32"
_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
if _WINDOWS:  # pragma: no cover - exercised on Windows only
    import msvcrt
else:
    import fcntl


class FileLock:
    """An exclusive (or shared) lock on ``path``, held between ``acquire()`` and ``release()``.

    ``unlink=True`` removes the lock file on release (per-key locks); leave it
    ``False`` for a long-lived lock file that shared holders use. Not reentrant.
    """

    __slots__ = ("path", "shared", "unlink", "_fd")

    def __init__(self, path: str | os.PathLike[str], *, shared: bool = False, unlink: bool = False) -> None:
        self.path = Path(path)
        self.shared = shared
        self.unlink = unlink and not shared and not _WINDOWS
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def fileno(self) -> int:
        """The descriptor of the held lock file (to write into it without opening its name again)."""
        if self._fd is None:
            raise RuntimeError(f"lock {self.path} is not held")
        return self._fd

    def acquire(self, timeout: float | None = None) -> None:
        """Wait for the lock (forever when ``timeout`` is ``None``); raise ``LockTimeout`` past it.

        A symbolic link at ``path`` raises ``OSError`` (``ELOOP``) and is not followed; a name that is not a
        regular file raises ``OSError`` (``EINVAL``).
        """
        if self._fd is not None:
            raise RuntimeError(f"lock {self.path} is already held by this object")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            fd = os.open(self.path, _OPEN_FLAGS, 0o644)
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise OSError(errno.EINVAL, "not a regular file", str(self.path))
                if not self._lock(fd, deadline):
                    raise LockTimeout(self.path, timeout or 0.0)
                if self._still_at_path(fd):
                    self._fd = fd
                    return
            except BaseException:
                os.close(fd)
                raise
            # We locked a file its previous holder had unlinked: the lock is on a
            # ghost. Let it go and lock whatever is at the path now.
            os.close(fd)

    def try_acquire(self) -> bool:
        """Take the lock if it is free now; return whether it was taken."""
        try:
            self.acquire(timeout=0.0)
        except LockTimeout:
            return False
        return True

    def release(self) -> None:
        """Let the lock go (a no-op when not held)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if self.unlink:
            # Unlink while still holding: a waiter that then wins the old inode
            # sees it is gone from the path and retries on a fresh file.
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        if _WINDOWS:  # pragma: no cover
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined,unused-ignore]
        os.close(fd)  # closing the last descriptor releases a flock

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    # --- platform parts ---------------------------------------------------------

    def _lock(self, fd: int, deadline: float | None) -> bool:
        if _WINDOWS:  # pragma: no cover
            return _poll(lambda: _try_msvcrt(fd), deadline)
        mode = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        if deadline is None:
            fcntl.flock(fd, mode)  # blocks in the kernel: no polling
            return True
        return _poll(lambda: _try_flock(fd, mode), deadline)

    def _still_at_path(self, fd: int) -> bool:
        # Checked for every lock, not only ``unlink`` ones: a sweep may remove a
        # stale lock file that a dead holder left.
        if _WINDOWS:  # pragma: no cover
            return True
        try:
            st = os.lstat(self.path)  # the name itself: a link put there to our file is not our file
        except FileNotFoundError:
            return False
        return os.path.samestat(st, os.fstat(fd))


def _try_flock(fd: int, mode: int) -> bool:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _try_msvcrt(fd: int) -> bool:  # pragma: no cover - Windows only
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined,unused-ignore]
    except OSError:
        return False
    return True


def _poll(attempt: Callable[[], bool], deadline: float | None) -> bool:
    """Retry ``attempt`` with a growing pause (1 ms to 50 ms) until it succeeds or ``deadline`` passes."""
    pause = 0.001
    while not attempt():
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
    return True
