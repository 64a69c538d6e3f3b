"""``FrameBatch``: one batch of frames as a mapping of columns, its frames a view of a shared-memory slot.

The frames are **not copied**: ``batch["frames"]`` is a view of the slot the workers decoded into, and that slot
is given to the workers again when the consumer asks for the next batch. Use the batch (or what you made from
it) before then, or ``keep()`` it (the slot stays yours until the batch is released or collected; no copy), or
``copy()`` it. A view read after its slot went back shows another batch's pixels, not an error.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import numpy as np

from .channel import Filled, frames_view

__all__ = ["FrameBatch", "BatchFormat", "COLUMNS"]

BatchFormat = Literal["numpy", "arrow", "dlpack"]
COLUMNS = ("frames", "file", "index", "pts_s", "keyframe")
"""The columns of every batch, in order."""


class FrameBatch(Mapping[str, Any]):
    """Rows of frames (or clips) of one file: ``frames`` (N x H x W x C, or N x K x H x W x C for clips of K),
    and per frame ``file``, ``index`` (its number in the file), ``pts_s`` (its time in seconds) and ``keyframe``.

    ``format``: ``"numpy"`` gives numpy arrays; ``"arrow"`` pyarrow arrays (frames a fixed-shape tensor array
    over the same memory; ``to_table()``); ``"dlpack"`` gives the frames as a DLPack capsule (what
    ``torch.utils.dlpack.from_dlpack``, ``tf.experimental.dlpack.from_dlpack`` or ``jax.dlpack.from_dlpack``
    take; numpy's own arrays also hand themselves over by ``__dlpack__``). No format copies the frames.
    """

    def __init__(self, filled: Filled, format: BatchFormat) -> None:
        self.rows = filled.rows
        """How many rows (frames, or clips) the batch holds."""
        self.file = filled.file
        """The input file the batch's frames come from (a batch never holds two files' frames)."""
        self.pixel_format = filled.pixel_format
        """The frames' pixel format, where the stage that made them says it (``"rgb24"``...)."""
        self.format = format
        self.kept = False
        root, frames = frames_view(filled)
        self._numpy = {"frames": frames, "file": np.full(self.rows, filled.file), **filled.columns}
        self._columns = self._numpy if format == "numpy" else _convert(self._numpy, format)
        # The slot goes back when released, or once nothing holds the frames (the batch, a view, a tensor).
        self._finalizer = weakref.finalize(root, filled.lease.release)

    def __getitem__(self, column: str) -> Any:
        if column == "frames" and self.format == "dlpack":
            return self.frames.__dlpack__()  # a capsule is taken once: a new one each time it is asked for
        return self._columns[column]

    def __iter__(self) -> Iterator[str]:
        return iter(COLUMNS)

    def __len__(self) -> int:
        return len(COLUMNS)

    @property
    def frames(self) -> np.ndarray:
        """The frames as numpy, whatever the format (a view of the slot)."""
        frames: np.ndarray = self._numpy["frames"]
        return frames

    def keep(self) -> FrameBatch:
        """Keep this batch's slot for as long as the batch (or ``release()``): its views stay valid past the
        next batch, without a copy. Memory grows by one batch for each batch kept. Raises ``ValueError`` for a
        batch already released (its slot may hold other pixels now)."""
        if self.released:
            raise ValueError("this batch was released (its slot went back when the next batch was asked for): "
                             "keep() it before asking for the next")
        self.kept = True
        return self

    def release(self) -> None:
        """Give the slot back now: this batch's views (and tensors made from them) are no longer valid."""
        self._finalizer()

    @property
    def released(self) -> bool:
        """Whether the slot went back to the workers (this batch's views may now show other pixels)."""
        return not self._finalizer.alive

    def copy(self) -> dict[str, Any]:
        """The columns as numpy arrays of their own (valid forever; costs a copy of the frames)."""
        return {k: np.array(v, copy=True) for k, v in self._numpy.items()}

    def to_table(self) -> Any:
        """The batch as a ``pyarrow.Table`` over the same memory (frames: a fixed-shape tensor column)."""
        import pyarrow as pa
        columns = self._columns if self.format == "arrow" else _convert(self._numpy, "arrow")
        return pa.table({k: columns[k] for k in COLUMNS})

    def __repr__(self) -> str:
        state = " released" if self.released else " kept" if self.kept else ""
        return (f"<FrameBatch {self.rows} x {tuple(self.frames.shape[1:])} {self.pixel_format or ''} of "
                f"{self.file!r}{state}>")


def _convert(columns: dict[str, Any], format: BatchFormat) -> dict[str, Any]:
    if format == "arrow":
        import pyarrow as pa
        frames = columns["frames"]
        out: dict[str, Any] = {"frames": pa.FixedShapeTensorArray.from_numpy_ndarray(frames)}
        for name in COLUMNS[1:]:
            values = columns[name]
            out[name] = pa.FixedShapeTensorArray.from_numpy_ndarray(values) if values.ndim > 1 else pa.array(values)
        return out
    if format == "dlpack":
        return columns  # the frames' capsule is made where it is asked for
    raise ValueError(f"format must be 'numpy', 'arrow' or 'dlpack', not {format!r}")
