"""``FileSession``: one file's stages in one process, streamed depth-first and advanced in steps.

Each item a stage yields goes at once to the local stages that accept its
kind, so a decoder's frame reaches every local consumer before the next frame
is decoded. Items for *map* stages that run in other processes are put in an
outbox instead; an item whose pixels must cross waits there for a slot
granted by the scheduler (a credit), and the session pauses — stops pulling
from its source — while it has no credit. That pause is the backpressure
that bounds memory, whatever the length of the file.

The walk is an explicit stack rather than recursion so that it can stop
between any two items and resume on the next ``step``::

    [deliver(file, roots)]  ->  [drain(decode, <generator>)]
                            ->  [drain(decode, gen), deliver(frame, [thumbs, proxy])] ...

Busy time is measured per stage, excluding the time of the stages it feeds. A traced session (``traced=True``)
also hands each stretch of a stage's work to its ``StageTimeline``, whose spans the actor's replies carry back.

A long file may run in parts (``executors.parts``): its session asks the source at ``start`` where to cut it
(the first step's ``parts``), runs only the stages the parts do not, and ``finish`` joins the parts' pieces. A
part's session runs the stages of the parts over its span alone, and ``finish_part`` hands back their pieces.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..bookkeeping.memo import lineages
from ..bookkeeping.staging import final_names, remove_local_outputs, seal_outputs, ship_outputs
from ..errors import InputError, OutputError, StageError, StorageError
from ..graph import Pipeline
from ..items import FILE, FRAME, is_shareable
from ..observe.metrics import StageStats
from ..observe.stage_timeline import StageSpan, StageTimeline
from ..outputs import as_output_error
from ..results import FAILED, OK, FileResult
from ..stage import FilePart, FileRun, Piece, Stage, StageContext
from ..storage.location import adopt_environment
from .base import FileTask
from .parts import SplitPlan, remove_scratch, split_plan

if TYPE_CHECKING:
    from ..dataplane.buffers import FrameRef

__all__ = ["FileSession", "FileRunner", "StepResult", "Outgoing", "PartResult", "PartsStarter", "is_shareable",
           "part_folder", "replay_whole_file", "run_part"]


@dataclass(slots=True)
class Outgoing:
    """An item leaving the session for map stages in other processes."""

    item: Any
    targets: tuple[str, ...]


@dataclass(slots=True)
class StepResult:
    """What one step produced: items for map stages, credits it did not use, and how far it got."""

    outbox: list[Outgoing] = field(default_factory=list)
    unused: list[FrameRef] = field(default_factory=list)
    need_nbytes: int = 0  # >0: paused, an item waits for a slot this big
    exhausted: bool = False  # every source is drained and nothing waits
    parts: list[Any] | None = None  # the first step of a file cut into parts: each part's span


@dataclass(slots=True)
class PartResult:
    """What one part of a file left: each stage's piece, the stages' statistics, files to remove at the end."""

    pieces: dict[str, Piece]
    stats: dict[str, StageStats]
    scratch: list[str]
    warnings: list[str]


PartsStarter = Callable[[list[Any]], Callable[[], list["PartResult | FileResult"]]]
"""Starts the parts of a file (their spans) where they will run, and gives what waits for their outcomes."""


class _Drain:
    __slots__ = ("stage", "it")

    def __init__(self, stage: str, it: Iterator[Any]) -> None:
        self.stage, self.it = stage, it


class _Deliver:
    __slots__ = ("item", "targets")

    def __init__(self, item: Any, targets: list[str]) -> None:
        self.item, self.targets = item, targets


class FileSession:
    """The local part of a pipeline for one file. ``remote`` names the map stages that run elsewhere."""

    def __init__(self, pipeline: Pipeline, run: FileRun, remote: frozenset[str] = frozenset(),
                 order: list[str] | None = None, traced: bool = False) -> None:
        self.pipeline = pipeline
        self.run = run
        self.order = order or pipeline.order()
        self.stages: dict[str, Stage] = pipeline.stages
        self.remote = remote
        self.local = [n for n in self.order if n not in remote]
        self.roots = [n for n in self.order if not pipeline.inputs(n)]
        self.children = {n: [(c, frozenset(self.stages[c].accepts)) for c in pipeline.children(n)]
                         for n in self.order}
        self.ctx = {n: StageContext(run, n) for n in self.order}
        self.stats = {n: StageStats(n, files=1) for n in self.order}
        self._frames_in = dict.fromkeys(self.order, 0)
        self._sources = {n for n in self.order if FILE in self.stages[n].accepts}
        self._frames_out = dict.fromkeys(self.order, 0)
        self.split: SplitPlan | None = split_plan(pipeline) if run.part is not None or run.workers > 1 else None
        self.parts: list[Any] | None = None  # the spans of the parts, once the file is cut
        self._part_frames = dict.fromkeys(self.order, 0)
        if run.part is not None:
            assert self.split is not None, "a part of a file is run only by a pipeline that can split"
            self._keep(self.split.in_parts)
        self._stack: list[_Drain | _Deliver] = []
        self._pending: list[Outgoing] = []  # waiting for a slot
        self._active = ""
        self._inline_all = not remote
        self.replayed: set[str] = set()
        self.lineage = lineages(pipeline) if run.memo is not None else {}
        self.started = time.perf_counter()
        # Where the stages' time went, when the run is traced (None: nothing is recorded, nothing costs).
        self.timeline = StageTimeline(pipeline.order(), self.frames_done) if traced else None

    def frames_done(self, stage: str) -> int:
        """The frames ``stage`` has taken or made so far in this session (its frame count, as its result says)."""
        return max(self._frames_in[stage], self._frames_out[stage]) if stage in self._frames_in else 0

    def take_spans(self) -> list[StageSpan]:
        """The spans of the stages' work since the last call (none when the session is not traced)."""
        return self.timeline.take() if self.timeline is not None else []

    def _worked(self, stage: str, t0: float) -> None:
        """Count the time since ``t0`` as ``stage``'s busy time (and on the timeline when traced)."""
        t1 = time.perf_counter()
        self.stats[stage].busy_s += t1 - t0
        if self.timeline is not None:
            self.timeline.work(stage, t0, t1)

    def _keep(self, names: frozenset[str] | set[str]) -> None:
        """Run only the stages ``names`` (a part's, or those of a file cut into parts) in this session."""
        self.order = [n for n in self.order if n in names]
        self.local = [n for n in self.local if n in names]
        self.roots = [n for n in self.roots if n in names]
        self.children = {n: [(c, a) for c, a in kids if c in names] for n, kids in self.children.items()
                         if n in names}

    # Driving ---------------------------------------------------------------------

    def start(self) -> None:
        """Replay what the cache remembers, begin every other local stage, queue the file for the roots.

        A file the source cuts into parts runs here without the stages its parts run (the first step says how
        it was cut).
        """
        if self.split is not None and self.run.part is None:
            self._cut(self.split)
        self.replayed = self._replay_remembered()
        self.children = {n: [(c, a) for c, a in kids if c not in self.replayed] for n, kids in self.children.items()}
        for n in self.local:
            if n not in self.replayed:
                self._call(n, self.stages[n].begin, self.ctx[n])
        self._stack.append(_Deliver(self.run.file, [r for r in self.roots if r not in self.replayed]))

    def _cut(self, split: SplitPlan) -> None:
        """Ask the source where to cut the file; cut in two or more parts, this session runs the rest."""
        source = self.stages[split.source]
        spans = self._call(split.source, source.parts, self.run.file, self.ctx[split.source], self.run.workers)
        if spans is None or len(spans) < 2:
            return
        self.parts = list(spans)
        self.run.parts = len(self.parts)
        self._keep({n for n in self.order if n not in split.joined})

    def _replay_remembered(self) -> set[str]:
        """Stages whose results for this file are remembered, replayed now instead of run.

        A stage is replayed only if every stage it feeds is too: a decoder
        runs as long as one consumer still needs its frames.
        """
        memo = self.run.memo
        if memo is None:
            return set()
        found: dict[str, Any] = {}
        for n in reversed(self.order):
            stage = self.stages[n]
            if n in self.remote or not stage.cacheable:
                continue
            if any(c not in found for c in self.pipeline.children(n)):
                continue
            replay = memo.lookup(stage, self.run.file, self.lineage[n], self.run.output_key)
            if replay is not None:
                found[n] = replay
        for n in self.order:
            if n in found:
                t0 = time.perf_counter()
                self._active = n
                self.replayed.add(n)  # a remembered failure raised here is not remembered again
                found[n].apply(self.run)
                self._worked(n, t0)
                self.stats[n].cache_hits += 1
        return set(found)

    def _remember(self) -> None:
        """Keep the results of the cacheable stages that ran, for the next run over this file."""
        memo = self.run.memo
        if memo is None:
            return
        for n in self.local:
            stage = self.stages[n]
            if stage.cacheable and n not in self.replayed:
                ctx = self.ctx[n]
                memo.remember(stage, self.run.file, self.lineage[n], self.run, ctx.recorded, ctx.added)
                self.stats[n].cache_misses += 1

    def deliver(self, stage: str, items: list[Any]) -> None:
        """Run items (in order) that map stages sent back for local stage ``stage``, to the end.

        Delivered items are consumed completely here, without pausing: the
        scheduler frees their slots as soon as this call returns. What they
        produce for map stages waits for credits like the rest.
        """
        if stage in self.replayed:
            return  # its results came from the cache
        for item in items:
            self._walk([_Deliver(item, [stage])], [], None, may_pause=False)

    def step(self, credits: list[FrameRef] | None = None) -> StepResult:
        """Run until every source is drained or an item waits for a slot; raises what a stage raised."""
        credits = list(credits or [])
        out = StepResult()
        self._flush(credits, out)
        self._walk(self._stack, credits, out, may_pause=True)
        if self._pending:
            out.need_nbytes = max(self._pending[0].item.shared_nbytes(), 1)
        out.unused = credits
        out.exhausted = not self._stack and not self._pending
        out.parts, self.parts = self.parts, None
        return out

    def _walk(self, stack: list[_Drain | _Deliver], credits: list[FrameRef], out: StepResult | None,
              may_pause: bool) -> None:
        while stack:
            if may_pause and self._pending:
                break  # no credit left for what waits: pause here (backpressure)
            top = stack[-1]
            if isinstance(top, _Drain):
                self._active = top.stage
                t0 = time.perf_counter()
                try:
                    produced = next(top.it)
                except StopIteration:
                    self._worked(top.stage, t0)
                    stack.pop()
                    continue
                self._worked(top.stage, t0)
                self._emit(top.stage, produced, stack)
                if out is not None:
                    self._flush(credits, out)
            else:
                if not top.targets:
                    stack.pop()
                    continue
                target = top.targets.pop(0)
                self._push(target, top.item, stack)

    def _emit(self, stage: str, produced: Any, stack: list[_Drain | _Deliver]) -> None:
        stats = self.stats[stage]
        stats.items_out += 1
        if stage in self._sources:  # a decoder's bytes are those it makes; every other stage's, those it takes
            stats.bytes += getattr(produced, "nbytes", 0)
        kind = getattr(produced, "kind", None)
        if kind == FRAME:
            self._frames_out[stage] += 1
        local: list[str] = []
        remote: list[str] = []
        for child, accepts in self.children[stage]:
            if kind in accepts:
                (remote if child in self.remote and not self._inline_all else local).append(child)
        if remote:
            # A frame that must cross keeps its pixels local until a slot is granted for it.
            self._pending.append(Outgoing(produced, tuple(remote)))
        if local:
            stack.append(_Deliver(produced, local))

    def _flush(self, credits: list[FrameRef], out: StepResult) -> None:
        while self._pending:
            waiting = self._pending[0]
            item = waiting.item
            if is_shareable(item) and item.shared_nbytes() > 0:
                fit = next((i for i, c in enumerate(credits) if c.nbytes >= item.shared_nbytes()), None)
                if fit is None:
                    return
                item = item.to_shared(credits.pop(fit))
            self._pending.pop(0)
            out.outbox.append(Outgoing(item, waiting.targets))

    def _push(self, name: str, item: Any, stack: list[_Drain | _Deliver]) -> None:
        stats = self.stats[name]
        stats.items_in += 1
        stats.bytes += getattr(item, "nbytes", 0)  # items that know their size (frames, audio blocks) say it
        if getattr(item, "kind", None) == FRAME:
            self._frames_in[name] += 1
        out = self._call(name, self.stages[name].process, item, self.ctx[name])
        if out is not None:
            stack.append(_Drain(name, iter(out)))

    def _call(self, name: str, fn: Any, *args: Any) -> Any:
        self._active = name
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self._worked(name, t0)

    def _end_stages(self) -> None:
        self._inline_all = True  # what end() emits has no scheduler to go back to: run it all here
        for n in self.order:
            if n in self.remote or n in self.replayed:
                continue
            out = self._call(n, self.stages[n].end, self.ctx[n])
            if out is not None:
                self._stack.append(_Drain(n, iter(out)))
                self.step()

    def finish(self, parts: list[PartResult] | None = None) -> FileResult:
        """End every local stage in order (map stages left are run here), join the ``parts`` of a file cut into
        parts, and return the file's result."""
        self._end_stages()
        if parts:
            self._join(parts)
        self._remember()
        digests = seal_outputs(self.run.out_dir, self.run.outputs)  # an output that cannot be made durable fails it
        sizes = ship_outputs(self.run)
        result = self._result(OK)
        result.digests = digests
        result.sizes = sizes
        return result

    def _join(self, parts: list[PartResult]) -> None:
        """Take the parts' statistics and warnings, and let each stage the parts alone ran join their pieces."""
        assert self.split is not None
        for part in parts:
            for n, st in part.stats.items():
                self.stats[n].add(st)
                self.stats[n].files = 1
                self._part_frames[n] += st.frames
            self.run.warnings += [w for w in part.warnings if w not in self.run.warnings]
        for n in self.split.joined:
            self.order.append(n)  # in the result (its statistics); a failure of its join names it
            self._call(n, self.stages[n].join, [p.pieces[n] for p in parts], self.ctx[n])

    def finish_part(self) -> PartResult:
        """End the stages of a part of a file and hand back their pieces (nothing is published)."""
        self._end_stages()
        for n in self.order:
            self.stats[n].frames = max(self._frames_in[n], self._frames_out[n])
        pieces = {n: Piece(dict(self.ctx[n].recorded), self.ctx[n].handed) for n in self.order}
        return PartResult(pieces, {n: self.stats[n] for n in self.order}, list(self.run.scratch),
                          list(self.run.warnings))

    def fail(self, exc: BaseException) -> FileResult:
        """Abort every local stage and describe the failure (the stage active when it was raised)."""
        stage = self._active or (self.local[0] if self.local else "")
        memo = self.run.memo
        if memo is not None and isinstance(exc, InputError) and stage in self.stages and \
                self.stages[stage].cacheable and stage not in self.replayed:
            memo.remember_failure(self.stages[stage], self.run.file, self.lineage[stage], self.run.output_key, exc)
        if stage in self.stats:
            self.stats[stage].failures += 1
        for n in reversed(self.local):
            if n in self.replayed:
                continue
            try:
                self.stages[n].abort(self.ctx[n])
            except Exception:
                pass
        result = self._result(FAILED)
        result.failed_stage = stage
        if self.run.publish_to is None:
            result.outputs, result.digests = _sealed(self.run.out_dir, result.outputs)  # those whole (a truncation's)
        else:  # OUT is remote: a failed file's outputs are not put there (its local copies go with its staging)
            result.outputs, result.digests = [], {}
            remove_local_outputs(self.run)
        shown = as_output_error(exc) or exc  # an encoder's full disk reads as any other write's
        result.error_type = type(shown).__name__
        reason = shown.reason if isinstance(shown, (InputError, StageError)) else \
            str(shown) if isinstance(shown, (OutputError, StorageError)) else \
            f"{type(shown).__name__}: {shown}"  # what and where
        result.error = f"[{stage}] {final_names(reason, self.run.out_dir)}"
        result.traceback = "".join(traceback.format_exception(exc))
        return result

    def _result(self, status: str) -> FileResult:
        for n in self.order:
            self.stats[n].frames = max(self._frames_in[n], self._frames_out[n]) + self._part_frames[n]
        stats = {n: self.stats[n] for n in self.order if n not in self.remote}
        result = FileResult(self.run.file, status, self.run.record, self.run.outputs, self.run.warnings, stats)
        result.wall_s = time.perf_counter() - self.started
        return result


