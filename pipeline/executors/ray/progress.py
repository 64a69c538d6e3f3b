"""``ProgressPolls``: the live per-stage progress of the files a Ray run has in flight, asked of their actors.

A file's stages tell its actor how far they are (``ctx.progress``, as on the local executor, where they write a
shared progress board instead); the actor keeps the latest (one assignment) and answers ``progress()`` on a
thread of its own while the file runs (``actor.remote_file_actor``). The driver's loop, which wakes at least every
0.2 s, asks each file's actor at most every ``every_s``, one question out per file at a time, and never waits
for an answer: it takes those that came (``ray.wait`` with no timeout) and tells the caller what changed
(``RunEvents.file_progress``). So a file costs at most a few small actor calls a second, none of them on its
actor's main thread, and a slow or dead actor delays nothing (its call's own result says what became of it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ray

from ..base import RunEvents

__all__ = ["ProgressPolls"]


@dataclass(slots=True)
class _Watch:
    """One ``run_file`` call's progress: the question out (None: none), when it was asked, what was told."""

    asked: Any = None
    at: float = -math.inf
    told: tuple[int, str, int, int | None] | None = None


class ProgressPolls:
    """Asks the actors of the files in flight how far they are, and tells ``events`` of each change."""

    def __init__(self, events: RunEvents, every_s: float) -> None:
        self.events = events
        self.every_s = every_s
        self._watch: dict[Any, _Watch] = {}  # by run_file call

    def poll(self, running: Mapping[Any, tuple[Any, Any]]) -> None:
        """Take the answers that came, tell the changes, and ask again where it is time. ``running``: each
        ``run_file`` call in flight -> (its file, with ``task``; its actor)."""
        for call in [c for c in self._watch if c not in running]:  # ended: a late answer is for no one
            del self._watch[call]
        asked = {w.asked: (call, w) for call, w in self._watch.items() if w.asked is not None}
        if asked:
            came, _ = ray.wait(list(asked), num_returns=len(asked), timeout=0)
            for ref in came:
                call, w = asked[ref]
                w.asked = None
                try:
                    told = ray.get(ref)
                except Exception:  # the actor died or is restarting: its run_file call tells what happened
                    continue
                # The actor's earlier file may answer before this one starts (another concurrency group).
                if told is not None and told != w.told and told[0] == running[call][0].task.file.index:
                    w.told = told
                    self.events.file_progress(*told)
        now = time.monotonic()
        for call, (_file, actor) in running.items():
            w = self._watch.setdefault(call, _Watch())
            if w.asked is None and now - w.at >= self.every_s:
                w.asked, w.at = actor.progress.remote(), now
