"""The executor contract: what an executor is given, what it must do, and what it hands back.

    run()  (pipeline/run.py)                        an Executor (inline, local, ray)
    ------------------------                        --------------------------------
    ex.prepare(pipeline)      while inputs are found   start workers, connect to a cluster (optional)
    ex.run(pipeline, tasks, events, trace=...)  ────►  every FileTask through the pipeline; a bad file
        events.file_started / file_progress / ◄──────  fails alone; results in task order
        file_done as files go
    ExecutionReport           ◄──────────────────────  results + the run's own figures (slots, actors, ...)
    ex.snapshot()             from any thread, during  the run's latest MetricsSnapshot (Prometheus)
    ex.close()                always, at the end       stop what prepare() started

``run()`` prepares the executor while it looks for the inputs; a run that may find every file done (a ledger to
resume from) or remembered (every stage cacheable) prepares it only once it knows that a file is left to run, and
a run with none left never does (nor starts a worker).

The caller reads everything it needs from the ``ExecutionReport`` and the methods of ``Executor``: it never asks an
executor whether it has an attribute. An executor without actors, slots or an optimizer leaves those figures at
the report's defaults.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, ClassVar, Protocol

from ..bookkeeping.staging import OutputStaging
from ..graph import Pipeline
from ..items import FileItem
from ..observe.metrics import StageStats
from ..observe.trace import RunTrace
from ..results import FileResult
from ..stage import FilePart
from ..storage.location import adopt_environment

if TYPE_CHECKING:
    from ..observe.snapshots import MetricsSnapshot
    from ..tuning.plan import RunDecision

__all__ = ["FileTask", "RunEvents", "ExecutionReport", "Executor", "credits_per_file"]


@dataclass(frozen=True, slots=True)
class FileTask:
    """One file to run (or one part of it): the item, where its outputs go, and its share of the cores.

    ``part_workers``: how many workers the file's parts could spread over (1: it is never cut into parts).
    ``part``: set on the task of one part of a file that the executor cut. ``batch_ending``: no other file waited
    to start when this one did. ``traced``: the run records a trace, so the file's session records its stages' spans.
    ``remote_out``: OUT is on object storage (``storage.mirror``): ``out_dir`` is the run's local stand-in for it,
    the staging folder is made under that name on whatever node runs the file, and the worker that seals the
    outputs puts them at their URLs under ``remote_out``. ``storage_env``: the driver's ``AWS_*`` settings
    (``storage.location.storage_environment``: each variable, or None where unset), taken by the worker at each
    attempt; it holds credentials, so the task's ``repr`` leaves it out.
    """

    file: FileItem
    out_dir: Path
    output_key: str
    cpu_budget: int = 1
    cache_dir: str | None = None  # where stage results are kept across runs (None: not kept)
    staged: bool = False  # outputs wait in a staging folder until run() publishes them with the ledger line
    part_workers: int = 1
    part: FilePart | None = None
    batch_ending: bool = False
    traced: bool = False
    remote_out: str | None = None  # OUT is this URL: out_dir is a local stand-in, outputs are put there by the worker
    # the driver's AWS_* settings (None: unset), for a run that reads or writes URLs; credentials: never in a repr
    storage_env: tuple[tuple[str, str | None], ...] = field(default=(), repr=False)

    @property
    def staging(self) -> OutputStaging | None:
        """The file's staging folder when its outputs are staged (``run()`` stages them), else None."""
        return OutputStaging.for_file(self.out_dir, self.file.index) if self.staged else None

    def begin_attempt(self) -> Path:
        """The folder an attempt at the file writes its outputs in: its staging folder, emptied of what an
        earlier attempt left, or OUT itself when outputs are not staged."""
        if self.storage_env:  # (a worker started before the driver's settings were made sees them now)
            adopt_environment(self.storage_env)
        staging = self.staging
        return staging.clear() if staging is not None else self.out_dir


