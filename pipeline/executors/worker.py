"""What runs inside worker processes: a file's actor calls, and map tasks.

A file's *actor* is a one-worker pool that holds the file's ``FileSession``
between calls (the decoder stays open, an encoder keeps its state). Map tasks
run stateless frame stages on any worker of their pool. A traced file's replies carry the spans of its stages'
work since the last call (``observe.stage_timeline``).
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from ..bookkeeping.memo import StageMemo
from ..dataplane.board import ProgressBoard
from ..dataplane.buffers import FrameRef
from ..errors import FramepipeError, StageError
from ..graph import Pipeline
from ..items import FileItem, is_shareable
from ..observe.stage_timeline import StageSpan
from ..results import FileResult
from ..runtime.limits import limit_reason
from ..stage import FileRun, Stage
from .base import FileTask
from .file_runner import FileSession, PartResult, StepResult, run_part

__all__ = ["ActorReply", "MapOutcome", "MapContext", "actor_start", "actor_step", "actor_finish", "actor_abort",
           "actor_part", "run_map"]

_PIPELINES: dict[str, Pipeline] = {}
_SESSIONS: dict[int, FileSession] = {}
_BOARDS: dict[str, ProgressBoard] = {}
_MAP_STAGES: dict[tuple[str, str], Stage] = {}
_WHERE = "worker limit"  # a limit as a worker names it: the one it inherited


@dataclass(slots=True)
class ActorReply:
    """An actor call's answer: a step's result, a part's pieces, or the file's final result (done or failed);
    with a trace, the spans of the stages' work in the call."""

    step: StepResult | None = None
    result: FileResult | None = None
    busy_s: float = 0.0
    part: PartResult | None = None
    spans: list[StageSpan] = field(default_factory=list)


def _pipeline(token: str, pipeline: Pipeline | None) -> Pipeline:
    found = _PIPELINES.get(token)
    if found is None:
        assert pipeline is not None, "the pipeline is sent with a file's first call"
        for stage in pipeline.stages.values():
            stage.setup()
        found = _PIPELINES[token] = pipeline
    return found


def _board(name: str, rows: int) -> ProgressBoard:
    board = _BOARDS.get(name)
    if board is None:
        board = _BOARDS[name] = ProgressBoard.attach(name, rows)
    return board


def actor_start(token: str, pipeline: Pipeline, task: FileTask, remote: frozenset[str], board: str,
                rows: int, row: int, stage_numbers: dict[str, int]) -> ActorReply:
    """Open the file's session in this actor and take its first step."""
    t0 = time.perf_counter()
    pipe = _pipeline(token, pipeline)
    progress_board = _board(board, rows)
    progress_board.start(row, os.getpid())

    def progress(stage: str, done: int, total: int | None) -> None:
        progress_board.update(row, stage_numbers.get(stage, -1), done, total)

    run = FileRun(task.file, task.begin_attempt(), task.output_key, task.cpu_budget, progress=progress,
                  memo=StageMemo.open(task.cache_dir) if task.cache_dir else None, workers=task.part_workers,
                  batch_ending=task.batch_ending, publish_to=task.remote_out)
    session = FileSession(pipe, run, remote, traced=task.traced)
    _SESSIONS[row] = session
    try:
        session.start()
        return ActorReply(step=session.step(), busy_s=time.perf_counter() - t0, spans=session.take_spans())
    except Exception as exc:
        del _SESSIONS[row]
        return ActorReply(result=_fail(session, exc), busy_s=time.perf_counter() - t0, spans=session.take_spans())


def actor_step(row: int, credits: list[FrameRef], inbox: list[tuple[str, list[Any]]]) -> ActorReply:
    """Deliver ordered items from map stages, grant slots, and run the session until it pauses."""
    t0 = time.perf_counter()
    session = _SESSIONS[row]
    try:
        for stage, items in inbox:
            session.deliver(stage, items)
        return ActorReply(step=session.step(credits), busy_s=time.perf_counter() - t0, spans=session.take_spans())
    except Exception as exc:
        del _SESSIONS[row]
        return ActorReply(result=_fail(session, exc), busy_s=time.perf_counter() - t0, spans=session.take_spans())


def actor_finish(row: int, parts: list[PartResult] | None = None) -> ActorReply:
    """End the file's stages, join its ``parts`` (a file cut into parts), and return its result."""
    t0 = time.perf_counter()
    session = _SESSIONS.pop(row)
    try:
        result = session.finish(parts)
    except Exception as exc:
        result = _fail(session, exc)
    return ActorReply(result=result, busy_s=time.perf_counter() - t0, spans=session.take_spans())


