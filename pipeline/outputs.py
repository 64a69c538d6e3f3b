"""Atomic outputs: every file appears under its final name complete, or not at all.

Every byte framepipe writes itself (images, reports, WebVTT, cache values) goes through ``write_output``:
the one place where a test can make writes fail as a full or read-only disk would (``WRITE_FAULT_ENV``).

A file is written under a hidden part name next to its final one, ``.<stem>.<pid>.fp-part<suffix>``,
and renamed when complete. Names are at most ``NAME_MAX`` bytes: ``fit_name`` is the one place that
shortens a name (cut, ending in ``~<hash of the whole name>`` before its suffix), used for part names
and by stages whose final names are made longer than their input's (an encoder's ``<file key>.mp4``).
A final name that does not fit fails its file with one line (``cannot write …: its name is N bytes…``).

Files are made in OUT, a folder the user (or someone else) may write in too, so a name framepipe creates is
never opened through a link: a part file is created new (``O_CREAT | O_EXCL | O_NOFOLLOW``) before anyone
writes it, and a symbolic link planted at a name is ``OutputIsLink``, its target left alone. A final name
is only ever renamed onto, which replaces a link there instead of following it.
"""

from __future__ import annotations

import codecs
import errno
import hashlib
import os
import re
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from fnmatch import fnmatchcase
from pathlib import Path
from typing import BinaryIO

from .errors import DiskFull, OutputError, OutputIsLink, OutputNotWritable

__all__ = ["PartialOutput", "atomic_output", "write_atomic", "write_output", "sweep_partial_outputs", "safe_join",
           "check_writable", "output_error", "as_output_error", "fit_name", "no_follow", "create_new",
           "NAME_MAX", "WRITE_FAULT_ENV", "LEDGER_NAME", "REPORT_NAME"]

LEDGER_NAME = "ledger.jsonl"
"""The run ledger in OUT (``bookkeeping.ledger``); with ``REPORT_NAME`` beside it, what marks a folder or a prefix
as a framepipe output folder (``sources.is_output_folder``, ``storage.objects``)."""
REPORT_NAME = "report.parquet"
"""The run's report in OUT (``observe.report``)."""

NAME_MAX = 255
"""The bytes a file name may have on Linux file systems (ext4, XFS, Btrfs, tmpfs); macOS allows 255 characters."""

WRITE_FAULT_ENV = "FRAMEPIPE_WRITE_FAULT"
"""A test hook, not a setting: ``ENOSPC`` (any errno name: ``EROFS``, ``EACCES``...) makes every
``write_output`` write half its bytes and then fail with that error; ``ENOSPC:GLOB`` only writes whose final
path matches ``GLOB`` (``fnmatch``: ``*`` also matches ``/``). Read at each write, in each process: worker
processes see the environment they were started with."""

_PART_MARK = ".fp-part"
_PART_RE = re.compile(r"^\..*\.\d+" + re.escape(_PART_MARK), re.S)  # re.S: a name may hold a newline
_PART_NAME = re.compile(r"^\.(?P<stem>.*)\.\d+" + re.escape(_PART_MARK) + r"(?P<suffix>.*)\Z", re.S)
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})  # only ever a write's errors
_NOT_OURS = frozenset({errno.EACCES, errno.EPERM, errno.ENAMETOOLONG})  # a write's errors when they name a part file
_SUFFIX_MAX = 16  # bytes of a suffix that shortening keeps (".mp4"); a longer "suffix" is cut with the rest
_HASH_BYTES = 4  # a cut name ends in "~" and this hash of the whole name as 8 hex digits
_SHORTENED_KEPT = 256  # this process's latest cut part names, far more than it has open at once
_shortened: OrderedDict[str, Path] = OrderedDict()  # part path -> final path, for part names cut to fit
_SEALED_KEPT = 4096  # this process's latest write_atomic digests, far more than one file's outputs
_sealed: OrderedDict[tuple[int, int, int, int], str] = OrderedDict()  # (dev, inode, size, mtime) -> digest


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


def no_follow(path: str | os.PathLike[str], flags: int, mode: int = 0o666) -> int:
    """``os.open`` that never follows a symbolic link at ``path`` (an ``opener`` for ``open()``, too).

    A link there raises ``OutputIsLink`` (``PATH is a symbolic link (refusing to follow it)``), and nothing is
    created, neither the link's target nor the file a dangling link names.
    """
    try:
        return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), mode)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EEXIST, errno.EMLINK) and os.path.islink(path):
            raise OutputIsLink(f"{os.fsdecode(path)} is a symbolic link (refusing to follow it)", path) from exc
        raise


