"""Numpy frames standing in for video: engine-only frame items, stages and inputs.

An input is a ``.npy`` file holding an (n, height, width, 3) uint8 array: n frames, each painted with its
number (``frame_pixels``), so a test can tell from an output which frame it shows. ``ReadFrames`` emits
them in the file's actor as ``FRAME`` items; ``Invert`` is a map stage (stateless: it runs frame-parallel,
and its frames cross processes in shared-memory slots through the engine's shared-item protocol,
``shared_nbytes`` / ``to_shared``); ``SaveFrames`` writes every ``keep_every``-th frame it gets to
OUT/frames/<file>/f<number>.npy. ``array_pipeline`` is the engine-only twin of a decode -> numpy stage ->
thumbnails video pipeline.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pipeline import FILE, FRAME, InputError, Pipeline, Stage, StageContext, write_atomic


class ArrayFrame:
    """A frame: its number in the file and its pixels, a local array or a shared slot (``ref``).

    It crosses processes only in a slot, as the engine asks of frames: pickling one without a ``ref`` is an
    error (a frame copied through a pipe would hide a slot that was never granted).
    """

    kind: ClassVar[str] = FRAME
    __slots__ = ("index", "pixels", "ref")

    def __init__(self, index: int, pixels: np.ndarray | None = None, ref: Any = None) -> None:
        self.index, self.pixels, self.ref = index, pixels, ref

    def array(self) -> np.ndarray:
        """The pixels (a view of the slot when shared)."""
        return self.pixels if self.pixels is not None else self.ref.array()

    @property
    def nbytes(self) -> int:
        return int(self.pixels.nbytes) if self.pixels is not None else int(self.ref.nbytes)

    def with_pixels(self, pixels: np.ndarray) -> ArrayFrame:
        return ArrayFrame(self.index, pixels)

    # The engine's shared-item protocol -------------------------------------------------------------

    def shared_nbytes(self) -> int:
        """Bytes of slot this frame needs to cross to another process (none once it is in one)."""
        return int(self.pixels.nbytes) if self.pixels is not None else 0

    def to_shared(self, slot: Any) -> ArrayFrame:
        """This frame with its pixels copied into ``slot`` (a byte slot granted by the scheduler)."""
        if self.pixels is None:
            return self
        dst = slot.replace(shape=tuple(self.pixels.shape), dtype=self.pixels.dtype.str, seq=self.index)
        target = dst.array()
        if not np.shares_memory(target, self.pixels):  # a stage that wrote straight into the slot needs no copy
            np.copyto(target, self.pixels)
        return ArrayFrame(self.index, None, dst)

    def __getstate__(self) -> tuple[int, Any]:
        if self.ref is None:
            raise TypeError("an ArrayFrame crosses processes only in a slot (call to_shared first)")
        return self.index, self.ref

    def __setstate__(self, state: tuple[int, Any]) -> None:
        self.index, self.ref = state
        self.pixels = None


def frame_pixels(index: int, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """Frame ``index`` of a clip: noise from ``seed`` and the index, with the index in its first row."""
    rgb = np.random.default_rng([seed, index]).integers(0, 256, (height, width, 3), dtype=np.uint8)
    rgb[0, :16, :] = [[255 * ((index >> bit) & 1)] * 3 for bit in range(16)]  # the number, as 16 cells
    return rgb


def write_frames(path: Path, frames: int, height: int = 48, width: int = 64, seed: int = 0) -> Path:
    """An input of ``frames`` frames at ``path`` (a ``.npy`` file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.stack([frame_pixels(i, height, width, seed) for i in range(frames)]))
    return path


class ReadFrames(Stage):
    """Emits the frames of a ``.npy`` input, in order (in the file's actor, as a decoder does).

    Cacheable, as a decoder is: its record (and its error, for a file that is no array) is remembered; it runs
    again only while a stage after it that is not replayed needs its frames.
    """

    accepts = (FILE,)
    emits = (FRAME,)
    cacheable = True

    def process(self, item: Any, ctx: StageContext) -> Any:
        try:
            frames = np.load(item.path, mmap_mode="r")
        except ValueError as exc:  # an input error, as a corrupt clip's: remembered by the cache
            raise InputError(item.path, "not a numpy array file") from exc
        for i in range(len(frames)):
            yield ArrayFrame(i, np.array(frames[i]))
        ctx.record(frames_read=len(frames))


class Invert(Stage):
    """A map stage (frame-parallel): the negative of each frame. Cacheable: it depends on its frames alone."""

    accepts = (FRAME,)
    emits = (FRAME,)
    stateful = False
    cacheable = True

    def __init__(self, name: str = "invert") -> None:
        super().__init__(name)

    def process(self, item: ArrayFrame, ctx: StageContext) -> Any:
        yield item.with_pixels(255 - item.array())


class SaveFrames(Stage):
    """Writes every ``keep_every``-th frame it gets to OUT/frames/<file>/f<number>.npy (as thumbnails would)."""

    accepts = (FRAME,)
    cacheable = True  # what it writes depends on its frames and keep_every alone

    def __init__(self, keep_every: int = 1, *, name: str | None = None) -> None:
        super().__init__(name)
        self.keep_every = keep_every

    def begin(self, ctx: StageContext) -> None:
        ctx.state["saved"] = 0

    def process(self, item: ArrayFrame, ctx: StageContext) -> None:
        if item.index % self.keep_every == 0:
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(item.array()))
            ctx.add_output(write_atomic(ctx.output_path("frames", f"f{item.index:04d}.npy"), buf.getvalue()))
            ctx.state["saved"] += 1

    def end(self, ctx: StageContext) -> None:
        ctx.record(frames_saved=ctx.state["saved"])


def array_pipeline(name: str = "arrays", keep_every: int = 1, *, mapped: bool = True) -> Pipeline:
    """read_frames (in each file's actor) -> invert (a map stage, frame-parallel) -> save_frames; without
    ``mapped``, read_frames -> save_frames (every stage cacheable: an unchanged file is replayed whole)."""
    p = Pipeline(name, extensions=[".npy"])
    frames = p.add(ReadFrames())
    p.add(SaveFrames(keep_every), after=p.add(Invert(), after=frames) if mapped else frames)
    return p


def saved_frame(path: Path) -> np.ndarray:
    """A frame ``SaveFrames`` wrote."""
    return np.load(path)


def write_pipeline_file(path: Path, name: str = "arrays", keep_every: int = 1) -> Path:
    """A pipeline file for ``framepipe run -P`` that builds ``array_pipeline(name, keep_every)``.

    The file puts ``tests/`` on the import path of the command (and so of its workers) before importing
    this module: the stages it builds are pickled by reference, as ``support.arrays.<name>``.
    """
    tests = Path(__file__).resolve().parents[1]
    path.write_text(f"import sys\nsys.path.insert(0, {str(tests)!r})\n"
                    "from support.arrays import array_pipeline\n\n\n"
                    f"def build():\n    return array_pipeline({name!r}, keep_every={keep_every!r})\n")
    return path
