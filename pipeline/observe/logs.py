"""Logging: framepipe's records go through ``logging.getLogger("framepipe.<area>")``; this sets them up.

A library does not configure logging: the ``framepipe`` logger gets a
``NullHandler`` (so, unconfigured, nothing is printed), and an application
attaches its own handlers. The ``framepipe`` command calls
``configure_logging`` with its ``-v`` count and ``--log-json``.

Areas: ``framepipe.run`` (a run's start, cache replays, end, each failed
file), ``framepipe.executor`` (scheduling, workers replaced),
``framepipe.tuning`` (pool sizing decisions), ``framepipe.prometheus`` (the
metrics endpoint), ``framepipe.cli``.
"""

from __future__ import annotations

import json as _json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from ..executors.base import FileTask, RunEvents
from ..results import FileResult

__all__ = ["configure_logging", "JsonFormatter", "TextFormatter", "LoggedEvents", "level_for"]

ROOT = "framepipe"
logging.getLogger(ROOT).addHandler(logging.NullHandler())

# What every LogRecord has: anything else on a record came in through ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def level_for(verbosity: int) -> int:
    """The threshold for a ``-v`` count: 0 WARNING, 1 INFO, 2+ DEBUG; below 0 (``-q``) ERROR."""
    if verbosity >= 2:
        return logging.DEBUG
    if verbosity == 1:
        return logging.INFO
    return logging.WARNING if verbosity == 0 else logging.ERROR


def _extra(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a record was given through ``extra=`` (private ones, starting with ``_``, left out)."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (ISO 8601, UTC), level, logger, message, then the extra fields.

    An exception attached to the record comes as ``error`` (its type and
    message) and ``traceback``; values JSON cannot hold are written as ``str``.
    """

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _extra(record).items():
            doc.setdefault(key, value)
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            doc["error"] = f"{type(exc).__name__}: {exc}"
            doc["traceback"] = self.formatException(record.exc_info)
        return _json.dumps(doc, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``framepipe LEVEL [area] message key=value ...``: one line for people."""

    def format(self, record: logging.LogRecord) -> str:
        area = record.name[len(ROOT) + 1:] if record.name.startswith(ROOT + ".") else record.name
        fields = " ".join(f"{k}={v}" for k, v in _extra(record).items())
        line = f"framepipe {record.levelname.lower()} [{area}] {record.getMessage()}{' ' + fields if fields else ''}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _NotEchoed(logging.Filter):
    """Drops records marked ``_echoed``: the console output already says the same (a failed file's line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "_echoed", False)


def configure_logging(verbosity: int = 0, json: bool = False, stream: TextIO | None = None) -> logging.Handler:
    """Send framepipe's records to ``stream`` (stderr) at the level ``verbosity`` asks (see ``level_for``).

    ``json``: one JSON object per line (``JsonFormatter``), for machines;
    else one line of text each, leaving out at ``verbosity`` 0 or below what
    the console output already shows. Calling it again replaces the handler
    it installed before. Returns the handler.
    """
    logger = logging.getLogger(ROOT)
    for old in [h for h in logger.handlers if getattr(h, "_framepipe", False)]:
        logger.removeHandler(old)
        old.close()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler._framepipe = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    if not json and verbosity <= 0:
        handler.addFilter(_NotEchoed())
    logger.addHandler(handler)
    logger.setLevel(level_for(verbosity))
    logger.propagate = False  # an application's root handlers would print each record twice
    return handler


class LoggedEvents:
    """``RunEvents`` that log each file's start and end (a failure as a warning), then pass them on."""

    def __init__(self, inner: RunEvents, logger: logging.Logger | None = None) -> None:
        self.inner = inner
        self.log = logger or logging.getLogger(f"{ROOT}.run")

    def file_started(self, task: FileTask) -> None:
        self.log.debug("file started: %s", task.file.relpath, extra={"file": task.file.relpath})
        self.inner.file_started(task)

    def file_progress(self, index: int, stage: str, done: int, total: int | None) -> None:
        self.inner.file_progress(index, stage, done, total)

    def file_done(self, result: FileResult) -> None:
        rel = result.file.relpath
        if result.ok:
            self.log.debug("file done: %s (%.2f s)", rel, result.wall_s, extra={"file": rel, "wall_s": result.wall_s})
        else:
            self.log.warning("file failed: %s: %s", rel, result.error,
                             extra={"file": rel, "error_type": result.error_type, "stage": result.failed_stage,
                                    "attempts": result.attempts, "_echoed": True})
        self.inner.file_done(result)

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()
