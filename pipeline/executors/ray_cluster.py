"""The Ray executor: the same pipeline on a Ray cluster, frames through Ray's object store.

    driver (this process)                          Ray cluster (any node)
    ---------------------                          ----------------------
    the pipeline, pickled once (cloudpickle)
    per free file actor: run_file(task)  ───────►  FileActor (cpus_per_file CPUs; Ray restarts it when killed)
                                                     no map stages: FileRunner.run(file), the whole graph here
                                                     map stages: a FileSession that pauses for credits, and
    ray.wait on the files in flight  ◄──────────     each frame ray.put once -> map_frame tasks on any node,
    a file whose actor died is run again             at most max_in_flight per file (ray.wait: backpressure),
    (``retries``), counted in FileResult.attempts    results taken oldest first, so frames stay in order

Frames cross as numpy arrays in ``ArrayRef`` s (the Ray executor's ``FrameRef``): pickled once into the object
store with the array out of band, read back on the same node as a read-only view of the store's shared memory,
with no copy. A fan-out (one frame for two map stages) shares that one object.

Ray is imported only when this module is, and this module only when the ``ray`` executor is asked for.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import pickle
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from ..errors import MissingExtra
from ..runtime import lifecycle

try:
    import ray
    from ray.exceptions import RayActorError
except ImportError as exc:  # the extra is not installed
    raise MissingExtra("the ray executor needs `pip install framepipe[ray]`") from exc

import cloudpickle

from ..bookkeeping.memo import StageMemo
from ..dataplane.buffers import FrameRef, array_nbytes
from ..graph import Pipeline
from ..observe.metrics import StageStats
from ..observe.trace import RunTrace
from ..results import FileResult
from ..runtime.interrupts import InterruptFlag, capture_interrupts
from ..stage import FileRun
from .base import ExecutionReport, Executor, FileTask, RunEvents, credits_per_file
from .failures import map_task_failed, timed_out, worker_died, worker_failed
from .file_runner import FileRunner, FileSession
from .worker import MapOutcome, run_map

__all__ = ["RayExecutor", "ArrayRef", "start_local_ray"]

log = logging.getLogger("framepipe.executor")
_TICK_S = 0.2  # how often the driver looks at Ctrl-C / SIGTERM while it waits


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
# What runs in Ray's worker processes

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


def map_frame(token: str, box: list[Any], stage_name: str, item: Any, file: Any) -> MapOutcome:
    """A map stage over one frame (a Ray task); the result travels back in a slot as large as the input's."""
    stage = _load_pipeline(token, box).stages[stage_name]
    ref = getattr(item, "ref", None)
    slot = ArrayRef.empty(ref.nbytes) if ref is not None else None
    return run_map(token, stage, [(0, 0, item, slot, file)])[0]  # type: ignore[list-item]  # (duck-typed FrameRef)


@cache
def _remote(fn_or_class: Any) -> Any:
    """``ray.remote`` of a function or class, made once per process (Ray exports each definition it is given)."""
    return ray.remote(fn_or_class)


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
        self.max_in_flight = max_in_flight
        self.map_options = map_options
        self.retries = retries
        self.children = {n: self.pipeline.children(n) for n in self.runner.order}
        self.cluster_cpus = int(ray.cluster_resources().get("CPU", 1)) if self.maps else 1

    def run_file(self, task: FileTask, box: list[Any]) -> FileResult:
        """Run one file through every stage; never raises for a bad file. ``box``: the pipeline for map tasks."""
        self.box = box
        run = FileRun(task.file, task.begin_attempt(), task.output_key, task.cpu_budget,
                      memo=StageMemo.open(task.cache_dir) if task.cache_dir else None)
        if not self.maps:
            return self.runner.run(run)
        self.runner.setup()
        return _MapFeeder(self, run).run()

    def ready(self) -> None:
        """Answers once the actor is up (its pipeline loaded)."""

    def close(self) -> None:
        """Tear the stages down (decoders, encoders, buffer pools) before the actor is killed."""
        self.runner.teardown()


@dataclass(slots=True)
class _InFlight:
    """A map task of this file that has not been taken back yet."""

    stage: str
    ref: Any
    sent: float


