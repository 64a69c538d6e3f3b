"""Frame transforms: upright, resize (fit, fill or pad), crop, pixel-format conversion, and numpy functions.

Each transform is a stateless frame stage, so the local executor runs it
frame-parallel on a map pool; scaling and conversion go through FFmpeg's
swscale (``VideoFrame.reformat``), crops and pads are numpy views and copies.
Planar 4:2:0 pictures keep even sizes and offsets (their colour planes are
half size).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from pipeline import FRAME, Stage, StageContext

from .frames import VideoFrameItem
from .media import WORK_MODULES, display_size

if TYPE_CHECKING:  # imported where used: building a pipeline loads none of them
    import av
    import numpy as np

__all__ = ["Resize", "Crop", "Convert", "PixelFunction", "numpy_stage", "rotate_frame", "resize_box",
           "crop_pixels", "pad_pixels", "split_yuv420p", "join_yuv420p"]

ResizeMode = Literal["fit", "fill", "pad"]

_BLACK = {"yuv420p": (16, 128, 128), "yuvj420p": (0, 128, 128), "rgb24": 0, "bgr24": 0, "gray": 0,
          "rgba": 0, "bgra": 0}


def split_yuv420p(packed: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y, U and V planes in PyAV's stacked yuv420p array (planes back to back)."""
    flat = packed.reshape(-1)
    ys, cs = width * height, (width // 2) * (height // 2)
    return (flat[:ys].reshape(height, width), flat[ys:ys + cs].reshape(height // 2, width // 2),
            flat[ys + cs:ys + 2 * cs].reshape(height // 2, width // 2))


def join_yuv420p(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Stack Y, U and V planes into the array ``VideoFrame.from_ndarray(..., format="yuv420p")`` takes."""
    import numpy as np
    h, w = y.shape
    return np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(h * 3 // 2, w)


def _split(arr: np.ndarray, fmt: str) -> list[np.ndarray]:
    """The picture's planes as views: one for packed formats, Y/U/V for a stacked 4:2:0 array."""
    if fmt in ("yuv420p", "yuvj420p") and arr.ndim == 2:
        return list(split_yuv420p(arr, arr.shape[1], arr.shape[0] * 2 // 3))
    return [arr]


def _join(planes: list[np.ndarray]) -> np.ndarray:
    import numpy as np
    if len(planes) == 1:
        return np.ascontiguousarray(planes[0])
    return join_yuv420p(*planes)


def _is_420(fmt: str) -> bool:
    return fmt in ("yuv420p", "yuvj420p")


def rotate_frame(frame: av.VideoFrame, turns: int) -> av.VideoFrame:
    """``frame`` turned ``turns`` quarter turns counter-clockwise (``np.rot90``'s ``k``), same pixel format.

    Formats other than 4:2:0, RGB and gray are turned as rgb24.
    """
    import numpy as np

    from ._av import av
    fmt = frame.format.name
    if not (_is_420(fmt) or fmt in ("rgb24", "bgr24", "gray", "rgba", "bgra")) or \
            (_is_420(fmt) and (frame.width % 2 or frame.height % 2)):
        frame, fmt = frame.reformat(format="rgb24"), "rgb24"
    planes = [np.rot90(p, k=turns) for p in _split(frame.to_ndarray(), fmt)]
    out = av.VideoFrame.from_ndarray(_join(planes), format=fmt)
    out.pts, out.time_base = frame.pts, frame.time_base
    return out


def resize_box(width: int, height: int, box_width: int | None, box_height: int | None, mode: ResizeMode = "fit",
               sample_aspect: Any = None, even: bool = False) -> tuple[int, int]:
    """The scaled size of a ``width`` x ``height`` picture (its display aspect kept) for a box and mode.

    With one side of the box given, the other follows the aspect. ``fit``: the
    largest size inside the box; ``fill``: the smallest that covers it (to be
    cropped to the box); ``pad`` scales as ``fit`` (to be padded to the box).
    """
    dw, dh = display_size(width, height, 0, sample_aspect)
    if not box_width and not box_height:
        tw, th = dw, dh
    elif not box_height:
        tw, th = box_width, round(box_width * dh / dw)
    elif not box_width:
        tw, th = round(box_height * dw / dh), box_height
    else:
        scale = (max if mode == "fill" else min)(box_width / dw, box_height / dh)
        tw, th = round(dw * scale), round(dh * scale)
        if mode == "fill":
            tw, th = max(tw, box_width), max(th, box_height)
    tw, th = max(1, tw), max(1, th)
    if even:
        tw, th = max(2, tw + tw % 2), max(2, th + th % 2)
    return tw, th


def crop_pixels(arr: np.ndarray, fmt: str, x: int, y: int, width: int, height: int) -> np.ndarray:
    """The ``width`` x ``height`` region at (``x``, ``y``), as a new contiguous array in the same layout."""
    import numpy as np
    if _is_420(fmt):
        x, y, width, height = x - x % 2, y - y % 2, width - width % 2, height - height % 2
        planes = _split(arr, fmt)
        return _join([planes[0][y:y + height, x:x + width]]
                     + [p[y // 2:(y + height) // 2, x // 2:(x + width) // 2] for p in planes[1:]])
    return np.ascontiguousarray(arr[y:y + height, x:x + width])


def pad_pixels(arr: np.ndarray, fmt: str, width: int, height: int) -> np.ndarray:
    """``arr`` centred on a black ``width`` x ``height`` canvas (letterbox or pillarbox)."""
    import numpy as np
    planes = _split(arr, fmt)
    h, w = planes[0].shape[:2]
    x, y = (width - w) // 2, (height - h) // 2
    black = _BLACK.get(fmt, 0)
    if _is_420(fmt):
        x, y = x - x % 2, y - y % 2
        out = []
        for i, p in enumerate(planes):
            div = 1 if i == 0 else 2
            canvas = np.full((height // div, width // div), black[i], dtype=p.dtype)
            canvas[y // div:y // div + p.shape[0], x // div:x // div + p.shape[1]] = p
            out.append(canvas)
        return _join(out)
    canvas = np.full((height, width) + arr.shape[2:], black, dtype=arr.dtype)
    canvas[y:y + h, x:x + w] = arr
    return canvas


class Resize(Stage):
    """Scale frames to a width, a height or a box, keeping their display aspect.

    ``mode`` with a box: ``fit`` (inside it), ``fill`` (cover it, centre
    cropped to it) or ``pad`` (inside it, centred on black bars to its exact
    size). Output pixels have square samples. The box applies to the stored
    picture: put ``Decode(upright=True)`` first to size rotated footage as shown.
    """

    accepts = (FRAME,)
    emits = (FRAME,)
    stateful = False
    preload = WORK_MODULES

    def __init__(self, width: int | None = None, height: int | None = None, *, mode: ResizeMode = "fit",
                 pixel_format: str | None = None, interpolation: str = "BICUBIC", name: str | None = None) -> None:
        super().__init__(name)
        if mode not in ("fit", "fill", "pad"):
            raise ValueError(f"resize mode {mode!r} is not fit, fill or pad")
        if mode != "fit" and not (width and height):
            raise ValueError(f"resize mode {mode!r} needs both a width and a height")
        self.width, self.height, self.mode = width, height, mode
        self.pixel_format = pixel_format
        self.interpolation = interpolation

    def process(self, item: VideoFrameItem, ctx: StageContext) -> Any:
        frame = item.frame
        fmt = self.pixel_format or item.format
        tw, th = resize_box(frame.width, frame.height, self.width, self.height, self.mode,
                            item.stream.sample_aspect, even=_is_420(fmt))
        scaled = frame.reformat(width=tw, height=th, format=fmt, interpolation=self.interpolation).to_ndarray()
        if self.mode == "fill":
            assert self.width and self.height
            scaled = crop_pixels(scaled, fmt, (tw - self.width) // 2, (th - self.height) // 2,
                                 self.width, self.height)
        elif self.mode == "pad":
            assert self.width and self.height
            scaled = pad_pixels(scaled, fmt, self.width, self.height)
        square = dataclasses.replace(item.stream, sample_aspect=None)  # scaled to square samples
        yield dataclasses.replace(item.with_pixels(scaled, fmt), stream=square)


class Crop(Stage):
    """Keep the ``width`` x ``height`` region at (``x``, ``y``) of each frame (clipped to the picture)."""

    accepts = (FRAME,)
    emits = (FRAME,)
    stateful = False
    preload = WORK_MODULES

    def __init__(self, x: int, y: int, width: int, height: int, *, name: str | None = None) -> None:
        super().__init__(name)
        if min(x, y) < 0 or min(width, height) < 1:
            raise ValueError("a crop needs x, y >= 0 and a positive width and height")
        self.x, self.y, self.width, self.height = x, y, width, height

    def process(self, item: VideoFrameItem, ctx: StageContext) -> Any:
        w, h = item.width, item.height
        if self.x >= w or self.y >= h:
            raise ValueError(f"crop origin ({self.x}, {self.y}) is outside the {w}x{h} picture")
        cw, ch = min(self.width, w - self.x), min(self.height, h - self.y)
        yield item.with_pixels(crop_pixels(item.array(), item.format, self.x, self.y, cw, ch), item.format)


class Convert(Stage):
    """Convert frames to ``pixel_format`` (through swscale)."""

    accepts = (FRAME,)
    emits = (FRAME,)
    stateful = False
    preload = WORK_MODULES

    def __init__(self, pixel_format: str, *, name: str | None = None) -> None:
        super().__init__(name)
        self.pixel_format = pixel_format

    def process(self, item: VideoFrameItem, ctx: StageContext) -> Any:
        yield item.with_pixels(item.array(self.pixel_format), self.pixel_format)


class PixelFunction(Stage):
    """A user's ``fn(pixels) -> pixels`` on numpy arrays, as a frame stage that runs frame-parallel.

    ``fn`` sees each frame in ``pixel_format`` (``rgb24``: an H x W x 3 uint8
    array) and returns the new picture in ``out_format`` (default the same).
    It must not keep the array it was given: its memory is reused.
    """

    accepts = (FRAME,)
    emits = (FRAME,)
    stateful = False
    preload = WORK_MODULES

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], *, pixel_format: str = "rgb24",
                 out_format: str | None = None, name: str | None = None) -> None:
        super().__init__(name or getattr(fn, "__name__", None))
        self.fn = fn
        self.pixel_format = pixel_format
        self.out_format = out_format or pixel_format

    def process(self, item: VideoFrameItem, ctx: StageContext) -> Any:
        import numpy as np
        out = self.fn(item.array(self.pixel_format))
        if not isinstance(out, np.ndarray):
            raise TypeError(f"{self.name} returned {type(out).__name__}, not a numpy array")
        yield item.with_pixels(out, self.out_format)


def numpy_stage(fn: Callable[[np.ndarray], np.ndarray] | None = None, *, pixel_format: str = "rgb24",
                out_format: str | None = None, name: str | None = None) -> Any:
    """Decorator: ``@numpy_stage`` or ``@numpy_stage(pixel_format="gray")`` makes a :class:`PixelFunction`."""
    def wrap(f: Callable[[np.ndarray], np.ndarray]) -> PixelFunction:
        return PixelFunction(f, pixel_format=pixel_format, out_format=out_format, name=name)
    return wrap(fn) if fn is not None else wrap
