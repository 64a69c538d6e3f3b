"""Zero-copy file I/O: memory-mapped reads, reads straight into buffers, and in-kernel copies.

* ``MappedFile`` maps a file read-only (or copy-on-write) and hands out
  memoryviews of it: reading a chunk copies nothing.
* ``read_into`` fills a caller's buffer (a pool slot) with ``os.preadv``: the
  kernel writes the file's bytes straight into shared memory.
* ``transfer`` copies between files inside the kernel (``copy_file_range``,
  then ``sendfile``, then ``splice``), falling back to a plain loop; it
  returns the bytes moved.

Paths are opened only when they name a regular file (after following links):
opening a FIFO for reading blocks until a writer appears, and opening a
device can have effects of its own, so a FIFO, socket or device node is
refused with ``UnreadableFile`` (``not a regular file (FIFO)``) before any
open, and the open itself is non-blocking in case the name changed meanwhile.
"""

from __future__ import annotations

import errno
import io
import mmap
import os
import stat
from collections.abc import Iterator
from typing import IO, Literal

from ..errors import UnreadableFile

__all__ = ["MappedFile", "iter_chunks", "read_into", "transfer", "TransferMethod", "special_file_kind",
           "open_regular"]

TransferMethod = Literal["auto", "copy_file_range", "sendfile", "splice", "copy"]
_CHUNK = 8 << 20
_FALLBACK_ERRNOS = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF, errno.ENOTSUP,
                    errno.EPERM}


_SPECIAL_KINDS = ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                  (stat.S_ISBLK, "block device"))


def special_file_kind(mode: int) -> str | None:
    """``"FIFO"``, ``"socket"``, ``"character device"`` or ``"block device"`` for such an ``st_mode``; None for a
    regular file, a folder or a link (``lstat``)."""
    for test, kind in _SPECIAL_KINDS:
        if test(mode):
            return kind
    return None


def open_regular(path: str | os.PathLike[str]) -> int:
    """A read-only descriptor of ``path``, which must be a regular file (links followed); never blocks.

    A FIFO, socket or device node raises ``UnreadableFile`` (``not a regular file (FIFO)``) without being
    opened; a folder raises ``IsADirectoryError``, as ``open()`` does.
    """
    name = os.fspath(path)
    _check_regular(name, os.stat(name).st_mode)  # before any open: opening a FIFO or a device is an act
    # O_NONBLOCK: should the name become a FIFO after the stat, the open returns at once instead of waiting
    # for a writer (the fstat below then refuses it). A regular file's reads ignore the flag.
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        _check_regular(name, os.fstat(fd).st_mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_regular(name: str, mode: int) -> None:
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), name)
    kind = special_file_kind(mode)
    if kind is not None or not stat.S_ISREG(mode):
        raise UnreadableFile(name, f"not a regular file ({kind or 'unknown kind'})")


class MappedFile:
    """A file mapped into memory, read as memoryviews with a position like a file.

    ``copy_on_write=True`` maps it privately writable: a stage may edit the
    bytes in place and the file on disk never changes.
    """

    def __init__(self, path: str | os.PathLike[str], *, copy_on_write: bool = False) -> None:
        self.path = os.fspath(path)
        self._pos = 0
        self._fd: int | None = None
        with open(open_regular(self.path), "rb") as f:  # a FIFO or device is refused, never waited on
            self.size = os.fstat(f.fileno()).st_size
            if self.size:
                access = mmap.ACCESS_COPY if copy_on_write else mmap.ACCESS_READ
                self._mmap: mmap.mmap | None = mmap.mmap(f.fileno(), 0, access=access)
                self._view = memoryview(self._mmap)
            else:  # an empty file cannot be mapped
                self._mmap = None
                self._view = memoryview(bytearray() if copy_on_write else b"")

    @property
    def position(self) -> int:
        """Where the next ``read`` starts."""
        return self._pos

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = min(max(0, base + offset), self.size)
        return self._pos

    def read(self, n: int = -1) -> memoryview:
        """The next ``n`` bytes (all the rest when negative) as a view; no copy."""
        end = self.size if n < 0 else min(self.size, self._pos + n)
        view = self._view[self._pos:end]
        self._pos = end
        return view

    def view(self, offset: int = 0, length: int | None = None) -> memoryview:
        """Bytes ``offset .. offset + length`` as a view, without moving the position."""
        end = self.size if length is None else min(self.size, offset + length)
        return self._view[offset:end]

    def find(self, needle: bytes, start: int = 0, end: int | None = None) -> int:
        """Offset of the first ``needle`` in ``start .. end`` (-1 when absent), searched in place."""
        if self._mmap is None:
            return -1
        return self._mmap.find(needle, start, self.size if end is None else end)

    def fileno(self) -> int:
        """A descriptor of the mapped file, for ``read_into`` (opened on first use)."""
        if self._fd is None:
            self._fd = open_regular(self.path)
        return self._fd

    def chunks(self, size: int = _CHUNK) -> Iterator[memoryview]:
        """The rest of the file as views of at most ``size`` bytes."""
        while self._pos < self.size:
            yield self.read(size)

    def close(self) -> None:
        """Unmap the file (views handed out must have been released)."""
        self._view.release()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._mmap is not None:
            self._mmap.close()
            self._mmap = None

    def __len__(self) -> int:
        return self.size

    def __enter__(self) -> MappedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_chunks(source: MappedFile | bytes | memoryview | IO[bytes], size: int = _CHUNK) -> Iterator[memoryview]:
    """Chunks of a mapped file, a bytes-like object or a binary file, as memoryviews.

    For a file object one buffer is reused: each view is valid until the next one.
    """
    if isinstance(source, MappedFile):
        yield from source.chunks(size)
        return
    if isinstance(source, (bytes, bytearray, memoryview)):
        view = memoryview(source)
        for start in range(0, len(view), size):
            yield view[start:start + size]
        return
    buf = bytearray(size)
    view = memoryview(buf)
    while True:
        n = source.readinto(view)  # type: ignore[attr-defined]
        if not n:
            return
        yield view[:n]