class RunEvents(Protocol):
    """What an executor tells the caller while it runs (progress displays implement it)."""

    def file_started(self, task: FileTask) -> None: ...
    def file_progress(self, index: int, stage: str, done: int, total: int | None) -> None: ...
    def file_done(self, result: FileResult) -> None: ...


@dataclass(frozen=True, slots=True)
class ExecutionReport:
    """What one ``Executor.run`` did: every file's result in task order, and the run's own figures.

    ``stage_stats``: the executor's own record of a stage where the per-file ones do not add up to it (the local
    executor's map stages, which serve every file from one pool); the caller uses it instead of the sum.
    ``actor_count``: processes (actors) that ran files, one file at a time each (0: the files ran in the
    caller's process, or none ran). ``peak_slots``: most shared-memory frame slots leased at once.
    ``decisions``: the optimizer's ``RunDecision`` s. ``trace``: the ``RunTrace`` the run recorded into (the one
    it was given). ``snapshot``: the run's last ``MetricsSnapshot``. ``workers``: the core budget it ran with.
    """

    results: tuple[FileResult, ...] = ()
    workers: int = 1
    stage_stats: Mapping[str, StageStats] = field(default_factory=lambda: MappingProxyType({}))
    actor_count: int = 0
    peak_slots: int = 0
    decisions: tuple[RunDecision, ...] = ()
    trace: RunTrace | None = None
    snapshot: MetricsSnapshot | None = None


class Executor(ABC):
    """Runs every task through the pipeline, where it sees fit; a bad file fails alone.

    Subclasses name themselves (``name``), keep their core budget in ``workers`` (the caller may set it before
    ``run``) and implement ``run``; ``prepare``, ``close`` and ``snapshot`` have defaults that do nothing.

    ``run`` must: tell ``events`` of each file as it starts and ends; return one result per task, in task order,
    a failed file's included (never raise for a bad file); leave nothing running behind it; and record its
    calls into ``trace`` when one is given (inline, local and Ray do: Ray's from other machines' clocks).
    ``prepare`` may be called once before ``run`` (or not at all); ``close`` is called after it, whatever
    happened, even without ``run``.

    A complete executor, one file after another in this process::

        class Sequential(Executor):
            name = "sequential"

            def run(self, pipeline, tasks, events, *, trace=None):
                runner = FileRunner(pipeline)
                results = []
                try:
                    for task in tasks:
                        events.file_started(task)
                        result = runner.run(FileRun(task.file, task.begin_attempt(), task.output_key))
                        events.file_done(result)
                        results.append(result)
                finally:
                    runner.teardown()
                return ExecutionReport(tuple(results), self.workers, trace=trace)
    """

    name: ClassVar[str]
    workers: int = 1

    def prepare(self, pipeline: Pipeline) -> None:  # noqa: B027 - optional: most executors need no preparing
        """Start what ``run`` will need (workers, a cluster connection) while the caller looks for its inputs."""

    @abstractmethod
    def run(self, pipeline: Pipeline, tasks: Sequence[FileTask], events: RunEvents, *,
            trace: RunTrace | None = None) -> ExecutionReport:
        """Run every task; return what happened (with no tasks: an empty report, at once)."""

    def close(self) -> None:  # noqa: B027 - optional: most executors leave nothing running
        """Stop what ``prepare`` or ``run`` left started (a Ray instance); safe to call more than once."""

    def snapshot(self) -> MetricsSnapshot | None:
        """The latest figures of the run going on, or of the last one (None: none taken); safe from any thread."""
        return None


def credits_per_file(map_workers: int) -> int:
    """How many frames one file may have in flight to map stages: enough to keep every map worker fed.

    Two per map worker (one running, one waiting) plus two for the file's own decoder, and never under four.
    The local executor's slot credits and the Ray executor's map tasks in flight per file both follow it; the
    optimizer re-applies it when it resizes a map pool.
    """
    return max(4, 2 * map_workers + 2)
