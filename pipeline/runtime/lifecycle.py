"""What keeps a run's processes from outliving it.

    root: the framepipe command, or the process that called run()
     ├── watchdog: this file run as a script (``python -I -S lifecycle.py ROOT TOKEN``), blocked in poll()
     │   on a pidfd of the root; not tagged
     │   and, each started with FRAMEPIPE_ROOT=TOKEN in its environment (``tagged``):
     ├── resource trackers (the standard library's, loky's)
     ├── the forkserver ── its workers (forks: the same environment)
     ├── loky or spawn workers
     └── a local Ray's daemons ── Ray's workers and actors (they inherit the daemons' environment)

When the root dies, by any signal, SIGKILL included, the watchdog wakes at once: it freezes (SIGSTOP) every
process whose environment carries the root's token, their children, what it last saw under them (it looks
every second: a Ray agent overwrites its environment's memory with its process title, and its parent, a Ray
daemon, dies with the root), and, where the root led its process group (a shell's job), Ray's processes in
that group (an agent started since the last look), scanning again until a scan finds none new (a frozen
process starts no other), kills them (SIGKILL), waits a moment for the resource trackers, which end by
themselves once no process holds their pipe (unlinking what was registered with them), and unlinks the shared
segments and loky semaphores that the dead processes named after themselves, and multiprocessing's temporary
folder. Then it exits.

Why a process of its own: ``PR_SET_PDEATHSIG`` fires when the *thread* that started a child ends, and loky
starts workers from whichever thread submits; a watcher thread in each worker cannot run while a task hangs in
native code holding the GIL; the standard library's forkserver waits for EOF on an "alive" pipe that every
worker it forked holds too, and loky's idle workers wait 300 s on a queue that no one will write to. The
watchdog is one small single-threaded process that answers only to the kernel. Environment tags (rather than a
list of pids) find what a run's helpers started in turn, a Ray worker or a stage's subprocess, and never a
process that is not the run's: the token is the root's pid and random bits, and is checked again on a pidfd of
each process before any signal is sent.

Without the watchdog (it could not start), the forkserver path still ends with its root: each of its workers
closes its copy of the alive pipe (so the server ends when the root does) and dies with the server
(``PR_SET_PDEATHSIG``: the server forks from its only thread), see ``bind_to_server``.

A normal exit: the pools wait for their workers; the ``framepipe`` command then calls ``stop_helpers``, which
ends the forkserver, the trackers and the watchdog and waits for each, so that nothing of the run is left when
the command returns. A library caller keeps them for its next run; they go with its process.

This module imports only the standard library: the watchdog runs it with ``-I -S`` (nothing from the current
folder, the environment or site-packages).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

__all__ = ["ROOT_ENV", "root_token", "helper_env", "tagged", "watch", "remove_at_death", "bind_to_server",
           "stop_helpers", "tagged_processes"]

ROOT_ENV = "FRAMEPIPE_ROOT"
"""The environment variable that marks a process as started for a run of one root process: ``<root pid>-<hex>``."""

_SHM_DIR = "/dev/shm"
_TRACKER_GRACE_S = 2.0  # how long the watchdog lets trackers clean up after the rest is dead
_FAMILY_EVERY_MS = 1000  # how often the watchdog notes what the root's helpers have started (see _family)
_PR_SET_PDEATHSIG = 1
_LEAVE = b"leave\n"  # what the root writes to its watchdog before closing its stdin on a normal exit
_REMOVE = b"remove "  # + a folder + newline: the root's temporary folder, removed if the root dies
_TEMP_PREFIX = "pymp-"  # the only folders the watchdog removes: multiprocessing's, holding the forkserver's socket

_lock = threading.RLock()
_token: tuple[int, str] | None = None  # (pid that made it, token): a forked child makes its own
_watchdog: Any = None  # subprocess.Popen of this process's watchdog
_watchdog_pid_of: int = 0  # the pid that started it (a fork of the root must start its own)
_watchdog_starts = 0
_MAX_WATCHDOG_STARTS = 3  # a watchdog that keeps dying (out of memory) is not started forever
_removed_at_death: set[str] = set()  # folders the watchdog was told of


def root_token() -> str:
    """This process's token, made on first use: ``<pid>-<16 hex digits>``."""
    global _token
    with _lock:
        if _token is None or _token[0] != os.getpid():
            _token = (os.getpid(), f"{os.getpid()}-{os.urandom(8).hex()}")
        return _token[1]


def helper_env() -> dict[str, str]:
    """The environment entries that mark a process as this root's (loky's ``env=`` takes them)."""
    return {ROOT_ENV: root_token()}


