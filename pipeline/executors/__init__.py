"""Executors: where a pipeline's files run (``inline`` in this process, ``local`` on a loky pool)."""

from .base import Executor, FileTask, RunEvents
from .inline import InlineExecutor
from .local import LocalExecutor

__all__ = ["Executor", "FileTask", "RunEvents", "InlineExecutor", "LocalExecutor", "get_executor"]


def get_executor(name: str, workers: int | None = None) -> Executor:
    """The executor called ``name`` (``"local"`` or ``"inline"``)."""
    if name == "inline":
        return InlineExecutor()
    if name == "local":
        return LocalExecutor(workers)
    raise ValueError(f"unknown executor {name!r} (choose 'local' or 'inline')")
