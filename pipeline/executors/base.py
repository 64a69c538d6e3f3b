"""The executor contract: run file tasks, report events, return results in input order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..graph import Pipeline
from ..items import FileItem
from ..results import FileResult
from ..staging import OutputStaging

__all__ = ["FileTask", "RunEvents", "Executor"]


@dataclass(frozen=True, slots=True)
class FileTask:
    """One file to run: the item, where its outputs go, and its share of the cores."""

    file: FileItem
    out_dir: Path
    output_key: str
    cpu_budget: int = 1
    cache_dir: str | None = None  # where stage results are kept across runs (None: not kept)
    staged: bool = False  # outputs wait in a staging folder until run() publishes them with the ledger line

    @property
    def staging(self) -> OutputStaging | None:
        """The file's staging folder when its outputs are staged (``run()`` stages them), else None."""
        return OutputStaging.for_file(self.out_dir, self.file.index) if self.staged else None

    def begin_attempt(self) -> Path:
        """The folder an attempt at the file writes its outputs in: its staging folder, emptied of what an
        earlier attempt left, or OUT itself when outputs are not staged."""
        staging = self.staging
        return staging.clear() if staging is not None else self.out_dir


class RunEvents(Protocol):
    """What an executor tells the caller while it runs (progress displays implement it)."""

    def file_started(self, task: FileTask) -> None: ...
    def file_progress(self, index: int, stage: str, done: int, total: int | None) -> None: ...
    def file_done(self, result: FileResult) -> None: ...


class Executor(Protocol):
    """Runs every task through the pipeline; a bad file fails alone.

    An executor may also define ``prepare(pipeline)``, called before the inputs
    are collected, to start its workers early.
    """

    name: str
    workers: int

    def run(self, pipeline: Pipeline, tasks: Sequence[FileTask], events: RunEvents) -> list[FileResult]: ...