@contextmanager
def tagged() -> Iterator[None]:
    """This root's tag in ``os.environ`` while helpers start (a child takes its environment from there), with
    the watchdog started first."""
    watch()
    with _lock:
        before = os.environ.get(ROOT_ENV)
        os.environ[ROOT_ENV] = root_token()
        try:
            yield
        finally:
            if before is None:
                os.environ.pop(ROOT_ENV, None)
            else:
                os.environ[ROOT_ENV] = before


def watch() -> None:
    """Start this process's watchdog unless it runs already (restarted if it died); never raises.

    Without it (it could not start: out of processes or memory) the run still runs; what it started is then
    ended only by the means that need no watchdog (see the module's docstring).
    """
    global _watchdog, _watchdog_pid_of, _watchdog_starts
    if not sys.platform.startswith("linux"):
        return
    with _lock:
        if _watchdog_pid_of != os.getpid():  # a fork of the root: the watchdog it sees is its parent's
            _watchdog, _watchdog_pid_of, _watchdog_starts = None, os.getpid(), 0
            _removed_at_death.clear()
        if (_watchdog is not None and _watchdog.poll() is None) or _watchdog_starts >= _MAX_WATCHDOG_STARTS:
            return
        _watchdog_starts += 1
        import subprocess
        env = {k: v for k, v in os.environ.items() if k != ROOT_ENV}  # not tagged: it must outlive the tagged
        try:
            _watchdog = subprocess.Popen([sys.executable, "-I", "-S", os.path.abspath(__file__), str(os.getpid()),
                                          root_token()], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                         env=env, close_fds=True)
            _removed_at_death.clear()  # a new watchdog knows of none
        except Exception as exc:  # out of processes, memory or descriptors: the run goes on without it
            _watchdog = None
            if _watchdog_starts == 1:
                import logging
                logging.getLogger("framepipe.lifecycle").warning(
                    "could not start the watchdog that ends this run's processes if it is killed: %s", exc)


def remove_at_death(folder: str) -> None:
    """Have the watchdog remove ``folder`` (multiprocessing's temporary folder, ``pymp-...``, which holds the
    forkserver's socket) if this process dies: it removes it itself only at a normal exit."""
    with _lock:
        if _watchdog is None or _watchdog_pid_of != os.getpid() or folder in _removed_at_death:
            return
        try:
            _watchdog.stdin.write(_REMOVE + os.fsencode(folder) + b"\n")
            _watchdog.stdin.flush()
            _removed_at_death.add(folder)
        except (OSError, ValueError):
            pass


def _stop_watchdog(deadline: float) -> None:
    global _watchdog
    with _lock:
        dog, _watchdog = _watchdog, None
        if dog is None or _watchdog_pid_of != os.getpid():
            return
        import subprocess
        try:
            dog.stdin.write(_LEAVE)  # then EOF: it leaves, killing nothing
            dog.stdin.close()
        except (OSError, ValueError):
            pass
        try:
            dog.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            dog.kill()
            dog.wait()


# -----------------------------------------------------------------------------------------------------------
# In a worker forked by the forkserver


def bind_to_server(server_pid: int | None) -> None:
    """In a worker the forkserver just forked: die with the server, and let the server die with the root.

    The server ends when its alive pipe reaches EOF, but every worker it forks is handed a copy of the pipe's
    write end (for servers of its own, which it would start afresh anyway): while one worker lives, the server
    outlives the root. The worker closes that copy, then asks for SIGKILL when its parent, the server (whose one
    thread forked it), dies, checking that the server is still its parent afterwards (it may have died first).
    """
    from multiprocessing import forkserver
    server = getattr(forkserver, "_forkserver", None)
    fd = getattr(server, "_forkserver_alive_fd", None)
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
        server._forkserver_alive_fd = None  # type: ignore[union-attr]
    parent = server_pid or os.getppid()
    if _die_with_parent() and os.getppid() != parent:
        os._exit(1)  # the server (and so the root) is gone already


