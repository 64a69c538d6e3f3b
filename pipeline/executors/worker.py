"""The code that runs inside a worker process: one pipeline per process, one file per task."""

from __future__ import annotations

import atexit
import os

from ..graph import Pipeline
from ..results import FileResult
from ..stage import FileRun
from .base import FileTask
from ..board import ProgressBoard
from .file_runner import FileRunner

__all__ = ["init_worker", "run_task"]

_RUNNER: FileRunner | None = None
_BOARD: ProgressBoard | None = None
_STAGE_NUMBERS: dict[str, int] = {}


def init_worker(pipeline: Pipeline, board_name: str, board_rows: int) -> None:
    """Executor initializer: keep the pipeline and the progress board for this process's lifetime."""
    global _RUNNER, _BOARD, _STAGE_NUMBERS
    _RUNNER = FileRunner(pipeline)
    _BOARD = ProgressBoard.attach(board_name, board_rows)
    _STAGE_NUMBERS = {name: i for i, name in enumerate(_RUNNER.order)}
    atexit.register(_RUNNER.teardown)


def run_task(task: FileTask, row: int) -> FileResult:
    """Run one file through this process's pipeline, posting its progress in board row ``row``."""
    assert _RUNNER is not None and _BOARD is not None, "init_worker() was not called in this process"
    board, numbers = _BOARD, _STAGE_NUMBERS

    def progress(stage: str, done: int, total: int | None) -> None:
        board.update(row, numbers.get(stage, -1), done, total)

    board.start(row, os.getpid())
    run = FileRun(task.file, task.out_dir, task.output_key, task.cpu_budget, progress=progress)
    try:
        return _RUNNER.run(run)
    finally:
        board.finish(row)
