"""Executors: where a pipeline's files run (``inline`` in this process, ``local`` on a loky pool)."""

from ..errors import UnsupportedRunOption
from .base import Executor, FileTask, RunEvents
from .inline import InlineExecutor
from .local import LocalExecutor

__all__ = ["Executor", "FileTask", "RunEvents", "InlineExecutor", "LocalExecutor", "get_executor"]


def get_executor(name: str, workers: int | None = None, *, file_timeout: float | None = None) -> Executor:
    """The executor called ``name`` (``"local"`` or ``"inline"``); ``file_timeout`` needs the local one."""
    if name == "inline":
        if file_timeout is not None:
            raise UnsupportedRunOption("a file timeout needs the local executor: the inline one cannot stop "
                                       "a call in its own process")
        return InlineExecutor()
    if name == "local":
        return LocalExecutor(workers, file_timeout=file_timeout)
    raise ValueError(f"unknown executor {name!r} (choose 'local' or 'inline')")