class _MapFailed(Exception):
    def __init__(self, stage: str, error: str, traceback: str | None) -> None:
        super().__init__(error)
        self.stage, self.error, self.traceback = stage, error, traceback


class _MapFeeder:
    """One file's session in its actor, its map stages as Ray tasks: the backpressure and order live here.

    The session pauses when a frame for a map stage has no credit; credits are given while fewer than
    ``max_in_flight`` map tasks are out (and a stage's ``concurrency`` bounds its own share). Results are taken
    oldest first, so each local stage gets them in frame order with no reordering buffer.
    """

    def __init__(self, actor: FileActor, run: FileRun) -> None:
        self.actor = actor
        self.pipeline = actor.pipeline
        self.stages = self.pipeline.stages
        self.session = FileSession(self.pipeline, run, actor.maps, order=actor.runner.order)
        self.flight: deque[_InFlight] = deque()
        self.running: dict[str, int] = dict.fromkeys(actor.maps, 0)
        self.stats = {m: StageStats(m, files=1, where=f"map:{self.stages[m].pool}",
                                    workers=actor.cluster_cpus) for m in actor.maps}
        self.latencies: dict[str, list[float]] = {m: [] for m in actor.maps}
        self.records: dict[str, Any] = {}
        self.warnings: list[str] = []

    def run(self) -> FileResult:
        session = self.session
        try:
            session.start()
            need = 0
            while True:
                room = self.actor.max_in_flight - len(self.flight)
                credits = [ArrayRef.empty(need) for _ in range(room)] if need else []
                step = session.step(credits)  # type: ignore[arg-type]  # ArrayRef: the Ray executor's FrameRef
                for out in step.outbox:
                    self._send(out.item, out.targets)
                need = step.need_nbytes
                if step.exhausted and not self.flight:
                    break
                if self.flight and (step.exhausted or len(self.flight) >= self.actor.max_in_flight):
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
        result.record.update(self.records)
        result.warnings += self.warnings
        for m, st in self.stats.items():
            st.record_latencies(self.latencies[m])
            result.stats[m] = st
        return result

    def _send(self, item: Any, targets: Sequence[str]) -> None:
        """Put the item in the object store once and start a map task on it for each target stage."""
        obj = ray.put(item)
        ref = getattr(item, "ref", None)
        for m in targets:
            stage = self.stages[m]
            while self.flight and stage.concurrency is not None and self.running[m] >= stage.concurrency:
                self._take_oldest()
            options = {"num_cpus": 1, "max_retries": self.actor.retries, **self.actor.map_options.get(stage.pool, {})}
            task = _remote(map_frame).options(**options).remote(self.actor.token, self.actor.box, m, obj,
                                                                self.session.run.file)
            self.flight.append(_InFlight(m, task, time.perf_counter()))
            self.running[m] += 1
            st = self.stats[m]
            st.items_in += 1
            if ref is not None:
                st.frames += 1
                st.bytes += ref.nbytes

    def _take_oldest(self) -> None:
        """Wait for the oldest map task and pass its frame on: to map stages as a new task, to local ones in order."""
        entry = self.flight.popleft()
        m = entry.stage
        self.running[m] -= 1
        try:
            outcome: MapOutcome = ray.get(entry.ref)
        except Exception as exc:  # the task could not run (its worker died past its retries)
            raise _MapFailed(m, map_task_failed(m, exc), None) from exc
        self.latencies[m].append(time.perf_counter() - entry.sent)
        st = self.stats[m]
        st.busy_s += outcome.busy_s
        if outcome.error is not None:
            st.failures += 1
            raise _MapFailed(m, outcome.error, outcome.traceback)
        self.records.update(outcome.records)
        self.warnings += outcome.warnings
        output = outcome.output
        if output is None:
            return
        st.items_out += 1
        kind = getattr(output, "kind", None)
        kids = [c for c in self.actor.children[m] if kind in self.stages[c].accepts]
        remote = [c for c in kids if c in self.actor.maps]
        if remote:
            self._send(output, remote)
        for child in kids:
            if child not in self.actor.maps:
                self.session.deliver(child, [output])


# -----------------------------------------------------------------------------
# The driver


