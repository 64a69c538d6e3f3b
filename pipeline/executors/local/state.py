"""The local scheduler's state, typed: each file in flight and its phase, the entries of the map stages'
queues and calls, and the run's whole state (``LocalRun``) grouped by concern.

The other parts are functions over a ``LocalRun``: ``actors`` (admission, a file's actor calls), ``maps``
(map tasks, routing, order), ``outcomes`` (a file's end, timeouts, restarts), ``observe`` (trace, progress,
snapshots), ``scheduler`` (start-up and the loop). ``LocalRun`` also satisfies the run optimizer's
``TunableRun``.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from ...dataplane.board import ProgressBoard
from ...dataplane.buffers import FrameRef, SlotLease
from ...dataplane.frame_pools import SlotAllocator
from ...graph import Pipeline
from ...observe.metrics import StageStats
from ...observe.trace import RunTrace
from ...results import FileResult
from ...runtime.pool import WorkerPool
from ...stage import Stage
from ..base import FileTask, RunEvents
from ..file_runner import PartResult
from .calls import Calls, Label

if TYPE_CHECKING:
    from ...tuning.optimizer import RunOptimizer
    from .executor import LocalExecutor

__all__ = ["FileState", "FileInFlight", "ReadyEntry", "MapFrame", "ActorCall", "MapCall", "RunGraph", "Workers",
           "MapQueues", "Sampling", "LocalRun", "slot_key"]


def slot_key(ref: FrameRef) -> tuple[str, int, int]:
    """What names a slot's lease: its pool, slot and generation."""
    return ref.pool_id, ref.slot, ref.generation


class FileState(enum.Enum):
    """How far a file's session on its actor has got, which says what its next actor call is."""

    NEW = "new"  # no call made yet (or starting over: its actor died, or could not start): next, actor_start
    RUNNING = "running"  # its sources give frames: steps carry credits for them, and results back
    # Its sources are drained: steps carry results back only; actor_finish once none is out or waits for
    # order. A result delivered may make a local stage send more to map stages: back to RUNNING then.
    EXHAUSTED = "exhausted"
    FINISHING = "finishing"  # actor_finish sent: its stages end and its result comes back
    # A part of a file cut into parts: NEW until its one call (actor_part) is sent, then FINISHING.


@dataclass(eq=False)
class FileInFlight:
    """The scheduler's view of one file of the batch (compared by identity)."""

    task: FileTask
    row: int
    actor: WorkerPool | None = None
    state: FileState = FileState.NEW
    busy: bool = False  # a call of its actor is in flight: no other is made
    answered: bool = False  # its actor has answered a call (so its worker could be started)
    announced: bool = False  # file_started was told
    need_nbytes: int = 0  # >0: its session waits for a slot this big
    credits: dict[tuple[str, int, int], SlotLease] = field(default_factory=dict)  # granted, not yet returned
    inbox: dict[str, list[tuple[Any, SlotLease | None]]] = field(default_factory=dict)  # for its local stages
    order: dict[str, deque[int]] = field(default_factory=dict)  # per map stage with local children
    done: dict[str, dict[int, tuple[Any, SlotLease | None]]] = field(default_factory=dict)  # waiting for order
    in_maps: int = 0  # frames of this file queued in or running on map stages
    seq: int = 0
    error: FileResult | None = None
    records: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    calls: int = 0  # actor calls in flight
    epoch: int = 0  # bumped when the file restarts after its actor died: late results of before are dropped
    attempts: int = 1
    deadline: float | None = None  # monotonic time past which the attempt is killed (with a file timeout)
    waiting_since: float | None = None  # when tracing: its session paused for a slot then (perf_counter)
    # A file cut into parts: its parts, the results of those done (by part number), and the scratch files they
    # left; a part runs on a free actor, or on its file's own while the file waits for its parts (lent to it).
    parts: list[FileInFlight] = field(default_factory=list)
    part_results: dict[int, PartResult] = field(default_factory=dict)
    scratch: list[str] = field(default_factory=list)
    lent_to: FileInFlight | None = None  # the part running on this file's actor
    # One part of a file: the file, the file's epoch when the part was made, and the file whose actor it borrows.
    parent: FileInFlight | None = None
    parent_epoch: int = 0
    lender: FileInFlight | None = None

    @property
    def parts_left(self) -> int:
        """Parts of this file not done yet."""
        return len(self.parts) - len(self.part_results)

    @property
    def waits_for_parts(self) -> bool:
        """The file's own session is done with its frames: only its parts are left before its finish."""
        return self.state is FileState.EXHAUSTED and self.parts_left > 0 and not self.busy and not self.in_maps

    def reset(self) -> None:
        """Forget all progress (the actor died): the file starts over on the next call."""
        self.state = FileState.NEW
        self.need_nbytes = self.seq = 0
        self.order.clear()
        self.done.clear()
        self.records.clear()
        self.warnings.clear()
        self.epoch += 1
        self.attempts += 1
        self.waiting_since = None
        self.parts.clear()  # the parts made by the session that died are dropped as they come back
        self.part_results.clear()


class ReadyEntry(NamedTuple):
    """A frame waiting in a map stage's queue: its file, its number in the file, the item, its slot's lease."""

    file: FileInFlight
    seq: int
    item: Any
    lease: SlotLease | None


class MapFrame(NamedTuple):
    """A frame sent in a map task: the leases of its input's and its result's slots, the file's epoch then."""

    file: FileInFlight
    seq: int
    lease: SlotLease | None
    out_lease: SlotLease | None
    epoch: int


