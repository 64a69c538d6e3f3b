"""``Pipeline``: a graph of stages, validated, in topological order."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .errors import PipelineDefinitionError
from .items import FILE
from .stage import Stage

if TYPE_CHECKING:
    from .batches.iterate import FrameBatches
    from .results import FileResult, RunResult
    from .runtime.pool import TaskPoolConfig

__all__ = ["Pipeline"]

StageRef = str | Stage


class Pipeline:
    """A directed acyclic graph of stages that every input file flows through.

    Stages added without ``after`` receive the file itself; the others receive
    what their upstream stages emit, routed by item kind::

        p = Pipeline("proxies")
        decode = p.add(Decode())
        p.add(Proxy(), after=decode)
    """

    def __init__(self, name: str = "pipeline", extensions: Iterable[str] | None = None) -> None:
        self.name = name
        self.pools: dict[str, TaskPoolConfig | None] = {"default": None}
        """Worker pools map stages may name (None: sized by the executor)."""
        self.extensions: tuple[str, ...] | None = tuple(extensions) if extensions is not None else None
        """File suffixes a folder walk picks up for this pipeline (None: every file)."""
        self._stages: dict[str, Stage] = {}
        self._inputs: dict[str, list[str]] = {}

    # Building -----------------------------------------------------------

    def add(self, stage: Stage, after: StageRef | Sequence[StageRef] | None = None) -> Stage:
        """Add ``stage``, fed by the stages in ``after`` (or by the input files); return it."""
        if not isinstance(stage, Stage):
            raise PipelineDefinitionError(f"{stage!r} is not a Stage (use @stage for functions)")
        if stage.name in self._stages:
            raise PipelineDefinitionError("a stage of this name is already in the pipeline", stage.name)
        self._stages[stage.name] = stage
        self._inputs[stage.name] = []
        ups = [] if after is None else [after] if isinstance(after, (str, Stage)) else list(after)
        for up in ups:
            self.connect(up, stage)
        return stage

    def add_pool(self, name: str, config: TaskPoolConfig | None = None) -> None:
        """Declare a worker pool that map stages can name in ``pool``."""
        self.pools[name] = config

    def connect(self, upstream: StageRef, downstream: StageRef) -> None:
        """Feed ``downstream`` with what ``upstream`` emits."""
        up, down = self._name(upstream), self._name(downstream)
        for n in (up, down):
            if n not in self._stages:
                raise PipelineDefinitionError(f"unknown stage {n!r}", down if n == up else None)
        if up not in self._inputs[down]:
            self._inputs[down].append(up)

    def _name(self, ref: StageRef) -> str:
        return ref if isinstance(ref, str) else ref.name

    # Reading ------------------------------------------------------------

    @property
    def stages(self) -> dict[str, Stage]:
        """Stages by name, in the order they were added."""
        return dict(self._stages)

    def inputs(self, name: str) -> list[str]:
        """Names of the stages that feed ``name`` (empty: it receives the files)."""
        return list(self._inputs[name])

    def children(self, name: str) -> list[str]:
        """Names of the stages fed by ``name``, in topological order."""
        return [n for n in self.order() if name in self._inputs[n]]

    def order(self) -> list[str]:
        """Stage names in topological order (ties keep insertion order)."""
        self.validate()
        return self._topological()

    def _topological(self) -> list[str]:
        remaining = {n: set(ups) for n, ups in self._inputs.items()}
        ordered: list[str] = []
        while remaining:
            ready = [n for n, ups in remaining.items() if not ups]
            if not ready:
                cycle = sorted(remaining)
                raise PipelineDefinitionError(f"the graph has a cycle through {', '.join(cycle)}", cycle[0])
            for n in ready:
                ordered.append(n)
                del remaining[n]
            for ups in remaining.values():
                ups.difference_update(ready)
        return ordered

    def validate(self) -> None:
        """Raise :class:`PipelineDefinitionError` naming the stage at fault, if any."""
        if not self._stages:
            raise PipelineDefinitionError(f"pipeline {self.name!r} has no stages")
        self._topological()
        for name, stage in self._stages.items():
            ups = self._inputs[name]
            if not ups and FILE not in stage.accepts:
                raise PipelineDefinitionError(
                    f"accepts {', '.join(stage.accepts)} but has no input; add it after a stage that emits it",
                    name)
            if stage.pool not in self.pools:
                raise PipelineDefinitionError(
                    f"names pool {stage.pool!r}, which the pipeline does not declare "
                    f"(pools: {', '.join(self.pools)}; add it with Pipeline.add_pool)", name)
            if stage.batch_size < 1 or (stage.concurrency is not None and stage.concurrency < 1):
                raise PipelineDefinitionError("batch_size and concurrency must be at least 1", name)
            for up in ups:
                if not set(self._stages[up].emits) & set(stage.accepts):
                    emits = ", ".join(self._stages[up].emits) or "nothing"
                    raise PipelineDefinitionError(
                        f"accepts {', '.join(stage.accepts)} but its input {up!r} emits {emits}", name)

    # Running ------------------------------------------------------------

    def run(self, inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str], out: str | os.PathLike[str],
            **options: Any) -> RunResult:
        """Run over ``inputs`` (a folder, a file or a list of files) into ``out``; see :func:`pipeline.run`."""
        from .run import run
        return run(self, inputs, out, **options)

    def stream(self, inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
               out: str | os.PathLike[str] | None = None, **options: Any) -> Iterator[FileResult]:
        """Run over ``inputs`` and yield each file's result as it finishes; see :func:`pipeline.stream.stream`."""
        from .stream import stream
        return stream(self, inputs, out, **options)

    def iter_batches(self, inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
                     batch_size: int = 32, **options: Any) -> FrameBatches:
        """Run over ``inputs`` and give the frames in batches over shared memory, no copy: each batch is valid
        until the next is asked for; see :func:`pipeline.batches.iter_batches`."""
        from .batches.iterate import iter_batches
        return iter_batches(self, inputs, batch_size, **options)

    def __repr__(self) -> str:
        return f"<Pipeline {self.name!r}: {' -> '.join(self._stages)}>"
