"""How a file fails for a reason outside its stages: its worker died, it ran past its timeout, or its worker's
call could not be made. One text per outcome, whichever executor saw it (local or Ray), so that a report and a
``summary_line`` read the same on both.

A stage's own error is not here: the worker that ran the stage reports it (``FileSession.fail``, ``run_map``).
"""

from __future__ import annotations

import logging

from ..errors import FileTimeout
from ..results import FAILED, FileResult
from .base import FileTask

__all__ = ["timed_out", "worker_died", "worker_failed", "map_task_timed_out", "map_task_failed"]

log = logging.getLogger("framepipe.executor")


def timed_out(task: FileTask, timeout: float, attempts: int = 1) -> FileResult:
    """The file ran past ``timeout`` seconds (its worker was killed); logged as a warning.

    ``error_type`` is ``FileTimeout``, and the text says the limit: ``timed out: not done after 8 s (the file
    timeout); its worker was killed``.
    """
    error = FileTimeout(task.file.relpath, timeout)
    log.warning("%s", error, extra={"file": task.file.relpath, "timeout_s": timeout})
    return FileResult(task.file, FAILED, error=error.reason, error_type=type(error).__name__, attempts=attempts)


def worker_died(task: FileTask, attempts: int, cause: object) -> FileResult:
    """The file's worker process died on each of its ``attempts`` (retries spent); ``cause``: what said so."""
    return FileResult(task.file, FAILED, error=f"worker process died while running this file ({attempts} attempts): "
                      f"{cause}", error_type="WorkerCrashed", attempts=attempts)


def worker_failed(task: FileTask, reason: str, error_type: str, attempts: int = 1) -> FileResult:
    """The call that runs the file on its worker failed for ``reason`` (it could not be sent, its worker could not
    start, or framepipe's own bug): ``[file worker] <reason>``."""
    return FileResult(task.file, FAILED, error=f"[file worker] {reason}", error_type=error_type, attempts=attempts)


def map_task_timed_out(stage: str, timeout: float) -> str:
    """The error of each frame of a map task that ran past the file timeout (its worker was killed)."""
    return f"[{stage}] timed out: a map task ran past {timeout:g} s, the file timeout; its worker was killed"


def map_task_failed(stage: str, exc: BaseException) -> str:
    """The error of each frame of a map task that could not run (its worker died past its retries, its pool was
    killed): ``[stage] WorkerCrashed: ...``."""
    return f"[{stage}] {type(exc).__name__}: {exc}"