def _die_with_parent() -> bool:
    """``prctl(PR_SET_PDEATHSIG, SIGKILL)``; False where there is no such call."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


# -----------------------------------------------------------------------------------------------------------
# A normal exit


def stop_helpers(timeout: float = 10.0) -> None:
    """End what this process started for its runs and wait until each has exited: the forkserver, the resource
    trackers, any other process still tagged with its token (a Ray worker still on its way out), the watchdog.

    For a process about to exit, as the ``framepipe`` command is (the next pool would start them afresh). A
    process still there after ``timeout`` seconds in all is killed.
    """
    deadline = time.monotonic() + timeout
    if "multiprocessing" in sys.modules:  # else no forkserver, tracker or queue was ever made (loky needs it too)
        _stop_multiprocessing(deadline)
    if _token is None or _token[0] != os.getpid():  # nothing was started tagged as ours
        _stop_watchdog(deadline)
        return
    token = root_token()
    left = tagged_processes(token)
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = tagged_processes(token)
    mark = f"{ROOT_ENV}={token}".encode()
    for pid in left:
        _signal(pid, signal.SIGKILL, partial(_is_tagged, pid, mark))
    _stop_watchdog(deadline)


def _stop_multiprocessing(deadline: float) -> None:
    """End the forkserver and the resource trackers (the standard library's, loky's) and wait for each."""
    # What exit would do first: free the semaphores and queues still about (a pool that could not start leaves
    # some), so that the trackers see them released rather than leaked, and nothing is unlinked twice.
    import gc
    from multiprocessing import util
    gc.collect()
    util._run_finalizers(0)  # type: ignore[attr-defined]
    _stop_forkserver(deadline)
    from multiprocessing import resource_tracker
    trackers = [resource_tracker._resource_tracker]
    loky_tracker = sys.modules.get("loky.backend.resource_tracker")
    if loky_tracker is not None:
        trackers.append(loky_tracker._resource_tracker)
    for tracker in trackers:
        _stop_tracker(tracker, deadline)


def _stop_forkserver(deadline: float) -> None:
    """The standard library's ``ForkServer._stop``, with a bound on the wait."""
    from multiprocessing import forkserver, util
    server = getattr(forkserver, "_forkserver", None)
    if server is None:
        return
    with server._lock:
        if server._forkserver_pid is None:
            return
        os.close(server._forkserver_alive_fd)  # EOF on its alive pipe: the server leaves
        server._forkserver_alive_fd = None
        _reap(server._forkserver_pid, deadline)
        server._forkserver_pid = None
        address = server._forkserver_address
        server._forkserver_address = None
        if address and not util.is_abstract_socket_namespace(address):
            try:
                os.unlink(address)
            except OSError:
                pass


def _stop_tracker(tracker: Any, deadline: float) -> None:
    """A resource tracker's ``_stop``, with a bound on the wait (it leaves at EOF on its pipe, cleaning up)."""
    with tracker._lock:
        if tracker._fd is None:
            return
        try:
            os.close(tracker._fd)
        except OSError:
            pass
        tracker._fd = None
        pid, tracker._pid = tracker._pid, None
        if pid is not None:
            _reap(pid, deadline)


def _reap(pid: int, deadline: float) -> None:
    """Wait for child ``pid`` to exit until ``deadline``, then kill it and wait."""
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        if time.monotonic() >= deadline:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            return
        time.sleep(0.01)


# -----------------------------------------------------------------------------------------------------------
# Finding and ending tagged processes (the watchdog's work; stop_helpers' too)


def tagged_processes(token: str) -> dict[int, bytes]:
    """The live processes (not this one, not zombies) whose environment carries ``token``: pid -> command line."""
    mark = f"{ROOT_ENV}={token}".encode()
    found: dict[int, bytes] = {}
    me = os.getpid()
    for name in _pids():
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if mark not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{name}/cmdline", "rb") as f:
                found[int(name)] = f.read()
        except OSError:  # gone, or not ours to read (another user's): not tagged by us
            continue
    return found


def _pids() -> list[str]:
    """The names in ``/proc`` (none where it is not mounted)."""
    try:
        return os.listdir("/proc")
    except OSError:
        return []


def _is_tagged(pid: int, mark: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return mark in f.read().split(b"\0")
    except OSError:
        return False


def _stat(pid: int) -> list[bytes]:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first); [] when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _parent(pid: int) -> int:
    """``pid``'s parent (0 when it is gone)."""
    fields = _stat(pid)
    return int(fields[1]) if len(fields) > 1 else 0


def _child_of(pid: int, parents: frozenset[int] | set[int]) -> bool:
    """Whether ``pid``'s parent is one of ``parents`` (still)."""
    return _parent(pid) in parents


def _in_group(pid: int, group: int) -> bool:
    """Whether ``pid`` is in process group ``group``."""
    try:
        return os.getpgid(pid) == group
    except OSError:
        return False


