"""``BatchSink``: the stage ``iter_batches`` puts after the frames' stage, writing each frame straight into the
batch slot the consumer lent it.

Rows are clips of ``clip_length`` frames whose starts are ``clip_stride`` frames apart (one frame, one apart:
plain frames), never across a file: clip ``c`` of a file is row ``c % rows`` of its batch ``c // rows``, and a
frame is written into the row of every clip it is in. A batch goes to the consumer once its last row is whole;
at the file's end the batch in hand goes with its whole rows (a clip the file ends inside is dropped, as
torchvision's ``VideoClips`` does). A frame whose shape or type differs from the file's earlier ones ends a run
of frames as the file's end does and starts the next, so every batch is one array. A second attempt at a file
(its worker died) skips the rows the first gave.

Frames are any ``SharedItem`` (``stages``' video frames): the item copies its pixels into the row
(``to_shared``), or, when they are in a slot already (a map stage's output), they are copied slot to slot. The
per-frame columns read the item's ``index``, ``time`` and ``keyframe`` where it has them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..items import FRAME, is_shareable
from ..runtime.interrupts import Interrupted, cancel_requested
from ..stage import Stage, StageContext
from .channel import FILLED, GIVE_BACK, HELLO, WANT, connect

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from ..dataplane.buffers import FrameRef

__all__ = ["BatchSink", "BatchShape"]


@dataclass(frozen=True, slots=True)
class BatchShape:
    """What a batch holds: ``rows`` rows of ``clip_length`` frames, clips ``clip_stride`` frames apart."""

    rows: int
    clip_length: int = 1
    clip_stride: int = 1


class BatchSink(Stage):
    """Writes the frames it is fed into batch slots lent by the consumer's ``BatchChannel`` (see the module)."""

    accepts = (FRAME,)
    emits = ()

    def __init__(self, address: str, authkey: bytes, shape: BatchShape, name: str = "batch_sink") -> None:
        super().__init__(name)
        self.address = address
        self.authkey = authkey
        self.shape = shape

    def begin(self, ctx: StageContext) -> None:
        conn = connect(self.address, self.authkey)
        conn.send((HELLO, ctx.file.path))
        given = conn.recv()  # rows an earlier attempt at the file gave (its worker died): skipped now
        ctx.state["packer"] = _Packer(conn, self.shape, ctx.file.path, skip=given)

    def process(self, item: Any, ctx: StageContext) -> Iterable[Any] | None:
        if cancel_requested():  # (inline: the consumer left; a local worker is stopped by its executor)
            raise Interrupted()  # the run ends as Ctrl-C ends it
        ctx.state["packer"].add(item)
        return None

    def end(self, ctx: StageContext) -> Iterable[Any] | None:
        packer: _Packer = ctx.state["packer"]
        try:
            packer.flush()
        finally:
            packer.close()
        return None

    def abort(self, ctx: StageContext) -> None:
        packer: _Packer | None = ctx.state.get("packer")
        if packer is not None:
            packer.close()  # what it was lent goes back with the connection


@dataclass(slots=True)
class _Batch:
    """A batch being filled: its slot, and its rows' per-frame columns."""

    slot: FrameRef
    index: np.ndarray
    pts_s: np.ndarray
    keyframe: np.ndarray
    written: set[int] = field(default_factory=set)


