"""The error hierarchy: every failure framepipe reports is one of these.

Errors are also the matching built-in (``UnreadableFile`` is an ``OSError``,
``InvalidOption`` a ``ValueError``) so callers may catch narrowly or broadly;
the library error that caused one is kept as ``__cause__``. What is wrong
inside a media file (``CorruptMedia`` and its kin) is the video library's:
``stages.errors`` subclasses ``InputError`` for it.
The whole tree (``tests/pipeline/test_errors.py`` keeps it true)::

    FramepipeError
      PipelineDefinitionError (ValueError): the pipeline or a stage is built wrong
        InvalidOption: an option value outside what it takes
      PresetNotFound (LookupError)
      InputError: one input file cannot be used
        UnreadableFile (OSError)
      StageError: a stage raised on a file
      WorkerCrashed: the process running it died
      Cancelled: a file not run because the batch stopped first
      UnsupportedRunOption (ValueError)
      MissingExtra (ImportError)
      FileTimeout (TimeoutError)
      PoolError: a worker pool's trouble
        PoolFull
        PoolShutdown (RuntimeError)
        TaskTimeout (TimeoutError)
        ResourceExhausted: a limit of the machine (memory, threads, descriptors)
          PoolUnavailable
      OutputError (OSError): an output cannot be written
        DiskFull
        OutputNotWritable
        OutputFolderInUse
        OutputIsLink
      MetricsPortError (OSError)
      StorageError (OSError): object storage could not be used (a bucket, a key, the endpoint)
        BucketNotFound (FileNotFoundError)
        StorageAccessDenied (PermissionError)
        StorageUnreachable (ConnectionError)
      BufferPoolError: shared-memory slots
        BufferPoolExhausted (TimeoutError)
        StaleFrameRef (LookupError)
        PoolClosed (RuntimeError)
      CacheError
        UnsupportedCacheValue (TypeError)
        CacheClosed (RuntimeError)
        InvalidCacheName (ValueError)
        LockTimeout (TimeoutError)
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = [
    "FramepipeError",
    "PipelineDefinitionError",
    "InputError",
    "UnreadableFile",
    "StageError",
    "OutputError",
    "DiskFull",
    "OutputNotWritable",
    "OutputFolderInUse",
    "OutputIsLink",
    "MetricsPortError",
    "StorageError",
    "BucketNotFound",
    "StorageAccessDenied",
    "StorageUnreachable",
    "WorkerCrashed",
    "Cancelled",
    "FileTimeout",
    "UnsupportedRunOption",
    "MissingExtra",
    "PresetNotFound",
    "InvalidOption",
    "BufferPoolError",
    "BufferPoolExhausted",
    "StaleFrameRef",
    "PoolClosed",
    "PoolError",
    "PoolFull",
    "PoolShutdown",
    "TaskTimeout",
    "ResourceExhausted",
    "PoolUnavailable",
    "CacheError",
    "UnsupportedCacheValue",
    "CacheClosed",
    "InvalidCacheName",
    "LockTimeout",
]


class FramepipeError(Exception):
    """Base class of every error framepipe raises on purpose."""


# Building a pipeline ------------------------------------------------------


class PipelineDefinitionError(FramepipeError, ValueError):
    """The graph of stages is invalid (cycle, unknown input, kind mismatch...)."""

    def __init__(self, message: str, stage: str | None = None) -> None:
        super().__init__(f"stage {stage!r}: {message}" if stage else message)
        self.stage = stage


class PresetNotFound(FramepipeError, LookupError):
    """No preset of that name is installed."""


class InvalidOption(PipelineDefinitionError):
    """An option (a preset's ``-O KEY=VALUE``, a stage's argument) has a value it does not accept.

    One line that names the option, the value and what it takes: ``option thumb_width=100000: must be an
    integer from 16 to 8192``.
    """

    def __init__(self, name: str, value: object, accepts: str, where: str = "option") -> None:
        shown = value if isinstance(value, str) and where == "option" else _shown(value)
        super().__init__(f"{where} {name}={shown}: must be {accepts}")
        self.name = name
        self.value = value
        self.accepts = accepts


def _shown(value: object) -> str:
    """A value as a user wrote it: ``true``/``false`` for booleans, quotes around text."""
    return str(value).lower() if isinstance(value, bool) else repr(value) if isinstance(value, str) else str(value)


# Input errors: something is wrong with one file ----------------------------
#
#   InputError
#   └── UnreadableFile      missing, empty (0 bytes), a folder, permission denied, a link loop
#
# Each message is one line: the file, then what is wrong with it.


class InputError(FramepipeError):
    """An input file cannot be processed; the file fails, the batch goes on."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class UnreadableFile(InputError, OSError):
    """The file is missing, empty, a directory or not readable."""



# Running ------------------------------------------------------------------


class StageError(FramepipeError):
    """A stage raised while processing a file; the original error is ``__cause__``."""

    def __init__(self, stage: str, path: str, reason: str) -> None:
        super().__init__(f"{path}: [{stage}] {reason}")
        self.stage = stage
        self.path = path
        self.reason = reason


class WorkerCrashed(FramepipeError):
    """The worker process running a task or file died (killed, segfault, out of memory)."""


class Cancelled(FramepipeError):
    """A file was not run: the batch stopped before its turn (``fail_fast`` after another file failed)."""


class UnsupportedRunOption(FramepipeError, ValueError):
    """A run option the chosen executor cannot honour (a file timeout on the inline executor)."""


class MissingExtra(FramepipeError, ImportError):
    """An optional dependency a feature needs is not installed (the message names the ``pip install``)."""


class FileTimeout(FramepipeError, TimeoutError):
    """A file ran past its timeout (``run(file_timeout=...)``); its worker was killed, the file failed."""

    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self.reason = f"timed out: not done after {timeout:g} s (the file timeout); its worker was killed"
        super().__init__(f"{path}: {self.reason}")


# Process pools ------------------------------------------------------------------


class PoolError(FramepipeError):
    """Base class of errors of worker pools."""


class PoolFull(PoolError):
    """A pool's queue is full and the caller asked not to wait."""


class PoolShutdown(PoolError, RuntimeError):
    """The pool is shut down (or shutting down) and takes no more tasks."""


class TaskTimeout(PoolError, TimeoutError):
    """A task ran past its timeout; its worker was killed and replaced."""

    def __init__(self, task: str, timeout: float) -> None:
        super().__init__(f"task {task} ran past its {timeout:g} s timeout; its worker was killed")
        self.task = task
        self.timeout = timeout


class ResourceExhausted(PoolError):
    """Memory, threads, processes or open files ran out under a limit (``ulimit``, the system's), which the message
    names: a pool could not run a task. ``reason``: that line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PoolUnavailable(ResourceExhausted):
    """A worker pool could not be made (its threads, queues or shared memory could not be had): the run stops at
    once, with this one line."""


class OutputError(FramepipeError, OSError):
    """An output could not be written (disk full, read-only folder...)."""


class DiskFull(OutputError):
    """An output could not be written: no space (or quota) left on its device."""


class OutputNotWritable(OutputError):
    """An output could not be written: its folder is read-only or not ours to write."""


class OutputFolderInUse(OutputError):
    """Another run is writing into the same output folder (``pid``: its process, None when unknown); this one
    did not start."""

    def __init__(self, folder: str | os.PathLike[str], pid: int | None) -> None:
        super().__init__(f"{folder} is in use by another framepipe run" + (f" (pid {pid})" if pid else ""))
        self.folder = folder
        self.pid = pid


class OutputIsLink(OutputError):
    """A name framepipe writes in the output folder is a symbolic link (planted there): refused, never followed.

    Neither the link's target nor, for a dangling link, the file it names is created or changed.
    """

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.errno = errno.ELOOP


class MetricsPortError(FramepipeError, OSError):
    """The metrics endpoint could not listen on the port asked for (taken, or not allowed)."""


# Object storage -------------------------------------------------------------
#
# One line that names the URL and what went wrong: ``s3://media/in/a.mp4: access denied (AccessDenied)``.
# Not an InputError: a lost connection says nothing about the file (the memo never remembers it, and a re-run
# tries the file again). A walk of a missing bucket stops the run at once, as a missing folder does.


class StorageError(FramepipeError, OSError):
    """Object storage could not be used for ``url``: ``reason`` says why (the library's error is ``__cause__``)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason

    def __reduce__(self) -> tuple[type[StorageError], tuple[str, str]]:
        return type(self), (self.url, self.reason)  # crosses processes whole (OSError's own pickles args)


class BucketNotFound(StorageError, FileNotFoundError):
    """The bucket a URL names does not exist."""


class StorageAccessDenied(StorageError, PermissionError):
    """The store refused the credentials, or they do not allow the operation."""


class StorageUnreachable(StorageError, ConnectionError):
    """The store's endpoint could not be reached, or the connection to it was lost."""


# Shared-memory buffers -------------------------------------------------------


class BufferPoolError(FramepipeError):
    """Base class of errors of shared-memory buffer pools."""


class BufferPoolExhausted(BufferPoolError, TimeoutError):
    """No slot became free within the timeout (or none was free for ``try``)."""


class StaleFrameRef(BufferPoolError, LookupError):
    """A FrameRef points at a slot that was released and may hold another frame now."""


class PoolClosed(BufferPoolError, RuntimeError):
    """The buffer pool was closed; its memory is gone."""


# Caches ----------------------------------------------------------------------


class CacheError(FramepipeError):
    """Base class of errors of framepipe's caches."""


class UnsupportedCacheValue(CacheError, TypeError):
    """A value the disk cache cannot store: not bytes, JSON or a ``pyarrow.Table``."""


class CacheClosed(CacheError, RuntimeError):
    """The cache was closed; open a new one."""


class InvalidCacheName(CacheError, ValueError):
    """A cache name that is not a plain folder name (empty, a path, ``..``...)."""


class LockTimeout(CacheError, TimeoutError):
    """A file lock was not granted within the timeout."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__(f"lock {path} not granted within {timeout:g} s")
        self.path = path
        self.timeout = timeout
