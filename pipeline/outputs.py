"""Atomic outputs: every file appears under its final name complete, or not at all.

Every byte framepipe writes itself (images, reports, WebVTT, cache values) goes through ``write_output``:
the one place where a test can make writes fail as a full or read-only disk would (``WRITE_FAULT_ENV``).
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from fnmatch import fnmatchcase
from pathlib import Path
from typing import BinaryIO

from .errors import DiskFull, OutputError, OutputNotWritable

__all__ = ["PartialOutput", "atomic_output", "write_atomic", "write_output", "sweep_partial_outputs", "safe_join",
           "check_writable", "output_error", "as_output_error", "WRITE_FAULT_ENV"]

WRITE_FAULT_ENV = "FRAMEPIPE_WRITE_FAULT"
"""A test hook, not a setting: ``ENOSPC`` (any errno name: ``EROFS``, ``EACCES``...) makes every
``write_output`` write half its bytes and then fail with that error; ``ENOSPC:GLOB`` only writes whose final
path matches ``GLOB`` (``fnmatch``: ``*`` also matches ``/``). Read at each write, in each process: worker
processes see the environment they were started with."""

_PART_MARK = ".fp-part"
_PART_RE = re.compile(r"^\..*\.\d+" + re.escape(_PART_MARK))
_PART_NAME = re.compile(r"^\.(?P<stem>.*)\.\d+" + re.escape(_PART_MARK) + r"(?P<suffix>.*)\Z")
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})  # only ever a write's errors
_NOT_OURS = frozenset({errno.EACCES, errno.EPERM})  # a write's errors when they name a part file


def _injected_fault(final: Path) -> OSError | None:
    spec = os.environ.get(WRITE_FAULT_ENV)
    if not spec:
        return None
    name, _, pattern = spec.partition(":")
    if pattern and not fnmatchcase(str(final), pattern):
        return None
    code = getattr(errno, name, errno.EIO)
    return OSError(code, os.strerror(code), str(final))


def write_output(f: BinaryIO, data: bytes, final: str | os.PathLike[str]) -> None:
    """Write all of ``data`` to ``f``, an open file that will become ``final`` (checked by ``WRITE_FAULT_ENV``)."""
    fault = _injected_fault(Path(final))
    if fault is not None:
        f.write(data[:len(data) // 2])
        f.flush()
        raise fault
    f.write(data)


def output_error(action: str, path: str | os.PathLike[str], exc: OSError) -> OutputError:
    """``OutputError`` for ``exc`` (``DiskFull``, ``OutputNotWritable`` when its errno says so): one clear line."""
    kind = DiskFull if exc.errno in (errno.ENOSPC, errno.EDQUOT) else \
        OutputNotWritable if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM) else OutputError
    error = kind(f"cannot {action} {path}: {exc.strerror or exc}")
    error.errno = exc.errno
    return error


def as_output_error(exc: BaseException) -> OutputError | None:
    """A writer's own ``OSError`` (an encoder's muxer on a full disk) as the ``OutputError`` that names the final
    file; None when ``exc`` is not a failed write (or is an ``OutputError`` already)."""
    if isinstance(exc, OutputError) or not isinstance(exc, OSError):
        return None
    name = os.fsdecode(exc.filename) if isinstance(exc.filename, (str, bytes, os.PathLike)) else None
    part = _PART_NAME.match(os.path.basename(name)) if name else None
    if exc.errno not in _NO_ROOM and not (exc.errno in _NOT_OURS and part):
        return None
    final = os.path.join(os.path.dirname(name), part["stem"] + part["suffix"]) if name and part else name
    return output_error("write", final or "an output", exc)


def _part_path(final: Path) -> Path:
    # Hidden, tagged with our pid, and keeping the suffix so that writers which
    # pick a format from the extension (FFmpeg muxers) still see it.
    return final.with_name(f".{final.stem}.{os.getpid()}{_PART_MARK}{final.suffix}")


class PartialOutput:
    """An output being written: a hidden ``part`` path that ``commit()`` renames to ``final``.

    For writers that span several calls (an encoder opened in one stage hook
    and closed in another); ``atomic_output`` wraps it for a single block.
    """

    __slots__ = ("final", "part")

    def __init__(self, final: str | os.PathLike[str]) -> None:
        self.final = Path(final)
        try:
            self.final.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise output_error("create output folder", self.final.parent, exc) from exc
        self.part = _part_path(self.final)

    def commit(self) -> Path:
        """Publish the finished file under its final name."""
        try:
            os.replace(self.part, self.final)
        except OSError as exc:
            raise output_error("publish", self.final, exc) from exc
        return self.final

    def discard(self) -> None:
        """Remove the unfinished file."""
        self.part.unlink(missing_ok=True)


@contextmanager
def atomic_output(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it to ``final`` when the block succeeds.

    On error the temporary file is removed and ``final`` is left as it was.
    """
    out = PartialOutput(final)
    try:
        yield out.part
    except BaseException:
        out.discard()
        raise
    out.commit()


def write_atomic(final: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``final`` atomically and return the final path."""
    with atomic_output(final) as part:
        try:
            with open(part, "wb") as f:
                write_output(f, data, final)
        except OSError as exc:
            raise output_error("write", final, exc) from exc
    return Path(final)


def check_writable(folder: str | os.PathLike[str]) -> None:
    """Raise ``OutputNotWritable`` (or another ``OutputError``) now if no file can be made in ``folder``."""
    probe = Path(folder) / f".framepipe-probe.{os.getpid()}{_PART_MARK}"  # swept like a part file if left
    try:
        with open(probe, "wb") as f:
            write_output(f, b"", probe)
    except OSError as exc:
        raise output_error("write in output folder", folder, exc) from exc
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass


def sweep_partial_outputs(root: str | os.PathLike[str]) -> int:
    """Remove partial files that an interrupted run left under ``root``; return how many."""
    removed = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if _PART_RE.match(name):
                try:
                    os.unlink(os.path.join(dirpath, name))
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed


def safe_join(root: str | os.PathLike[str], *parts: str) -> Path:
    """Join ``parts`` under ``root``, refusing any result that would land outside it."""
    base = Path(root).resolve()
    candidate = base.joinpath(*parts).resolve()
    if candidate != base and base not in candidate.parents:
        raise OutputError(f"output path {'/'.join(parts)!r} would land outside {base}")
    return candidate
