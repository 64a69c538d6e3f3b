"""``iter_batches``: a pipeline's frames in the caller's program, in batches over shared memory, as they are made.

The pipeline runs as ``run()`` does (its files on the local executor's workers, or in this process with
``executor="inline"``), with one stage more: a ``BatchSink`` after the frames' stage, which writes every frame
into a slot this process lends it (``BatchChannel``). The caller gets each filled slot as a ``FrameBatch``:

    with p.iter_batches("clips/", batch_size=32) as batches:
        for batch in batches:
            model(batch["frames"])    # N x H x W x C, a view of the slot: no copy

A batch's frames are valid until the next batch is asked for (``keep()`` holds them longer). Batches of
different files interleave as the files run; within a file they come in order, and a batch never holds frames
of two files. Stopping early (``break``, an exception, the iterator collected) stops the run as ``stream()``
does: workers stopped, every slot unlinked.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..errors import PipelineDefinitionError
from ..items import FRAME
from ..results import FileResult
from ..stream import END, Failed, Finished, RunThread
from .batch import BatchFormat, FrameBatch
from .channel import BatchChannel, Filled
from .sink import BatchShape, BatchSink

if TYPE_CHECKING:
    from ..graph import Pipeline
    from ..results import RunResult

__all__ = ["iter_batches", "FrameBatches"]

_FORMATS = ("numpy", "arrow", "dlpack")


def iter_batches(pipeline: Pipeline, inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
                 batch_size: int = 32, *, format: BatchFormat = "numpy", stage: str | None = None,
                 clip_length: int = 1, clip_stride: int | None = None, prefetch: int = 2,
                 out: str | os.PathLike[str] | None = None, **options: Any) -> FrameBatches:
    """Run ``pipeline`` over ``inputs`` and give the frames of ``stage`` (default: the last stage that emits
    frames) in ``FrameBatch`` es of ``batch_size`` rows, each row a frame or, with ``clip_length`` K, a clip of
    K consecutive frames (clips start ``clip_stride`` frames apart, default K; never across files). A file's
    last batch holds what is left of it.

    ``prefetch``: batches made ahead of the consumer; past that the workers wait (memory stays flat).
    ``options`` are ``run()``'s (``workers``, ``executor`` "local" or "inline", ``file_timeout``...); a run
    that writes outputs needs ``out``. The run keeps no report, cache entries or ledger unless asked
    (``write_reports``, ``cache``, ``resume``). Files that fail are in ``FrameBatches.failed``; the batches
    they filled before they failed were given; a file whose worker died is run again from where it stopped.
    ``file_timeout`` counts the time a worker waits for the consumer to take its batches.
    """
    if format not in _FORMATS:
        raise ValueError(f"format must be 'numpy', 'arrow' or 'dlpack', not {format!r}")
    if options.get("executor", "local") not in ("local", "inline"):
        raise ValueError("iter_batches hands over frames in this machine's shared memory: it runs on the "
                         f"'local' or 'inline' executor, not {options['executor']!r}")
    for name, value in (("batch_size", batch_size), ("clip_length", clip_length), ("prefetch", prefetch),
                        ("clip_stride", clip_stride if clip_stride is not None else 1)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a whole number of at least 1, not {value!r}")
    shape = BatchShape(batch_size, clip_length, clip_stride if clip_stride is not None else clip_length)
    for option, default in (("write_reports", False), ("cache", False), ("resume", False)):
        options.setdefault(option, default)
    return FrameBatches(pipeline, inputs, out, shape, format, prefetch, stage, options)


def frame_stage(pipeline: Pipeline, stage: str | None) -> str:
    """The stage whose frames are batched: ``stage``, or the last one (in order) that emits frames."""
    if stage is not None:
        if stage not in pipeline.stages:
            raise PipelineDefinitionError(f"iter_batches: no stage {stage!r} in pipeline {pipeline.name!r}")
        if FRAME not in pipeline.stages[stage].emits:
            raise PipelineDefinitionError("iter_batches: this stage emits no frames", stage)
        return stage
    found = [n for n in pipeline.order() if FRAME in pipeline.stages[n].emits]
    if not found:
        raise PipelineDefinitionError(f"iter_batches: no stage of pipeline {pipeline.name!r} emits frames")
    return found[-1]


def with_sink(pipeline: Pipeline, after: str, sink: BatchSink) -> Pipeline:
    """A copy of ``pipeline`` with ``sink`` fed by ``after`` (the caller's pipeline is left as it was)."""
    from ..graph import Pipeline
    copy = Pipeline(pipeline.name, pipeline.extensions)
    copy.pools = dict(pipeline.pools)
    for name in pipeline.order():
        copy.add(pipeline.stages[name], after=pipeline.inputs(name) or None)
    while sink.name in copy.stages:
        sink.name += "_"
    copy.add(sink, after=after)
    return copy


class FrameBatches(Iterator[FrameBatch]):
    """The batches of one run, as they are filled (see ``iter_batches``); the run starts at the first
    ``next()``. ``results`` holds each file's ``FileResult`` as it came (``failed``: those that failed);
    ``run_result`` the run's ``RunResult`` once every batch was given. Also a context manager (``close()``).
    """

    def __init__(self, pipeline: Pipeline, inputs: Any, out: Any, shape: BatchShape, format: BatchFormat,
                 prefetch: int, stage: str | None, options: dict[str, Any]) -> None:
        self._after = frame_stage(pipeline, stage)
        self._pipeline, self._inputs, self._out, self._shape, self._options = pipeline, inputs, out, shape, options
        self._prefetch = prefetch
        self.format = format
        self.results: list[FileResult] = []
        self.run_result: RunResult | None = None
        self._channel: BatchChannel | None = None  # made, and the run started, at the first next()
        self._runner: RunThread | None = None
        self._current: FrameBatch | None = None
        self._state = "new"  # new -> running (the first next()) -> closed
        self._error: BaseException | None = None

    def _start(self) -> tuple[BatchChannel, RunThread]:
        channel = self._channel = BatchChannel(self._prefetch)
        sink = BatchSink(channel.address, channel.authkey, self._shape)

        def post(item: Any) -> None:
            try:
                if item is END:
                    channel.settle()  # every sink has hung up: each batch they filled is queued before the end
            finally:
                channel.post(item)

        runner = self._runner = RunThread(with_sink(self._pipeline, self._after, sink), self._inputs, self._out,
                                          self._options, post)
        runner.start()
        return channel, runner

    @property
    def failed(self) -> list[FileResult]:
        """The files that failed so far (their error in ``FileResult.error``)."""
        return [r for r in self.results if not r.ok]

    @property
    def slots_in_use(self) -> int:
        """Batch slots lent to the workers or held here now (what the memory of the batches is)."""
        return self._channel.leased_slots() if self._channel is not None and self._state == "running" else 0

    @property
    def peak_slots(self) -> int:
        """The most batch slots in use at once, so far."""
        return self._channel.peak_slots if self._channel is not None else 0

    def __iter__(self) -> FrameBatches:
        return self

    def _let_go(self) -> None:
        """The batch given last goes back to the workers, unless kept: the promise is "until the next batch"."""
        current, self._current = self._current, None
        if current is not None and not current.kept:
            current.release()

    def __next__(self) -> FrameBatch:
        self._let_go()
        if self._state == "closed":
            raise StopIteration
        try:
            if self._channel is None or self._runner is None:
                self._state = "running"
                channel, runner = self._start()
            else:
                channel, runner = self._channel, self._runner
            while True:
                item = channel.take()
                if isinstance(item, Filled):
                    self._current = FrameBatch(item, self.format)
                    return self._current
                if isinstance(item, FileResult):
                    self.results.append(item)
                elif isinstance(item, Finished):
                    self.run_result = item.result
                elif isinstance(item, Failed):
                    if not runner.cancelled(item.exc):
                        self._error = item.exc
                elif item is END or item is None:  # (None: closed meanwhile, from another thread)
                    break
        except BaseException:
            self.close()
            raise
        self.close()
        if self._error is not None:
            raise self._error
        raise StopIteration

    def close(self) -> None:
        """Stop the run (if it is still going) and free every slot; batches kept stay readable."""
        if self._state == "closed":
            return
        self._state = "closed"
        self._let_go()
        if self._channel is not None:
            self._channel.stop_lending()  # (a sink waiting for a slot would hold its file, and the run, up)
        if self._runner is not None:
            self._runner.stop()
        if self._channel is not None:
            self._channel.close()

    def __enter__(self) -> FrameBatches:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