def read_into(fd: int, buffer: memoryview | bytearray, offset: int) -> int:
    """Fill ``buffer`` from file descriptor ``fd`` at ``offset``; return the bytes read (short at EOF)."""
    view = memoryview(buffer).cast("B")
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done)
        if n == 0:
            break
        done += n
    return done


def _fd(obj: int | IO[bytes]) -> int:
    return obj if isinstance(obj, int) else obj.fileno()


def _copy_file_range(src: int, dst: int, length: int) -> int:
    moved = 0
    while moved < length:
        n = os.copy_file_range(src, dst, min(length - moved, 1 << 30))
        if n == 0:
            break
        moved += n
    return moved


def _sendfile(src: int, dst: int, length: int) -> int:
    moved = 0
    offset = os.lseek(src, 0, os.SEEK_CUR)
    while moved < length:
        n = os.sendfile(dst, src, offset + moved, min(length - moved, 1 << 30))
        if n == 0:
            break
        moved += n
    os.lseek(src, offset + moved, os.SEEK_SET)
    return moved


def _splice(src: int, dst: int, length: int) -> int:
    r, w = os.pipe()
    moved = 0
    try:
        while moved < length:
            n = os.splice(src, w, min(length - moved, 1 << 20))
            if n == 0:
                break
            left = n
            while left:
                left -= os.splice(r, dst, left)
            moved += n
    finally:
        os.close(r)
        os.close(w)
    return moved


def _copy(src: int, dst: int, length: int) -> int:
    buf = bytearray(min(_CHUNK, max(length, 1)))
    view = memoryview(buf)
    moved = 0
    while moved < length:
        n = os.readv(src, [view[:min(len(view), length - moved)]])
        if n == 0:
            break
        written = 0
        while written < n:
            written += os.write(dst, view[written:n])
        moved += n
    return moved


_METHODS = {"copy_file_range": _copy_file_range, "sendfile": _sendfile, "splice": _splice, "copy": _copy}


def transfer(src: str | os.PathLike[str] | int | IO[bytes], dst: str | os.PathLike[str] | int | IO[bytes], *,
             length: int | None = None, method: TransferMethod = "auto") -> int:
    """Copy ``length`` bytes (default: the rest of ``src``) from ``src`` to ``dst``; return the bytes moved.

    Paths are opened (``dst`` created or truncated; a path ``src`` must be a regular file, see
    ``open_regular``); descriptors and file objects are used at their current positions. ``auto`` tries
    ``copy_file_range``, ``sendfile`` and ``splice`` in turn, falling back to a
    read/write loop when the kernel or the file systems refuse.
    """
    close: list[int] = []
    try:
        if isinstance(src, (str, os.PathLike)):
            close.append(s := open_regular(src))
        else:
            s = _fd(src)
        if isinstance(dst, (str, os.PathLike)):
            close.append(d := os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
        else:
            if not isinstance(dst, int):
                dst.flush()
            d = _fd(dst)
        if length is None:
            length = max(0, os.fstat(s).st_size - os.lseek(s, 0, os.SEEK_CUR))
        order = list(_METHODS) if method == "auto" else [method]
        moved = 0
        for name in order:
            try:
                moved += _METHODS[name](s, d, length - moved)
            except OSError as exc:
                if method != "auto" or exc.errno not in _FALLBACK_ERRNOS:
                    raise
                continue
            if moved >= length:
                break
        return moved
    finally:
        for fd in close:
            os.close(fd)
