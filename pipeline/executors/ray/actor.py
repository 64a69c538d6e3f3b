"""What runs in Ray's worker processes: ``FileActor`` (one file at a time through the pipeline), its map
stages sent as ``map_batch`` Ray tasks, ``batch_size`` frames each, with backpressure, priority and in order
(``_MapFeeder``, ``feeding``), and ``ArrayRef``, the frames that travel through the object store. A traced file
(``FileTask.traced``) sends its timeline back with its result, its tasks' with theirs (``tracing``); the driver
polls a file's progress while it runs (``FileActor.progress``).
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import ray

from ...bookkeeping.memo import StageMemo
from ...dataplane.buffers import FrameRef, array_nbytes
from ...graph import Pipeline
from ...items import slot_of
from ...observe.metrics import StageStats
from ...observe.stage_timeline import StageSpan
from ...outputs import output_error, safe_join
from ...results import FAILED, FileResult, this_host
from ...stage import FilePart, FileRun
from ..base import FileTask
from ..failures import map_task_failed, worker_died
from ..file_runner import FileRunner, FileSession, PartResult, part_folder, run_part
from ..parts import remove_scratch
from ..worker import MapOutcome, run_map
from .feeding import MapBatches, pool_nice, run_niced
from .tracing import FileTrace, TaskSpan, clock, merge_map_spans

__all__ = ["ArrayRef", "FileActor", "map_batch", "as_remote", "remote_file_actor", "node_name"]


# -----------------------------------------------------------------------------
# Frames in the object store


@dataclass(frozen=True, slots=True)
class ArrayRef:
    """A frame's pixels in a numpy array that travels through Ray's object store: the Ray executor's ``FrameRef``.

    It has what stages use of a ``FrameRef`` (``shape``, ``dtype``, ``pixel_format``, ``nbytes``, ``array()``,
    ``replace()``), so ``to_shared`` and ``MapContext.output_array`` work unchanged. Pickled, it carries only the
    frame's bytes as a numpy array, which Ray keeps out of band: read on the same node, ``array()`` is a
    read-only view of the object store's shared memory.
    """

    buffer: np.ndarray  # flat uint8, at least nbytes long
    shape: tuple[int, ...]
    dtype: str = "|u1"
    pixel_format: str | None = None
    pts: int | None = None
    time_base: tuple[int, int] | None = None
    stream: int = 0
    seq: int = 0

    @classmethod
    def empty(cls, nbytes: int) -> ArrayRef:
        """A credit: room for a frame of up to ``nbytes`` bytes (memory is touched only when written)."""
        return cls(np.empty(nbytes, np.uint8), (nbytes,))

    @property
    def nbytes(self) -> int:
        """Bytes of the frame (of the room, for a credit), counted as ``FrameRef.nbytes`` counts them."""
        return array_nbytes(self.shape, self.dtype)

    time = FrameRef.time  # ``pts`` in seconds, from the same fields

    def array(self) -> np.ndarray:
        """The frame as numpy, a view of the buffer (read-only once it came out of the object store)."""
        return self.buffer[:self.nbytes].view(self.dtype).reshape(self.shape)

    def replace(self, **changes: Any) -> ArrayRef:
        """A copy with some metadata changed (the same buffer)."""
        return dataclasses.replace(self, **changes)

    def __reduce__(self) -> tuple[Any, ...]:
        # Only the frame's bytes travel; a contiguous slice, so Ray stores it out of band without a copy here.
        return (ArrayRef, (self.buffer[:self.nbytes], self.shape, self.dtype, self.pixel_format, self.pts,
                           self.time_base, self.stream, self.seq))


# -----------------------------------------------------------------------------
# The pipeline in a worker process, map tasks, file actors

_PIPELINES: dict[str, Pipeline] = {}


def _load_pipeline(token: str, source: bytes | list[Any]) -> Pipeline:
    """The run's pipeline in this process, unpickled once per run: from its bytes, or from ``[object ref]``
    (a ref inside a list is not resolved by Ray, so a worker that has the pipeline already never fetches it)."""
    found = _PIPELINES.get(token)
    if found is None:
        _PIPELINES.clear()  # a worker serves one run at a time; an earlier run's pipeline is not needed again
        blob = source if isinstance(source, bytes) else ray.get(source[0])
        # Only the bytes this run's driver pickled in memory: nothing read from disk or a cache is unpickled.
        found = _PIPELINES[token] = pickle.loads(blob)
    return found


def map_batch(token: str, box: list[Any], stage_name: str, file: Any, traced: bool, nice: int,
              *items: Any) -> tuple[list[MapOutcome], TaskSpan | None]:
    """A map stage over a batch of one file's frames (a Ray task; Ray resolves each frame's object, read in place
    on its node); each result travels back in a slot as large as its input's, in the batch's order. ``nice``:
    run the stage on a thread niced by that much (``feeding.run_niced``: a lower-priority pool's). ``traced``:
    with the task's span (its stage and frames, on this worker's track)."""
    t0 = time.perf_counter()
    stage = _load_pipeline(token, box).stages[stage_name]
    batch = []
    for seq, item in enumerate(items):
        ref = slot_of(item)
        batch.append((0, seq, item, ArrayRef.empty(ref.nbytes) if ref is not None else None, file))
    outcomes = run_niced(nice, run_map, token, stage, batch)  # (ArrayRef: a duck-typed FrameRef)
    if not traced:
        return outcomes, None
    frames = sum(slot_of(item) is not None for item in items)  # as its stats count them
    args = {"stage": stage_name, "frames": frames, "files": [file.relpath]}
    return outcomes, TaskSpan(clock(), f"{stage.pool} worker", f"map:{stage.pool}", f"map {stage_name} x{len(items)}",
                              t0, time.perf_counter(), args, items=len(items))


def part_task(token: str, box: list[Any], task: FileTask, home: str | None = None
              ) -> tuple[PartResult | FileResult, TaskSpan | None, dict[str, np.ndarray]]:
    """One part of a file (a Ray task, on whichever node has room): its pieces, or its failure; when traced,
    with the part's span and its stages' work inside it.

    ``home``: the Ray node id of the file's actor when the pieces must travel to it (``FileActor._start_parts``):
    a part that ran on another node reads its scratch files back and sends them in its result (numpy arrays,
    which Ray keeps out of band in its object store), removing its own copies; the third value, ``{path relative
    to the part's folder: bytes}``, is empty when the pieces stay where they are."""
    t0 = time.perf_counter()
    stages: list[StageSpan] | None = [] if task.traced else None
    done = run_part(_load_pipeline(token, box), task, spans=stages)
    carried: dict[str, np.ndarray] = {}
    if isinstance(done, PartResult) and home is not None and home != ray.get_runtime_context().get_node_id():
        try:
            carried = _read_pieces(part_folder(task), done.scratch)
        except OSError as exc:
            done = FileResult(task.file, FAILED, error=f"[part] cannot read back a piece: {exc}",
                              error_type="OutputError")
    if stages is None or task.part is None:
        return done, None, carried
    where = f"{task.part.index + 1}/{task.part.count}"
    args: dict[str, Any] = {"file": task.file.relpath, "part": where}
    if carried:
        args["carried_bytes"] = sum(a.nbytes for a in carried.values())
    return done, TaskSpan(clock(), "part worker", "parts", f"part {where}", t0, time.perf_counter(),
                          args, stages), carried


def _read_pieces(folder: Path, scratch: list[str]) -> dict[str, np.ndarray]:
    """A part's scratch files (its pieces) as ``{path relative to folder: bytes}``; the files are removed, read
    or not."""
    try:
        return {os.path.relpath(path, folder): np.fromfile(path, np.uint8) for path in scratch}
    finally:
        remove_scratch(scratch)


def _write_pieces(folder: Path, carried: dict[str, np.ndarray]) -> list[str]:
    """Write the pieces a part on another node sent back at their paths under ``folder`` (the paths its pieces
    name: the file's folder has the same name on every node); returns them. Raises ``OutputError``."""
    written: list[str] = []
    try:
        for rel, data in carried.items():
            path = safe_join(folder, rel)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "wb") as f:
                    written.append(str(path))
                    f.write(data.data)
            except OSError as exc:
                raise output_error("write", path, exc) from exc
    except BaseException:
        remove_scratch(written)
        raise
    return written


