"""``RemoteFolder``: a run into an output folder on object storage, with no file system shared between nodes.

Where each thing happens::

    driver (run())                                     worker (any node: a loky process, a Ray actor)
    ----------------------------------------------     ------------------------------------------------
    RemoteFolder.open(OUT): bucket checked, OUT's      the file's stages write into a staging folder on
      ledger.jsonl downloaded into a local folder        its own node (<local>/.framepipe-staging/<n>/)
      (``local``) that stands for OUT in the run       seal: each output hashed (BLAKE2b) and fsync'd
    ledger: skip files done with outputs intact        ship: each output put at its final URL (visible
      (each output's size, one HEAD)                     only once whole), its local copy removed
    file_done: "publish" finds the outputs in place,   the result carries each output's size and digest
      writes the ledger line locally, and puts the
      ledger into OUT (at most every LEDGER_PUSH_S;
      a line that waits is put by a timer thread)
    end: ledger, report.parquet/json, index.html and
      index_files/ put into OUT; ``local`` removed

Why the ledger is written locally and put whole, not appended in OUT: an object cannot be appended to, and
one writer (the driver) owns it. A line written less than ``LEDGER_PUSH_S`` after the last push is put by the
folder's flusher thread once that interval has passed, not when the next file ends (which may be minutes away),
so a run killed between two pushes loses at most the last seconds of lines;
those files run again (their outputs are put again under the same names). One run at a time per OUT is the
user's to keep: object stores have no lock a run could hold.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import StorageError, UnreadableFile
from ..outputs import LEDGER_NAME
from .location import join_url
from .objects import check_folder, get_file, put_file

__all__ = ["RemoteFolder", "LEDGER_PUSH_S"]

log = logging.getLogger("framepipe.storage")

LEDGER_PUSH_S = 2.0
"""The ledger is put into OUT after a file ends, at most this often: a line written sooner after the last push is
put by a timer thread once this much time has passed since it (and always at the end of the run)."""

_LOCAL_ONLY = (".framepipe-staging", ".framepipe.lock")


class RemoteFolder:
    """A remote output folder (``url``) and the local folder (``local``) that stands for it during one run.

    ``push_every``: the least time between two pushes of the ledger (``LEDGER_PUSH_S``); ``clock``: what that
    time is read from (``time.monotonic``).
    """

    def __init__(self, url: str, local: Path, *, push_every: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url.rstrip("/")
        self.local = local
        self.push_every = LEDGER_PUSH_S if push_every is None else push_every
        self._clock = clock
        self._pushed = float("-inf")  # when the last push started (clock)
        self._pending = False  # lines written since then wait for a push
        self._closed = False
        self._failed = False  # the last push failed
        self._state = threading.Condition()  # guards the four above; told when they change
        self._putting = threading.Lock()  # one upload at a time: a later one never lands before an earlier one
        self._flusher: threading.Thread | None = None

    @classmethod
    def open(cls, url: str, *, resume: bool) -> RemoteFolder:
        """Check that ``url`` can be used (``StorageError`` in one line otherwise) and make its local folder;
        with ``resume``, OUT's ledger is downloaded into it."""
        check_folder(url)
        folder = cls(url, Path(tempfile.mkdtemp(prefix="framepipe-out-")))
        if resume:
            try:
                if get_file(join_url(folder.url, LEDGER_NAME), folder.local / LEDGER_NAME):
                    log.info("run ledger read from %s", folder.url)
            except BaseException:
                folder.close()
                raise
        return folder

    @property
    def pending(self) -> bool:
        """Whether lines written to the local ledger wait for a push."""
        with self._state:
            return self._pending

    def push_ledger(self, *, force: bool = False) -> None:
        """Put the local ledger into OUT (a line was written): now, unless it was put less than ``push_every``
        ago, in which case the flusher thread puts it once that time has passed (``force``: now, whatever).

        A push that fails is a warning: the run goes on, and the flusher tries again ``push_every`` later (and
        the end of the run, last).
        """
        with self._state:
            self._pending = True
            if not force and self._clock() - self._pushed < self.push_every:
                self._flush_later()
                return
        self._push()

    def wait_pushed(self, timeout: float | None = None) -> bool:
        """Wait until no line waits for a push (the flusher put it, or a push did); False if ``timeout`` passed
        first."""
        with self._state:
            return self._state.wait_for(lambda: not self._pending or self._closed, timeout)

    def _flush_later(self) -> None:
        """(With ``_state`` held.) Have the flusher thread put the pending lines when their time comes."""
        if self._closed:
            return
        if self._flusher is None:
            self._flusher = threading.Thread(target=self._flush_when_due, name="framepipe-ledger-push", daemon=True)
            self._flusher.start()
        self._state.notify_all()

    def _flush_when_due(self) -> None:
        """The flusher thread: put the ledger each time lines wait and ``push_every`` has passed since the last
        push, until ``close``."""
        while True:
            with self._state:
                while not self._closed:
                    wait = self._pushed + self.push_every - self._clock() if self._pending else None
                    if wait is not None and wait <= 0:
                        break
                    self._state.wait(wait)
                if self._closed:
                    return
            self._push()

    def _push(self) -> None:
        """Put the local ledger into OUT, if lines still wait (a push that ran meanwhile may have taken them)."""
        with self._putting:
            with self._state:
                if not self._pending:
                    return
                self._pending = False  # a line written from here on waits for the next push
                self._pushed = self._clock()
            ledger = self.local / LEDGER_NAME
            failed = False
            if ledger.is_file():
                try:
                    put_file(ledger, join_url(self.url, LEDGER_NAME))
                except (StorageError, UnreadableFile) as exc:
                    failed = True
                    log.warning("run ledger not put into %s (%s); it is tried again", self.url, _reason(exc))
            with self._state:
                self._pending = self._pending or failed
                self._failed = failed
                self._state.notify_all()

    def push_all(self) -> None:
        """Put every file of the local folder (ledger, reports, report page) into OUT under the same names."""
        with self._putting:
            with self._state:
                self._pending = False
                self._pushed = self._clock()
            for dirpath, dirnames, filenames in os.walk(self.local):
                dirnames[:] = sorted(d for d in dirnames if d not in _LOCAL_ONLY)
                for name in sorted(filenames):
                    if name in _LOCAL_ONLY or ".fp-part" in name:  # (outputs.PartialOutput's half files)
                        continue
                    path = Path(dirpath) / name
                    put_file(path, join_url(self.url, path.relative_to(self.local).as_posix()))

    def close(self, *, keep: bool = False) -> None:
        """Stop the flusher thread, put the lines that still wait (a last push, unless the last one just failed:
        a store that is gone is not waited for twice), and remove the local folder (``keep``: leave it, with what
        could not be put into OUT)."""
        with self._state:
            self._closed = True
            self._state.notify_all()
            flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.join()
        if not self._failed:
            self._push()
        if not keep:
            shutil.rmtree(self.local, ignore_errors=True)


def _reason(exc: OSError) -> str:
    return exc.reason if isinstance(exc, StorageError) else str(exc)
