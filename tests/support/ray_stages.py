"""Stages the Ray executor's tests send to Ray's worker processes (importable there by name).

Text files stand in for video: each line is an item. A line may ask its stage to fail (``boom``), to hand
the test its process id and wait there to be killed (``kill-me``, first attempt only) or to hang (``hang``).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from pipeline import FILE, FRAME, Pipeline, Stage, StageContext, stage, write_atomic
from pipeline.storage import open_input
from support.text import LINE, Line


def hand_over_and_wait(rendezvous: str) -> None:
    """Send this process's pid to the test listening on the unix socket ``rendezvous``, then block until killed
    (the test's kill is the event that ends the wait)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(rendezvous)
        sock.sendall(str(os.getpid()).encode())
        sock.recv(1)  # nothing ever comes: the test kills this process instead
    raise RuntimeError("the test closed the rendezvous without killing this worker")


def hold(rendezvous: str) -> None:
    """Tell the test listening on the unix socket ``rendezvous`` where this file runs (``<pid> <Ray node id>``),
    then wait until it says go on (one byte). The test may remove the node instead: the process dies here."""
    import ray
    where = f"{os.getpid()} {ray.get_runtime_context().get_node_id()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(rendezvous)
        sock.sendall(where.encode())
        if not sock.recv(1):
            raise RuntimeError("the test closed the rendezvous without a go")


def _read_text(path: str) -> str:
    """A text file's content, from a path or a URL (``pipeline.storage.open_input``: ranged reads of the object)."""
    source = open_input(path)
    if isinstance(source, str):
        return Path(source).read_text()
    with source:
        return source.read().decode()


class SplitLines(Stage):
    """One item per line of a text file. ``kill-me PATH``: the first attempt (it creates PATH.attempted) hands
    its pid over on the socket PATH and waits to be killed; ``hang PATH``: waits on the socket PATH forever;
    ``hold PATH``: says where it runs on the socket PATH and waits for a go (``hold``), every attempt."""

    accepts = (FILE,)
    emits = (LINE,)

    def process(self, item: Any, ctx: StageContext) -> Any:
        for n, line in enumerate(_read_text(item.path).splitlines()):
            word, _, arg = line.partition(" ")
            if word == "kill-me":
                try:
                    os.close(os.open(arg + ".attempted", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    pass  # the retry: go on
                else:
                    hand_over_and_wait(arg)
            if word == "hang":
                hand_over_and_wait(arg)
            if word == "hold":
                hold(arg)
            yield Line(n, line)


@stage(accepts=LINE, emits=LINE, stateful=False)
def shout(item: Line, ctx: Any) -> Any:
    """A map stage (frame-parallel, here line-parallel): the line upper-cased; ``boom`` raises."""
    if item.text == "boom":
        raise ValueError(f"line {item.number} says boom")
    ctx.record(shouted=True)
    return [Line(item.number, item.text.upper())]


@stage(accepts=FRAME, stateful=False)
def where_pixels_are(item: Any, ctx: Any) -> None:
    """A map stage that records how it got its frame's pixels: a view it may not write (the object store's
    shared memory) or an array of its own (a copy)."""
    pixels = item.array()
    ctx.record(pixels_read_only=not pixels.flags.writeable, pixels_own_memory=pixels.flags.owndata)


class Collect(Stage):
    """Writes the lines it gets, in the order it gets them, to OUT/lines/<file>.txt when the file ends."""

    accepts = (LINE,)

    def begin(self, ctx: StageContext) -> None:
        ctx.state["lines"] = []

    def process(self, item: Line, ctx: StageContext) -> None:
        ctx.state["lines"].append(f"{item.number} {item.text}")

    def end(self, ctx: StageContext) -> None:
        path = write_atomic(ctx.output_path("lines").with_suffix(".txt"), "\n".join(ctx.state["lines"]).encode())
        ctx.add_output(path)
        ctx.record(line_count=len(ctx.state["lines"]))


def text_pipeline(mapped: bool = False) -> Pipeline:
    """split_lines -> collect, or split_lines -> shout (a map stage) -> collect."""
    p = Pipeline("lines", extensions=[".txt"])
    split = p.add(SplitLines())
    p.add(Collect(), after=p.add(shout, after=split) if mapped else split)
    return p