def node_name() -> str:
    """Where this Ray process runs, as ``FileResult.node`` says it: ``<host name>/<Ray node id, 8 hex digits>``
    (the node as the trace's tracks name it: one host may hold several nodes)."""
    return f"{this_host()}/{clock().node}"


@cache
def as_remote(fn_or_class: Any) -> Any:
    """``ray.remote`` of a function or class, made once per process (Ray exports each definition it is given)."""
    return ray.remote(fn_or_class)


@cache
def remote_file_actor() -> Any:
    """``FileActor`` as a Ray actor class, made once per process. Its concurrency groups (Ray takes them only
    here, not in ``.options()``): ``progress()`` answers on a thread of its own while ``run_file`` runs in the
    default group, one call at a time as in a plain actor."""
    remote: Any = ray.remote  # (its typed overloads leave concurrency_groups out)
    return remote(concurrency_groups={"progress": 1})(FileActor)


class FileActor:
    """Runs files one at a time through the pipeline in one Ray worker process (a Ray actor)."""

    def __init__(self, token: str, blob: bytes, max_in_flight: int, map_options: dict[str, dict[str, Any]],
                 retries: int) -> None:
        # Only plain values here (the pipeline inline, it is small): Ray reruns this when it restarts the actor,
        # and must not depend on an object that may be gone by then.
        self.token = token
        self.box: list[Any] = []
        self.pipeline = _load_pipeline(token, blob)
        self.runner = FileRunner(self.pipeline)
        self.maps = frozenset(n for n, s in self.pipeline.stages.items() if s.is_map)
        self.nice = pool_nice(self.pipeline.pools, [s for s in self.pipeline.stages.values() if s.is_map])
        self.max_in_flight = max_in_flight
        self.map_options = map_options
        self.retries = retries
        self.children = {n: self.pipeline.children(n) for n in self.runner.order}
        self.cluster_cpus = int(ray.cluster_resources().get("CPU", 1)) if self.maps else 1
        self.tasks: list[TaskSpan] | None = None  # the spans of the traced file's tasks (None: not traced)
        self.told: tuple[int, str, int, int | None] | None = None  # the file's progress: index, stage, done, total

    def run_file(self, task: FileTask, box: list[Any]) -> tuple[FileResult, FileTrace | None]:
        """Run one file through every stage; never raises for a bad file. ``box``: the pipeline for map tasks.
        A traced file (``task.traced``) comes back with its timeline, else None beside it."""
        t0 = time.perf_counter()
        self.box = box
        self.tasks = [] if task.traced else None
        self.told = None
        stages: list[StageSpan] | None = [] if task.traced else None
        index = task.file.index

        def progress(stage: str, done: int, total: int | None) -> None:  # one assignment: read by ``progress()``
            self.told = (index, stage, done, total)

        run = FileRun(task.file, task.begin_attempt(), task.output_key, task.cpu_budget, progress=progress,
                      memo=StageMemo.open(task.cache_dir) if task.cache_dir else None,
                      workers=task.part_workers if not self.maps else 1, batch_ending=task.batch_ending,
                      publish_to=task.remote_out)
        if not self.maps:
            result = self.runner.run(run, lambda spans: self._start_parts(task, spans), spans=stages)
        else:
            self.runner.setup()
            result = _MapFeeder(self, run, stages).run()
        if stages is None or self.tasks is None:
            return result, None
        return result, FileTrace(t0, time.perf_counter(), stages, merge_map_spans(self.tasks), clock())

    @ray.method(concurrency_group="progress")
    def progress(self) -> tuple[int, str, int, int | None] | None:
        """How far the file in hand has got, as its stages last told (its index, the stage, done, total), or
        None. Served on a thread of its own (the actor's ``progress`` concurrency group, ``remote_file_actor``)
        while ``run_file`` runs on the actor's main one: a read of one attribute, which ``run_file`` sets."""
        return self.told

    def took(self, span: TaskSpan | None) -> None:
        """Keep the span a task of the traced file sent back with its result."""
        if span is not None and self.tasks is not None:
            self.tasks.append(span)

    def _start_parts(self, task: FileTask, spans: list[Any]) -> Any:
        """Start a file's parts as Ray tasks across the cluster (each holding the file's CPUs, run again if its
        worker dies); what waits for their outcomes.

        The join reads the parts' pieces by path, in the file's folder. With OUT on object storage
        (``task.remote_out``) the nodes share no folder, so a part that ran on another node sends its pieces'
        bytes back through the object store (``part_task``) and they are written here, at the same paths, before
        the join. With OUT a local folder they are not: a cluster can only run with a local OUT when that folder
        is shared by every node (each node's actors write their files' outputs there, the driver publishes them),
        so the pieces are already where the join reads them, and copying each part's video through the object
        store would cost memory and time for nothing. Parts on the actor's own node never send theirs."""
        remote = as_remote(part_task).options(num_cpus=task.cpu_budget, max_retries=self.retries)
        parts = [dataclasses.replace(task, part=FilePart(i, len(spans), span), cache_dir=None)
                 for i, span in enumerate(spans)]
        home = ray.get_runtime_context().get_node_id() if task.remote_out is not None else None
        refs = [remote.remote(self.token, self.box, part, home) for part in parts]

        def wait() -> list[PartResult | FileResult]:
            done: list[PartResult | FileResult] = []
            sent: list[tuple[PartResult, dict[str, np.ndarray]]] = []
            for part, ref in zip(parts, refs, strict=True):
                try:
                    outcome, span, carried = ray.get(ref)
                except Exception as exc:  # its worker died past its retries
                    done.append(worker_died(part, self.retries + 1, type(exc).__name__))
                    continue
                done.append(outcome)
                if carried and isinstance(outcome, PartResult):
                    sent.append((outcome, carried))
                self.took(span)
            if any(isinstance(d, FileResult) for d in done):
                return done  # the file fails: the pieces sent back are not needed
            try:
                for outcome, carried in sent:
                    outcome.scratch = _write_pieces(part_folder(task), carried)
            except Exception:  # (a full disk here): the file fails, and no piece is left behind
                for d in done:
                    if isinstance(d, PartResult):
                        remove_scratch(d.scratch)
                raise
            return done
        return wait

    def ready(self) -> str:
        """Answers once the actor is up (its pipeline loaded), with the node it is on (``node_name``)."""
        return node_name()

    def close(self) -> None:
        """Tear the stages down (decoders, encoders, buffer pools) before the actor is killed."""
        self.runner.teardown()


