"""Atomic outputs: every file appears under its final name complete, or not at all."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputError

__all__ = ["PartialOutput", "atomic_output", "write_atomic", "sweep_partial_outputs", "safe_join"]

_PART_MARK = ".fp-part"
_PART_RE = re.compile(r"^\..*\.\d+" + re.escape(_PART_MARK))


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
            raise OutputError(f"cannot create output folder {self.final.parent}: {exc.strerror}") from exc
        self.part = _part_path(self.final)

    def commit(self) -> Path:
        """Publish the finished file under its final name."""
        try:
            os.replace(self.part, self.final)
        except OSError as exc:
            raise OutputError(f"cannot publish {self.final}: {exc.strerror}") from exc
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
            part.write_bytes(data)
        except OSError as exc:
            raise OutputError(f"cannot write {final}: {exc.strerror}") from exc
    return Path(final)


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