def _group_members(group: int | None) -> set[int]:
    """Ray's processes in the group the root led (its job): the agents of a Ray the run started, which the tags
    miss (they overwrite their environment with their title). Only Ray's: a process of a library caller's own
    in its group is not the run's to end."""
    if group is None:
        return set()
    found = set()
    for name in _pids():
        if name.isdigit() and _in_group(int(name), group):
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if cmd.startswith(b"ray::") or b"/ray/" in cmd:
                found.add(int(name))
    return found


def _started_at(pid: int, start: int) -> bool:
    """Whether ``pid`` is still the process that started at ``start`` (not a reused pid)."""
    return _started(pid) == start


def _started(pid: int) -> int:
    """When ``pid`` started (clock ticks since boot): with the pid, names one process for good; 0 when gone."""
    fields = _stat(pid)
    return int(fields[19]) if len(fields) > 19 else 0


def _alive(pid: int) -> bool:
    fields = _stat(pid)
    return bool(fields) and fields[0] not in (b"Z", b"X")


def _children(pid: int) -> list[int]:
    """``pid``'s children (every thread's), from ``/proc/<pid>/task/*/children``."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", "rb") as f:
                found += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            continue
    return found


def _children_of(parents: set[int]) -> set[int]:
    """The processes whose parent is one of ``parents``."""
    found = set()
    for name in _pids():
        if name.isdigit() and _parent(int(name)) in parents:
            found.add(int(name))
    return found


def _family(root: int, token: str) -> dict[int, int]:
    """The root's tagged children and all they started, as they are now: pid -> start time.

    Taken every second while the root lives: a process that rewrites its environment's memory (a Ray worker
    or agent setting its process title) and whose parent dies with the root (a Ray daemon shares the fate of
    the process that started it) would be found neither by its tag nor by its parent after the root's death.
    """
    mark = f"{ROOT_ENV}={token}".encode()
    todo = [pid for pid in _children(root) if pid != os.getpid() and _is_tagged(pid, mark)]
    family: dict[int, int] = {}
    while todo:
        pid = todo.pop()
        if pid in family:
            continue
        started = _started(pid)
        if started:
            family[pid] = started
            todo += _children(pid)
    return family


def _signal(pid: int, signum: int, ours: Callable[[], bool], keep: bool = False) -> int | None:
    """Send ``signum`` to ``pid`` if ``ours()`` says it is (still) one of the run's, through a pidfd opened before
    the check, so that a pid reused by another process after it is never hit.

    Returns None when nothing was sent; else the pidfd, left open with ``keep`` (-1 where there are none).
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    except (AttributeError, OSError):  # no pidfds here: the check and the signal are a moment apart
        if not ours():
            return None
        try:
            os.kill(pid, signum)
            return -1
        except ProcessLookupError:
            return None
    try:
        if ours():
            signal.pidfd_send_signal(fd, signum)
            if keep:
                fd, kept = -1, fd
                return kept
            return -1
    except ProcessLookupError:
        pass
    finally:
        if fd >= 0:
            os.close(fd)
    return None


def _kill(pid: int, fd: int) -> None:
    """SIGKILL a process held by pidfd ``fd`` (closed after), or by pid when ``fd`` is -1."""
    try:
        if fd >= 0:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    finally:
        if fd >= 0:
            os.close(fd)


