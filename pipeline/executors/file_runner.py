"""Runs one file through the whole graph inside one process, streaming items depth-first.

Each item a stage yields is pushed at once into the stages that accept its
kind, so a decoder's frame reaches every consumer before the next frame is
decoded: one file holds only the items in flight along one path.
Busy time is measured per stage, excluding the time of the stages it feeds.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterable
from typing import Any

from ..errors import InputError, StageError
from ..graph import Pipeline
from ..items import FRAME
from ..metrics import StageStats
from ..results import FAILED, OK, FileResult
from ..stage import FileRun, Stage, StageContext

__all__ = ["FileRunner"]


class FileRunner:
    """Interprets a pipeline for one file at a time; stages are set up once per runner."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.order = pipeline.order()
        self.stages: dict[str, Stage] = pipeline.stages
        self.roots = [n for n in self.order if not pipeline.inputs(n)]
        self.children = {n: [(c, frozenset(self.stages[c].accepts)) for c in pipeline.children(n)]
                         for n in self.order}
        self._is_setup = False
        # Per-file scratch, reset by run().
        self._ctx: dict[str, StageContext] = {}
        self._stats: dict[str, StageStats] = {}
        self._frames_in: dict[str, int] = {}
        self._frames_out: dict[str, int] = {}
        self._active = ""

    def setup(self) -> None:
        """Call every stage's ``setup`` (once)."""
        if not self._is_setup:
            for n in self.order:
                self.stages[n].setup()
            self._is_setup = True

    def teardown(self) -> None:
        """Call every stage's ``teardown``."""
        if self._is_setup:
            for n in self.order:
                try:
                    self.stages[n].teardown()
                except Exception:
                    pass
            self._is_setup = False

    def run(self, run: FileRun) -> FileResult:
        """Push ``run.file`` through the graph and return its result; never raises for a bad file."""
        self.setup()
        start = time.perf_counter()
        self._ctx = {n: StageContext(run, n) for n in self.order}
        self._stats = {n: StageStats(n, files=1) for n in self.order}
        self._frames_in = dict.fromkeys(self.order, 0)
        self._frames_out = dict.fromkeys(self.order, 0)
        result = FileResult(run.file, OK, run.record, run.outputs, run.warnings, self._stats)
        try:
            for n in self.order:
                self._call(n, self.stages[n].begin, self._ctx[n])
            for n in self.roots:
                self._push(n, run.file)
            for n in self.order:
                out = self._call(n, self.stages[n].end, self._ctx[n])
                if out is not None:
                    self._drain(n, out)
        except Exception as exc:  # one file fails; the caller's batch goes on
            stage = self._active
            self._stats[stage].failures += 1
            for n in reversed(self.order):
                try:
                    self.stages[n].abort(self._ctx[n])
                except Exception:
                    pass
            result.status = FAILED
            result.failed_stage = stage
            result.error_type = type(exc).__name__
            reason = exc.reason if isinstance(exc, (InputError, StageError)) else f"{type(exc).__name__}: {exc}"
            result.error = f"[{stage}] {reason}"
            result.traceback = "".join(traceback.format_exception(exc))
        for n in self.order:
            s = self._stats[n]
            s.frames = max(self._frames_in[n], self._frames_out[n])
        result.wall_s = time.perf_counter() - start
        return result

    def _call(self, name: str, fn: Any, *args: Any) -> Any:
        self._active = name
        t0 = time.perf_counter()
        out = fn(*args)
        self._stats[name].busy_s += time.perf_counter() - t0
        return out

    def _push(self, name: str, item: Any) -> None:
        stats = self._stats[name]
        stats.items_in += 1
        if getattr(item, "kind", None) == FRAME:
            self._frames_in[name] += 1
        out = self._call(name, self.stages[name].process, item, self._ctx[name])
        if out is not None:
            self._drain(name, out)

    def _drain(self, name: str, out: Iterable[Any]) -> None:
        stats = self._stats[name]
        children = self.children[name]
        it = iter(out)
        while True:
            self._active = name
            t0 = time.perf_counter()
            try:
                produced = next(it)
            except StopIteration:
                stats.busy_s += time.perf_counter() - t0
                return
            stats.busy_s += time.perf_counter() - t0
            stats.items_out += 1
            kind = getattr(produced, "kind", None)
            if kind == FRAME:
                self._frames_out[name] += 1
            for child, accepts in children:
                if kind in accepts:
                    self._push(child, produced)
