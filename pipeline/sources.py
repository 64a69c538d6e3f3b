"""Input sources: the files a batch runs over."""

from __future__ import annotations

import logging
import os
import select
import stat
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

from .dataplane.zerocopy import special_file_kind
from .errors import UnreadableFile
from .items import FileItem, readable
from .outputs import LEDGER_NAME, REPORT_NAME
from .storage.location import is_url

__all__ = ["FileSelection", "SkippedInput", "find_files", "file_items", "read_file_list", "is_output_folder",
           "report_skipped"]

log = logging.getLogger("framepipe.sources")

# The lock that marks a folder as a framepipe output folder, beside the ledger and report (``outputs``): run.LOCK_NAME,
# spelled here (the walk must not import the run machinery; a test holds them equal).
_LOCK_NAME = ".framepipe.lock"
_LEDGER_START = b'{"v": '  # every ledger line framepipe writes starts so (json.dumps of a dict led by "v")


@dataclass(frozen=True, slots=True)
class FileSelection:
    """Which files a folder walk takes.

    ``include`` / ``exclude`` are globs (``*``, ``?``, ``[...]``; ``*`` also
    crosses folders) matched against the path relative to the folder, or the
    file name alone: ``"*.mov"``, ``"day1/*"``, ``"*_proxy.*"``. With
    ``include``, a file must match one; a file that matches an ``exclude`` is
    left out. Hidden files and folders (a leading dot) are skipped unless
    ``hidden``.
    """

    extensions: tuple[str, ...] | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    recursive: bool = True
    hidden: bool = False

    def takes(self, relpath: str) -> bool:
        """Whether the include and exclude globs let ``relpath`` (POSIX, relative to the folder) through."""
        name = PurePosixPath(relpath).name
        def hit(globs: tuple[str, ...]) -> bool:
            return any(fnmatchcase(relpath, g) or fnmatchcase(name, g) for g in globs)
        return (not self.include or hit(self.include)) and not hit(self.exclude)


@dataclass(frozen=True, slots=True)
class SkippedInput:
    """A path an input walk or list met and left out, and why.

    Two reasons: a FIFO, socket or device node (also through a link), which is
    never opened (reading one blocks or never ends); and a path in the run's
    own output folder (outputs are never inputs).
    """

    path: str
    reason: str

    def __str__(self) -> str:
        return f"skipped {readable(self.path)}: {self.reason}"


def report_skipped(skipped: Iterable[SkippedInput]) -> None:
    """Log each skipped input as a warning (``skipped x.mp4: not a regular file (FIFO)``).

    The records are marked as echoed: the ``framepipe`` command prints these
    lines itself, so its console handler leaves them out at the default level.
    """
    for entry in skipped:
        log.warning("%s", entry, extra={"file": readable(entry.path), "reason": entry.reason, "_echoed": True})