def start_local_ray(num_cpus: int | None = None) -> str:
    """Start a Ray instance on this machine for this process (no dashboard), its workers importing what we import;
    returns the empty folder its processes work in (see ``_init``).

    Ray's worker processes inherit the environment its daemons are started with: ``PYTHONPATH`` is set to this
    process's ``sys.path`` while they start (a runtime_env would need Ray's agent, which ``ray[default]`` brings).
    """
    paths = [p for p in sys.path if p and os.path.isdir(p)]
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    try:
        with lifecycle.tagged():  # its processes end with this one, even killed (lifecycle's watchdog)
            return _init(address="local", num_cpus=num_cpus, include_dashboard=False)
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


def _init(**options: Any) -> str:
    """``ray.init`` quietly, from an empty folder of our own, keeping this process's SIGTERM handler (Ray replaces
    it with its own); returns that folder.

    Ray puts the driver's current folder first on every worker's import path, and a local Ray's processes work
    in it: run from a folder of downloaded footage, a ``numpy.py`` there would run in every worker. So the driver
    stands in a fresh private folder while it connects (task paths are absolute, so nothing else depends on it).
    """
    main = threading.current_thread() is threading.main_thread()
    sigterm = signal.getsignal(signal.SIGTERM) if main else None
    here = os.getcwd()
    neutral = tempfile.mkdtemp(prefix="framepipe-ray-")
    atexit.register(shutil.rmtree, neutral, True)  # after Ray's own exit hook, registered later, has run
    os.chdir(neutral)
    try:
        ray.init(log_to_driver=False, logging_level=logging.WARNING, **options)
    finally:
        os.chdir(here)
        if main and sigterm is not None:
            signal.signal(signal.SIGTERM, sigterm)
    return neutral


@dataclass(eq=False)
class _File:
    """The driver's view of one file."""

    task: FileTask
    row: int
    attempts: int = 1
    deadline: float | None = None
    timed_out: bool = False


