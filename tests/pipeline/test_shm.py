"""Shared segments: one owner unlinks; attaching processes leave no trace; stale ones are swept."""

from __future__ import annotations

import _posixshmem
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from loky import ProcessPoolExecutor

from pipeline.dataplane.segments import SEGMENT_PREFIX, SharedSegment, sweep_stale_segments


def _write_in_worker(name: str, size: int) -> int:
    seg = SharedSegment.attach(name, size)
    view = np.ndarray((size,), np.uint8, buffer=seg.buf)
    view[:] = 7
    del view
    seg.close()
    return os.getpid()


def test_a_loky_worker_writes_through_an_attached_view_and_the_owner_unlinks_cleanly(
        capfd: object) -> None:
    seg = SharedSegment.create(4096, tag="test")
    with ProcessPoolExecutor(max_workers=1) as ex:
        ex.submit(_write_in_worker, seg.name, 4096).result()
    assert bytes(seg.buf[:4]) == b"\x07" * 4
    assert os.stat(Path("/dev/shm", seg.name)).st_mode & 0o777 == 0o600
    assert len(seg.name.rsplit("_", 1)[1]) == 16  # 64 random bits
    seg.close()
    seg.unlink()
    assert not Path("/dev/shm", seg.name).exists()


def test_segments_of_a_dead_process_are_swept_and_live_ones_kept() -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = f"{SEGMENT_PREFIX}{dead}_test_deadbeef"
    fd = _posixshmem.shm_open("/" + stale, os.O_CREAT | os.O_RDWR, mode=0o600)
    os.close(fd)
    live = SharedSegment.create(64, tag="live")
    try:
        # Every framepipe run on this machine sweeps as it starts: one of another test session may unlink the
        # stale segment first (then it is not ours to report). Whatever is still there, our sweep must take.
        there = Path("/dev/shm", stale).exists()
        swept = sweep_stale_segments()
        assert stale in swept or not there
        assert not Path("/dev/shm", stale).exists()
        assert Path("/dev/shm", live.name).exists()
    finally:
        live.close()
        live.unlink()
