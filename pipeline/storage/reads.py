"""``open_input``: what a decoder opens — the path itself, or a seekable file object over ranged reads.

Each read of a pyarrow S3 input file is one HTTP range request. A demuxer reads in small pieces (PyAV asks for
32 KiB at a time) and seeks (an MP4's index may be at its end), so the object is read through a raw adapter
that calls ``read_at`` ahead of the demuxer: one request fetches at least ``READ_AHEAD`` bytes, the demuxer's
small reads are served from them, and a seek lands where it asks without reading what lies between. While
reads go straight on, each request fetches twice the last (up to ``READ_AHEAD_MAX``), so a whole decode costs
few requests; a seek elsewhere starts small again. (``io.BufferedReader`` was the first try: its one fixed
buffer is too small for a decode or too big for a probe. Measured on an 18.3 MB FFV1 Matroska clip, a metadata
pass read 4 MiB in 6 requests through a 1 MiB ``BufferedReader``, and 512 KiB in 4 requests this way.)
A metadata pass over an MP4 reads its header, its index and one keyframe — a few requests, a small part of the
file (``tests/test_storage.py`` measures it).
"""

from __future__ import annotations

import io
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from ..errors import UnreadableFile
from .location import filesystem, is_url, storage_error

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["READ_AHEAD", "READ_AHEAD_MAX", "ReadStatistics", "open_input", "input_size", "read_statistics"]

READ_AHEAD = 256 << 10
"""Bytes a ranged read fetches after a seek (at least): a header, an index's start or a keyframe in one request."""
READ_AHEAD_MAX = 8 << 20
"""The most one ranged read fetches, reads having gone straight on (a decode of the whole file)."""


@dataclass(frozen=True, slots=True)
class ReadStatistics:
    """What ranged reads of remote inputs cost this process so far: requests sent (an open's HEAD included) and
    bytes received. Two readings apart, subtracted, give what the work between them read."""

    requests: int = 0
    bytes: int = 0

    def __sub__(self, other: ReadStatistics) -> ReadStatistics:
        return ReadStatistics(self.requests - other.requests, self.bytes - other.bytes)


_COUNT_LOCK = threading.Lock()
_COUNTS = [0, 0]  # requests, bytes


def _count(requests: int, nbytes: int) -> None:
    with _COUNT_LOCK:
        _COUNTS[0] += requests
        _COUNTS[1] += nbytes


def read_statistics() -> ReadStatistics:
    """The requests and bytes this process's remote inputs have read so far."""
    with _COUNT_LOCK:
        return ReadStatistics(_COUNTS[0], _COUNTS[1])


class _RangedRaw(io.RawIOBase):
    """A raw, seekable stream over a pyarrow ``RandomAccessFile`` that reads ahead: each fetch is one ``read_at``.

    The read-ahead grows while reads go straight on (``READ_AHEAD`` doubling up to ``READ_AHEAD_MAX``: a full
    decode streams in large requests) and falls back to ``READ_AHEAD`` after a seek elsewhere (a demuxer
    jumping to an index or a keyframe reads a little there, not megabytes).
    """

    def __init__(self, file: pa.NativeFile, url: str, least: int, most: int) -> None:
        super().__init__()
        self._file = file
        self._size = int(file.size())
        self._pos = 0
        self._least = max(1, least)
        self._most = max(self._least, most)
        self._ahead = self._least
        self._window = b""  # what the last fetch brought, from _start
        self._start = 0
        self.name = url

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise OSError(22, "negative seek position", self.name)
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        want = min(len(buffer), self._size - self._pos)
        if want <= 0:
            return 0
        end = self._start + len(self._window)
        if not self._start <= self._pos < end:
            straight_on = self._pos == end and end > 0
            self._ahead = min(self._ahead * 2, self._most) if straight_on else self._least
            self._fetch(max(want, self._ahead))
        at = self._pos - self._start
        got = min(want, len(self._window) - at)
        memoryview(buffer)[:got] = self._window[at:at + got]
        self._pos += got
        return got

    def _fetch(self, nbytes: int) -> None:
        nbytes = min(nbytes, self._size - self._pos)
        try:
            data = self._file.read_at(nbytes, self._pos)
        except OSError as exc:  # a lost connection mid-file: one line naming the object, not the SDK's text
            raise storage_error(exc, self.name) from exc
        if not data:
            raise storage_error(OSError(f"the object ended at {self._pos} of {self._size} bytes"), self.name)
        _count(1, len(data))
        self._window, self._start = bytes(data), self._pos

    def close(self) -> None:
        if not self.closed:
            self._file.close()
            self._window = b""
        super().close()


def open_input(path: str | os.PathLike[str], *, read_ahead: int = READ_AHEAD,
               read_ahead_max: int = READ_AHEAD_MAX) -> str | BinaryIO:
    """What to hand ``av.open`` (or any reader) for ``path``: a plain path as it is (a ``str``), a URL as a
    seekable binary file object reading ranges of the object ahead of the reader (``read_ahead`` bytes after a
    seek, doubling up to ``read_ahead_max`` while reads go straight on).

    The caller closes the file object. A URL whose object is not there raises ``UnreadableFile`` (no such
    file); a store that cannot be used, a ``StorageError`` naming the URL.
    """
    if not is_url(path):
        return os.fspath(path)
    url = str(path)
    fs, where = filesystem(url)
    try:
        file = fs.open_input_file(where)  # one HEAD: the object's size
    except OSError as exc:
        raise storage_error(exc, url) from exc
    _count(1, 0)
    return _RangedRaw(file, url, read_ahead, read_ahead_max)  # type: ignore[return-value]


def input_size(path: str | os.PathLike[str]) -> int:
    """The size of ``path`` in bytes (a URL: its object's, one HEAD); ``UnreadableFile`` when it is missing or a
    folder, ``OSError`` as ``os.path.getsize`` raises it for a plain path."""
    if not is_url(path):
        return os.path.getsize(path)
    import pyarrow.fs as pafs
    url = str(path)
    fs, where = filesystem(url)
    try:
        info = fs.get_file_info(where)
    except OSError as exc:
        raise storage_error(exc, url) from exc
    if info.type == pafs.FileType.NotFound:
        raise UnreadableFile(url, "no such file")
    if info.type == pafs.FileType.Directory:
        raise UnreadableFile(url, "is a folder, not a file")
    return int(info.size or 0)