class RayExecutor(Executor):
    """Runs files on a Ray cluster: ``address`` (``ray://head:10001``, ``head:6379``, ``auto``; default
    ``$RAY_ADDRESS``), or a local Ray instance started for the run (``workers`` CPUs, default all), stopped after it.

    A Ray already initialised in this process is used as it is and left running. Each file runs in a Ray actor
    holding ``cpus_per_file`` CPUs (its decoder and encoder threads; none held when map stages do the heavy
    part); ``files_in_flight`` actors (default: the cluster's CPUs, or half of them with map stages). Map stages
    run as Ray tasks of one CPU each, or what ``map_options[pool]`` asks for (``{"gpu": {"num_gpus": 1}}``), at
    most ``max_in_flight`` per file (a stage's ``concurrency`` bounds its own share). A file whose worker died is
    run again ``retries`` times; ``file_timeout`` kills a file's actor past it. ``runtime_env`` is Ray's, for a
    cluster (``{"working_dir": ...}``). It records no trace (the files' stages run on other machines).
    """

    name = "ray"

    def __init__(self, workers: int | None = None, *, address: str | None = None, cpus_per_file: int = 1,
                 files_in_flight: int | None = None, max_in_flight: int | None = None, retries: int = 1,
                 map_options: dict[str, dict[str, Any]] | None = None, file_timeout: float | None = None,
                 runtime_env: dict[str, Any] | None = None) -> None:
        if file_timeout is not None and file_timeout <= 0:
            raise ValueError("file_timeout must be a positive number of seconds")
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.requested_workers = workers
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.cpus_per_file = max(1, cpus_per_file)
        self.files_in_flight = files_in_flight
        self.max_in_flight = max_in_flight
        self.retries = retries
        self.map_options = map_options or {}
        self.file_timeout = file_timeout
        self.runtime_env = runtime_env
        self.actor_count = 0
        self._started = False
        self._workdir = ""

    # Connection -------------------------------------------------------------------------------

    def prepare(self, pipeline: Pipeline) -> None:
        """Connect to Ray (or start it) while the caller looks for its inputs; size the run by the cluster."""
        self._connect()
        self.workers = self._files_in_flight(pipeline)

    def _connect(self) -> None:
        if ray.is_initialized():
            return  # the caller's Ray (or ours, from prepare): used as it is
        if self.address:
            self._workdir = _init(address=self.address, runtime_env=self.runtime_env)
        else:
            self._workdir = start_local_ray(self.requested_workers)
        self._started = True
        log.info("ray: connected to %s, %s CPUs", self.address or "a local instance",
                 ray.cluster_resources().get("CPU"))

    def close(self) -> None:
        """Disconnect from the Ray this executor connected to, stopping a local instance it started (a Ray that
        was initialised before it is left as it was)."""
        if self._started:
            ray.shutdown()
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._started = False

    def _files_in_flight(self, pipeline: Pipeline) -> int:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        has_maps = any(s.is_map for s in pipeline.stages.values())
        fit = max(1, (cpus // 2 if has_maps else cpus) // self.cpus_per_file)
        return self.files_in_flight or fit

    # Running ----------------------------------------------------------------------------------

    def run(self, pipeline: Pipeline, tasks: Sequence[FileTask], events: RunEvents, *,
            trace: RunTrace | None = None) -> ExecutionReport:
        """Run every task on the cluster, then disconnect (``close``); ``trace`` is left empty."""
        try:
            if not tasks:
                return ExecutionReport(workers=self.workers, trace=trace)
            self._connect()
            with capture_interrupts() as interrupt:
                results = self._run(pipeline, tasks, events, interrupt)
            return ExecutionReport(tuple(results), self.workers, actor_count=self.actor_count, trace=trace)
        finally:
            self.close()

    def _run(self, pipeline: Pipeline, tasks: Sequence[FileTask], events: RunEvents,
             interrupt: InterruptFlag) -> list[FileResult]:
        token = uuid.uuid4().hex
        blob = cloudpickle.dumps(pipeline)  # cloudpickle: the stages of a user's pipeline file travel by value
        box = [ray.put(blob)]  # for map tasks: fetched once per worker process
        n_actors = min(len(tasks), self._files_in_flight(pipeline))
        cpus = int(ray.cluster_resources().get("CPU", 1))
        max_in_flight = self.max_in_flight or credits_per_file(cpus)  # every CPU of the cluster fed
        # Without map stages a file's actor does all its work: it holds its CPUs. With them, the map tasks do the
        # heavy part while the actor waits for them, and an actor never gives its CPUs back while it waits: it
        # takes Ray's default instead (a CPU free to be placed, none held after), and decodes beside the tasks.
        has_maps = any(s.is_map for s in pipeline.stages.values())
        cpus_held = {} if has_maps else {"num_cpus": self.cpus_per_file}
        actor_class = _remote(FileActor).options(max_restarts=-1, max_task_retries=0, **cpus_held)
        actors = [actor_class.remote(token, blob, max_in_flight, self.map_options, self.retries)
                  for _ in range(n_actors)]
        self.actor_count = len(actors)
        files = deque(_File(self._portable(t), i) for i, t in enumerate(tasks))
        starting = {actor.ready.remote(): actor for actor in actors}  # a file goes only to an actor that is up
        free: list[Any] = []
        running: dict[Any, tuple[_File, Any]] = {}  # the run_file call -> (file, its actor)
        results: dict[int, FileResult] = {}
        log.debug("ray run: %d file(s) on %d actor(s), %d map tasks in flight per file", len(tasks), n_actors,
                  max_in_flight)
        finished = False
        try:
            while len(results) < len(tasks):
                while files and free:
                    fs, actor = files.popleft(), free.pop()
                    if fs.attempts == 1:
                        events.file_started(fs.task)
                    if self.file_timeout is not None:
                        fs.deadline = time.monotonic() + self.file_timeout
                    running[actor.run_file.remote(fs.task, box)] = (fs, actor)
                done, _ = ray.wait([*running, *starting], num_returns=1, timeout=self._wait_s(running))
                interrupt.raise_if_set()
                self._kill_overdue(running)
                for ref in done:
                    if ref in starting:
                        self._started_or_failed(ref, starting, free, running, files, results, events)
                        continue
                    fs, actor = running.pop(ref)
                    result, lost = self._outcome(fs, ref)
                    if lost:  # Ray restarts it: it takes a file again once it answers, as a new actor does
                        starting[self._restarted(actor)] = actor
                    else:
                        free.append(actor)
                    if result is None:  # its worker died: run it again
                        files.appendleft(fs)
                        continue
                    result.attempts = fs.attempts
                    results[fs.row] = result
                    events.file_done(result)
            finished = True
        finally:
            self._stop(actors, graceful=finished)
        return [results[i] for i in range(len(tasks))]

    @staticmethod
    def _started_or_failed(ref: Any, starting: dict[Any, Any], free: list[Any], running: dict[Any, Any],
                           files: deque[_File], results: dict[int, FileResult], events: RunEvents) -> None:
        """An actor is up (it takes files now), or could not start: when none is left, the files fail with why."""
        actor = starting.pop(ref)
        try:
            ray.get(ref)
            free.append(actor)
            return
        except Exception as exc:  # its constructor raised: a stage's module missing on that node, most often
            cause = exc
        why = (str(cause).strip().splitlines() or [type(cause).__name__])[-1]  # Ray's text ends with the cause
        log.warning("a file actor could not start: %s", why)
        if starting or free or running:
            return
        while files:
            fs = files.popleft()
            events.file_started(fs.task)
            results[fs.row] = worker_failed(fs.task, f"could not start: {why}", type(cause).__name__)
            events.file_done(results[fs.row])

    def _portable(self, task: FileTask) -> FileTask:
        """The task with absolute paths and this executor's core budget: every node resolves them alike."""
        file = dataclasses.replace(task.file, path=os.path.abspath(task.file.path))
        cache_dir = os.path.abspath(task.cache_dir) if task.cache_dir else None
        return dataclasses.replace(task, file=file, out_dir=task.out_dir.absolute(), cache_dir=cache_dir,
                                   cpu_budget=self.cpus_per_file)

    def _wait_s(self, running: dict[Any, tuple[_File, Any]]) -> float:
        deadlines = [fs.deadline for fs, _ in running.values() if fs.deadline is not None]
        left = min(deadlines) - time.monotonic() if deadlines else _TICK_S
        return max(0.0, min(_TICK_S, left))

    def _kill_overdue(self, running: dict[Any, tuple[_File, Any]]) -> None:
        """Kill the actor of each file past its timeout (Ray restarts it); the call then fails as timed out."""
        now = time.monotonic()
        for fs, actor in running.values():
            if fs.deadline is not None and now >= fs.deadline and not fs.timed_out:
                fs.timed_out = True
                ray.kill(actor, no_restart=False)

    @staticmethod
    def _restarted(actor: Any) -> Any:
        """A call that answers once Ray has restarted ``actor`` after its process died.

        A call sent right after the death may reach the dead process (the driver has not heard of the death
        yet) and fail at once with ``ActorUnavailableError``: a file sent so would be failed for a death it had
        no part in. This one is retried by Ray until the restarted actor takes it (``ready`` does nothing).
        """
        return actor.ready.options(max_task_retries=-1).remote()

    def _outcome(self, fs: _File, call: Any) -> tuple[FileResult | None, bool]:
        """The file's result, a failure, or None when it should run again; and whether its actor's process died."""
        try:
            return ray.get(call), False
        except RayActorError as exc:  # the actor's process died (killed, out of memory, a crash)
            if fs.timed_out:
                return timed_out(fs.task, self.file_timeout or 0.0, fs.attempts), True
            if fs.attempts <= self.retries:
                log.warning("worker died running %s: starting the file again (attempt %d)", fs.task.file.relpath,
                            fs.attempts + 1, extra={"file": fs.task.file.relpath, "attempt": fs.attempts + 1})
                fs.attempts += 1
                return None, True
            return worker_died(fs.task, fs.attempts, type(exc).__name__), True
        except Exception as exc:  # the call itself failed (it could not be sent, or framepipe's own bug)
            return worker_failed(fs.task, f"{type(exc).__name__}: {exc}", type(exc).__name__, fs.attempts), False

    @staticmethod
    def _stop(actors: list[Any], graceful: bool) -> None:
        """End the actors; ``graceful`` (all idle): let each tear its stages down first (no half files then)."""
        try:
            if graceful:
                ray.wait([a.close.remote() for a in actors], num_returns=len(actors), timeout=10)
        finally:
            for actor in actors:
                ray.kill(actor)
