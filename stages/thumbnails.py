"""``Thumbnails``: a poster image and one picture every N seconds, as JPEG, PNG or WebP."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from pipeline import FRAME, Stage, StageContext, write_atomic

from .frames import VideoFrameItem
from .media import display_size, rotation_turns

__all__ = ["Thumbnails", "frame_to_image", "is_blank"]

_FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}


def is_blank(item: VideoFrameItem, *, min_std: float = 6.0, min_mean: float = 16.0) -> tuple[bool, float]:
    """Whether a frame is black or flat (a fade-in, a slate), and its contrast (luma std)."""
    small = item.frame.reformat(width=64, height=36, format="gray").to_ndarray()
    std = float(small.std())
    return std < min_std or float(small.mean()) < min_mean, std


def frame_to_image(item: VideoFrameItem, width: int | None = None, height: int | None = None) -> Image.Image:
    """The frame upright (rotation applied), scaled to ``width`` or ``height`` with its aspect kept."""
    frame = item.frame
    dw, dh = display_size(frame.width, frame.height, item.rotation, item.stream.sample_aspect)
    if width:
        tw, th = width, max(1, round(width * dh / dw))
    elif height:
        tw, th = max(1, round(height * dw / dh)), height
    else:
        tw, th = dw, dh
    turns = rotation_turns(item.rotation)
    sw, sh = (th, tw) if turns % 2 else (tw, th)
    rgb = frame.reformat(width=sw, height=sh, format="rgb24").to_ndarray()
    if turns:
        rgb = np.ascontiguousarray(np.rot90(rgb, k=turns))
    return Image.fromarray(rgb)


class Thumbnails(Stage):
    """Write ``poster.<fmt>`` (the first frame that is not blank) and a picture every ``every`` seconds.

    Picture ``t0004.000.jpg`` is the first frame shown at or after 4 s (within
    half a frame). Outputs go to ``OUT/thumbnails/<file>/``. Frames are turned
    into pictures at once: a frame's memory may be reused after ``process``.
    """

    accepts = (FRAME,)
    report_fields = (pa.field("poster", pa.string()), pa.field("thumbnail_count", pa.int32()))

    def __init__(self, *, every: float = 2.0, width: int = 320, poster: bool = True, fmt: str = "jpg",
                 quality: int = 85, poster_search_s: float = 10.0, name: str | None = None) -> None:
        super().__init__(name)
        if fmt.lower() not in _FORMATS:
            raise ValueError(f"thumbnail format {fmt!r} is not one of {', '.join(_FORMATS)}")
        self.every = every
        self.width = width
        self.poster = poster
        self.fmt = fmt.lower()
        self.quality = quality
        self.poster_search_s = poster_search_s

    def begin(self, ctx: StageContext) -> None:
        ctx.state.update(next_t=0.0, count=0, poster_done=not self.poster, best=None, best_std=-1.0)

    def process(self, item: VideoFrameItem, ctx: StageContext) -> None:
        st = ctx.state
        if not st["poster_done"]:
            blank, std = is_blank(item)
            if not blank or item.time > self.poster_search_s:
                self._save(frame_to_image(item, width=self.width), ctx, "poster")
                st["poster_done"] = True
                st["best"] = None
            elif std > st["best_std"]:  # keep a picture, not the frame: its memory is reused
                st["best"], st["best_std"] = frame_to_image(item, width=self.width), std
        if self.every > 0:
            fps = float(item.stream.fps) if item.stream.fps else 30.0
            half_frame = 0.5 / fps
            image = None
            while st["next_t"] <= item.time + half_frame:
                image = image or frame_to_image(item, width=self.width)
                self._save(image, ctx, f"t{st['next_t']:08.3f}")
                st["count"] += 1
                st["next_t"] += self.every
        return None

    def end(self, ctx: StageContext) -> None:
        st = ctx.state
        if not st["poster_done"] and st["best"] is not None:  # every frame was blank: take the liveliest
            self._save(st["best"], ctx, "poster")
        ctx.record(thumbnail_count=st["count"])
        return None

    def _save(self, image: Image.Image, ctx: StageContext, stem: str) -> None:
        buf = io.BytesIO()
        kwargs: dict[str, Any] = {"quality": self.quality} if self.fmt != "png" else {}
        image.save(buf, format=_FORMATS[self.fmt], **kwargs)
        path = write_atomic(ctx.output_path("thumbnails", f"{stem}.{self.fmt}"), buf.getvalue())
        ctx.add_output(path)
        if stem == "poster":
            ctx.record(poster=ctx.run.outputs[-1])