def _sweep(root: int, token: str, folders: Sequence[bytes] = (), family: dict[int, int] | None = None,
           group: int | None = None) -> None:
    """The root is dead: end every process tagged with its token, what they started (their children, and the
    ``family`` last seen under them, ``_family``), the processes of the ``group`` the root led (a Ray agent
    started since the last look at the family, its parent gone with the root, is found by its group), then
    remove the shared memory they named after themselves (the trackers remove what was registered with them)
    and the root's ``folders`` (``remove_at_death``)."""
    mark = f"{ROOT_ENV}={token}".encode()
    family = family or {}
    frozen: dict[int, int] = {}  # pid -> its pidfd (-1: none)
    trackers: set[int] = set()
    me = os.getpid()
    for _ in range(100):  # until a scan finds no new process: a frozen one starts no other
        seen = set(frozen) | trackers | {me}
        tagged = {pid: cmd for pid, cmd in tagged_processes(token).items() if pid not in seen}
        # A frozen parent cannot reap its children: their pids cannot be reused while we look at them.
        parents = frozenset(frozen)
        children = _children_of(set(frozen)) - seen - set(tagged)
        known = {pid for pid in family if pid not in seen and pid not in tagged and pid not in children}
        grouped = _group_members(group) - seen - set(tagged) - children - known - {root}
        if not tagged and not children and not known and not grouped:
            break
        for pid, cmd in tagged.items():
            if b"resource_tracker" in cmd:
                trackers.add(pid)  # left to end by itself: at EOF it unlinks what was registered with it
            elif (fd := _signal(pid, signal.SIGSTOP, partial(_is_tagged, pid, mark), keep=True)) is not None:
                frozen[pid] = fd
        for pid in children:
            if (fd := _signal(pid, signal.SIGSTOP, partial(_child_of, pid, parents), keep=True)) is not None:
                frozen[pid] = fd
        for pid in known:
            if (fd := _signal(pid, signal.SIGSTOP, partial(_started_at, pid, family[pid]), keep=True)) is not None:
                frozen[pid] = fd
        for pid in grouped:
            if group is not None and \
                    (fd := _signal(pid, signal.SIGSTOP, partial(_in_group, pid, group), keep=True)) is not None:
                frozen[pid] = fd
        family = {pid: t for pid, t in family.items() if pid not in known}  # each looked at once
    for pid, fd in frozen.items():
        _kill(pid, fd)
    deadline = time.monotonic() + _TRACKER_GRACE_S
    while any(_alive(pid) for pid in trackers) and time.monotonic() < deadline:
        time.sleep(0.02)
    for pid in trackers:
        _signal(pid, signal.SIGKILL, partial(_is_tagged, pid, mark))
    _unlink_named_after({root} | set(frozen) | trackers)
    import shutil
    for folder in folders:
        path = os.fsdecode(folder)
        if os.path.basename(path).startswith(_TEMP_PREFIX) and os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)


def _unlink_named_after(pids: set[int]) -> None:
    """Unlink the segments (``framepipe_<pid>_...``) and loky semaphores (``sem.loky-<pid>-...``) that name a
    dead process among ``pids``."""
    try:
        names = os.listdir(_SHM_DIR)
    except OSError:
        return
    for name in names:
        for prefix, sep in (("framepipe_", "_"), ("sem.loky-", "-")):
            if name.startswith(prefix):
                pid_text = name[len(prefix):].split(sep, 1)[0]
                if pid_text.isdigit() and int(pid_text) in pids and not _alive(int(pid_text)):
                    try:
                        os.unlink(os.path.join(_SHM_DIR, name))
                    except OSError:
                        pass


def _watchdog_main(root: int, token: str) -> None:
    """Wait for the root to die, then sweep; leave quietly when the root says so (a normal exit).

    The root's death shows as its pidfd turning readable, or as EOF on our stdin, which can come first (a dying
    process closes its files before its children are given to another parent): EOF without the root's
    ``_LEAVE`` first is a death. Signals a terminal or a script sends to the whole group are ignored: the root
    handles them, and the watchdog is needed most after the root has gone.
    """
    import select
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signum, signal.SIG_IGN)
    try:
        pidfd = os.pidfd_open(root)
    except ProcessLookupError:
        pidfd = None
    except (AttributeError, OSError):
        pidfd = -1  # no pidfds: EOF on stdin, and the parent pid looked at every second
    said = b""  # what the root wrote: lines, _LEAVE or _REMOVE + a folder
    if pidfd is None or os.getppid() != root:  # the root (our parent) died before we could watch it
        _sweep(root, token, _folders(said))
        return
    try:  # the job the root leads, where a shell or a test made it lead one (else its group is another's)
        group = root if os.getpgid(root) == root else None
    except OSError:
        group = None
    poller = select.poll()
    poller.register(0, select.POLLIN)
    if pidfd >= 0:
        poller.register(pidfd, select.POLLIN)
    family: dict[int, int] = {}
    while True:
        events = poller.poll(_FAMILY_EVERY_MS)
        if not events:
            if os.getppid() != root:  # without a pidfd, how the root's death shows
                break
            family = _family(root, token)
            continue
        if any(fd == pidfd for fd, _ in events):
            break
        data = os.read(0, 4096)
        if not data:
            if said.endswith(_LEAVE):
                return
            break
        said += data
    _sweep(root, token, _folders(said), family, group)


def _folders(said: bytes) -> list[bytes]:
    """The folders the root asked to be removed: in what it wrote, and what is left unread on stdin."""
    os.set_blocking(0, False)
    try:
        while data := os.read(0, 4096):
            said += data
    except OSError:  # nothing more for now (a fork of the root may hold the pipe open)
        pass
    return [line[len(_REMOVE):] for line in said.split(b"\n") if line.startswith(_REMOVE)]


if __name__ == "__main__":
    _watchdog_main(int(sys.argv[1]), sys.argv[2])
