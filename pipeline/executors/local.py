"""The local executor: files run concurrently on a loky process pool.

    parent                                   loky workers (one pipeline each)
    ------                                   --------------------------------
    submit(run_task, FileTask) ───────────►  FileRunner.run(file)
    listener thread ◄── events queue ◄────── ("start", i, pid), ("progress", i, ...)
    as_completed(futures) ◄───────────────── FileResult

A worker that dies (killed, segfault, out of memory) breaks the whole loky
pool: every pending future fails. Files that had started are charged one
attempt and re-run on a fresh pool up to ``retries`` times; files that had
not started are re-run without charge.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Sequence
from concurrent.futures import as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from loky import ProcessPoolExecutor
from loky.backend.context import get_context
from loky.process_executor import TerminatedWorkerError

from ..graph import Pipeline
from ..results import FAILED, FileResult
from .base import FileTask, RunEvents
from .worker import init_worker, run_task

__all__ = ["LocalExecutor"]


def _exit_codes(exc: BaseException) -> str:
    """loky's exit codes of the dead workers (e.g. ``; exit codes {EXIT(3)}``), when it names them."""
    found = re.search(r"exit codes of the workers are (\{.*?\})", str(exc))
    return f"; exit codes {found.group(1)}" if found else ""


class LocalExecutor:
    """Runs files concurrently on ``workers`` processes (default: one per core)."""

    name = "local"

    def __init__(self, workers: int | None = None, retries: int = 1) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.retries = retries

    def run(self, pipeline: Pipeline, tasks: Sequence[FileTask], events: RunEvents) -> list[FileResult]:
        if not tasks:
            return []
        n_workers = min(self.workers, len(tasks))
        queue = get_context("loky").SimpleQueue()
        by_index = {t.file.index: t for t in tasks}
        started: set[int] = set()
        listener = threading.Thread(target=self._listen, args=(queue, by_index, started, events),
                                    name="framepipe-events", daemon=True)
        listener.start()
        results: dict[int, FileResult] = {}
        attempts = dict.fromkeys(by_index, 0)
        pending = list(tasks)
        executor: ProcessPoolExecutor | None = None
        try:
            while pending:
                executor = ProcessPoolExecutor(max_workers=n_workers, initializer=init_worker,
                                               initargs=(pipeline, queue))
                futures = {executor.submit(run_task, t): t for t in pending}
                pending = []
                for fut in as_completed(futures):
                    task = futures[fut]
                    idx = task.file.index
                    try:
                        result = fut.result()
                    except (TerminatedWorkerError, BrokenProcessPool) as exc:
                        if idx in started:
                            attempts[idx] += 1
                            started.discard(idx)
                        if attempts[idx] <= self.retries:
                            pending.append(task)
                            continue
                        result = self._failure(task, "worker process died while running this file "
                                               f"({attempts[idx]} attempts{_exit_codes(exc)})",
                                               type(exc).__name__)
                        result.attempts = attempts[idx]
                    except Exception as exc:  # the result could not be sent back
                        result = self._failure(task, f"{type(exc).__name__}: {exc}", type(exc).__name__)
                        result.attempts = attempts[idx] + 1
                    else:
                        result.attempts = attempts[idx] + 1
                    results[idx] = result
                    events.file_done(result)
                executor.shutdown(wait=True)
                executor = None
                pending.sort(key=lambda t: t.file.index)
        finally:
            if executor is not None:  # interrupted: kill running files' workers and wait until they are gone
                executor.shutdown(wait=True, kill_workers=True)
            queue.put(None)
            listener.join(timeout=5)
        return [results[t.file.index] for t in tasks]

    @staticmethod
    def _failure(task: FileTask, message: str, error_type: str) -> FileResult:
        return FileResult(task.file, FAILED, error=message, error_type=error_type)

    @staticmethod
    def _listen(queue: Any, by_index: dict[int, FileTask], started: set[int], events: RunEvents) -> None:
        while True:
            msg = queue.get()
            if msg is None:
                return
            if msg[0] == "start":
                started.add(msg[1])
                events.file_started(by_index[msg[1]])
            elif msg[0] == "progress":
                _, idx, stage, done, total = msg
                events.file_progress(idx, stage, done, total)
