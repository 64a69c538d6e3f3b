"""Input sources: the files a batch runs over."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

from .errors import UnreadableFile
from .items import FileItem

__all__ = ["FileSelection", "find_files", "file_items", "read_file_list"]


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


def read_file_list(source: str | os.PathLike[str]) -> list[Path]:
    """Paths listed one per line in a file (``-``: standard input); blank lines and ``#`` comments skipped."""
    if str(source) == "-":
        lines = sys.stdin.read().splitlines()
    else:
        try:
            lines = Path(source).read_text().splitlines()
        except OSError as exc:
            raise UnreadableFile(str(source), (exc.strerror or str(exc)).lower()) from exc
    return [Path(line.strip()) for line in lines if line.strip() and not line.lstrip().startswith("#")]


def find_files(root: str | os.PathLike[str], extensions: Iterable[str] | None = None, *,
               recursive: bool = True, include_hidden: bool = False, include: Iterable[str] = (),
               exclude: Iterable[str] = ()) -> list[Path]:
    """Files under ``root`` whose suffix is in ``extensions`` (case-insensitive), sorted by path.

    ``root`` may also be a single file, which is returned whatever its suffix.
    Directory symlinks are followed once: a link back to a folder already
    walked, or up to a folder that holds it, is skipped, so link loops end. ``include`` / ``exclude``: globs, as
    in :class:`FileSelection`.
    """
    selection = FileSelection(include=tuple(include), exclude=tuple(exclude))
    root_path = Path(root)
    if not root_path.exists():
        raise UnreadableFile(str(root_path), "no such file or folder")
    if root_path.is_file():
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
        dirnames[:] = [d for d in dirnames if not _links_to_ancestor(Path(dirpath) / d, here)]
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
            found.append(path)
    return sorted(found)


def _links_to_ancestor(path: Path, here: Path) -> bool:
    """Whether ``path`` is a symlink to ``here`` or a folder above it (following it would loop)."""
    if not path.is_symlink():
        return False
    target = path.resolve()
    return target == here or target in here.parents


def file_items(paths: Sequence[str | os.PathLike[str]], root: str | os.PathLike[str] | None = None) -> list[FileItem]:
    """Describe ``paths`` as numbered :class:`FileItem` s, relative to ``root`` when given."""
    items = []
    for i, p in enumerate(paths):
        items.append(FileItem.from_path(p, root, index=i))
    return items