def part_folder(task: FileTask) -> Path:
    """The folder a part of the file writes its scratch files in: the file's own (its staging folder, or OUT)."""
    staging = task.staging
    return staging.folder if staging is not None else task.out_dir


def run_part(pipeline: Pipeline, task: FileTask,
             fail: Callable[[FileSession, Exception], FileResult] | None = None,
             spans: list[StageSpan] | None = None) -> PartResult | FileResult:
    """Run the stages of one part of a file (``task.part``) over its span in this process: its pieces, or the
    failure (``fail`` describes it; by default the session's own ``fail``). A failed part leaves no scratch.

    ``spans``: where the spans of its stages' work go, when the part is traced (``task.traced``)."""
    # A part writes into the file's output folder: only scratch files, which its join reads and removes.
    if task.storage_env:
        adopt_environment(task.storage_env)
    run = FileRun(task.file, part_folder(task), task.output_key, task.cpu_budget, part=task.part)
    session = FileSession(pipeline, run, traced=task.traced and spans is not None)
    try:
        session.start()
        while not session.step().exhausted:
            pass
        return session.finish_part()
    except Exception as exc:
        remove_scratch(run.scratch)
        return fail(session, exc) if fail is not None else session.fail(exc)
    finally:
        if spans is not None:
            spans += session.take_spans()