@dataclass(slots=True)
class _InFlight:
    """A map task of this file (a batch of its frames for one stage) that has not been taken back yet."""

    stage: str
    ref: Any
    frames: int  # items in the batch
    sent: float


class _MapFailed(Exception):
    def __init__(self, stage: str, error: str, traceback: str | None) -> None:
        super().__init__(error)
        self.stage, self.error, self.traceback = stage, error, traceback


class _MapFeeder:
    """One file's session in its actor, its map stages as Ray tasks: the batches, backpressure and order live here.

    Each frame bound for map stages is put in the object store once and waits in each target stage's batch
    (``feeding.MapBatches``). A batch goes out as one ``map_batch`` task when it is full (the stage's
    ``batch_size``), or partial when nothing else would fill it soon: the session is drained, or no task of the
    file is out to bring room back. The highest-priority stage's batches are sent first; a stage's
    ``concurrency`` bounds its tasks out. ``max_in_flight`` counts frames, not tasks: the frames waiting in
    batches and those out in tasks (a frame sent to two map stages counts twice), so the object store holds at
    most that many of the file's frames whatever the batch size. The session pauses when a frame has no credit
    (the budget is full); then the oldest task is taken back, and results are taken oldest first, each task's
    in its batch's order, so each local stage gets them in frame order with no reordering buffer.
    """

    def __init__(self, actor: FileActor, run: FileRun, spans: list[StageSpan] | None = None) -> None:
        self.actor = actor
        self.pipeline = actor.pipeline
        self.stages = self.pipeline.stages
        self.spans = spans  # where the spans of the stages' work go (traced), at the end
        self.session = FileSession(self.pipeline, run, actor.maps, order=actor.runner.order,
                                   traced=spans is not None)
        self.batches = MapBatches[Any](self.stages[m] for m in actor.runner.order if m in actor.maps)
        self.flight: deque[_InFlight] = deque()
        self.out = 0  # frames waiting in batches or out in tasks: what max_in_flight bounds
        self.stats = {m: StageStats(m, files=1, where=f"map:{self.stages[m].pool}",
                                    workers=actor.cluster_cpus) for m in actor.maps}
        self.latencies: dict[str, list[float]] = {m: [] for m in actor.maps}
        self.records: dict[str, Any] = {}
        self.warnings: list[str] = []

    def run(self) -> FileResult:
        session = self.session
        budget = self.actor.max_in_flight
        try:
            session.start()
            need, drained = 0, False
            while True:
                # A step each turn while there is room, even once drained: frames that map stages sent back to
                # local stages may have made more for map stages (map -> local -> map), which wait in the session.
                if not need or self.out < budget:
                    credits = [ArrayRef.empty(need) for _ in range(budget - self.out)] if need else []
                    step = session.step(credits)  # type: ignore[arg-type]  # ArrayRef: the Ray executor's FrameRef
                    for out in step.outbox:
                        self._queue(out.item, out.targets)
                    need, drained = step.need_nbytes, step.exhausted
                self._send(flush=drained)  # full batches (all, once the session is drained)
                if not self.flight:  # nothing out to bring room or frames back: partial batches go too
                    self._send(flush=True)
                if not self.flight:  # nothing out: then nothing waits either (flushed), and the session goes on
                    if drained:
                        break
                    continue
                if drained or self.out >= budget:
                    self._take_oldest()
            result = session.finish()
        except _MapFailed as failed:
            result = session.fail(RuntimeError(failed.error))  # aborts the local stages
            if result.failed_stage in result.stats:  # the local stage it names did not fail: the map stage did
                result.stats[result.failed_stage].failures -= 1
            result.failed_stage, result.error, result.error_type = failed.stage, failed.error, "StageError"
            result.traceback = failed.traceback
        except Exception as exc:  # a local stage raised: the file fails alone
            result = session.fail(exc)
        if self.spans is not None:
            self.spans += session.take_spans()
        result.record.update(self.records)
        result.warnings += self.warnings
        for m, st in self.stats.items():
            st.record_latencies(self.latencies[m])
            result.stats[m] = st
        return result

    def _queue(self, item: Any, targets: Sequence[str]) -> None:
        """Put the item in the object store once, and in the batch of each target stage."""
        obj = ray.put(item)
        ref = slot_of(item)
        for m in targets:
            self.batches.add(m, obj)
            self.out += 1
            st = self.stats[m]
            st.items_in += 1
            if ref is not None:
                st.frames += 1
                st.bytes += ref.nbytes

    def _send(self, flush: bool) -> None:
        """Start a ``map_batch`` task for each batch that may go now, the highest-priority stage's first."""
        actor = self.actor
        file, traced = self.session.run.file, self.spans is not None
        for m, objs in self.batches.batches(flush):
            stage = self.stages[m]
            options = {"num_cpus": 1, "max_retries": actor.retries, **actor.map_options.get(stage.pool, {})}
            task = as_remote(map_batch).options(**options).remote(actor.token, actor.box, m, file, traced,
                                                                actor.nice.get(stage.pool, 0), *objs)
            self.flight.append(_InFlight(m, task, len(objs), time.perf_counter()))

    def _take_oldest(self) -> None:
        """Wait for the oldest map task and pass its frames on, in order: to map stages' batches, to local ones."""
        entry = self.flight.popleft()
        m = entry.stage
        self.batches.returned(m)
        self.out -= entry.frames
        try:
            outcomes, span = ray.get(entry.ref)
        except Exception as exc:  # the task could not run (its worker died past its retries)
            raise _MapFailed(m, map_task_failed(m, exc), None) from exc
        self.actor.took(span)
        self.latencies[m].append(time.perf_counter() - entry.sent)
        st = self.stats[m]
        for outcome in outcomes:
            st.busy_s += outcome.busy_s
            if outcome.error is not None:
                st.failures += 1
                raise _MapFailed(m, outcome.error, outcome.traceback)
            self.records.update(outcome.records)
            self.warnings += outcome.warnings
            output = outcome.output
            if output is None:
                continue
            st.items_out += 1
            kind = getattr(output, "kind", None)
            kids = [c for c in self.actor.children[m] if kind in self.stages[c].accepts]
            remote = [c for c in kids if c in self.actor.maps]
            if remote:
                self._queue(output, remote)
            for child in kids:
                if child not in self.actor.maps:
                    self.session.deliver(child, [output])
