"""Input sources: the files a batch runs over."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from .errors import UnreadableFile
from .items import FileItem

__all__ = ["find_files", "file_items"]


def find_files(root: str | os.PathLike[str], extensions: Iterable[str] | None = None, *,
               recursive: bool = True, include_hidden: bool = False) -> list[Path]:
    """Files under ``root`` whose suffix is in ``extensions`` (case-insensitive), sorted by path.

    ``root`` may also be a single file, which is returned whatever its suffix.
    Directory symlinks are followed once: a link back to a folder already
    walked is skipped, so link loops end.
    """
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
        if not recursive:
            dirnames[:] = []
        dirnames.sort()
        for name in sorted(filenames):
            if not include_hidden and name.startswith("."):
                continue
            if exts is not None and os.path.splitext(name)[1].lower() not in exts:
                continue
            found.append(Path(dirpath) / name)
    return sorted(found)


def file_items(paths: Sequence[str | os.PathLike[str]], root: str | os.PathLike[str] | None = None) -> list[FileItem]:
    """Describe ``paths`` as numbered :class:`FileItem` s, relative to ``root`` when given."""
    items = []
    for i, p in enumerate(paths):
        items.append(FileItem.from_path(p, root, index=i))
    return items