def part_failed(session: FileSession, failed: FileResult, parts: list[PartResult | FileResult]) -> FileResult:
    """The file's failure for a part that failed: its stages aborted, the part's error told as its own."""
    for done in parts:
        if isinstance(done, PartResult):
            remove_scratch(done.scratch)
    result = session.fail(RuntimeError(failed.error or "a part failed"))
    result.failed_stage, result.error, result.error_type = failed.failed_stage, failed.error, failed.error_type
    result.traceback = failed.traceback
    return result


def replay_whole_file(pipeline: Pipeline, run: FileRun) -> FileResult | None:
    """The file's result from remembered stage results alone, when every stage has them (or one
    remembered an input error); None when some stage must run. Runs no stage."""
    if run.memo is None or not all(s.cacheable for s in pipeline.stages.values()):
        return None
    session = FileSession(pipeline, run)
    try:
        session.replayed = session._replay_remembered()
    except Exception as exc:
        return session.fail(exc)
    if session.replayed != set(session.order):
        run.record.clear()  # what was replayed is redone by the run that follows
        run.outputs.clear()
        run.warnings.clear()
        return None
    result = session._result(OK)
    try:
        result.digests = seal_outputs(run.out_dir, run.outputs)
        result.sizes = ship_outputs(run)
    except (OutputError, StorageError) as exc:
        return session.fail(exc)
    return result