class _Packer:
    """One file's frames packed into rows of batches (the module's docstring says how)."""

    def __init__(self, conn: Connection, shape: BatchShape, path: str, skip: int = 0) -> None:
        self.conn = conn
        self.rows, self.length, self.stride = shape.rows, shape.clip_length, shape.clip_stride
        self.path = path
        self.skip = skip  # the file's first rows (clips), given by an earlier attempt
        self.base = 0  # clips of the file in the runs before this one
        self.frames = 0  # frames of the current run (since the file's start or the last change of shape)
        self.frame_nbytes = 0
        self.kind: tuple[tuple[int, ...], str, str | None] | None = None  # the run's frame shape, dtype, format
        self.batches: dict[int, _Batch] = {}  # by number in the run; open ones (several when clips overlap)

    def add(self, item: Any) -> None:
        nbytes = _frame_nbytes(item)
        if self.frames and nbytes != self.frame_nbytes:  # (told apart by size even where no row is written)
            self.flush()
        if self.frames == 0:
            self.frame_nbytes = nbytes
        j = self.frames
        first = max(0, -(-(j - self.length + 1) // self.stride))
        clips = range(first, j // self.stride + 1)
        first_copy: FrameRef | None = None  # where the frame went first (its other clips' rows copy it from there)
        whole: list[int] = []  # batches this frame completes
        first_row = max(0, self.skip - self.base)  # the run's clips before it were given already
        for c in clips:
            if c < first_row:
                continue
            r = c - first_row
            batch = self._batch(r // self.rows)
            row, position = r % self.rows, j - c * self.stride
            offset = (row * self.length + position) * self.frame_nbytes
            written = _write(item, batch.slot.replace(offset=offset), first_copy)
            if written.nbytes != self.frame_nbytes:  # it would have run into the next row
                raise ValueError(f"a {type(item).__name__} said it needs {self.frame_nbytes} bytes but wrote "
                                 f"{written.nbytes}")
            kind = (written.shape, written.dtype, written.pixel_format)
            if self.kind is None:
                self.kind = kind
            elif kind != self.kind:  # the same bytes, another shape: a run of its own
                pixels = written.array().copy()
                self.flush()
                self.frame_nbytes = nbytes
                self.add(_Pixels(pixels, written, item))
                return
            first_copy = first_copy or written
            batch.index[row, position] = getattr(item, "index", j)
            batch.pts_s[row, position] = _seconds(item)
            batch.keyframe[row, position] = bool(getattr(item, "keyframe", False))
            if position == self.length - 1:
                batch.written.add(row)
                if row == self.rows - 1:
                    whole.append(r // self.rows)
        for number in whole:  # once the frame is in all its rows: a clip's later rows copy it from the first
            self._send(number, self.rows)
        self.frames += 1

    def _batch(self, number: int) -> _Batch:
        batch = self.batches.get(number)
        if batch is None:
            self.conn.send((WANT, self.rows * self.length * self.frame_nbytes))
            slot = self.conn.recv()
            if isinstance(slot, str):
                raise OSError(slot)
            grid = (self.rows, self.length)
            batch = self.batches[number] = _Batch(slot, np.zeros(grid, np.int64), np.full(grid, np.nan),
                                                  np.zeros(grid, np.bool_))
        return batch

    def _send(self, number: int, rows: int) -> None:
        batch = self.batches.pop(number)
        assert self.kind is not None
        shape, dtype, pixel_format = self.kind
        row_shape = (self.length, *shape) if self.length > 1 else shape
        columns = {"index": batch.index[:rows], "pts_s": batch.pts_s[:rows], "keyframe": batch.keyframe[:rows]}
        if self.length == 1:
            columns = {k: v[:, 0] for k, v in columns.items()}
        self.conn.send((FILLED, batch.slot, rows, row_shape, dtype, pixel_format, self.path, columns))

    def flush(self) -> None:
        """Send each open batch's whole rows (a batch with none goes back) and start a new run of frames."""
        for number in sorted(self.batches):
            batch = self.batches[number]
            whole = 0
            while whole < self.rows and whole in batch.written:
                whole += 1
            if whole:
                self._send(number, whole)
            else:
                self.conn.send((GIVE_BACK, self.batches.pop(number).slot))
        if self.frames >= self.length:  # the run's whole clips, given or skipped
            self.base += (self.frames - self.length) // self.stride + 1
        self.frames = 0
        self.kind = None

    def close(self) -> None:
        self.conn.close()


class _Pixels:
    """A frame's pixels held as an array (a frame that starts a new run after it was written into the last)."""

    def __init__(self, pixels: np.ndarray, written: FrameRef, item: Any) -> None:
        self.pixels, self.written, self.item = pixels, written, item

    def __getattr__(self, name: str) -> Any:
        return getattr(self.item, name)


def _frame_nbytes(item: Any) -> int:
    if isinstance(item, _Pixels):
        return int(item.pixels.nbytes)
    if not is_shareable(item):
        raise TypeError(f"iter_batches takes frames whose pixels can go into shared memory, not {type(item).__name__}")
    return item.shared_nbytes() or (item.ref.nbytes if item.ref is not None else 0)


def _write(item: Any, row: FrameRef, first_copy: FrameRef | None) -> FrameRef:
    """Put the frame's pixels in ``row`` (a slot's ref at the row's offset); the ref to them there.
    ``first_copy``: where they were written already (a clip's other rows copy them from there)."""
    if first_copy is None and not isinstance(item, _Pixels) and item.shared_nbytes() > 0:
        written: FrameRef = item.to_shared(row).ref  # the item copies its own pixels in
        return written
    # Otherwise the pixels are in a slot (a clip's first row, or a map stage's output) or held as an array.
    source: FrameRef = first_copy or (item.written if isinstance(item, _Pixels) else item.ref)
    target = row.replace(shape=source.shape, dtype=source.dtype, pixel_format=source.pixel_format)
    np.copyto(target.array(), item.pixels if first_copy is None and isinstance(item, _Pixels) else source.array())
    return target


def _seconds(item: Any) -> float:
    t = getattr(item, "time", None)
    if isinstance(t, (int, float)):
        return float(t)
    ref = getattr(item, "ref", None)
    return ref.time if ref is not None and ref.time is not None else float("nan")
