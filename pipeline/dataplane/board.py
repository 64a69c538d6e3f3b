"""``ProgressBoard``: a table in shared memory where workers post how far each file is.

Workers write their own rows; the parent only reads. No lock is shared with
worker processes, so a worker killed in the middle of an update cannot stall
the parent or the other workers (as a killed writer holding a queue's lock
would).
"""

from __future__ import annotations

import time

import numpy as np

from ..dataplane.segments import SharedSegment

__all__ = ["ProgressBoard", "PENDING", "RUNNING", "DONE"]

PENDING, RUNNING, DONE = 0, 1, 2
_STATE, _PID, _STAGE, _DONE, _TOTAL, _STARTED = range(6)
_COLUMNS = 6


class ProgressBoard:
    """One row per task: state, worker pid, stage number, units done, units total (-1: unknown), start time.

    The start time is ``time.monotonic_ns()`` in the worker: one clock for all
    processes of the machine.
    """

    def __init__(self, segment: SharedSegment, rows: int) -> None:
        self.segment = segment
        self.rows = rows
        self.table = np.ndarray((rows, _COLUMNS), dtype=np.int64, buffer=segment.buf)

    @classmethod
    def create(cls, rows: int) -> ProgressBoard:
        """A new, all-pending board owned by this process."""
        return cls(SharedSegment.create(max(1, rows) * _COLUMNS * 8, tag="progress"), max(1, rows))

    @classmethod
    def attach(cls, name: str, rows: int) -> ProgressBoard:
        """The board ``name``, as a worker sees it."""
        return cls(SharedSegment.attach(name, rows * _COLUMNS * 8), rows)

    # Worker side ----------------------------------------------------------

    def start(self, row: int, pid: int) -> None:
        r = self.table[row]
        r[_DONE], r[_TOTAL], r[_STAGE], r[_PID], r[_STARTED] = 0, -1, -1, pid, time.monotonic_ns()
        r[_STATE] = RUNNING

    def update(self, row: int, stage: int, done: int, total: int | None) -> None:
        r = self.table[row]
        r[_STAGE], r[_DONE], r[_TOTAL] = stage, done, -1 if total is None else total

    def finish(self, row: int) -> None:
        self.table[row, _STATE] = DONE

    # Parent side ----------------------------------------------------------

    def state(self, row: int) -> int:
        return int(self.table[row, _STATE])

    def reset(self, row: int) -> None:
        self.table[row] = (PENDING, 0, -1, 0, -1, 0)

    def started_at(self, row: int) -> float | None:
        """When the row's task started, in ``time.monotonic()`` seconds (None: not started)."""
        r = self.table[row]
        return int(r[_STARTED]) / 1e9 if r[_STATE] != PENDING else None

    def snapshot(self) -> np.ndarray:
        """A copy of the whole table (rows: state, pid, stage, done, total, started)."""
        return self.table.copy()

    def close(self) -> None:
        """Drop this process's view; the owner also removes the segment."""
        del self.table
        self.segment.close()
        self.segment.unlink()
