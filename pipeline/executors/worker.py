"""The code that runs inside a worker process: one pipeline per process, one file per task."""

from __future__ import annotations

import atexit
import os
import time
from typing import Any

from ..graph import Pipeline
from ..results import FileResult
from ..stage import FileRun
from .base import FileTask
from .file_runner import FileRunner

__all__ = ["init_worker", "run_task"]

_RUNNER: FileRunner | None = None
_EVENTS: Any = None  # a loky SimpleQueue, or None
_PROGRESS_INTERVAL_S = 0.2


def init_worker(pipeline: Pipeline, events: Any) -> None:
    """Executor initializer: keep the pipeline for this process's lifetime."""
    global _RUNNER, _EVENTS
    _RUNNER = FileRunner(pipeline)
    _EVENTS = events
    atexit.register(_RUNNER.teardown)


def run_task(task: FileTask) -> FileResult:
    """Run one file through this process's pipeline."""
    assert _RUNNER is not None, "init_worker() was not called in this process"
    events = _EVENTS
    last = [0.0]

    def progress(stage: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        if events is not None and now - last[0] >= _PROGRESS_INTERVAL_S:
            last[0] = now
            events.put(("progress", task.file.index, stage, done, total))

    if events is not None:
        events.put(("start", task.file.index, os.getpid()))
    run = FileRun(task.file, task.out_dir, task.output_key, task.cpu_budget, progress=progress)
    return _RUNNER.run(run)
