"""``OutputStaging``: a file's outputs are written aside and appear in OUT together, with its ledger line.

While a file runs, its stages write into ``OUT/.framepipe-staging/<n>/`` (the same relative names they will
have in OUT). When the file ends, the worker *seals* what it lists as outputs: each is hashed (BLAKE2b) and
fsync'd. The run then *publishes* them: each is renamed to its final name, the folders that gained a name
are fsync'd, outputs that an earlier version of the file produced and this one does not are removed, and
only then is the file's ledger line written. An interrupt at any point leaves nothing of an unfinished
file under a final name: its staging folder is swept at the next start (and at the end of every run).

With OUT on object storage (``FileTask.remote_out``; ``storage.mirror`` draws the whole run) no folder is shared
between the nodes and the run: the staging folder is made on the node that runs the file, and the worker, once
it has sealed the outputs, *ships* them (``ship_outputs``): each is put at its final URL, where it appears only
once whole, and the local copies are removed. The run's publish then finds them in place and writes the ledger
line. A failed file's outputs are not shipped (its staging folder is removed).

Why hash after the write rather than while writing: an encoder's muxer seeks back (an MP4's index is
written last, into space it reserved), so bytes seen in write order are not the file's bytes. The read
comes from the page cache a moment after the write.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import OutputError
from ..outputs import new_digest, output_error, safe_join, sealed_digest

if TYPE_CHECKING:
    from ..stage import FileRun

__all__ = ["STAGING_NAME", "OutputStaging", "final_names", "output_digest", "remove_local_outputs", "remove_stale",
           "seal_outputs", "ship_outputs", "sweep_staging"]

STAGING_NAME = ".framepipe-staging"
"""The hidden folder in OUT that holds the outputs of files still running."""

def output_digest(path: str | os.PathLike[str]) -> str:
    """The digest of a file's bytes (``outputs.new_digest``, hex); a symbolic link is refused (``ELOOP``), never
    followed."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    with open(fd, "rb") as f:
        return hashlib.file_digest(f, new_digest).hexdigest()


def seal_outputs(folder: str | os.PathLike[str], outputs: Iterable[str]) -> dict[str, str]:
    """Hash and fsync each output (relative to ``folder``); returns ``{relpath: digest}``.

    An output that ``write_atomic`` wrote in this process (hashed as written, fsync'd) is not read again;
    any other (an encoder's) is read back once. Raises ``OutputError`` naming the output when it cannot be
    read back or made durable (a full disk's delayed write error surfaces at fsync).
    """
    digests: dict[str, str] = {}
    for rel in outputs:
        path = os.path.join(folder, rel)
        try:
            known = sealed_digest(os.lstat(path))
            if known is not None:
                digests[rel] = known
                continue
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
            with open(fd, "rb") as f:
                digest = hashlib.file_digest(f, new_digest)
                os.fsync(f.fileno())
        except OSError as exc:
            raise output_error("write", rel, exc) from exc
        digests[rel] = digest.hexdigest()
    return digests


def ship_outputs(run: FileRun) -> dict[str, int]:
    """Put each sealed output of ``run`` at its URL under ``run.publish_to`` and remove the local copies; returns
    ``{relpath: size}`` (nothing to do, ``{}``, when OUT is a local folder).

    Raises ``StorageError`` naming the output's URL when one cannot be put (the file fails; what was put before
    it stays, unlisted by any ledger line, and is put again when the file runs again).
    """
    if run.publish_to is None:
        return {}
    from ..storage.location import join_inside
    from ..storage.objects import put_file
    sizes: dict[str, int] = {}
    for rel in dict.fromkeys(run.outputs):
        url = join_inside(run.publish_to, rel)  # OutputError when it would land outside OUT
        sizes[rel] = put_file(os.path.join(run.out_dir, rel), url)
    remove_local_outputs(run)
    return sizes


def remove_local_outputs(run: FileRun) -> None:
    """Remove the staging folder ``run`` wrote into (a remote OUT's outputs, put or given up)."""
    folder = Path(run.out_dir)
    if folder.parent.name == STAGING_NAME:
        shutil.rmtree(folder, ignore_errors=True)


def final_names(text: str, folder: str | os.PathLike[str]) -> str:
    """``text`` (an error) with paths inside the staging ``folder`` shown as the final paths they stand for."""
    here = Path(folder)
    if here.parent.name != STAGING_NAME:
        return text
    for staged in dict.fromkeys((here.resolve(), here.absolute(), here)):
        text = text.replace(f"{staged}{os.sep}", f"{staged.parent.parent}{os.sep}")
    return text