def actor_part(token: str, pipeline: Pipeline, task: FileTask) -> ActorReply:
    """Run one part of a file (``task.part``) to its end in this actor: its pieces, or its failure."""
    t0 = time.perf_counter()
    spans: list[StageSpan] = []
    done = run_part(_pipeline(token, pipeline), task, _fail, spans)
    reply = ActorReply(part=done) if isinstance(done, PartResult) else ActorReply(result=done)
    reply.busy_s = time.perf_counter() - t0
    reply.spans = spans
    return reply


def _fail(session: FileSession, exc: Exception) -> FileResult:
    """The file's failure; one that ran into a limit (out of memory, of open files...) says which, in one line:
    ``[proxy] out of memory (worker limit: 488 MiB of address space, ulimit -v 500000)``."""
    reason = None if isinstance(exc, FramepipeError) else limit_reason(exc, _WHERE)
    if reason is not None:
        limited = StageError(getattr(session, "_active", None) or "?", session.run.file.relpath, reason)
        limited.__cause__ = exc
        exc = limited
    return session.fail(exc)


def actor_abort(row: int, reason: str) -> ActorReply:
    """Drop the file's session (another part of it failed): stages discard partial outputs."""
    session = _SESSIONS.pop(row, None)
    if session is None:
        return ActorReply()
    return ActorReply(result=session.fail(RuntimeError(reason)))


# -----------------------------------------------------------------------------
# Map tasks


class MapContext:
    """What a map stage sees: the file, an output slot to write into, and report columns to add.

    Map stages keep no per-file state: give a stage ``stateful=True`` for that.
    """

    __slots__ = ("file", "stage", "_slot", "records", "warnings")

    def __init__(self, file: FileItem, stage: str, slot: FrameRef | None) -> None:
        self.file = file
        self.stage = stage
        self._slot = slot
        self.records: dict[str, Any] = {}
        self.warnings: list[str] = []

    @property
    def cpu_budget(self) -> int:
        return 1

    @property
    def state(self) -> dict[str, Any]:
        raise AttributeError(f"stage {self.stage!r} runs frame-parallel and keeps no per-file state; "
                             "declare it stateful=True to keep state")

    def output_array(self, shape: tuple[int, ...], dtype: Any = "uint8") -> Any:
        """A numpy array to write this frame's result into: the slot it will travel in (no copy later)."""
        import numpy as np
        dt = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dt.itemsize
        if self._slot is not None and nbytes <= self._slot.nbytes:
            return self._slot.replace(shape=tuple(shape), dtype=dt.str).array()
        return np.empty(shape, dt)

    def record(self, **columns: Any) -> None:
        self.records.update(columns)

    def warn(self, message: str) -> None:
        self.warnings.append(f"[{self.stage}] {message}")

    def progress(self, done: int, total: int | None = None) -> None:
        return None


@dataclass(slots=True)
class MapOutcome:
    """One frame's result from a map stage: its output (or None), and what went wrong if anything."""

    row: int  # the file's row in the scheduler (not its index in the batch)
    seq: int
    output: Any = None
    used_slot: bool = False
    busy_s: float = 0.0
    error: str | None = None
    traceback: str | None = None
    records: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def run_map(token: str, stage: Stage, batch: list[tuple[int, int, Any, FrameRef | None, FileItem]]) -> list[MapOutcome]:
    """Run a map stage over a batch of frames (from any files); one frame's error fails only its own."""
    cached = _MAP_STAGES.get((token, stage.name))
    if cached is None:
        stage.setup()
        cached = _MAP_STAGES[(token, stage.name)] = stage
    outcomes = []
    for row, seq, item, slot, file in batch:
        ctx = MapContext(file, stage.name, slot)
        t0 = time.perf_counter()
        try:
            out = cached.process(item, ctx)  # type: ignore[arg-type]
            outs = [] if out is None else list(out)
            if len(outs) > 1:
                raise ValueError(f"map stage {stage.name!r} emitted {len(outs)} items for one frame "
                                 "(at most one; declare it stateful=True to emit more)")
            produced = outs[0] if outs else None
            used = False
            if is_shareable(produced) and produced.shared_nbytes() > 0:
                if slot is None or produced.shared_nbytes() > slot.nbytes:
                    raise ValueError(f"map stage {stage.name!r} made a frame of {produced.shared_nbytes()} bytes, "
                                     f"larger than its input's slot ({slot.nbytes if slot else 0} bytes)")
                produced = produced.to_shared(slot)
                used = True
            outcomes.append(MapOutcome(row, seq, produced, used, time.perf_counter() - t0,
                                       records=ctx.records, warnings=ctx.warnings))
        except Exception as exc:
            reason = None if isinstance(exc, FramepipeError) else limit_reason(exc, _WHERE)
            outcomes.append(MapOutcome(row, seq, None, False, time.perf_counter() - t0,
                                       error=f"[{stage.name}] {reason or f'{type(exc).__name__}: {exc}'}",
                                       traceback="".join(traceback.format_exception(exc))))
    return outcomes

