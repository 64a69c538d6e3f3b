"""The executor contract: run file tasks, report events, return results in input order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..graph import Pipeline
from ..items import FileItem
from ..results import FileResult

__all__ = ["FileTask", "RunEvents", "Executor"]


@dataclass(frozen=True, slots=True)
class FileTask:
    """One file to run: the item, where its outputs go, and its share of the cores."""

    file: FileItem
    out_dir: Path
    output_key: str
    cpu_budget: int = 1
    cache_dir: str | None = None  # where stage results are kept across runs (None: not kept)


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