def is_output_folder(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` is a framepipe output folder: it holds the lock a run keeps there (``.framepipe.lock``),
    or a run ledger (``ledger.jsonl``) that reads as one or sits beside a ``report.parquet``.

    Only names are looked at (``lstat``), and a ledger's first bytes when it is a regular file: nothing that
    could block is opened.
    """
    base = os.fspath(folder)
    try:
        os.lstat(os.path.join(base, _LOCK_NAME))
        return True
    except OSError:
        pass
    ledger = os.path.join(base, LEDGER_NAME)
    try:
        if not stat.S_ISREG(os.lstat(ledger).st_mode):
            return False
    except OSError:
        return False
    if os.path.lexists(os.path.join(base, REPORT_NAME)):
        return True
    try:
        fd = os.open(ledger, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False
    try:
        return os.read(fd, len(_LEDGER_START)) == _LEDGER_START
    except OSError:
        return False
    finally:
        os.close(fd)


def _real(path: str | os.PathLike[str]) -> Path:
    """``path`` with every link resolved, as far as it resolves (a link loop raises nothing: the stage says why)."""
    return Path(os.path.realpath(path))


def _within(path: Path, folders: Iterable[Path]) -> Path | None:
    """The first of ``folders`` (resolved) that ``path`` (resolved) is or lies in; None when none."""
    for folder in folders:
        if path == folder or folder in path.parents:
            return folder
    return None


def _special_kind(path: Path) -> str | None:
    """What ``path`` is (links followed) when it is a FIFO, socket or device node; None otherwise (a regular
    file, a folder, or a name that cannot be stat'ed: the stage that opens it says why)."""
    try:
        return special_file_kind(os.stat(path).st_mode)
    except (OSError, ValueError):
        return None


_WAKE_S = 0.2  # how often a read of a list from a pipe wakes, to let a signal's handler run


def _read_waking(fd: int) -> str:
    """All of ``fd`` (a pipe, a FIFO, a terminal) as text, waking every ``_WAKE_S``.

    A read blocked in the kernel is interrupted only by a signal delivered to
    its own thread; the OS may give SIGTERM to another of the process's
    threads, and then the handler would wait for the list's writer forever.
    Waking now and then lets the main thread run the handler.
    """
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([fd], [], [], _WAKE_S)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            continue
        if not chunk:
            return b"".join(chunks).decode("utf-8", "surrogateescape")
        chunks.append(chunk)


def read_file_list(source: str | os.PathLike[str]) -> list[Path]:
    """Paths listed one per line in a file (``-``: standard input); blank lines and ``#`` comments skipped.

    A URL (``s3://bucket/key``) is listed as it is: a ``str``, not a ``Path`` (which would fold its ``//``).
    """
    if str(source) == "-":
        fd = sys.stdin.fileno()
        lines = (_read_waking(fd) if not stat.S_ISREG(os.fstat(fd).st_mode) else sys.stdin.read()).splitlines()
    else:
        try:
            if stat.S_ISFIFO(os.stat(source).st_mode):  # --files-from <(find ...): opened without waiting for a writer
                fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK)
                try:
                    lines = _read_waking(fd).splitlines()
                finally:
                    os.close(fd)
            else:
                lines = Path(source).read_text().splitlines()
        except OSError as exc:
            raise UnreadableFile(str(source), (exc.strerror or str(exc)).lower()) from exc
    listed = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [line if is_url(line) else Path(line) for line in listed]  # type: ignore[misc]


def find_files(root: str | os.PathLike[str], extensions: Iterable[str] | None = None, *,
               recursive: bool = True, include_hidden: bool = False, include: Iterable[str] = (),
               exclude: Iterable[str] = (), skip_dirs: Iterable[str | os.PathLike[str]] = (),
               skipped: list[SkippedInput] | None = None) -> list[Path]:
    """Files under ``root`` whose suffix is in ``extensions`` (case-insensitive), sorted by path.

    ``root`` may also be a single file, which is returned whatever its suffix.
    Directory symlinks are followed once: a link back to a folder already
    walked, or up to a folder that holds it, is skipped, so link loops end. ``include`` / ``exclude``: globs, as
    in :class:`FileSelection`.

    Only regular files are taken: a FIFO, socket or device node (or a link to
    one, such as ``/dev/zero``) is stat'ed, never opened, and left out as a
    :class:`SkippedInput` (``not a regular file (FIFO)``). Outputs are never
    inputs: a sub-folder that is a framepipe output folder (``is_output_folder``)
    is not walked, nor anything in ``skip_dirs`` (the run's own output folder,
    compared by resolved path, so even before its first run), which is left out
    as a ``SkippedInput`` when it is ``root`` or in it. What is left out is
    appended to ``skipped``; without that list it is logged (``report_skipped``).
    """
    notes: list[SkippedInput] = []
    found = _find_files(Path(root), extensions, recursive, include_hidden, tuple(include), tuple(exclude),
                        [_real(d) for d in skip_dirs], notes)
    if skipped is None:
        report_skipped(notes)
    else:
        skipped += notes
    return found


def _find_files(root_path: Path, extensions: Iterable[str] | None, recursive: bool, include_hidden: bool,
                include: tuple[str, ...], exclude: tuple[str, ...], avoid: list[Path],
                notes: list[SkippedInput]) -> list[Path]:
    selection = FileSelection(include=include, exclude=exclude)
    if not root_path.exists():
        raise UnreadableFile(str(root_path), "no such file or folder")
    if _within(_real(root_path), avoid):
        what = "the output folder" if _real(root_path) in avoid else "in the output folder"
        notes.append(SkippedInput(str(root_path), f"{what} (outputs are never inputs)"))
        return []
    if not root_path.is_dir():  # a file is taken whatever its suffix, when it is a regular file
        kind = _special_kind(root_path)
        if kind is not None:
            notes.append(SkippedInput(str(root_path), f"not a regular file ({kind})"))
            return []
        return [root_path]
    exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions} if extensions else None
    found: list[Path] = []
    seen_dirs: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root_path, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen_dirs:
            dirnames[:] = []
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        if not include_hidden:
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        here = Path(dirpath).resolve()
        dirnames[:] = [d for d in dirnames if not _links_to_ancestor(Path(dirpath) / d, here)
                       and not _is_outputs(Path(dirpath) / d, avoid)]
        if not recursive:
            dirnames[:] = []
        dirnames.sort()
        for name in sorted(filenames):
            if not include_hidden and name.startswith("."):
                continue
            if exts is not None and os.path.splitext(name)[1].lower() not in exts:
                continue
            path = Path(dirpath) / name
            if not selection.takes(path.relative_to(root_path).as_posix()):
                continue
            kind = _special_kind(path)  # stat'ed, never opened: opening a FIFO waits for a writer
            if kind is not None:
                notes.append(SkippedInput(str(path), f"not a regular file ({kind})"))
                continue
            if avoid and path.is_symlink() and _within(_real(path), avoid):
                notes.append(SkippedInput(str(path), "in the output folder (outputs are never inputs)"))
                continue
            found.append(path)
    notes.sort(key=lambda n: n.path)
    return sorted(found)


def _is_outputs(folder: Path, avoid: list[Path]) -> bool:
    """Whether the walk must not enter ``folder``: it is (or lies in) one of ``avoid``, or is a framepipe output
    folder."""
    if _within(_real(folder), avoid) or is_output_folder(folder):
        log.debug("not walked: %s holds framepipe outputs", folder, extra={"folder": readable(str(folder))})
        return True
    return False


def _links_to_ancestor(path: Path, here: Path) -> bool:
    """Whether ``path`` is a symlink to ``here`` or a folder above it (following it would loop)."""
    if not path.is_symlink():
        return False
    target = path.resolve()
    return target == here or target in here.parents


def file_items(paths: Sequence[str | os.PathLike[str]], root: str | os.PathLike[str] | None = None, *,
               identify: bool = True) -> list[FileItem]:
    """Describe ``paths`` as numbered :class:`FileItem` s, relative to ``root`` when given (``identify=False``:
    without their fingerprints)."""
    items = []
    for i, p in enumerate(paths):
        items.append(FileItem.from_path(p, root, index=i, identify=identify))
    return items
