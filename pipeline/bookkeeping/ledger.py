"""``RunLedger``: which files earlier runs into an output folder finished, so that a re-run does only the rest.

The ledger is ``OUT/ledger.jsonl``: one JSON object a line, appended and
fsync'd as each file finishes (ok or failed), the last line for a file
winning. A kill at any instant leaves at worst a torn last line, which the
reader ignores (that file is simply done again). Each line holds the file's
relative path, status, input fingerprint, the digest of the pipeline that
ran it (``memo.pipeline_digest``), its output key, every output written (path
under OUT, size and BLAKE2b digest of its bytes) and its report row, so that a
skipped file keeps its place in the run's result and report. Nothing is unpickled.

A file's outputs reach their final names just before its line is written
(``staging.OutputStaging.publish``: renamed from the staging folder, file and
folder fsync'd); outputs that the file's previous line lists and this run did
not make are removed then, so an input whose content changed leaves nothing
stale behind.

A file is skipped when its last line says ok, for the same fingerprint,
pipeline and output key, and every output it lists is still there with the
bytes written (size, then digest); anything else (failed, edited, another
pipeline, an output removed or replaced, even by bytes of the same size) runs again.

With OUT on object storage (``storage.mirror.RemoteFolder``), the ledger is kept in the run's local stand-in for
OUT (read from OUT at the start) and put into OUT as lines are written (at most every few seconds: a
line held back is put by a timer thread) and at the end of the run; an output is intact
when its object has the size written (one HEAD: its bytes are not read back), the worker put it in place
(``staging.ship_outputs``), and an input is unchanged while its fingerprint (size, ETag, version) is.

One run at a time uses a folder's ledger: ``run()`` holds ``OUT/.framepipe.lock``
from before the ledger is opened (and maybe compacted) to its end, so a
compaction never drops a line another run appends.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import OutputError
from ..executors.base import FileTask, RunEvents
from ..graph import Pipeline
from ..items import FileItem, fingerprint
from ..outputs import LEDGER_NAME, no_follow, output_error, write_atomic, write_output
from ..results import FAILED, OK, FileResult
from ..storage.location import is_relative_key, is_url
from .memo import pipeline_digest
from .staging import output_digest, remove_stale

if TYPE_CHECKING:
    from ..storage.mirror import RemoteFolder

__all__ = ["LEDGER_NAME", "RunLedger", "LedgerEvents"]

_VERSION = 2  # 2: each output as [size, digest]
log = logging.getLogger("framepipe.run")


class RunLedger:
    """The run ledger of one output folder for one pipeline: what is done, and a record of each file as it ends."""

    def __init__(self, out_dir: str | os.PathLike[str], pipeline: str, remote: RemoteFolder | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.remote = remote  # OUT is on object storage: out_dir stands for it
        self.path = self.out_dir / LEDGER_NAME
        self.pipeline = pipeline  # the digest of the pipeline now running
        self.entries: dict[str, dict[str, Any]] = {}
        self._torn = False  # the file may end mid-line: the next line starts on a new one

    @classmethod
    def open(cls, out_dir: str | os.PathLike[str], pipeline: Pipeline, *, fresh: bool = False,
             remote: RemoteFolder | None = None) -> RunLedger:
        """The ledger in ``out_dir`` for ``pipeline``, read back (``fresh``: emptied instead); ``remote``: OUT is on
        object storage, ``out_dir`` its local stand-in."""
        ledger = cls(out_dir, pipeline_digest(pipeline), remote)
        if fresh:
            ledger.path.unlink(missing_ok=True)
        else:
            ledger._load()
        return ledger

    def _load(self) -> None:
        """Read every whole line; rewrite the file when it held torn, unreadable or superseded lines."""
        try:
            with open(self.path, "rb", opener=lambda p, f: no_follow(p, f | os.O_NONBLOCK)) as ledger_file:
                data = ledger_file.read()  # never through a link planted at its name, never blocking on a FIFO
        except FileNotFoundError:
            return
        except OSError as exc:  # an unreadable ledger costs the run its resume, never the run
            log.warning("run ledger %s not read (%s); every file runs", self.path, exc.strerror or exc)
            return
        lines = data.splitlines()
        for line in lines:
            entry = _parse(line)
            if entry is not None:
                self.entries[entry["file"]] = entry
        if len(self.entries) != len(lines) or not data.endswith(b"\n"):
            # Compacted, so that the next append starts a line of its own (not glued to a torn one).
            try:
                write_atomic(self.path, b"".join(_line(e) for e in self.entries.values()))
            except OutputError as exc:
                log.warning("run ledger %s not compacted (%s)", self.path, exc)
                self._torn = not data.endswith(b"\n")

    def earlier_result(self, file: FileItem, output_key: str) -> FileResult | None:
        """The file's result from an earlier run when it need not run again, else None."""
        entry = self.entries.get(file.relpath)
        if (entry is None or entry["status"] != OK or not file.fingerprint
                or entry["fingerprint"] != file.fingerprint or entry["pipeline"] != self.pipeline
                or entry["key"] != output_key or not self._outputs_intact(entry["outputs"])):
            return None
        return FileResult(file, OK, record=dict(entry["record"]), outputs=list(entry["outputs"]),
                          warnings=list(entry["warnings"]), wall_s=entry["wall_s"], attempts=entry["attempts"],
                          resumed=True, digests={rel: d for rel, (_, d) in entry["outputs"].items()},
                          node=entry["node"] if isinstance(entry.get("node"), str) else "")

    def _outputs_intact(self, outputs: dict[str, list[Any]]) -> bool:
        """Whether every output is in place with the bytes written: its size, then its digest (one read each).
        In a remote OUT, its size (one HEAD each)."""
        if self.remote is not None:
            from ..storage.objects import output_sizes
            try:
                found = output_sizes(self.remote.url, outputs)
            except OSError:
                return False
            return all(found.get(rel) == size for rel, (size, _) in outputs.items())
        for rel, (size, digest) in outputs.items():
            path = self.out_dir / rel
            try:
                if os.stat(path, follow_symlinks=False).st_size != size or output_digest(path) != digest:
                    return False
            except OSError:
                return False
        return True

    def add(self, task: FileTask, result: FileResult) -> None:
        """Publish the file's staged outputs, remove those of an earlier version it no longer makes, and append
        its outcome durably (fsync'd), before anyone is told it finished.

        An output that cannot be published fails the file (``result`` is changed to say so).
        """
        earlier = self.entries.get(task.file.relpath)
        try:
            outputs = self._publish(task, result)
        except OutputError as exc:
            _fail(result, exc)
            outputs = {}
        if earlier is not None:
            if self.remote is not None:
                from ..storage.objects import delete_objects
                delete_objects(self.remote.url, [rel for rel in earlier["outputs"] if rel not in outputs])
            else:
                remove_stale(self.out_dir, earlier["outputs"], outputs)
        if not result.resumed and not _unchanged(task.file):
            # Read while it changed: what it gave is kept for this run, but no line vouches for it (runs again).
            log.info("%s changed while it ran; it will run again next time", task.file.relpath)
            self.entries.pop(task.file.relpath, None)
            return
        try:
            entry = {
                "v": _VERSION, "file": task.file.relpath, "status": result.status,
                "fingerprint": task.file.fingerprint, "pipeline": self.pipeline, "key": task.output_key,
                "outputs": outputs, "record": result.record, "warnings": result.warnings,
                "error": result.error, "failed_stage": result.failed_stage, "wall_s": round(result.wall_s, 4),
                "attempts": result.attempts, "node": result.node,
                "time": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            line = _line(entry)
        except (TypeError, ValueError) as exc:  # a column JSON cannot hold: done again
            log.debug("run ledger: %s not recorded (%s)", task.file.relpath, exc)
            self.entries.pop(task.file.relpath, None)
            return
        self.entries[task.file.relpath] = entry
        try:
            # O_APPEND, one write of one line: appends never interleave. no_follow: a link planted at the name
            # is refused (OutputIsLink), never written through.
            with open(self.path, "ab", opener=no_follow) as f:
                write_output(f, b"\n" + line if self._torn else line, self.path)
                f.flush()
                os.fsync(f.fileno())
            self._torn = False
            if self.remote is not None:
                self.remote.push_ledger()
        except OSError as exc:  # a full disk costs this file its place in the ledger, never the run
            self._torn = True
            log.warning("run ledger %s not written (%s); %s will run again next time", self.path,
                        exc.strerror or exc, task.file.relpath)

    def _publish(self, task: FileTask, result: FileResult) -> dict[str, list[Any]]:
        """The file's outputs in their final places, as ``{relpath: [size, digest]}``."""
        if task.remote_out is not None:
            return _put_in_place(task.remote_out, result)
        staging = task.staging
        if staging is not None:
            return staging.publish(result.outputs, result.digests)
        outputs: dict[str, list[Any]] = {}
        for rel in result.outputs:
            path = self.out_dir / rel
            try:
                digest = result.digests.get(rel) or output_digest(path)
                outputs[rel] = [os.stat(path, follow_symlinks=False).st_size, digest]
            except OSError as exc:
                raise output_error("read back", path, exc) from exc
        return outputs


def _put_in_place(url: str, result: FileResult) -> dict[str, list[Any]]:
    """A remote OUT's publish: the worker put each output at its URL (``ship_outputs``); their sizes and digests."""
    outputs: dict[str, list[Any]] = {}
    for rel in result.outputs:
        size, digest = result.sizes.get(rel), result.digests.get(rel)
        if size is None or digest is None:
            raise OutputError(f"{url.rstrip('/')}/{rel}: the worker did not put it in place")
        outputs[rel] = [size, digest]
    return outputs


def _unchanged(file: FileItem) -> bool:
    """Whether ``file`` still has the size, mtime and content fingerprint it was listed with."""
    if not file.fingerprint:
        return True  # nothing was promised about it (it could not be read): its failure line is right
    if is_url(file.path):  # an object: the same size, ETag and version (one HEAD)
        from ..storage.objects import object_unchanged
        return object_unchanged(file.path, file.fingerprint)
    try:
        st = os.stat(file.path)
        return (st.st_size, st.st_mtime_ns) == (file.size, file.mtime_ns) and \
            fingerprint(file.path, st.st_size, st.st_mtime_ns) == file.fingerprint
    except OSError:
        return False


def _fail(result: FileResult, exc: OutputError) -> None:
    """Mark ``result`` failed by ``exc`` (its outputs could not be published); what was published is kept out."""
    if result.ok:
        result.failed_stage = "publish"
    result.status = FAILED
    result.error = f"[{result.failed_stage}] {exc}"
    result.error_type = type(exc).__name__
    result.outputs = []


def _line(entry: dict[str, Any]) -> bytes:
    # ASCII JSON: a file name that is not UTF-8 (lone surrogates) round-trips as \udcXX escapes.
    return (json.dumps(entry) + "\n").encode()


_FIELDS: dict[str, type | tuple[type, ...]] = {"file": str, "status": str, "fingerprint": str, "pipeline": str,
                                               "key": str, "outputs": dict, "record": dict, "warnings": list,
                                               "wall_s": (int, float), "attempts": int}


def _parse(line: bytes) -> dict[str, Any] | None:
    """One ledger line as a dict, or None when it is torn, damaged or of another version."""
    try:
        entry = json.loads(line)
    except ValueError:  # a torn line is not JSON (UnicodeDecodeError is a ValueError too)
        return None
    if not isinstance(entry, dict) or entry.get("v") != _VERSION:
        return None
    if not all(isinstance(entry.get(k), t) for k, t in _FIELDS.items()):
        return None
    if not all(isinstance(o, list) and len(o) == 2 and isinstance(o[0], int) and isinstance(o[1], str)
               for o in entry["outputs"].values()):
        return None
    if not all(is_relative_key(rel) for rel in entry["outputs"]):  # a name outside OUT: no run wrote it
        return None
    return entry


class LedgerEvents:
    """``RunEvents`` that record each finished file in the ledger, then pass the event on."""

    def __init__(self, inner: RunEvents, ledger: RunLedger, tasks: Sequence[FileTask]) -> None:
        self.inner = inner
        self.ledger = ledger
        self.tasks = {t.file.index: t for t in tasks}

    def file_started(self, task: FileTask) -> None:
        self.inner.file_started(task)

    def file_progress(self, index: int, stage: str, done: int, total: int | None) -> None:
        self.inner.file_progress(index, stage, done, total)

    def file_done(self, result: FileResult) -> None:
        task = self.tasks.get(result.file.index)
        if task is not None:
            self.ledger.add(task, result)
        self.inner.file_done(result)
