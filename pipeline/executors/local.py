"""The local executor: files run concurrently on a loky process pool.

    parent (one scheduling loop)                 loky workers (one pipeline each)
    ----------------------------                 --------------------------------
    submit(run_task, FileTask, row) ──────────►  FileRunner.run(file)
    reads ProgressBoard (shared memory) ◄─────── board.start / update / finish(row)
    wait(futures, 0.1 s) ◄────────────────────── FileResult
    checks the interrupt flag

The loop wakes when a file finishes or every 0.1 s, to forward progress and
to notice Ctrl-C or SIGTERM, which only set a flag: the loop then kills the
workers and waits for them before raising, so no worker writes after return.

A worker that dies (killed, segfault, out of memory) breaks the whole loky
pool: every pending future fails. Files whose board row says they were
running are charged one attempt and re-run on a fresh pool up to ``retries``
times; files that had not started are re-run without charge.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool

from loky import ProcessPoolExecutor
from loky.process_executor import TerminatedWorkerError

from ..graph import Pipeline
from ..interrupts import InterruptFlag, capture_interrupts
from ..results import FAILED, FileResult
from .base import FileTask, RunEvents
from ..board import PENDING, RUNNING, ProgressBoard
from .worker import init_worker, run_task

__all__ = ["LocalExecutor"]

_TICK_S = 0.1


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
        board = ProgressBoard.create(len(tasks))
        try:
            with capture_interrupts() as interrupt:
                return self._run(pipeline, tasks, events, board, interrupt)
        finally:
            board.close()

    def _run(self, pipeline: Pipeline, tasks: Sequence[FileTask], events: RunEvents, board: ProgressBoard,
             interrupt: InterruptFlag) -> list[FileResult]:
        n_workers = min(self.workers, len(tasks))
        stage_names = pipeline.order()
        results: dict[int, FileResult] = {}
        attempts = [0] * len(tasks)
        pending = list(range(len(tasks)))
        seen = [(-1, -1)] * len(tasks)  # last (state, done) forwarded per row
        while pending:
            executor = ProcessPoolExecutor(max_workers=n_workers, initializer=init_worker,
                                           initargs=(pipeline, board.segment.name, board.rows))
            try:
                futures: dict[Future[FileResult], int] = {
                    executor.submit(run_task, tasks[row], row): row for row in pending}
                pending = []
                not_done = set(futures)
                while not_done:
                    done, not_done = wait(not_done, timeout=_TICK_S, return_when=FIRST_COMPLETED)
                    interrupt.raise_if_set()
                    self._forward_progress(board, tasks, stage_names, seen, events)
                    for fut in sorted(done, key=futures.__getitem__):
                        row = futures[fut]
                        result = self._collect(fut, tasks[row], row, board, attempts, pending)
                        if result is None:  # re-queued: announce it again when it restarts
                            seen[row] = (-1, -1)
                        else:
                            results[row] = result
                            events.file_done(result)
            except BaseException:
                executor.shutdown(wait=True, kill_workers=True)  # nothing may write after we return
                raise
            executor.shutdown(wait=True)
            pending.sort()
        return [results[row] for row in range(len(tasks))]

    def _collect(self, fut: Future[FileResult], task: FileTask, row: int, board: ProgressBoard,
                 attempts: list[int], pending: list[int]) -> FileResult | None:
        """The file's result, or None when it goes back to the queue after its worker died."""
        try:
            result = fut.result()
        except (TerminatedWorkerError, BrokenProcessPool) as exc:
            if board.state(row) == RUNNING:
                attempts[row] += 1
            board.reset(row)
            if attempts[row] <= self.retries:
                pending.append(row)
                return None
            result = FileResult(task.file, FAILED, error="worker process died while running this file "
                                f"({attempts[row]} attempts{_exit_codes(exc)})", error_type=type(exc).__name__)
            result.attempts = attempts[row]
            return result
        except Exception as exc:  # the result could not be sent back
            result = FileResult(task.file, FAILED, error=f"{type(exc).__name__}: {exc}",
                                error_type=type(exc).__name__)
        result.attempts = attempts[row] + 1
        return result

    @staticmethod
    def _forward_progress(board: ProgressBoard, tasks: Sequence[FileTask], stage_names: list[str],
                          seen: list[tuple[int, int]], events: RunEvents) -> None:
        """Tell ``events`` what changed on the board since the last tick."""
        for row, (state, _pid, stage, done, total, _started) in enumerate(board.snapshot().tolist()):
            prev_state, prev_done = seen[row]
            if state == PENDING or (state, done) == (prev_state, prev_done):
                continue
            if prev_state in (-1, PENDING):
                events.file_started(tasks[row])
            seen[row] = (state, done)
            if state == RUNNING and stage >= 0:
                events.file_progress(tasks[row].file.index, stage_names[stage], done, None if total < 0 else total)
