"""``LocalExecutor``: the local executor's settings, and one batch run through the scheduler."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ...errors import FramepipeError, ResourceExhausted
from ...graph import Pipeline
from ...observe.metrics import StageStats
from ...observe.trace import RunTrace
from ...results import FileResult
from ...runtime.interrupts import capture_interrupts
from ...runtime.limits import limit_reason
from ..base import ExecutionReport, Executor, FileTask, RunEvents

if TYPE_CHECKING:
    from ...observe.snapshots import MetricsSnapshot

__all__ = ["LocalExecutor"]

log = logging.getLogger("framepipe.executor")


class LocalExecutor(Executor):
    """Runs files on this machine: ``workers`` processes for map stages, ``files_in_flight`` actors.

    ``buffer_bytes`` bounds the shared memory of frames in flight; ``fail_fast``
    stops the batch at the first failed file; on Ctrl-C running calls get
    ``grace_s`` seconds to finish before their workers are killed. ``snapshot()``: the run's latest
    ``MetricsSnapshot`` (with the figures of ``caches``, a ``CacheManager``, when one is given).
    ``map_workers``: the starting size of each map pool (default ``workers``). ``performance``: a
    ``PerformanceConfig`` whose ``optimize`` turns on the ``RunOptimizer``; its decisions end up in ``decisions``.
    ``file_timeout``: seconds each attempt at a file may take; past it the worker running the file's call (or
    a map task) is killed with SIGKILL, a hang in native code holding the GIL included, the file fails with
    ``FileTimeout`` and the batch goes on.

    The figures of the last run are in its ``ExecutionReport``, and also here: ``peak_slots``, ``actor_count``,
    ``map_stats``, ``decisions``.
    """

    name = "local"

    def __init__(self, workers: int | None = None, *, files_in_flight: int | None = None,
                 credits_per_file: int | None = None, buffer_bytes: int = 512 << 20, fail_fast: bool = False,
                 grace_s: float = 2.0, retries: int = 1, caches: Any = None, map_workers: int | None = None,
                 performance: Any = None, file_timeout: float | None = None) -> None:
        if file_timeout is not None and file_timeout <= 0:
            raise ValueError("file_timeout must be a positive number of seconds")
        self.file_timeout = file_timeout
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.map_workers = map_workers
        self.performance = performance
        self.retries = retries
        self.files_in_flight = files_in_flight
        self.credits_per_file = credits_per_file
        self.buffer_bytes = buffer_bytes
        self.fail_fast = fail_fast
        self.grace_s = grace_s
        self.caches = caches
        self._snapshot: MetricsSnapshot | None = None
        self._last = ExecutionReport(workers=self.workers)  # of the last run

    def snapshot(self) -> MetricsSnapshot | None:
        """The latest figures of the run going on, or of the last one (None before any); safe from any thread."""
        return self._snapshot

    @property
    def peak_slots(self) -> int:
        """Most frame slots leased at once in the last run."""
        return self._last.peak_slots

    @property
    def actor_count(self) -> int:
        """File actors of the last run."""
        return self._last.actor_count

    @property
    def map_stats(self) -> dict[str, StageStats]:
        """The map stages' records of the last run."""
        return dict(self._last.stage_stats)

    @property
    def decisions(self) -> list[Any]:
        """The optimizer's ``RunDecision`` s in the last run."""
        return list(self._last.decisions)

    # ------------------------------------------------------------------------------------------

    def prepare(self, pipeline: Pipeline) -> None:
        """Start the workers' server (importing the stages' modules) while the caller looks for its inputs."""
        from ...runtime.forkserver import start_server
        from .scheduler import stage_modules
        start_server(stage_modules(pipeline))

    def run(self, pipeline: Pipeline, tasks: Sequence[FileTask], events: RunEvents, *,
            trace: RunTrace | None = None) -> ExecutionReport:
        """Run every task on this machine's worker processes (see the package's diagram)."""
        if not tasks:
            return ExecutionReport(workers=self.workers, trace=trace)
        # The scheduler (loky, numpy) is loaded by the first run with files, not by a run that finds none to do.
        from . import observe, scheduler
        run = scheduler.start(self, pipeline, tasks, events, trace)
        results: list[FileResult] = []
        try:
            with capture_interrupts() as interrupt:
                results = scheduler.loop(run, interrupt)
        except Exception as exc:  # the scheduler itself ran out (a slot's segment, a descriptor): one line
            reason = None if isinstance(exc, FramepipeError) else limit_reason(exc)
            if reason is None:
                raise
            raise ResourceExhausted(f"the run stopped: {reason}") from exc
        finally:
            try:
                self._snapshot = observe.snapshot(run, running=False)
            except Exception:  # figures must never hide the run's own outcome
                log.debug("could not take the last snapshot", exc_info=True)
            scheduler.close(run)
            self._last = ExecutionReport(
                tuple(results), self.workers, MappingProxyType(dict(run.queues.stats)), len(run.workers.actors),
                run.slots.peak_leased, tuple(run.optimizer.decisions) if run.optimizer is not None else (), trace,
                self._snapshot)
        return self._last
