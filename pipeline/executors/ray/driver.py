"""``RayExecutor``: the driver. It connects to Ray, starts ``files_in_flight`` file actors, hands each free
actor the next file, waits on the files in flight, runs again a file whose actor died (``retries``), kills the
actor of a file past its timeout, and ends the actors at the end. A long file cut into parts has them run as Ray
tasks, spread over the cluster's nodes, while its actor runs the rest of the file and then joins them.

With a trace, each file's call comes back with its timeline (``tracing``): a span on its actor's track, its
stages' work inside it, its map tasks and parts on the tracks of the processes that ran them; the driver maps
other machines' clocks onto its own and samples the files in flight. Each tick it also asks the files' actors how
far their stages are and tells the caller (``progress``), never waiting for an answer.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cloudpickle
import ray
from ray.exceptions import RayActorError

from ...graph import Pipeline
from ...observe.trace import RunTrace
from ...results import FileResult
from ...runtime.interrupts import InterruptFlag, capture_interrupts
from ...storage.location import is_url
from ..base import ExecutionReport, Executor, FileTask, RunEvents, credits_per_file
from ..failures import timed_out, worker_died, worker_failed
from ..parts import split_plan
from .actor import remote_file_actor
from .cluster import init_ray, start_local_ray
from .feeding import widest_batch
from .placement import NodeSpread
from .progress import ProgressPolls
from .tracing import FileTrace, record_file

__all__ = ["RayExecutor"]

log = logging.getLogger("framepipe.executor")
_TICK_S = 0.2  # how often the driver looks at Ctrl-C / SIGTERM while it waits
_LOOK_S = 1.0  # how often it looks for nodes that joined, while files wait for an actor


@dataclass(eq=False)
class _File:
    """The driver's view of one file."""

    task: FileTask
    row: int
    attempts: int = 1
    deadline: float | None = None
    timed_out: bool = False
    sent: float = 0.0  # when its call was sent (perf_counter)


