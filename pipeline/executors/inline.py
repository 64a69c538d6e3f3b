"""The inline executor: every file in this process, one after another.

The reference the parallel executors are checked against, and the one to use
under a debugger.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..graph import Pipeline
from ..memo import StageMemo
from ..results import FileResult
from ..stage import FileRun
from .base import FileTask, RunEvents
from .file_runner import FileRunner

__all__ = ["InlineExecutor"]


class InlineExecutor:
    """Runs files sequentially in the calling process."""

    name = "inline"

    def __init__(self) -> None:
        self.workers = 1

    def run(self, pipeline: Pipeline, tasks: Sequence[FileTask], events: RunEvents) -> list[FileResult]:
        runner = FileRunner(pipeline)
        results = []
        try:
            for task in tasks:
                events.file_started(task)
                index = task.file.index
                run = FileRun(task.file, task.out_dir, task.output_key, max(task.cpu_budget, os.cpu_count() or 1),
                              progress=lambda s, d, t, i=index: events.file_progress(i, s, d, t),
                              memo=StageMemo.open(task.cache_dir) if task.cache_dir else None)
                result = runner.run(run)
                events.file_done(result)
                results.append(result)
        finally:
            runner.teardown()
        return results
