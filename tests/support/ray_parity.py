"""Stages for the Ray executor's parity tests (importable by name in Ray's worker processes): a stage that tells
its progress and then waits for the test, and map stages that record the niceness they ran at.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import Any

from pipeline import FILE, FRAME, Pipeline, Stage, StageContext
from pipeline.stage import FunctionStage
from support.arrays import Invert, ReadFrames, SaveFrames
from support.ray_stages import Collect
from support.text import LINE, Line


class TellThenWait(Stage):
    """One item per line of a text file whose first line is a unix socket's path: it tells its progress (1 of
    the lines) and connects to the socket, where it waits for the test's byte before it goes on."""

    accepts = (FILE,)
    emits = (LINE,)

    def process(self, item: Any, ctx: StageContext) -> Any:
        lines = Path(item.path).read_text().splitlines()
        ctx.progress(1, len(lines))
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(lines[0])
            sock.recv(1)  # the test answers once it has seen the progress
        ctx.progress(len(lines), len(lines))
        for n, line in enumerate(lines):
            yield Line(n, line)


def told_pipeline() -> Pipeline:
    """tell_then_wait -> collect (every stage in the file's actor)."""
    p = Pipeline("told", extensions=[".txt"])
    p.add(Collect(), after=p.add(TellThenWait()))
    return p


def _niceness() -> dict[str, Any]:
    """The calling thread's niceness and name, and the niceness of its process's main thread (Linux)."""
    return {"nice": os.getpriority(os.PRIO_PROCESS, threading.get_native_id()),
            "main_nice": os.getpriority(os.PRIO_PROCESS, os.getpid()),
            "thread": threading.current_thread().name}


def low_probe(item: Any, ctx: Any) -> None:
    """A map stage that records where it ran (run at LOW priority, in pool ``low``)."""
    ctx.record(**{f"low_{k}": v for k, v in _niceness().items()})


def medium_probe(item: Any, ctx: Any) -> None:
    """A map stage that records where it ran (run at MEDIUM priority, in the default pool)."""
    ctx.record(**{f"medium_{k}": v for k, v in _niceness().items()})


def probed_pipeline(batch_size: int = 1) -> Pipeline:
    """read_frames -> low_probe (LOW, pool ``low``), medium_probe (MEDIUM) and save_frames, all on the same
    frames: two map pools of two priorities, ``batch_size`` frames a task."""
    p = Pipeline("probed", extensions=[".npy"])
    p.add_pool("low")
    frames = p.add(ReadFrames())
    p.add(FunctionStage(low_probe, accepts=FRAME, stateful=False, pool="low", priority=0, batch_size=batch_size),
          after=frames)
    p.add(FunctionStage(medium_probe, accepts=FRAME, stateful=False, priority=1, batch_size=batch_size),
          after=frames)
    p.add(SaveFrames(), after=frames)
    return p


class PassOn(Stage):
    """A local (stateful) stage that hands each frame on as it came."""

    accepts = (FRAME,)
    emits = (FRAME,)

    def process(self, item: Any, ctx: StageContext) -> Any:
        yield item


def chained_pipeline() -> Pipeline:
    """read_frames -> invert (map, 3 a task) -> pass_on (local) -> again (map, 2 a task) -> save_frames: the
    frames come back inverted twice, as they were."""
    p = Pipeline("chained", extensions=[".npy"])
    first = p.add(Invert(), after=p.add(ReadFrames()))
    second = p.add(Invert("again"), after=p.add(PassOn(), after=first))
    p.add(SaveFrames(), after=second)
    p.stages["invert"].batch_size, p.stages["again"].batch_size = 3, 2
    return p