def sweep_staging(out_dir: str | os.PathLike[str]) -> None:
    """Remove every staging folder in ``out_dir`` (outputs of files that did not finish)."""
    shutil.rmtree(Path(out_dir) / STAGING_NAME, ignore_errors=True)


@dataclass(frozen=True, slots=True)
class OutputStaging:
    """Where one file's outputs wait (``folder``) until they are published into ``out_dir``."""

    out_dir: Path
    folder: Path

    @classmethod
    def for_file(cls, out_dir: str | os.PathLike[str], index: int) -> OutputStaging:
        out = Path(out_dir)
        return cls(out, out / STAGING_NAME / str(index))

    def clear(self) -> Path:
        """Empty the staging folder for a new attempt at the file (a killed attempt may have left files) and
        return it."""
        shutil.rmtree(self.folder, ignore_errors=True)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise output_error("create output folder", self.folder, exc) from exc
        return self.folder

    def publish(self, outputs: Iterable[str], digests: Mapping[str, str]) -> dict[str, list[int | str]]:
        """Move the sealed ``outputs`` to their final names and make the renames durable; returns
        ``{relpath: [size, digest]}`` for the ledger.

        An output with no digest (not sealed) or missing from staging is an ``OutputError``; outputs moved
        before it stay (they are whole, and the file runs again since no ledger line names them).
        """
        published: dict[str, list[int | str]] = {}
        folders: set[Path] = set()  # to fsync: those that gained a name
        root = self.out_dir.resolve()
        ready: dict[str, Path] = {}  # an output's folder (relative) -> that folder in OUT, checked and made
        for rel in outputs:
            if rel in published:
                continue
            digest = digests.get(rel)
            src = self.folder / rel
            where, _, name = rel.rpartition("/")
            folder = ready.get(where)
            if folder is None:
                folder = ready[where] = _final_folder(root, rel)  # an OutputError naming it when it leaves OUT
                try:
                    folders.update(_make_parents(folder, root))
                except OSError as exc:
                    raise output_error("create output folder", folder, exc) from exc
            dst = folder / name
            try:
                if digest is None:
                    raise OSError(errno.ENOENT, "the worker did not seal it", str(src))
                if name in ("", ".", ".."):
                    raise OSError(errno.EINVAL, "not a file name", rel)
                size = os.stat(src, follow_symlinks=False).st_size
                os.replace(src, dst)
            except OSError as exc:
                raise output_error("publish", dst, exc) from exc
            folders.add(folder)
            published[rel] = [size, digest]
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            _fsync_dir(folder)
        shutil.rmtree(self.folder, ignore_errors=True)
        return published


def remove_stale(out_dir: str | os.PathLike[str], earlier: Iterable[str], now: Iterable[str]) -> list[str]:
    """Remove the outputs in ``earlier`` (relative to ``out_dir``) that are not in ``now``; returns those removed.

    A name that would leave ``out_dir`` is ignored; a link is removed as a link (never followed).
    """
    keep = set(now)
    removed = []
    for rel in earlier:
        if rel in keep:
            continue
        try:
            path = _final_path(Path(out_dir).resolve(), rel)
            os.unlink(path)
        except (OSError, ValueError):
            continue
        removed.append(rel)
        _remove_empty_parents(path.parent, Path(out_dir).resolve())
    return removed


def _final_folder(root: Path, rel: str) -> Path:
    """The folder of output ``rel`` in ``root``, its links resolved and checked to stay inside ``root``."""
    try:
        return safe_join(root, *rel.split("/")[:-1])
    except OutputError:
        raise OutputError(f"output path {rel!r} would land outside {root}") from None


def _final_path(root: Path, rel: str) -> Path:
    """``root/rel`` with its folders checked to stay inside ``root`` (links among them resolved); the last part
    is not resolved: a link planted at a final name is replaced (or removed) as a link, never written through."""
    name = rel.rpartition("/")[2]
    if name in ("", ".", ".."):
        raise OutputError(f"output path {rel!r} is not a file name")
    return _final_folder(root, rel) / name


def _make_parents(folder: Path, root: Path) -> list[Path]:
    """Create ``folder`` and its missing parents under ``root``; returns the parents of those made (to fsync)."""
    missing = []
    p = folder
    while not p.exists() and p != root and root in p.parents:
        missing.append(p)
        p = p.parent
    folder.mkdir(parents=True, exist_ok=True)
    return [m.parent for m in missing]


def _remove_empty_parents(folder: Path, root: Path) -> None:
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
