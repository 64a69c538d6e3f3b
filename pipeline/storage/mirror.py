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
      ledger into OUT (at most every LEDGER_PUSH_S)
    end: ledger, report.parquet/json, index.html and
      index_files/ put into OUT; ``local`` removed

Why the ledger is written locally and put whole, not appended in OUT: an object cannot be appended to, and
one writer (the driver) owns it. A run killed between two pushes loses at most the last seconds of lines;
those files run again (their outputs are put again under the same names). One run at a time per OUT is the
user's to keep: object stores have no lock a run could hold.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from ..errors import StorageError
from .location import join_url
from .objects import check_folder, get_file, put_file

__all__ = ["RemoteFolder", "LEDGER_PUSH_S"]

log = logging.getLogger("framepipe.storage")

LEDGER_PUSH_S = 2.0
"""The ledger is put into OUT after a file ends, at most this often (and always at the end of the run)."""

_LEDGER_NAME = "ledger.jsonl"  # ledger.LEDGER_NAME (storage is below bookkeeping: named here, tested equal)
_LOCAL_ONLY = (".framepipe-staging", ".framepipe.lock")


class RemoteFolder:
    """A remote output folder (``url``) and the local folder (``local``) that stands for it during one run."""

    def __init__(self, url: str, local: Path) -> None:
        self.url = url.rstrip("/")
        self.local = local
        self._pushed = 0.0

    @classmethod
    def open(cls, url: str, *, resume: bool) -> RemoteFolder:
        """Check that ``url`` can be used (``StorageError`` in one line otherwise) and make its local folder;
        with ``resume``, OUT's ledger is downloaded into it."""
        check_folder(url)
        folder = cls(url, Path(tempfile.mkdtemp(prefix="framepipe-out-")))
        if resume:
            try:
                if get_file(join_url(folder.url, _LEDGER_NAME), folder.local / _LEDGER_NAME):
                    log.info("run ledger read from %s", folder.url)
            except BaseException:
                folder.close()
                raise
        return folder

    def push_ledger(self, *, force: bool = False) -> None:
        """Put the local ledger into OUT, unless it was put less than ``LEDGER_PUSH_S`` ago (``force``: now).

        A push that fails is a warning: the run goes on, and the next push (the last one at the end) tries again.
        """
        now = time.monotonic()
        if not force and now - self._pushed < LEDGER_PUSH_S:
            return
        ledger = self.local / _LEDGER_NAME
        if not ledger.is_file():
            return
        try:
            put_file(ledger, join_url(self.url, _LEDGER_NAME))
            self._pushed = now
        except StorageError as exc:
            log.warning("run ledger not put into %s (%s); it is tried again", self.url, exc.reason)

    def push_all(self) -> None:
        """Put every file of the local folder (ledger, reports, report page) into OUT under the same names."""
        for dirpath, dirnames, filenames in os.walk(self.local):
            dirnames[:] = sorted(d for d in dirnames if d not in _LOCAL_ONLY)
            for name in sorted(filenames):
                if name in _LOCAL_ONLY or ".fp-part" in name:  # (outputs.PartialOutput's half files)
                    continue
                path = Path(dirpath) / name
                put_file(path, join_url(self.url, path.relative_to(self.local).as_posix()))
        self._pushed = time.monotonic()

    def close(self) -> None:
        """Remove the local folder."""
        shutil.rmtree(self.local, ignore_errors=True)
