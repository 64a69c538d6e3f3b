"""The disk cache's value files: one immutable file per value too large for the index.

A file is written whole in ``tmp/`` and renamed into ``blobs/``, so it appears
complete or not at all; its name, ``ab/<keyhash>-<token>.val``, is new for
every value, so a reader never sees a file change under it. A name of any other
shape (say, from a tampered index) is never opened or removed.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from ..outputs import output_error, write_output

__all__ = ["BlobFiles", "key_hash"]

_NAME_RE: Final = re.compile(r"[0-9a-f]{2}/[0-9a-f]{40}-[0-9a-f]{16}\.val\Z")
_ORPHAN_GRACE_S: Final = 60.0  # a file this young may be a set about to commit
_STALE_TMP_S: Final = 3600.0


def key_hash(key: str) -> str:
    """``key`` as 40 hex digits, for the names of its value files and its lock file."""
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=20).hexdigest()


class BlobFiles:
    """The value files under ``folder`` (``blobs/``), and ``tmp`` where they are written first.

    Files are named relative to ``folder``, as the index stores them. ``fsync``
    fsyncs each file and its folder before the file is published.
    """

    __slots__ = ("folder", "tmp", "fsync")

    def __init__(self, folder: Path, tmp: Path, *, fsync: bool) -> None:
        self.folder = folder
        self.tmp = tmp
        self.fsync = fsync

    def write(self, key: str, data: bytes) -> str:
        """Write ``data`` to a new, uniquely named file; return its name.

        Not ``outputs.atomic_output``: its partial file sits beside the final
        one, and sweeping those after a crash would mean walking every blob
        folder on open; ``tmp/`` is one small folder.
        """
        digest = key_hash(key)
        rel = f"{digest[:2]}/{digest}-{secrets.token_hex(8)}.val"
        final = self.folder / rel
        part = self.tmp / f"{os.getpid()}-{secrets.token_hex(8)}.part"
        try:
            try:
                f = open(part, "xb")
            except FileNotFoundError:
                self.tmp.mkdir(parents=True, exist_ok=True)
                f = open(part, "xb")
            with f:
                write_output(f, data, final)
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            try:
                os.replace(part, final)
            except FileNotFoundError:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(part, final)
            if self.fsync:
                _fsync_dir(final.parent)
        except OSError as exc:
            part.unlink(missing_ok=True)
            raise output_error("write a cache value under", self.folder, exc) from exc
        return rel

    def read(self, name: str) -> bytes | None:
        """The bytes of file ``name``: None if it is missing, empty if it cannot be read or is not ours."""
        if not _NAME_RE.match(name):  # a name we never write: refuse to follow it anywhere
            return b""
        try:
            with open(self.folder / name, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None
        except OSError:
            return b""

    def remove(self, name: str | None) -> None:
        """Delete file ``name`` if it is there (and a name we write)."""
        if name is not None and _NAME_RE.match(name):
            (self.folder / name).unlink(missing_ok=True)

    def remove_all(self, names: Iterable[str]) -> None:
        """Delete the files ``names`` that are there and ours, ignoring any that cannot be."""
        for name in names:
            if not _NAME_RE.match(name):
                continue
            try:
                (self.folder / name).unlink(missing_ok=True)
            except OSError:
                pass

    def discard_all(self, trash: Path) -> None:
        """Delete every file (moved to ``trash`` first, so the folder is empty at once) and remake the folder."""
        if self.folder.exists():
            os.replace(self.folder, trash)
            shutil.rmtree(trash, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)

    def sweep_tmp(self) -> None:
        """Remove partial files whose writer is dead (or that are over an hour old)."""
        try:
            names = os.listdir(self.tmp)
        except FileNotFoundError:
            return
        for name in names:
            part = self.tmp / name
            pid = name.split("-", 1)[0]
            try:
                stale = not _alive(int(pid)) or time.time() - part.stat().st_mtime > _STALE_TMP_S
            except (ValueError, OSError):
                stale = True
            if stale:
                part.unlink(missing_ok=True)

    def sweep_orphans(self, known: set[str]) -> int:
        """Remove files not in ``known`` (left by a writer killed between rename and commit); return how many.

        Files younger than a minute stay: they may belong to a write about to commit.
        """
        cutoff = time.time() - _ORPHAN_GRACE_S
        removed = 0
        try:
            folders = list(os.scandir(self.folder))
        except FileNotFoundError:
            return 0
        for folder in folders:
            if not folder.is_dir():
                continue
            for entry in os.scandir(folder.path):
                rel = f"{folder.name}/{entry.name}"
                try:
                    if rel not in known and entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
                except FileNotFoundError:
                    pass
        return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if sys.platform == "win32":  # os.kill would terminate it there; let age decide
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(folder: Path) -> None:
    if sys.platform == "win32":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
