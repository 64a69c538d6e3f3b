"""``stream()``: a run's results in the caller's program as files finish, instead of all at its end.

The run itself is ``run()``, started in a thread of its own; each file's result reaches the caller through a
queue as its ledger line is written (``RunEvents.file_done``), so what is yielded is what a resumed run would
skip. A consumer that stops early — ``break``, an exception in its loop, the iterator dropped and collected —
closes the generator, which cancels the run as Ctrl-C would (``runtime.interrupts.cancelled_by``: workers
stopped, partial outputs removed, frame slots freed) and waits for its thread before it returns, so nothing of
the run is left behind. Ctrl-C in the consuming thread raises there and ends the run the same way.
"""

from __future__ import annotations

import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .runtime.interrupts import Interrupted, cancelled_by

if TYPE_CHECKING:
    from .executors.base import FileTask, RunEvents
    from .graph import Pipeline
    from .results import FileResult, RunResult

__all__ = ["stream", "RunThread", "Finished", "Failed", "END"]

END = object()
"""The run's thread is done (its ``Finished`` or ``Failed`` came before)."""


class _Relay:
    """The run's events, passed on to the caller's ``events`` (if any) and each finished file queued."""

    def __init__(self, post: Callable[[Any], None], inner: RunEvents | None) -> None:
        self.post = post
        self.inner = inner

    def file_started(self, task: FileTask) -> None:
        if self.inner is not None:
            self.inner.file_started(task)

    def file_progress(self, index: int, stage: str, done: int, total: int | None) -> None:
        if self.inner is not None:
            self.inner.file_progress(index, stage, done, total)

    def file_done(self, result: FileResult) -> None:
        if self.inner is not None:
            self.inner.file_done(result)
        self.post(result)


class RunThread:
    """``run()`` in a thread of its own, cancellable: what it reports goes to ``post`` as it comes — each
    finished file's ``FileResult``, then a ``Finished`` (its ``RunResult``) or a ``Failed`` (what it raised),
    then ``END``. ``stop()`` cancels it as Ctrl-C would and waits for it. Without ``out`` the run works in a
    temporary folder, removed by ``stop()``. (``stream()`` and ``iter_batches()`` run on it.)
    """

    def __init__(self, pipeline: Pipeline, inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
                 out: str | os.PathLike[str] | None, options: dict[str, Any], post: Callable[[Any], None]) -> None:
        self.cancel = threading.Event()
        self.scratch = tempfile.mkdtemp(prefix="framepipe-stream-") if out is None else None
        target: str | os.PathLike[str] = self.scratch if self.scratch is not None else out  # type: ignore[assignment]
        relay = _Relay(post, options.pop("events", None))

        def work() -> None:
            from .run import run
            try:
                with cancelled_by(self.cancel):
                    post(Finished(run(pipeline, inputs, target, events=relay, **options)))
            except BaseException as exc:  # (Interrupted too: raised on to the consumer unless it asked for it)
                post(Failed(exc))
            finally:
                post(END)

        self.thread = threading.Thread(target=work, name=f"framepipe run {pipeline.name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def cancelled(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the run's end that ``stop()`` asked for (not an error to raise)."""
        return isinstance(exc, Interrupted) and self.cancel.is_set()

    def stop(self) -> None:
        """Cancel the run (a finished one has nothing left to stop), wait for its thread, remove its scratch."""
        self.cancel.set()
        if self.thread.ident is not None:
            self.thread.join()
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)


def stream(pipeline: Pipeline, inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
           out: str | os.PathLike[str] | None = None, *, ordered: bool = False,
           **options: Any) -> Iterator[FileResult]:
    """Run ``pipeline`` over ``inputs`` and yield each file's ``FileResult`` as it finishes (completion order;
    input order with ``ordered=True``); ``options`` are ``run()``'s, failures handled as there (a failed file is
    a result, never an exception). ``out`` may be left out for a pipeline whose stages write nothing: the run
    then works in a temporary folder, removed at the end. Stopping early stops the run (see the module's
    docstring); an error that ends the whole run (a missing input folder) is raised from the iterator. The run
    starts at the first ``next()``.
    """
    results: queue.Queue[Any] = queue.Queue()
    runner = RunThread(pipeline, inputs, out, options, results.put)
    runner.start()  # on the first next(): an iterator never started runs nothing, and leaves nothing to stop
    yield from _consume(results, runner, ordered)


class Finished:
    """The run's end: its ``RunResult``."""

    def __init__(self, result: RunResult) -> None:
        self.result = result


class Failed:
    """The run's end: what it raised."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _consume(results: queue.Queue[Any], runner: RunThread, ordered: bool) -> Iterator[FileResult]:
    """Yield what the run's thread queues; on the way out (the end, ``close()``, an error) stop it and wait."""
    seen: set[int] = set()
    held: dict[int, FileResult] = {}  # ordered: results that came before an earlier file's
    next_index = 0
    try:
        while True:
            item = results.get()
            if item is END:
                break
            if isinstance(item, Failed):
                if not runner.cancelled(item.exc):
                    raise item.exc
                continue
            if isinstance(item, Finished):  # every file has come through file_done; any not seen, in order
                for r in item.result.files:
                    if r.file.index not in seen and r.file.index not in held:
                        held[r.file.index] = r
                continue
            if item.file.index in seen:
                continue
            seen.add(item.file.index)
            if not ordered:
                yield item
                continue
            held[item.file.index] = item
            while next_index in held:
                yield held.pop(next_index)
                next_index += 1
        for index in sorted(held):  # the end: what waited for a file that was never queued (resumed ones are)
            yield held.pop(index)
    finally:
        runner.stop()
