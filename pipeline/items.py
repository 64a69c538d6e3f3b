"""Items that travel between stages, and the kinds that route them.

An item is any object with a ``kind`` string; an edge of the graph carries
the kinds that its upstream stage emits and its downstream stage accepts.
Items stay small: pixels travel as handles, never inside an item. An item
that holds pixels in its own process (a decoded frame) is a ``SharedItem``:
the engine moves its pixels into a slot before it crosses to another one.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeGuard, runtime_checkable

from .dataplane.zerocopy import MappedFile, special_file_kind
from .errors import UnreadableFile
from .storage.location import is_url

if TYPE_CHECKING:
    from .dataplane.buffers import FrameRef

__all__ = ["FILE", "FRAME", "AUDIO", "FileItem", "SharedItem", "is_shareable", "slot_of", "fingerprint", "readable"]

FILE: Final = "file"
"""Kind of a :class:`FileItem`: one input file."""
FRAME: Final = "frame"
"""Kind of a decoded picture."""
AUDIO: Final = "audio"
"""Kind of a block of decoded audio samples."""

_FINGERPRINT_CHUNK = 1 << 20


@runtime_checkable
class SharedItem(Protocol):
    """An item whose pixels cross processes in a shared-memory slot, never pickled (``stages``' frames).

    The engine asks ``shared_nbytes()`` how big a slot the item needs (0: its pixels are in a slot already, it
    may cross as it is), grants one at least that big, and sends on what ``to_shared(slot)`` returns: the same
    item with its pixels copied into the slot and nothing of its own process left in it. ``ref`` is the slot
    its pixels are in now (None while they are in its own process); the engine counts and frees slots by it.
    Checked with ``isinstance(item, SharedItem)`` (``is_shareable`` on the hot path); an item that is not one
    crosses pickled, as it is.
    """

    ref: FrameRef | None

    def shared_nbytes(self) -> int:
        """Bytes of slot the item needs to cross (0: none, it is in a slot already)."""
        ...

    def to_shared(self, slot: FrameRef) -> SharedItem:
        """The item with its pixels in ``slot``, ready to cross."""
        ...


_SHAREABLE_TYPES: dict[type, bool] = {}


def is_shareable(item: Any) -> TypeGuard[SharedItem]:
    """``isinstance(item, SharedItem)``, answered once per type of item.

    The engine asks it of every frame bound for a map stage; a runtime protocol check costs 10-16 µs on
    Python 3.11 (it looks each method up), a dict lookup well under one.
    """
    kind = type(item)
    found = _SHAREABLE_TYPES.get(kind)
    if found is None:
        found = _SHAREABLE_TYPES[kind] = isinstance(item, SharedItem)
    return found


def slot_of(item: Any) -> FrameRef | None:
    """The slot a shared item's pixels are in now; None for an item that is not a ``SharedItem`` or not in one."""
    return item.ref if is_shareable(item) else None


def readable(text: str) -> str:
    """``text`` as valid Unicode: bytes of a file name that are not UTF-8 shown as ``\\xff``.

    Python keeps such bytes as lone surrogates (``os.fsdecode``); they round-trip
    to the file system but cannot be written as UTF-8 (Parquet, JSON, a terminal).
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # surrogates that did not come from a file name
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def fingerprint(path: str | os.PathLike[str], size: int, mtime_ns: int) -> str:
    """A cheap identity of a file's content: size, mtime and a hash of its first and last MiB.

    ``path`` must be a regular file: a FIFO, socket or device raises ``UnreadableFile`` and is never opened.
    A URL's object is identified by its size, ETag and version instead (one HEAD; ``storage.objects``).
    """
    if is_url(path):
        from .storage.objects import object_fingerprint
        return object_fingerprint(str(path))[0]
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{size}:{mtime_ns}".encode())
    with MappedFile(path) as f:  # hashed straight from the page cache, no copy
        head = f.view(0, _FINGERPRINT_CHUNK)
        digest.update(head)
        head.release()
        if f.size > 2 * _FINGERPRINT_CHUNK:
            tail = f.view(f.size - _FINGERPRINT_CHUNK)
            digest.update(tail)
            tail.release()
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class FileItem:
    """One input file: where it is, its name relative to the input root, and its identity."""

    path: str
    relpath: str
    size: int = 0
    mtime_ns: int = 0
    fingerprint: str = ""
    index: int = 0
    kind: str = field(default=FILE, init=False)

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None,
                  index: int = 0, *, identify: bool = True) -> FileItem:
        """Stat a file and describe it; ``relpath`` is relative to ``root`` (or the bare name).

        A path that cannot be stat'ed (a dangling link, a link loop) is still
        described, with no size and no fingerprint: the stage that opens it
        reports why, and the batch goes on. A FIFO, socket or device node
        (a link to ``/dev/zero``) raises ``UnreadableFile`` (``not a regular
        file (FIFO)``) without being opened: reading one would block or never end.
        ``identify=False`` leaves the fingerprint out (a listing that only counts the files reads none of them).
        """
        p = Path(path)
        rel = p.relative_to(root).as_posix() if root is not None else p.name
        try:
            st = p.stat()
        except OSError:
            return cls(str(p), rel, index=index)
        kind = special_file_kind(st.st_mode)
        if kind is not None:
            raise UnreadableFile(str(p), f"not a regular file ({kind})")
        try:
            fp = fingerprint(p, st.st_size, st.st_mtime_ns) if identify else ""
        except OSError:  # unreadable or not a file: the stage that opens it reports why
            fp = ""
        return cls(str(p), rel, st.st_size, st.st_mtime_ns, fp, index)

    @property
    def name(self) -> str:
        """The file's base name."""
        return os.path.basename(self.path)
