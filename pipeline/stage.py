"""The ``Stage`` contract, the per-file context a stage works in, and ``@stage`` for functions.

A stage's life in a worker process::

    setup()                      once, before its first file
    begin(ctx)                   per file
    process(item, ctx) -> items  per input item; may yield items downstream
    end(ctx) -> items            the file's input is exhausted: flush, finish outputs
    abort(ctx)                   the file failed: discard partial work
    teardown()                   once, when the worker is done

A long file may run in *parts* (``splits``): its source stage cuts it
(``parts``), each part runs the splitting stages and what feeds them in its
own worker, and the file's own session joins what they handed over::

    source.parts(file, ctx, workers) -> spans     in the file's session, at its start
    begin / process / end  with ctx.part set      per part, in any worker; end hands over (ctx.hand_over)
    join(pieces, ctx)                             in the file's session, once every part is done

Stage objects hold configuration and are pickled to workers; what a stage
keeps for one file lives in ``ctx.state``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .errors import OutputError
from .items import FILE, FileItem
from .outputs import safe_join

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["Stage", "StageContext", "FileRun", "FilePart", "Piece", "FunctionStage", "stage"]


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name.lstrip("_")).lower()


class Stage:
    """Base class of stages. Override ``process`` and whichever hooks you need.

    Class attributes declare the stage to the graph: ``accepts`` and ``emits``
    are item kinds; ``report_fields`` are the Arrow fields this stage adds to
    each file's row of the report (read only when the report is written: a
    property that imports pyarrow there keeps building a pipeline light).
    ``preload`` names modules the stage's work imports where it runs, in its
    methods rather than at its module's top: the workers' server imports them
    ahead, with the stage's module, so that no worker pays for them.

    How it runs: a ``stateful`` stage (the default) sees one file's items in
    order in one process, and may keep per-file state in ``ctx.state``. A
    frame stage with ``stateful = False`` is a map: its frames are spread over
    the workers of its ``pool`` (up to ``concurrency`` at once, ``batch_size``
    frames a task, at ``priority``); what it emits is put back in order
    before any stage that needs order (``ordered``).

    A ``cacheable`` stage promises that what it writes and records depends only
    on the file's content and its parameters (``cache_params()``: its public
    attributes); the engine then keeps its results across runs and replays
    them for an unchanged file. Bump ``cache_version`` when its output changes.

    A ``splits`` stage (an encoder) can work on parts of a long file at once:
    with ``ctx.part`` set it sees only that part's frames and hands what it
    made over (``ctx.hand_over``) instead of publishing it; ``join`` then
    makes the file's output from every part's piece. The source stage that
    feeds it says where a file may be cut (``parts``).
    """

    name: str = ""
    cacheable: bool = False
    cache_version: str = "1"
    accepts: tuple[str, ...] = (FILE,)
    emits: tuple[str, ...] = ()
    report_fields: tuple[pa.Field, ...] = ()
    preload: tuple[str, ...] = ()
    stateful: bool = True
    pool: str = "default"
    concurrency: int | None = None
    priority: int = 1  # pipeline.runtime.pool.Priority.MEDIUM
    batch_size: int = 1
    ordered: bool = True
    splits: bool = False

    def __init__(self, name: str | None = None, *, stateful: bool | None = None, pool: str | None = None,
                 concurrency: int | None = None, priority: int | None = None, batch_size: int | None = None,
                 ordered: bool | None = None) -> None:
        if name:
            self.name = name
        elif not self.name:
            self.name = _snake(type(self).__name__)
        for attr, value in (("stateful", stateful), ("pool", pool), ("concurrency", concurrency),
                            ("priority", priority), ("batch_size", batch_size), ("ordered", ordered)):
            if value is not None:
                setattr(self, attr, value)

    @property
    def is_map(self) -> bool:
        """True when the stage's frames may run on many workers at once."""
        return not self.stateful and FILE not in self.accepts

    def cache_params(self) -> dict[str, Any]:
        """What the stage's results depend on besides the file: its public settings."""
        return {k: v for k, v in vars(self).items()
                if not k.startswith("_") and k not in ("name", "report_fields")}

    def setup(self) -> None:
        """Prepare per-process resources (called once per worker)."""

    def begin(self, ctx: StageContext) -> None:
        """Start a new file."""

    def process(self, item: Any, ctx: StageContext) -> Iterable[Any] | None:
        """Handle one item; return or yield the items to pass downstream."""
        raise NotImplementedError(f"stage {self.name!r} does not implement process()")

    def end(self, ctx: StageContext) -> Iterable[Any] | None:
        """The file's items are all processed: flush and finish its outputs."""
        return None

    def abort(self, ctx: StageContext) -> None:
        """The file failed: release what ``begin``/``process`` opened, leave no partial output."""

    def parts(self, file: FileItem, ctx: StageContext, workers: int) -> Sequence[Any] | None:
        """Where to cut ``file`` for ``splits`` stages fed by this source, as spans (opaque, picklable) that
        ``ctx.part.span`` gives each part back; None (the default) keeps the file whole."""
        return None

    def join(self, pieces: Sequence[Piece], ctx: StageContext) -> None:
        """The file ran in parts: make its outputs and report columns from each part's piece, in order.

        The default records the first part's columns (a stage whose columns add up overrides it).
        """
        if pieces:
            ctx.record(**pieces[0].record)

    def teardown(self) -> None:
        """Release per-process resources."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class ProgressSink(Protocol):
    def __call__(self, stage: str, done: int, total: int | None) -> None: ...


def _no_progress(stage: str, done: int, total: int | None) -> None:
    return None


@dataclass(frozen=True, slots=True)
class FilePart:
    """One part of a file that runs in parts: its number, how many there are, and its span (from ``parts``)."""

    index: int
    count: int
    span: Any


@dataclass(slots=True)
class Piece:
    """What a stage left of one part of a file: its report columns and what it handed over."""

    record: dict[str, Any]
    value: Any = None


@dataclass(slots=True)
class FileRun:
    """Everything one file's run collects: its report row, outputs and warnings."""

    file: FileItem
    out_dir: Path
    output_key: str
    cpu_budget: int = 1
    record: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    progress: ProgressSink = _no_progress
    memo: Any = None  # a pipeline.bookkeeping.memo.StageMemo when results are kept across runs
    workers: int = 1  # how many workers a file's parts could spread over (1: it is never cut)
    part: FilePart | None = None  # set in the session of one part of a file
    parts: int = 0  # in a file's own session: how many parts its splitting stages run in elsewhere
    batch_ending: bool = False  # no other file waited to start when this one did
    scratch: list[str] = field(default_factory=list)  # files to remove once the file is done (parts' pieces)
    publish_to: str | None = None  # OUT's URL when it is on object storage: sealed outputs are put there