def _sealed(folder: Path, outputs: list[str]) -> tuple[list[str], dict[str, str]]:
    """The outputs of a failed file that can be sealed, and their digests (any other is left out)."""
    kept, digests = [], {}
    for rel in outputs:
        try:
            digests.update(seal_outputs(folder, [rel]))
        except OutputError:
            continue
        kept.append(rel)
    return kept, digests


class FileRunner:
    """Runs whole files through every stage in this process (the inline executor's engine)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.order = pipeline.order()
        self._is_setup = False

    def setup(self) -> None:
        if not self._is_setup:
            for n in self.order:
                self.pipeline.stages[n].setup()
            self._is_setup = True

    def teardown(self) -> None:
        if self._is_setup:
            for n in self.order:
                try:
                    self.pipeline.stages[n].teardown()
                except Exception:
                    pass
            self._is_setup = False

    def run(self, run: FileRun, start_parts: PartsStarter | None = None,
            spans: list[StageSpan] | None = None) -> FileResult:
        """Push ``run.file`` through the graph and return its result; never raises for a bad file.

        A file cut into parts has them run by ``start_parts`` (without it: here, one after another) while its
        own session goes on, and joined at its end. ``spans``: where the spans of its stages' work go (traced).
        """
        self.setup()
        session = FileSession(self.pipeline, run, order=self.order, traced=spans is not None)
        done: list[PartResult | FileResult] = []
        try:
            session.start()
            wait = None
            while True:
                step = session.step()
                if step.parts:
                    wait = (start_parts or self._parts_here(run))(step.parts)
                if step.exhausted:
                    break
            done = wait() if wait is not None else []
            failed = next((d for d in done if isinstance(d, FileResult)), None)
            if failed is not None:
                return part_failed(session, failed, done)
            result = session.finish([d for d in done if isinstance(d, PartResult)] or None)
        except Exception as exc:  # one file fails; the caller's batch goes on
            result = session.fail(exc)
        if spans is not None:
            spans += session.take_spans()
        for d in done:
            if isinstance(d, PartResult):
                remove_scratch(d.scratch)
        return result

    def _parts_here(self, run: FileRun) -> PartsStarter:
        """Parts run in this process, one after another, when they are waited for."""
        def start(spans: list[Any]) -> Callable[[], list[PartResult | FileResult]]:
            tasks = [FileTask(run.file, run.out_dir, run.output_key, run.cpu_budget, part=FilePart(i, len(spans), s))
                     for i, s in enumerate(spans)]
            return lambda: [run_part(self.pipeline, t) for t in tasks]
        return start
