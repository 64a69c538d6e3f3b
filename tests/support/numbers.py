"""Files of numbers standing in for long videos that run in parts: engine-only stages for ``Stage.parts``/``join``.

An input is a text file: ``<count>`` and optional words ``fail=<part>`` (that part's stage raises) and
``die=<part>`` (that part's worker exits the first time: a marker file beside the input says it did).
``Numbers`` gives 0..count-1 (a part: the numbers of its span); ``Collect`` is a splitting stage that writes
the numbers it got to OUT/collected/<file>.txt, a part's to a scratch file that ``join`` puts together;
``Tally`` counts what the whole file gives (it runs in the file's own session, never in parts) and records the
codec threads the file was given.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pipeline import FileItem, PartialOutput, Piece, Pipeline, Stage, StageContext, write_atomic

NUMBER = "number"
SPLIT_AT = 10  # a file of this many numbers or more is cut into parts


@dataclass(frozen=True, slots=True)
class Number:
    kind: ClassVar[str] = NUMBER
    value: int


def read_input(path: str) -> tuple[int, dict[str, int]]:
    """The count and the ``key=value`` words of an input file."""
    words = Path(path).read_text().split()
    return int(words[0]), {k: int(v) for k, v in (w.split("=") for w in words[1:])}


class Numbers(Stage):
    """The file's numbers; cut, two parts a worker, when there are ``SPLIT_AT`` or more (half as many for a file
    that starts when no other waits)."""

    emits = (NUMBER,)

    def parts(self, file: FileItem, ctx: StageContext, workers: int) -> list[tuple[int, int]] | None:
        count, _ = read_input(file.path)
        if count < (SPLIT_AT // 2 if ctx.batch_ending else SPLIT_AT):
            return None
        n = 2 * workers
        bounds = [count * i // n for i in range(n + 1)]
        return [(a, b) for a, b in zip(bounds, bounds[1:], strict=False)]

    def process(self, item: FileItem, ctx: StageContext) -> Iterator[Number]:
        count, _ = read_input(item.path)
        start, end = ctx.part.span if ctx.part is not None else (0, count)
        for value in range(start, end):
            yield Number(value)


class Collect(Stage):
    """Writes the numbers it gets, one a line; in parts, each part's to a scratch file its join reads."""

    accepts = (NUMBER,)
    splits = True

    def begin(self, ctx: StageContext) -> None:
        ctx.state["got"] = []
        _, words = read_input(ctx.file.path)
        part = ctx.part.index if ctx.part is not None else None
        if part is not None and words.get("die") == part:
            marker = Path(ctx.file.path + ".died")
            if not marker.exists():
                marker.touch()
                os._exit(3)  # the worker dies in the middle of the part, once
        ctx.state["fail"] = part is not None and words.get("fail") == part

    def process(self, item: Number, ctx: StageContext) -> None:
        if ctx.state["fail"] and len(ctx.state["got"]) == 2:
            raise ValueError(f"part {ctx.part.index if ctx.part else '?'} refuses {item.value}")
        ctx.state["got"].append(item.value)

    def end(self, ctx: StageContext) -> None:
        text = "".join(f"{v}\n" for v in ctx.state["got"])
        if ctx.part is None:
            ctx.add_output(write_atomic(ctx.output_path("collected").with_suffix(".txt"), text.encode()))
            ctx.record(collected=len(ctx.state["got"]), collected_parts=0)
            return
        scratch = PartialOutput(ctx.output_path("collected").with_suffix(f".{ctx.part.index}.txt"))
        scratch.part.write_text(text)
        ctx.hand_over(str(scratch.part), scratch=[scratch.part])
        ctx.record(collected=len(ctx.state["got"]))

    def join(self, pieces: Sequence[Piece], ctx: StageContext) -> None:
        text = "".join(Path(p.value).read_text() for p in pieces)
        ctx.add_output(write_atomic(ctx.output_path("collected").with_suffix(".txt"), text.encode()))
        ctx.record(collected=sum(p.record["collected"] for p in pieces), collected_parts=len(pieces))


class Tally(Stage):
    """Counts the numbers of the whole file (a stage of the file's own session)."""

    accepts = (NUMBER,)

    def begin(self, ctx: StageContext) -> None:
        ctx.state["n"] = 0
        ctx.record(threads=ctx.cpu_budget)

    def process(self, item: Number, ctx: StageContext) -> None:
        ctx.state["n"] += 1

    def end(self, ctx: StageContext) -> None:
        ctx.record(tally=ctx.state["n"])


class Same(Stage):
    """A map stage (frame-parallel, in the map pool's workers) that passes each number on."""

    accepts = (NUMBER,)
    emits = (NUMBER,)
    stateful = False

    def process(self, item: Number, ctx: StageContext) -> list[Number]:
        return [item]


def numbers_pipeline(tally: bool = True, mapped: bool = False) -> Pipeline:
    """Numbers -> Collect (in parts for a long file), and -> Tally (whole); ``mapped``: through a map stage."""
    p = Pipeline("numbers", extensions=[".txt"])
    source = p.add(Numbers())
    p.add(Collect(), after=p.add(Same(), after=source) if mapped else source)
    if tally:
        p.add(Tally(), after=source)
    return p


def write_input(folder: Path, name: str, count: int, **words: int) -> Path:
    path = folder / name
    path.write_text(" ".join([str(count), *(f"{k}={v}" for k, v in words.items())]))
    return path