class StageContext:
    """What a stage sees of the file it is working on (one context per stage per file)."""

    __slots__ = ("run", "stage", "state", "recorded", "added", "handed")

    def __init__(self, run: FileRun, stage: str) -> None:
        self.run = run
        self.stage = stage
        self.state: dict[str, Any] = {}
        self.recorded: dict[str, Any] = {}  # this stage's report columns (what a memo keeps)
        self.added: list[str] = []  # this stage's outputs
        self.handed: Any = None  # in a part: what the stage handed over to its join

    @property
    def file(self) -> FileItem:
        """The input file."""
        return self.run.file

    @property
    def cpu_budget(self) -> int:
        """How many threads this file's work may use (codec threads count against it)."""
        return self.run.cpu_budget

    @property
    def part(self) -> FilePart | None:
        """The part of the file this session runs (None: the whole file)."""
        return self.run.part

    @property
    def batch_ending(self) -> bool:
        """Whether no other file of the batch waited to start when this one started: workers left idle at the
        end of a batch could take its parts (a source may cut shorter files then)."""
        return self.run.batch_ending

    @property
    def split(self) -> bool:
        """Whether the file's splitting stages run in parts elsewhere (in the file's own session)."""
        return self.run.parts > 0

    def hand_over(self, value: Any, scratch: Iterable[str | Path] = ()) -> None:
        """In a part: what this stage made of it, for its ``join``; ``scratch`` files are removed once the
        file is done, joined or failed."""
        self.handed = value
        self.run.scratch.extend(str(p) for p in scratch)

    def output_path(self, category: str, name: str | None = None) -> Path:
        """Where an output of this file goes: ``OUT/category/<file key>[/name]``.

        Without ``name`` the path is the file key itself (add a suffix to it);
        the result never lands outside the output folder.
        """
        folder = safe_join(self.run.out_dir, category)
        path = safe_join(self.run.out_dir, category, self.run.output_key, *([name] if name is not None else []))
        if folder not in path.parents:  # a key of "..": a suffix added to it would leave the folder
            raise OutputError(f"output path {category}/{self.run.output_key} would not land inside {folder}")
        return path

    def add_output(self, path: str | Path) -> None:
        """Record a finished output file of this file (relative to the output folder)."""
        p = Path(path)
        try:
            p = p.resolve().relative_to(self.run.out_dir.resolve())
        except ValueError:
            pass
        self.run.outputs.append(p.as_posix())
        self.added.append(p.as_posix())

    def record(self, **columns: Any) -> None:
        """Set columns of this file's report row."""
        self.run.record.update(columns)
        self.recorded.update(columns)

    def warn(self, message: str) -> None:
        """Note something a user should know about this file that did not fail it."""
        self.run.warnings.append(f"[{self.stage}] {message}")
        self.recorded.setdefault("__warnings__", []).append(f"[{self.stage}] {message}")

    def progress(self, done: int, total: int | None = None) -> None:
        """Report how far this stage is through the file (in its own units, e.g. frames)."""
        self.run.progress(self.stage, done, total)


class FunctionStage(Stage):
    """A stage made from a plain function ``fn(item, ctx) -> items | None``."""

    def __init__(self, fn: Callable[[Any, StageContext], Iterable[Any] | None], *, name: str | None = None,
                 accepts: str | Iterable[str] = FILE, emits: str | Iterable[str] = (), **options: Any) -> None:
        super().__init__(name or fn.__name__, **options)
        self.fn = fn
        self.accepts = (accepts,) if isinstance(accepts, str) else tuple(accepts)
        self.emits = (emits,) if isinstance(emits, str) else tuple(emits)

    def process(self, item: Any, ctx: StageContext) -> Iterable[Any] | None:
        return self.fn(item, ctx)


def stage(fn: Callable[..., Any] | None = None, *, name: str | None = None,
          accepts: str | Iterable[str] = FILE, emits: str | Iterable[str] = (), **options: Any) -> Any:
    """Turn ``fn(item, ctx)`` into a :class:`Stage`; usable bare or with arguments.

    ``options`` are the :class:`Stage` run options: ``stateful``, ``pool``,
    ``concurrency``, ``priority``, ``batch_size``, ``ordered``.
    """
    def wrap(f: Callable[..., Any]) -> FunctionStage:
        return FunctionStage(f, name=name, accepts=accepts, emits=emits, **options)
    return wrap(fn) if fn is not None else wrap