class RayExecutor(Executor):
    """Runs files on a Ray cluster: ``address`` (``ray://head:10001``, ``head:6379``, ``auto``; default
    ``$RAY_ADDRESS``), or a local Ray instance started for the run (``workers`` CPUs, default all), stopped after it.

    A Ray already initialised in this process is used as it is and left running. Each file runs in a Ray actor
    holding ``cpus_per_file`` CPUs (its decoder and encoder threads; none held when map stages do the heavy
    part); ``files_in_flight`` actors (default: the cluster's CPUs, or half of them with map stages). Map stages
    run as Ray tasks of one CPU each, or what ``map_options[pool]`` asks for (``{"gpu": {"num_gpus": 1}}``), a
    stage's ``batch_size`` frames a task; a file keeps at most ``max_in_flight`` frames waiting for or out in map
    tasks (default: (2 x cluster CPUs + 2) x the largest batch_size), and a stage's ``concurrency`` bounds its tasks
    out. A stage's ``priority`` orders the sends (the higher stage's batches first) and nices a lower-priority
    pool's work on its Ray workers (``feeding``). A file whose worker died is
    run again ``retries`` times; ``file_timeout`` kills a file's actor past it. ``runtime_env`` is Ray's, for a
    cluster (``{"working_dir": ...}``). A ``trace`` gets each file's call on the track of its actor ("actor 3
    (node 1a2b3c4d, pid 4242)") with its stages' work inside it, and each map task and part on the track of the
    process that ran it, on the driver's clock (another machine's mapped through the wall clock: ``tracing``).
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
        self._next_look = 0.0  # when to look for nodes that joined again (time.monotonic)

    # Connection -------------------------------------------------------------------------------

    def prepare(self, pipeline: Pipeline) -> None:
        """Connect to Ray (or start it) while the caller looks for its inputs; size the run by the cluster."""
        self._connect()
        self.workers = self._files_in_flight(pipeline)

    def _connect(self) -> None:
        if ray.is_initialized():
            return  # the caller's Ray (or ours, from prepare): used as it is
        if self.address:
            self._workdir = init_ray(address=self.address, runtime_env=self.runtime_env)
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
        """Run every task on the cluster, then disconnect (``close``); with ``trace``, record the run's timeline."""
        try:
            if not tasks:
                return ExecutionReport(workers=self.workers, trace=trace)
            self._connect()
            with capture_interrupts() as interrupt:
                results = self._run(pipeline, tasks, events, interrupt, trace)
            return ExecutionReport(tuple(results), self.workers, actor_count=self.actor_count, trace=trace)
        finally:
            self.close()

    def _run(self, pipeline: Pipeline, tasks: Sequence[FileTask], events: RunEvents, interrupt: InterruptFlag,
             trace: RunTrace | None) -> list[FileResult]:
        token = uuid.uuid4().hex
        blob = cloudpickle.dumps(pipeline)  # cloudpickle: the stages of a user's pipeline file travel by value
        box = [ray.put(blob)]  # for map tasks: fetched once per worker process
        n_actors = min(len(tasks), self._files_in_flight(pipeline))
        cpus = int(ray.cluster_resources().get("CPU", 1))
        # Frames (not tasks) per file: every CPU of the cluster fed, a batch running and one waiting on each.
        max_in_flight = self.max_in_flight or credits_per_file(cpus) * widest_batch(pipeline.stages.values())
        # Without map stages a file's actor does all its work: it holds its CPUs. With them, the map tasks do the
        # heavy part while the actor waits for them, and an actor never gives its CPUs back while it waits: it
        # takes Ray's default instead (a CPU free to be placed, none held after), and decodes beside the tasks.
        # So too when a long file's parts run as tasks: an actor waiting for them must not hold the CPUs they need.
        has_maps = any(s.is_map for s in pipeline.stages.values())
        waits = has_maps or split_plan(pipeline) is not None
        cpus_held = {} if waits else {"num_cpus": self.cpus_per_file}
        actor_options = {"max_restarts": -1, "max_task_retries": 0, **cpus_held}  # the options of every file actor
        spread = NodeSpread() if waits else None  # one that holds no CPU is given a node (``placement``)
        actors = self._new_actors(actor_options, spread, n_actors, token, blob, max_in_flight)
        self.actor_count = len(actors)
        numbers = {id(actor): i for i, actor in enumerate(actors)}  # an actor's track: "actor <number> (...)"
        nodes: dict[int, str] = {}  # an actor's node, as it said when it came up (FileResult.node)
        files = deque(_File(self._portable(t, trace is not None), i) for i, t in enumerate(tasks))
        starting = {actor.ready.remote(): actor for actor in actors}  # a file goes only to an actor that is up
        free: list[Any] = []
        running: dict[Any, tuple[_File, Any]] = {}  # the run_file call -> (file, its actor)
        results: dict[int, FileResult] = {}
        polls = ProgressPolls(events, _TICK_S)  # each file's live progress, asked of its actor
        log.debug("ray run: %d file(s) on %d actor(s), %d map tasks in flight per file", len(tasks), n_actors,
                  max_in_flight)
        finished = False
        try:
            while len(results) < len(tasks):
                if files and not free:  # nodes may have joined since: more actors, each starting on one
                    for actor in self._more_actors(pipeline, actor_options, spread, len(actors), len(files), token,
                                                   blob, max_in_flight):
                        numbers[id(actor)] = len(actors)
                        actors.append(actor)
                        starting[actor.ready.remote()] = actor
                    self.actor_count = len(actors)
                while files and free:
                    fs, actor = files.popleft(), free.pop()
                    if fs.attempts == 1:
                        events.file_started(fs.task)
                    if self.file_timeout is not None:
                        fs.deadline = time.monotonic() + self.file_timeout
                    task = dataclasses.replace(fs.task, batch_ending=not files)
                    fs.sent = time.perf_counter()
                    running[actor.run_file.remote(task, box)] = (fs, actor)
                    if trace is not None:
                        trace.counter("files in flight", trace.now(), {"files": len(running)})
                done, _ = ray.wait([*running, *starting], num_returns=1, timeout=self._wait_s(running))
                interrupt.raise_if_set()
                self._kill_overdue(running)
                for ref in done:
                    if ref in starting:
                        self._started_or_failed(ref, starting, free, running, files, results, events, nodes)
                        continue
                    fs, actor = running.pop(ref)
                    result, timeline, lost = self._outcome(fs, ref)
                    if trace is not None:
                        record_file(trace, numbers[id(actor)], fs.task.file.relpath, fs.sent, time.perf_counter(),
                                    result.status if result is not None else "died", timeline)
                        trace.counter("files in flight", trace.now(), {"files": len(running)})
                    if lost:  # Ray restarts it: it takes a file again once it answers, as a new actor does
                        starting[self._restarted(actor)] = actor
                    else:
                        free.append(actor)
                    if result is None:  # its worker died: run it again
                        files.appendleft(fs)
                        continue
                    result.attempts = fs.attempts
                    result.node = nodes.get(id(actor), "")  # it ran there (the driver's failures too: it died there)
                    results[fs.row] = result
                    events.file_done(result)
                polls.poll(running)
            finished = True
        finally:
            # A graceful end waits on the actors that are up: one Ray could not place again (its node gone, no
            # room left for it) would answer no close.
            pending = {id(a) for a in starting.values()}
            self._stop(actors, [a for a in actors if id(a) not in pending] if finished else [])
        return [results[i] for i in range(len(tasks))]

    def _new_actors(self, actor_options: dict[str, Any], spread: NodeSpread | None, count: int,
                    *args: Any) -> list[Any]:
        """``count`` file actors with ``actor_options``, each on the node ``spread`` names (where Ray likes without
        it)."""
        placed = spread.options(count) if spread is not None else [{}] * count
        return [remote_file_actor().options(**actor_options, **where).remote(*args, self.map_options, self.retries)
                for where in placed]

    def _more_actors(self, pipeline: Pipeline, actor_options: dict[str, Any], spread: NodeSpread | None,
                     have: int, waiting: int, *args: Any) -> list[Any]:
        """New actors for the CPUs of nodes that joined the cluster since the run started, while ``waiting`` files
        wait for one (looked at once a second; none when ``files_in_flight`` was given)."""
        now = time.monotonic()
        if self.files_in_flight is not None or now < self._next_look:
            return []
        self._next_look = now + _LOOK_S
        more = min(self._files_in_flight(pipeline), have + waiting) - have
        if more > 0:
            log.info("ray: %d more CPU(s) in the cluster: %d more file actor(s)", more * self.cpus_per_file, more)
        return self._new_actors(actor_options, spread, max(0, more), *args)

    @staticmethod
    def _started_or_failed(ref: Any, starting: dict[Any, Any], free: list[Any], running: dict[Any, Any],
                           files: deque[_File], results: dict[int, FileResult], events: RunEvents,
                           nodes: dict[int, str]) -> None:
        """An actor is up (it takes files now; ``nodes`` notes where), or could not start: when none is left, the
        files fail with why."""
        actor = starting.pop(ref)
        try:
            nodes[id(actor)] = ray.get(ref)
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
            results[fs.row].node = ""  # it ran nowhere
            events.file_done(results[fs.row])

    def _portable(self, task: FileTask, traced: bool) -> FileTask:
        """The task with absolute paths and this executor's core budget: every node resolves them alike.
        ``traced``: its session records its stages' work."""
        path = task.file.path if is_url(task.file.path) else os.path.abspath(task.file.path)  # a URL stays one
        file = dataclasses.replace(task.file, path=path)
        cache_dir = os.path.abspath(task.cache_dir) if task.cache_dir else None
        cpus = int(ray.cluster_resources().get("CPU", 1)) if ray.is_initialized() else 1
        return dataclasses.replace(task, file=file, out_dir=task.out_dir.absolute(), cache_dir=cache_dir,
                                   cpu_budget=self.cpus_per_file, part_workers=max(1, cpus // self.cpus_per_file),
                                   traced=traced)

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

    def _outcome(self, fs: _File, call: Any) -> tuple[FileResult | None, FileTrace | None, bool]:
        """The file's result, a failure, or None when it should run again; its timeline when traced (None when
        it did not come back); and whether its actor's process died."""
        try:
            result, timeline = ray.get(call)
            return result, timeline, False
        except RayActorError as exc:  # the actor's process died (killed, out of memory, a crash)
            if fs.timed_out:
                return timed_out(fs.task, self.file_timeout or 0.0, fs.attempts), None, True
            if fs.attempts <= self.retries:
                log.warning("worker died running %s: starting the file again (attempt %d)", fs.task.file.relpath,
                            fs.attempts + 1, extra={"file": fs.task.file.relpath, "attempt": fs.attempts + 1})
                fs.attempts += 1
                return None, None, True
            return worker_died(fs.task, fs.attempts, type(exc).__name__), None, True
        except Exception as exc:  # the call itself failed (it could not be sent, or framepipe's own bug)
            failed = worker_failed(fs.task, f"{type(exc).__name__}: {exc}", type(exc).__name__, fs.attempts)
            return failed, None, False

    @staticmethod
    def _stop(actors: list[Any], closing: list[Any]) -> None:
        """End the actors, letting those of ``closing`` (idle ones) tear their stages down first (no half files)."""
        try:
            if closing:
                ray.wait([a.close.remote() for a in closing], num_returns=len(closing), timeout=10)
        finally:
            for actor in actors:
                ray.kill(actor)