def create_new(path: str | os.PathLike[str]) -> int:
    """Create ``path`` as a new empty file of our own and return a descriptor open for writing on it.

    ``O_EXCL | O_NOFOLLOW``: never a file reached through a link (``OutputIsLink``), never one that another name
    shares (a hard link planted at it). A regular file already there (a part file of a dead process that had
    our pid) is removed first: the name is ours.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        return no_follow(path, flags)
    except FileExistsError:
        os.unlink(path)  # unlink removes the name, never what it points to
        return no_follow(path, flags)


def output_error(action: str, path: str | os.PathLike[str], exc: OSError) -> OutputError:
    """``OutputError`` for ``exc`` (``DiskFull``, ``OutputNotWritable`` when its errno says so): one clear line."""
    kind = OutputIsLink if isinstance(exc, OutputIsLink) else \
        DiskFull if exc.errno in (errno.ENOSPC, errno.EDQUOT) else \
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
    final: str | Path | None = _shortened.get(name) if name else None  # a cut part name cannot say it: noted
    if final is None and name and part:
        final = os.path.join(os.path.dirname(name), part["stem"] + part["suffix"])
    return output_error("write", final or name or "an output", exc)


def _split_suffix(name: str) -> tuple[str, str]:
    """``name`` as (stem, suffix) the way shortening sees it: a suffix over ``_SUFFIX_MAX`` bytes is no suffix."""
    suffix = Path(name).suffix
    if len(os.fsencode(suffix)) > _SUFFIX_MAX:
        return name, ""
    return name[:len(name) - len(suffix)], suffix


def fit_name(name: str, limit: int = NAME_MAX) -> str:
    """``name`` when it has at most ``limit`` bytes; else cut to fit, ending in ``~<hash of the whole name>``
    before its suffix (which stays: writers that pick a format from it still see it).

    The cut never ends inside a UTF-8 character; different long names keep different short ones.
    """
    raw = os.fsencode(name)
    if len(raw) <= limit:
        return name
    stem, suffix = _split_suffix(name)
    digest = hashlib.blake2b(raw, digest_size=_HASH_BYTES).hexdigest()
    room = limit - len(os.fsencode(suffix)) - len(digest) - 1
    # Decoded incrementally, a character cut in half stays in the decoder: the text ends before it.
    keep = codecs.getincrementaldecoder("utf-8")("surrogateescape").decode(os.fsencode(stem)[:max(room, 0)],
                                                                             final=False)
    return f"{keep}~{digest}{suffix}"


def _part_path(final: Path) -> Path:
    # Hidden, tagged with our pid, and keeping the suffix so that writers which
    # pick a format from the extension (FFmpeg muxers) still see it. A final
    # name too long to leave room for the rest is cut (fit_name): the part
    # name still matches _PART_RE, so a sweep finds it.
    tag = f".{os.getpid()}{_PART_MARK}"
    stem, suffix = _split_suffix(fit_name(final.name, NAME_MAX - 1 - len(tag)))
    part = final.with_name(f".{stem}{tag}{suffix}")
    if stem + suffix != final.name:
        _shortened[str(part)] = final
        while len(_shortened) > _SHORTENED_KEPT:
            _shortened.popitem(last=False)
    return part


class PartialOutput:
    """An output being written: a hidden ``part`` path that ``commit()`` renames to ``final``.

    For writers that span several calls (an encoder opened in one stage hook
    and closed in another); ``atomic_output`` wraps it for a single block.

    The part file exists, empty, once this is made: created new here, never
    through a link (``create_new``; a link planted at its name is
    ``OutputIsLink``). A writer that opens ``part`` by name afterwards (PyAV's
    ``av.open(part, "w")``, Pillow) opens that file: the name holds our pid and
    is swept at each run's start, so only someone writing in OUT during the
    run, between those two opens, could put a link there.
    """

    __slots__ = ("final", "part")

    def __init__(self, final: str | os.PathLike[str]) -> None:
        self.final = Path(final)
        size = len(os.fsencode(self.final.name))
        if size > NAME_MAX:
            raise output_error("write", self.final, OSError(
                errno.ENAMETOOLONG, f"its name is {size} bytes, more than the {NAME_MAX} a file name may have"))
        try:
            self.final.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise output_error("create output folder", self.final.parent, exc) from exc
        self.part = _part_path(self.final)
        try:
            os.close(create_new(self.part))
        except OSError as exc:
            raise output_error("write", self.final, exc) from exc

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
    """Write ``data`` to ``final`` atomically and durably (fsync'd before the rename) and return the final path.

    The digest of ``data`` is noted (``sealed_digest``), so sealing the output later reads nothing back.
    """
    with atomic_output(final) as part:
        try:
            with open(part, "wb", opener=no_follow) as f:  # the part atomic_output created, never a link
                write_output(f, data, final)
                f.flush()
                os.fsync(f.fileno())
                st = os.fstat(f.fileno())
        except OSError as exc:
            raise output_error("write", final, exc) from exc
    digest = new_digest()
    digest.update(data)
    _sealed[_identity(st)] = digest.hexdigest()
    while len(_sealed) > _SEALED_KEPT:
        _sealed.popitem(last=False)
    return Path(final)


def new_digest() -> hashlib.blake2b:
    """The hash that names an output's bytes in the run ledger (BLAKE2b, 128 bits)."""
    return hashlib.blake2b(digest_size=16)


def sealed_digest(st: os.stat_result) -> str | None:
    """The digest of a file this process wrote with ``write_atomic`` and fsync'd, if ``st`` (its ``lstat``) is
    that file unchanged since (same inode, size and mtime); else None."""
    return _sealed.get(_identity(st))


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def check_writable(folder: str | os.PathLike[str]) -> None:
    """Raise ``OutputNotWritable`` (or another ``OutputError``) now if no file can be made in ``folder``."""
    probe = Path(folder) / f".framepipe-probe.{os.getpid()}{_PART_MARK}"  # swept like a part file if left
    made = False
    try:
        with open(create_new(probe), "wb") as f:  # new, never through a link planted at its name
            made = True
            write_output(f, b"", probe)
    except OSError as exc:
        raise output_error("write in output folder", folder, exc) from exc
    finally:
        try:
            if made:
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
