"""The items the video stages pass along: decoded video frames and audio blocks.

A ``VideoFrameItem`` holds its pixels in one of two places: a PyAV frame in
this process, or a buffer-pool slot (a ``FrameRef``) that any process of the
run can read. It moves to a slot only when it crosses to another process
(``to_shared``); on the other side ``frame`` and ``array()`` are views of the
slot, with no copy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, ClassVar

from pipeline import AUDIO, FRAME

from .colour import Colour
from .pixels import frame_layout

if TYPE_CHECKING:  # imported where used: building a pipeline loads none of them
    import av
    import numpy as np

    from pipeline.dataplane import FrameRef

__all__ = ["StreamInfo", "VideoFrameItem", "AudioFrameItem", "wrap_pixels"]

# Pixel formats whose slot layout PyAV can wrap as a frame without copying.
_WRAPPABLE = {"rgb24", "bgr24", "gray", "yuv420p", "rgba", "bgra"}


def wrap_pixels(arr: np.ndarray, fmt: str) -> av.VideoFrame:
    """A PyAV frame over ``arr``'s memory where PyAV can wrap it, else over a copy.

    PyAV 18 computes a stacked 4:2:0 array's height as ``rows // 6 * 4``, which
    is short by two lines unless the height is a multiple of 4: those are copied.
    """
    from ._av import av
    if fmt in _WRAPPABLE and arr.flags.c_contiguous and (
            fmt != "yuv420p" or (arr.ndim == 2 and (arr.shape[0] * 2 // 3) % 4 == 0)):
        return av.VideoFrame.from_numpy_buffer(arr, format=fmt)
    return av.VideoFrame.from_ndarray(arr, format=fmt)


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What downstream stages need to know of the decoded file's streams."""

    width: int
    height: int
    fps: Fraction | None
    time_base: Fraction
    frame_count: int | None
    sample_aspect: Fraction | None = None
    audio_rate: int | None = None
    audio_channels: int | None = None
    duration_s: float | None = None
    codec: str | None = None
    pix_fmt: str | None = None
    container: str | None = None
    audio_codec: str | None = None
    video_stream: int | None = None  # the decoded streams' numbers among the file's video / audio streams
    audio_stream: int | None = None
    colour: Colour | None = None  # the first decoded frame's tags and HDR levels (frames in slots lose theirs)

    @property
    def has_video(self) -> bool:
        """False for a file decoded as audio alone (it has no video stream, so no video codec)."""
        return self.codec is not None


@dataclass(slots=True)
class VideoFrameItem:
    """A decoded picture: its number in the stream, its time in seconds from the file's start, and its pixels.

    ``pixels`` is a local array set by a stage that computed new pixels
    (``with_pixels``); ``ref`` a shared slot; ``local`` a PyAV frame. ``keyframe``: the decoder marked it
    one (every raw frame is one).
    """

    kind: ClassVar[str] = FRAME
    local: av.VideoFrame | None
    index: int
    time: float
    rotation: int
    stream: StreamInfo
    ref: FrameRef | None = None
    pixels: np.ndarray | None = None
    pixel_format: str | None = None
    keyframe: bool = False

    @property
    def frame(self) -> av.VideoFrame:
        """The picture as a PyAV frame (a view of the slot when the pixels are shared)."""
        if self.local is None:
            self.local = wrap_pixels(self.array(), self.format)
        return self.local

    @property
    def format(self) -> str:
        """The pixel format of the pixels."""
        if self.pixel_format:
            return self.pixel_format
        if self.ref is not None and self.ref.pixel_format:
            return self.ref.pixel_format
        assert self.local is not None
        return self.local.format.name

    @property
    def width(self) -> int:
        return self.local.width if self.local is not None else self._shape_size()[0]

    @property
    def height(self) -> int:
        return self.local.height if self.local is not None else self._shape_size()[1]

    def _shape_size(self) -> tuple[int, int]:
        arr = self.array()
        if self.format in ("yuv420p", "yuvj420p") and arr.ndim == 2:
            return arr.shape[1], arr.shape[0] * 2 // 3
        return arr.shape[1], arr.shape[0]

    def array(self, pixel_format: str | None = None) -> np.ndarray:
        """The pixels as numpy (a view of the slot or of the stage's array; a conversion when asked)."""
        if pixel_format is None or pixel_format == self.format:
            if self.pixels is not None:
                return self.pixels
            if self.ref is not None:
                return self.ref.array()
            assert self.local is not None
            return self._portable().to_ndarray()
        return self.frame.to_ndarray(format=pixel_format)

    def _portable(self) -> av.VideoFrame:
        """The local frame in a format numpy can hold: odd-sized 4:2:0 (which PyAV will not
        export) becomes 4:4:4 at the same bit depth, so no luma detail is lost."""
        assert self.local is not None
        frame = self.local
        name = frame.format.name
        if name.startswith(("yuv420p", "yuvj420p")) and (frame.width % 2 or frame.height % 2):
            frame = self.local = frame.reformat(format=name.replace("420", "444"))
        return frame

    def with_pixels(self, pixels: np.ndarray, pixel_format: str | None = None) -> VideoFrameItem:
        """The same frame (number, time, stream) with new pixels, e.g. the output of a numpy stage."""
        return dataclasses.replace(self, local=None, ref=None, pixels=pixels,
                                   pixel_format=pixel_format or self.format)

    @property
    def nbytes(self) -> int:
        """Bytes of the picture (what the stage table's MB column adds up); no conversion."""
        import numpy as np
        if self.pixels is not None:
            return int(self.pixels.nbytes)
        if self.ref is not None:
            return self.ref.nbytes
        assert self.local is not None
        try:
            shape, dtype = frame_layout(self.local.width, self.local.height, self.local.format.name)
        except ValueError:  # a format the slots do not carry: the planes' own sizes
            return sum(p.buffer_size for p in self.local.planes)
        return int(np.prod(shape)) * dtype.itemsize

    # Crossing processes: the engine's shared-item protocol ----------------------------

    def shared_nbytes(self) -> int:
        """Bytes of slot this frame needs to cross to another process."""
        import numpy as np
        if self.pixels is not None:
            return int(self.pixels.nbytes)
        if self.ref is not None:
            return 0  # already shared
        frame = self._portable()
        shape, dtype = frame_layout(frame.width, frame.height, frame.format.name)
        return int(np.prod(shape)) * dtype.itemsize

    def to_shared(self, slot: FrameRef) -> VideoFrameItem:
        """This frame with its pixels copied into ``slot`` (a byte slot granted by the scheduler)."""
        import numpy as np
        if self.ref is not None and self.pixels is None:
            return self._without_local()
        arr = self.array()
        fmt = self.format
        dst = slot.replace(shape=tuple(arr.shape), dtype=arr.dtype.str, pixel_format=fmt, seq=self.index)
        target = dst.array()
        if not np.shares_memory(target, arr):  # a stage that wrote straight into the slot needs no copy
            np.copyto(target, arr)
        return dataclasses.replace(self, local=None, ref=dst, pixels=None, pixel_format=fmt)

    def _without_local(self) -> VideoFrameItem:
        return dataclasses.replace(self, local=None)

    def __getstate__(self) -> dict[str, Any]:
        if self.ref is None:
            raise TypeError("a VideoFrameItem crosses processes only in a slot (call to_shared first)")
        return {"index": self.index, "time": self.time, "rotation": self.rotation, "stream": self.stream,
                "ref": self.ref, "pixel_format": self.pixel_format, "keyframe": self.keyframe}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.local = None
        self.pixels = None
        for key, value in state.items():
            setattr(self, key, value)


