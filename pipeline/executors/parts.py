"""Which stages of a pipeline run in a long file's parts, and which in the file's own session.

A pipeline can cut a file into parts when it has ``splits`` stages (encoders) that take nothing but what one
source stage (a decoder) gives, directly or through map stages (frame-parallel, stateless), and feed no stage
themselves::

    decode ─┬─ thumbnails          the file's session: decode (for thumbnails) and thumbnails
            └─ proxy               each part: decode (its span only) and proxy; the file's session joins proxy

A stage of the parts that also feeds a stage of the file's session (the decoder above) runs in both; one that
feeds only the parts (a map stage in front of the encoder, the decoder when an encoder is its only consumer)
runs in the parts alone, and the file's session calls its ``join`` for its report columns.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from ..graph import Pipeline
from ..items import FILE

__all__ = ["SplitPlan", "split_plan", "remove_scratch"]


@dataclass(frozen=True, slots=True)
class SplitPlan:
    """How a pipeline runs a file in parts."""

    source: str  # the stage that cuts the file (``Stage.parts``)
    in_parts: frozenset[str]  # every stage a part runs: the splitting stages and all that feeds them
    joined: tuple[str, ...]  # the stages of the parts the file's session does not run (joined), in order


def split_plan(pipeline: Pipeline) -> SplitPlan | None:
    """The pipeline's split plan, or None when it cannot run a file in parts."""
    stages = pipeline.stages
    order = pipeline.order()
    splitters = [n for n in order if stages[n].splits]
    if not splitters or any(pipeline.children(n) for n in splitters):
        return None
    in_parts: set[str] = set()
    todo = list(splitters)
    while todo:
        n = todo.pop()
        if n not in in_parts:
            in_parts.add(n)
            todo += pipeline.inputs(n)
    sources = [n for n in in_parts if FILE in stages[n].accepts]
    if len(sources) != 1:
        return None
    if any(not (stages[n].splits or stages[n].is_map or n == sources[0]) for n in in_parts):
        return None  # a per-file stage in between would see only a part of the file
    whole: set[str] = set()  # stages the file's own session runs
    for n in reversed(order):
        if n not in in_parts or any(c in whole for c in pipeline.children(n)):
            whole.add(n)
    return SplitPlan(sources[0], frozenset(in_parts), tuple(n for n in order if n in in_parts and n not in whole))


def remove_scratch(paths: Iterable[str]) -> None:
    """Remove the files parts left for their join (done with, or their file failed)."""
    for path in paths:
        try:
            os.unlink(path)
        except OSError:
            pass  # gone already; or a folder gone read-only, where the next run's sweep of part files finds it
