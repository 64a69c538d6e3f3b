"""The inline executor: every file in this process, one after another.

The reference the parallel executors are checked against, and the one to use
under a debugger. With a ``trace``, each file is one span (its per-stage
busy seconds in the span's args) on this process's track, with the spans of
its stages' work inside it (``observe.stage_timeline``: their frames).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from ..bookkeeping.memo import StageMemo
from ..graph import Pipeline
from ..observe.stage_timeline import StageSpan, record_stage_spans
from ..observe.trace import RunTrace
from ..results import FileResult
from ..runtime.interrupts import Interrupted, cancel_requested
from ..stage import FileRun
from .base import ExecutionReport, Executor, FileTask, RunEvents
from .file_runner import FileRunner

__all__ = ["InlineExecutor"]


class InlineExecutor(Executor):
    """Runs files sequentially in the calling process (no workers to prepare, no actors, no slots)."""

    name = "inline"

    def __init__(self) -> None:
        self.workers = 1

    def run(self, pipeline: Pipeline, tasks: Sequence[FileTask], events: RunEvents, *,
            trace: RunTrace | None = None) -> ExecutionReport:
        """Run every task here, one after another; with ``trace``, a span per file."""
        if not tasks:
            return ExecutionReport(workers=self.workers, trace=trace)
        runner = FileRunner(pipeline)
        results = []
        try:
            for task in tasks:
                if cancel_requested():  # (no signal handler here: a stream's consumer stopped early)
                    raise Interrupted()
                events.file_started(task)
                index = task.file.index
                run = FileRun(task.file, task.begin_attempt(), task.output_key,
                              max(task.cpu_budget, os.cpu_count() or 1),
                              progress=lambda s, d, t, i=index: events.file_progress(i, s, d, t),
                              memo=StageMemo.open(task.cache_dir) if task.cache_dir else None,
                              publish_to=task.remote_out)
                t0 = time.perf_counter()
                work: list[StageSpan] | None = [] if trace is not None else None
                result = runner.run(run, spans=work)
                if trace is not None:
                    self._record(trace, task, result, t0, time.perf_counter(), work or [])
                events.file_done(result)
                results.append(result)
        finally:
            runner.teardown()
        return ExecutionReport(tuple(results), self.workers, trace=trace)

    @staticmethod
    def _record(trace: RunTrace, task: FileTask, result: FileResult, t0: float, t1: float,
                work: list[StageSpan]) -> None:
        rel, track = task.file.relpath, f"inline (pid {os.getpid()})"
        trace.span(track, f"file {rel}", trace.since(t0), trace.since(t1),
                   {"file": rel, "status": result.status,
                    "busy_s": {n: round(st.busy_s, 6) for n, st in result.stats.items()}}, group="inline")
        # the frames are in its stages' spans (the file's span carries none: they would count twice)
        record_stage_spans(trace, track, work, t0, t1, {"file": rel}, group="inline")
        trace.counter("files in flight", trace.since(t0), {"files": 1})
        trace.counter("files in flight", trace.since(t1), {"files": 0})