@dataclass(slots=True)
class AudioFrameItem:
    """A block of decoded audio samples and its time in seconds from the file's start.

    Like a video frame, the samples live in a PyAV frame in this process or in a
    buffer-pool slot (``ref``) when the block crosses to another process (a map
    stage over audio); ``frame`` and ``samples()`` read either without a copy
    where PyAV allows.
    """

    kind: ClassVar[str] = AUDIO
    local: av.AudioFrame | None
    time: float
    stream: StreamInfo
    ref: FrameRef | None = None
    sample_format: str = ""
    layout: str = ""
    sample_rate: int = 0

    def __post_init__(self) -> None:
        if self.local is not None:
            self.sample_format = self.local.format.name
            self.layout = self.local.layout.name
            self.sample_rate = self.local.sample_rate

    @property
    def nbytes(self) -> int:
        """Bytes of the samples (what the stage table's MB column adds up)."""
        if self.ref is not None and self.local is None:
            return self.ref.nbytes
        assert self.local is not None
        return sum(p.buffer_size for p in self.local.planes)

    @property
    def frame(self) -> av.AudioFrame:
        """The block as a PyAV frame."""
        from ._av import av
        if self.local is None:
            assert self.ref is not None
            self.local = av.AudioFrame.from_ndarray(self.ref.array(), format=self.sample_format, layout=self.layout)
            self.local.sample_rate = self.sample_rate
        return self.local

    def samples(self) -> np.ndarray:
        """The samples as PyAV lays them out: channels x samples (planar) or 1 x samples*channels (packed)."""
        if self.ref is not None and self.local is None:
            return self.ref.array()
        return self.frame.to_ndarray()

    def with_samples(self, samples: np.ndarray) -> AudioFrameItem:
        """The same block (time, format, layout, rate) with new samples, e.g. the output of a map stage."""
        import numpy as np

        from ._av import av
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format=self.sample_format,
                                           layout=self.layout)
        frame.sample_rate = self.sample_rate
        return AudioFrameItem(frame, self.time, self.stream)

    def shared_nbytes(self) -> int:
        """Bytes of slot this block needs to cross to another process."""
        return 0 if self.ref is not None else int(self.samples().nbytes)

    def to_shared(self, slot: FrameRef) -> AudioFrameItem:
        """This block with its samples copied into ``slot``."""
        import numpy as np
        if self.ref is not None:
            return dataclasses.replace(self, local=None)
        arr = self.samples()
        dst = slot.replace(shape=tuple(arr.shape), dtype=arr.dtype.str)
        np.copyto(dst.array(), arr)
        return dataclasses.replace(self, local=None, ref=dst)

    def __getstate__(self) -> dict[str, Any]:
        if self.ref is None:
            raise TypeError("an AudioFrameItem crosses processes only in a slot (call to_shared first)")
        return {"time": self.time, "stream": self.stream, "ref": self.ref, "sample_format": self.sample_format,
                "layout": self.layout, "sample_rate": self.sample_rate}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.local = None
        for key, value in state.items():
            setattr(self, key, value)
