"""Naming the limit a failure ran into: memory, threads, processes, open files.

A process under ``ulimit -v`` fails to start a thread with ``RuntimeError: can't start new thread`` (each
thread reserves its stack and a malloc arena in the address space), under ``ulimit -n`` with ``OSError: [Errno
24]``; neither says which limit, or how to raise it. ``limit_reason`` turns such an error into one line that
does (``out of memory (limit: 488 MiB of address space, ulimit -v 500000)``), and says None for any other error.
"""

from __future__ import annotations

import errno
import resource

__all__ = ["limit_reason", "limit_reason_in_text", "memory_limit"]

_THREAD = "can't start new thread"
_LARGE_STACK = 64 << 20  # a thread stack above this is worth naming (the usual is 8 MiB)


def limit_reason(exc: BaseException, where: str = "limit") -> str | None:
    """One line naming the limit ``exc`` ran into; None when it is not a resource failure.

    ``where`` qualifies the limit (``"worker limit"``: the limits a worker process inherited).
    """
    if isinstance(exc, MemoryError):
        return f"out of memory{_memory(where)}"
    if isinstance(exc, RuntimeError) and _THREAD in str(exc):
        return f"could not start a thread: {_threads(where)}"
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOSPC and not _names_shared_memory(exc.filename):
            return None  # a full disk: the writer's own error names the output (outputs.as_output_error)
        return _os_error(exc.errno, where)
    return None


def _names_shared_memory(filename: object) -> bool:
    """Whether an error's file is a shared-memory segment (``/dev/shm/...`` or a ``shm_open`` name, ``/name``)."""
    if not isinstance(filename, (str, bytes)):
        return False
    name = filename.decode(errors="replace") if isinstance(filename, bytes) else filename
    return name.startswith("/dev/shm/") or (name.startswith("/") and "/" not in name[1:])


def limit_reason_in_text(text: str, where: str = "limit") -> str | None:
    """``limit_reason`` for an error known only as text (a traceback from another thread or process)."""
    lines = [line for line in text.replace('"""', "\n").splitlines() if line.strip()]  # loky quotes it
    last = lines[-1].strip() if lines else ""
    if last.startswith("MemoryError"):
        return f"out of memory{_memory(where)}"
    if _THREAD in last:
        return f"could not start a thread: {_threads(where)}"
    for code in (errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN, errno.ENOSPC):
        if f"[Errno {code}]" in last:
            return _os_error(code, where)
    return None


def _os_error(code: int | None, where: str) -> str | None:
    if code == errno.EMFILE:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return f"too many open files ({where}: {soft}, ulimit -n {soft})"
    if code == errno.ENFILE:
        return "too many open files in the system (its limit: fs.file-max)"
    if code == errno.ENOMEM:
        return f"out of memory{_memory(where)}"
    if code == errno.EAGAIN:
        return f"could not start a process: {_processes(where)}"
    if code == errno.ENOSPC:
        return "no space left for shared memory (/dev/shm is full)"
    return None


def memory_limit(where: str = "limit") -> str:
    """`` (limit: 488 MiB of address space, ulimit -v 500000)``, or nothing when no such limit is set."""
    return _memory(where)


def _memory(where: str) -> str:
    """`` (limit: 488 MiB of address space, ulimit -v 500000)``, or nothing when no such limit is set."""
    for rlimit, what, flag in ((resource.RLIMIT_AS, "of address space", "-v"),
                               (resource.RLIMIT_DATA, "of data", "-d")):
        soft, _ = resource.getrlimit(rlimit)
        if soft != resource.RLIM_INFINITY:
            return f" ({where}: {soft / (1 << 20):.0f} MiB {what}, ulimit {flag} {soft // 1024})"
    return ""


def _threads(where: str) -> str:
    memory = _memory(where)
    if memory:
        stack, _ = resource.getrlimit(resource.RLIMIT_STACK)
        if stack != resource.RLIM_INFINITY and stack > _LARGE_STACK:  # each thread reserves that much
            memory = f"{memory[:-1]}; each thread reserves {stack / (1 << 20):.0f} MiB, ulimit -s {stack // 1024})"
        return f"out of memory{memory}"
    return _processes(where)  # a thread counts against the process limit


def _processes(where: str) -> str:
    soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    if soft != resource.RLIM_INFINITY:
        return f"too many processes and threads ({where}: {soft}, ulimit -u {soft})"
    return "the system's limit on processes and threads was reached"
