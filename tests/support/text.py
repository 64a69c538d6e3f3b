"""Text files standing in for video: each line is an item (engine-only stages and inputs).

``SplitLines`` reads a file in its actor; a line ``boom`` raises, ``die`` kills the worker process (as a
segfault would), ``hang`` hangs in native code holding the GIL (a stuck decoder: only a file timeout ends it).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from pipeline import FILE, Pipeline, Stage, StageContext, write_atomic
from support.runtime_tasks import hang_holding_the_gil

LINE = "line"


@dataclass
class Line:
    """One line of a text file: its number in the file and its text."""

    kind: ClassVar[str] = LINE
    number: int
    text: str


def wait_for_file(path: str) -> None:
    """Block until ``path`` exists (the test creates it when the event it stands for has happened)."""
    deadline = time.monotonic() + 300  # a safety net only: the test's event comes in well under a second
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.01)


class SplitLines(Stage):
    """Emits one item per line of a text file; ``boom`` raises mid-way, ``die`` kills the process, ``hang`` hangs,
    ``wait-for PATH`` waits until PATH exists."""

    accepts = (FILE,)
    emits = (LINE,)

    def process(self, item: Any, ctx: StageContext) -> Any:
        text = Path(item.path).read_text()
        for n, line in enumerate(text.splitlines()):
            if line == "boom":
                raise ValueError(f"line {n} says boom")
            if line == "die":
                os._exit(3)  # the worker process dies, as on a segfault
            if line == "hang":
                hang_holding_the_gil()  # a stuck decoder: only a file timeout ends it
            if line.startswith("wait-for "):
                wait_for_file(line.removeprefix("wait-for "))
            yield Line(n, line)


class Shout(Stage):
    """Upper-cases lines and writes them to OUT/shout/<file>.txt when the file ends."""

    accepts = (LINE,)
    report_fields = (pa.field("line_count", pa.int64()),)

    def begin(self, ctx: StageContext) -> None:
        ctx.state["lines"] = []

    def process(self, item: Line, ctx: StageContext) -> None:
        ctx.state["lines"].append(item.text.upper())

    def end(self, ctx: StageContext) -> None:
        path = write_atomic(ctx.output_path("shout").with_suffix(".txt"), "\n".join(ctx.state["lines"]).encode())
        ctx.add_output(path)
        ctx.record(line_count=len(ctx.state["lines"]))


def text_pipeline() -> Pipeline:
    """split_lines -> shout, over ``.txt`` files."""
    p = Pipeline("shout", extensions=[".txt"])
    split = p.add(SplitLines())
    p.add(Shout(), after=split)
    return p


def write_texts(folder: Path, files: dict[str, str]) -> Path:
    """``folder`` holding text files of these names (sub-folders allowed) and contents."""
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder
