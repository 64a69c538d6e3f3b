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

Safe import path: the server starts as ``python -c ...`` (a loky worker as ``python -m ...``), and Python puts
the current folder first on such a process's import path before it imports ``multiprocessing`` and the
preloaded modules. Run from a folder of downloaded footage, a ``multiprocessing.py`` or ``numpy.py`` there
would run. Both start with ``PYTHONSAFEPATH`` set (``SAFE_PATH``), which leaves that folder out; workers
drop the variable again (``forget_safe_path``), their import path being the parent's.

Lifetime: every helper starts tagged as this process's (``lifecycle.tagged``), watched by its watchdog, so
that none outlives it; a worker of the server closes its copy of the server's alive pipe and dies with the
server (``lifecycle.bind_to_server``). ``lifecycle.stop_helpers`` ends the server and the trackers and waits.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import multiprocessing.context
import multiprocessing.forkserver
import os
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from multiprocessing import popen_forkserver, spawn, util
from multiprocessing.context import BaseContext
from types import FrameType
from typing import Any

from loky.backend import get_context as loky_context

from ..errors import PoolUnavailable
from . import lifecycle
from .limits import limit_reason

ENV_VAR = "FRAMEPIPE_START_METHOD"
SAFE_PATH = {"PYTHONSAFEPATH": "framepipe"}
"""The environment a worker interpreter starts with: no current folder on its import path (any value does)."""
_start_lock = threading.Lock()

# What every worker uses: the calls it runs, its pool's side, and the memo's store (a file's actor opens it).
_preload: list[str] = ["pipeline.executors.worker", "pipeline.runtime.pool", "pipeline.cache.disk"]
_IMPORTED_BY = os.getpid()  # in a worker of the server: the server's pid (it imported this module first)


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


@contextmanager
def _safe_path() -> Iterator[None]:
    """``SAFE_PATH`` and this process's tag (``lifecycle.tagged``) in its environment while a helper starts (a
    child takes it from there)."""
    with _start_lock, lifecycle.tagged():
        before = {k: os.environ.get(k) for k in SAFE_PATH}
        os.environ.update({k: v for k, v in SAFE_PATH.items() if not before[k]})
        try:
            yield
        finally:
            for k, v in before.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _ensure_server() -> None:
    with _safe_path():
        multiprocessing.forkserver.ensure_running()  # starts the resource tracker too
    lifecycle.remove_at_death(util.get_temp_dir())  # the server's socket is there: gone with a killed run too


def _ensure_trackers() -> None:
    """Start the resource trackers (``python -c ...`` both) with a safe import path, ahead of loky's workers."""
    from multiprocessing import resource_tracker

    from loky.backend import resource_tracker as loky_tracker
    with _safe_path():
        resource_tracker.ensure_running()
        loky_tracker.ensure_running()


def forget_safe_path() -> None:
    """In a worker: drop ``SAFE_PATH`` from the environment (what the worker starts, say a script, is not ours)."""
    for k, v in SAFE_PATH.items():
        if os.environ.get(k) == v:
            del os.environ[k]


class _WorkerPopen(popen_forkserver.Popen):
    def _launch(self, process_obj: Any) -> None:
        _ensure_server()  # here rather than inside the launch: started with a safe import path
        _skip_main.active = True
        try:
            super()._launch(process_obj)  # type: ignore[misc]  # (private to multiprocessing)
        finally:
            _skip_main.active = False


if hasattr(multiprocessing.context, "ForkServerContext"):
    class _WorkerProcess(multiprocessing.context.ForkServerProcess):
        @staticmethod
        def _Popen(process_obj: Any) -> _WorkerPopen:
            return _WorkerPopen(process_obj)

        def _bootstrap(self, parent_sentinel: int | None = None) -> int:
            # The first thing the worker does, right after the server forked it.
            lifecycle.bind_to_server(_IMPORTED_BY if _IMPORTED_BY != os.getpid() else None)
            code: int = super()._bootstrap(parent_sentinel)  # type: ignore[misc]
            return code

    class _WorkerContext(multiprocessing.context.ForkServerContext):
        Process = _WorkerProcess

    from multiprocessing import popen_spawn_posix

    class _SafeSpawnPopen(popen_spawn_posix.Popen):
        def _launch(self, process_obj: Any) -> None:
            with _safe_path():  # each spawned worker starts as ``python -c ...``
                super()._launch(process_obj)  # type: ignore[misc]  # (private to multiprocessing)

    class _SafeSpawnProcess(multiprocessing.context.SpawnProcess):
        @staticmethod
        def _Popen(process_obj: Any) -> _SafeSpawnPopen:
            return _SafeSpawnPopen(process_obj)

    class _SafeSpawnContext(multiprocessing.context.SpawnContext):
        Process = _SafeSpawnProcess

    _context: BaseContext | None = _WorkerContext()
    _spawn_context: BaseContext | None = _SafeSpawnContext()
else:  # Windows
    _context = _spawn_context = None


def _forgive_cut_requests() -> None:
    """In the server: a request its client gave up in the middle (out of descriptors as it sent them) is dropped,
    instead of ending the server with a traceback (the standard library's server ignores only ECONNABORTED).

    The client has failed already and reports why; the server goes on serving the next one.
    """
    import errno
    from multiprocessing import reduction
    receive, server = reduction.recvfds, os.getpid()

    def recvfds(sock: Any, size: int) -> list[int]:
        try:
            return receive(sock, size)
        except (EOFError, RuntimeError) as exc:
            if os.getpid() != server:  # a worker: as it always was
                raise
            raise ConnectionAbortedError(errno.ECONNABORTED, f"fork request cut short: {exc}") from exc

    reduction.recvfds = recvfds


def _in_the_server() -> bool:
    """Whether the forkserver's ``main`` is importing this module (one of its preloads)."""
    frame: FrameType | None = sys._getframe()
    while frame is not None:
        if frame.f_code is multiprocessing.forkserver.main.__code__:
            return True
        frame = frame.f_back
    return False


if _context is not None and _in_the_server():
    _forgive_cut_requests()


def start_server(modules: Iterable[str] = ()) -> None:
    """Start the server now, importing ``modules`` too, so that its imports overlap the caller's own work.

    Returns at once (the server imports in its own process); a no-op when the
    server runs already or another start method is chosen. ``PoolUnavailable``
    when it cannot start (out of processes, descriptors or memory).
    """
    preload(modules)
    context = worker_context()
    try:
        if context is _context and _context is not None:
            _ensure_server()
        else:
            _ensure_trackers()
    except Exception as exc:  # out of processes, descriptors or memory: one line that names the limit
        reason = limit_reason(exc)
        if reason is None:
            raise
        raise PoolUnavailable(f"could not start the workers' server: {reason}") from exc


def worker_context() -> BaseContext:
    """The start method for worker pools, as a context for loky's ``ProcessPoolExecutor``.

    The forkserver where the platform has one; loky's own method elsewhere or
    when ``FRAMEPIPE_START_METHOD`` names another (``loky``, ``spawn``).
    """
    method = os.environ.get(ENV_VAR, "forkserver")
    lifecycle.watch()  # loky's own workers start tagged through the pool's env= (lifecycle.helper_env)
    if method == "spawn" and _spawn_context is not None:
        return _spawn_context
    if method != "forkserver" or _context is None:
        context: BaseContext = loky_context(None if method == "forkserver" else method)
        return context
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
