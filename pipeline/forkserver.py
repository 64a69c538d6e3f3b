"""Worker processes forked from a server that has imported the engine and the stages already.

A spawned worker starts a fresh interpreter and imports numpy, the engine and
the stages' modules: measured here, 3 workers took 0.50 s to answer and 1.0 s of
CPU, paid by every pool of every run (a quarter of a 2-core machine's time on a
4 s clip). The standard library's forkserver imports them once, on first use;
each worker is then a fork of it (3 workers answered in 0.02 s), its pages shared
until written. ``FRAMEPIPE_START_METHOD=loky`` (or ``spawn``) turns this off.

Unlike the standard library's forkserver, a worker does not re-run the user's
main script (loky does not either): the functions it needs travel pickled by
value, so a script without an ``if __name__ == "__main__":`` guard still works.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import multiprocessing.context
import multiprocessing.forkserver
import os
import threading
from collections.abc import Iterable
from multiprocessing import popen_forkserver, spawn
from multiprocessing.context import BaseContext

from loky.backend import get_context as loky_context

ENV_VAR = "FRAMEPIPE_START_METHOD"

_preload: list[str] = ["pipeline.executors.worker", "pipeline.runtime"]


def preload(modules: Iterable[str]) -> None:
    """Have the server import ``modules`` too (those it can find; ``__main__`` never).

    Takes effect only if the server has not started yet; a module left out is
    simply imported by each worker, as without the server.
    """
    for name in modules:
        if name in _preload or name == "__main__" or name.startswith("__main__."):
            continue
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if found:
            _preload.append(name)


class _SkipMain(threading.local):
    active = False


_skip_main = _SkipMain()
_preparation_data = spawn.get_preparation_data


def _preparation_data_for_worker(name: str) -> dict[str, object]:
    """The standard preparation data, less "re-run __main__" while one of our workers starts."""
    data = _preparation_data(name)
    if _skip_main.active:
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
    return data


spawn.get_preparation_data = _preparation_data_for_worker  # inert outside _WorkerPopen._launch


class _WorkerPopen(popen_forkserver.Popen):
    def _launch(self, process_obj: object) -> None:
        _skip_main.active = True
        try:
            super()._launch(process_obj)
        finally:
            _skip_main.active = False


if hasattr(multiprocessing.context, "ForkServerContext"):
    class _WorkerProcess(multiprocessing.context.ForkServerProcess):
        @staticmethod
        def _Popen(process_obj: object) -> _WorkerPopen:
            return _WorkerPopen(process_obj)

    class _WorkerContext(multiprocessing.context.ForkServerContext):
        Process = _WorkerProcess  # type: ignore[assignment]

    _context: BaseContext | None = _WorkerContext()
else:  # Windows
    _context = None


def start_server(modules: Iterable[str] = ()) -> None:
    """Start the server now, importing ``modules`` too, so that its imports overlap the caller's own work.

    Returns at once (the server imports in its own process); a no-op when the
    server runs already or another start method is chosen.
    """
    preload(modules)
    context = worker_context()
    if context is _context and _context is not None:
        multiprocessing.forkserver.ensure_running()


def worker_context() -> BaseContext:
    """The start method for worker pools, as a context for loky's ``ProcessPoolExecutor``.

    The forkserver where the platform has one; loky's own method elsewhere or
    when ``FRAMEPIPE_START_METHOD`` names another (``loky``, ``spawn``).
    """
    method = os.environ.get(ENV_VAR, "forkserver")
    if method != "forkserver" or _context is None:
        return loky_context(None if method == "forkserver" else method)
    _context.set_forkserver_preload(list(_preload))
    return _context


def stop_server() -> None:
    """Stop the worker server (after the pools it served); the next pool starts a fresh one.

    For a run that must pay the whole start-up, as a new ``framepipe`` command
    does, and for a process that wants changed stage modules imported afresh.
    """
    server = getattr(multiprocessing.forkserver, "_forkserver", None)
    if server is not None and hasattr(server, "_stop"):
        server._stop()