class ActorCall(NamedTuple):
    """An actor call in flight: its file, and the slots of the results it delivers (freed when it returns)."""

    file: FileInFlight
    held: list[SlotLease]


class MapCall(NamedTuple):
    """A map task in flight: its stage, its frames, and when it was sent (``perf_counter``)."""

    stage: str
    frames: list[MapFrame]
    sent_at: float


@dataclass(frozen=True, eq=False)
class RunGraph:
    """The pipeline's shape as the scheduler routes by it, worked out once per run."""

    order: list[str]
    stages: dict[str, Stage]
    maps: frozenset[str]
    children: dict[str, list[str]]
    subtree: dict[str, list[str]]  # per map stage: the map stages reached through map stages only (same frames)
    ordered_maps: set[str]  # map stages with local children: their results go on in frame order
    numbers: dict[str, int]  # a stage's index in ``order``: how the progress board names it

    @classmethod
    def of(cls, pipeline: Pipeline) -> RunGraph:
        order = pipeline.order()
        stages = pipeline.stages
        maps = frozenset(n for n in order if stages[n].is_map)
        for m in maps:
            if len(pipeline.inputs(m)) > 1 and any(u in maps for u in pipeline.inputs(m)):
                raise ValueError(f"map stage {m!r} has several inputs; map stages take one")
        children = {n: pipeline.children(n) for n in order}
        subtree = {m: _map_subtree(m, children, maps) for m in maps}
        ordered_maps = {m for m in maps if any(c not in maps for c in children[m])}
        return cls(order, stages, maps, children, subtree, ordered_maps, {n: i for i, n in enumerate(order)})


def _map_subtree(m: str, children: dict[str, list[str]], maps: frozenset[str]) -> list[str]:
    out, todo = [], [m]
    while todo:
        n = todo.pop()
        out.append(n)
        todo += [c for c in children[n] if c in maps]
    return out


@dataclass(eq=False)
class Workers:
    """The run's processes: a pool per map pool name, a one-worker pool (an actor) per file in flight."""

    pools: dict[str, WorkerPool]
    actors: list[WorkerPool]
    board: ProgressBoard  # the workers' progress table
    cores: int  # the cores files in flight share for their codec threads (0: one each, map stages do the work)
    free_actors: list[WorkerPool] = field(default_factory=list)
    unstartable: set[int] = field(default_factory=set)  # ids of actors that could not start (resources ran out)
    numbers: dict[int, int] = field(default_factory=dict)  # id(actor) -> its number (its trace track)

    def all_pools(self) -> list[WorkerPool]:
        return [*self.pools.values(), *self.actors]


@dataclass(eq=False)
class MapQueues:
    """Per map stage: frames ready to be sent, tasks running, task latencies, and the stage's statistics."""

    ready: dict[str, deque[ReadyEntry]]
    running: dict[str, int]
    latencies: dict[str, list[float]]
    stats: dict[str, StageStats]


@dataclass(eq=False)
class Sampling:
    """What observation keeps from tick to tick."""

    last_tick: float  # when the map stages' busy, starved and blocked time was last accounted
    next_snapshot: float = 0.0
    last_sample: tuple[int, int, int] | None = None  # the trace's counters last recorded
    seen_progress: dict[int, tuple[int, int]] = field(default_factory=dict)  # per file: (stage, done) forwarded
    memo_counts: list[int] = field(default_factory=lambda: [0, 0])  # stage memo hits, misses of files finished


@dataclass(eq=False)
class LocalRun:
    """One batch on the local executor: the scheduler's whole state."""

    ex: LocalExecutor
    pipeline: Pipeline
    events: RunEvents
    trace: RunTrace | None
    token: str  # names this run's pipeline in the workers
    graph: RunGraph
    workers: Workers
    slots: SlotAllocator  # every frame slot of the run comes from here
    credits_per_file: int  # most slots a file may hold (the optimizer changes it with the map pools)
    files: list[FileInFlight]
    queues: MapQueues
    sampling: Sampling
    started: float  # time.monotonic() at the start
    calls: Calls[ActorCall | MapCall] = field(default_factory=Calls)
    waiting: deque[FileInFlight] = field(default_factory=deque)  # not admitted yet: no actor
    parts_waiting: deque[FileInFlight] = field(default_factory=deque)  # parts of files, before any new file
    active: list[FileInFlight] = field(default_factory=list)  # admitted, not retired
    results: dict[int, FileResult] = field(default_factory=dict)  # by row: retired files
    stopping: bool = False  # nothing more is dispatched (fail fast, or an interrupt)
    optimizer: RunOptimizer | None = None

    def call_actor(self, fs: FileInFlight, fn: Any, *args: Any, held: list[SlotLease], label: Label | None,
                   timeout: float | None) -> None:
        """Send a call to the file's actor, counted in ``fs.calls`` until its completion is taken."""
        assert fs.actor is not None
        fs.calls += 1
        self.calls.submit(fs.actor, ActorCall(fs, held), fn, *args, label=label, timeout=timeout)

    # What the run optimizer reads and turns (``TunableRun``) ------------------------------------

    @property
    def maps(self) -> frozenset[str]:
        return self.graph.maps

    @property
    def stages(self) -> dict[str, Stage]:
        return self.graph.stages

    @property
    def pools(self) -> dict[str, WorkerPool]:
        return self.workers.pools

    @property
    def map_stats(self) -> dict[str, StageStats]:
        return self.queues.stats

    @property
    def ready(self) -> dict[str, deque[ReadyEntry]]:
        return self.queues.ready

    @property
    def caches(self) -> Any:
        return self.ex.caches

    @property
    def fixed_credits_per_file(self) -> int | None:
        return self.ex.credits_per_file
