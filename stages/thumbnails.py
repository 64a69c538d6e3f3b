"""``Thumbnails``: a poster image and pictures every N seconds or N evenly spaced, as JPEG, PNG or WebP."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline import FRAME, OutputError, PipelineDefinitionError, Stage, StageContext, write_atomic
from pipeline.presets import Option

from .colour import picture_colour, srgb_icc_profile, to_rgb24
from .frames import StreamInfo, VideoFrameItem
from .media import WORK_MODULES, display_size, rotation_turns

if TYPE_CHECKING:  # imported where used: building a pipeline loads none of them
    import pyarrow as pa
    from PIL import Image

__all__ = ["Thumbnails", "TimeTicks", "Sampling", "frame_to_image", "encode_image", "is_blank",
           "check_name_template", "IMAGE_FORMATS", "PICTURE_SIDE", "PICTURE_COUNT", "SECONDS_APART", "IMAGE_QUALITY"]

IMAGE_FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}

# What the picture stages take (their presets' options say the same).
PICTURE_SIDE = Option(int, min=16, max=8192)
"""A picture's width or height in pixels (a portrait 8192 wide is 14564 high: FFmpeg's scaler stops at 16384)."""
PICTURE_COUNT = Option(int, min=0, max=10_000)
"""How many evenly spaced pictures a file gives (0: none that way)."""
SECONDS_APART = Option(float, min=0)
"""Seconds between pictures (0: none that way)."""
IMAGE_QUALITY = Option(int, min=1, max=100)
"""JPEG or WebP quality."""


def is_blank(item: VideoFrameItem, *, min_std: float = 6.0, min_mean: float = 16.0) -> tuple[bool, float]:
    """Whether a frame is black or flat (a fade-in, a slate), and its contrast (luma std).

    An HDR frame is judged as it will be shown, tone-mapped (its PQ or HLG code values are not SDR luma).
    """
    import numpy as np
    colour = picture_colour(item)
    if colour.hdr:
        small = to_rgb24(item.frame, colour, 64, 36) @ np.array([0.2126, 0.7152, 0.0722])
    else:
        small = item.frame.reformat(width=64, height=36, format="gray").to_ndarray()
    std = float(small.std())
    return std < min_std or float(small.mean()) < min_mean, std


def frame_to_image(item: VideoFrameItem, width: int | None = None, height: int | None = None,
                   fit: tuple[int, int] | None = None) -> Image.Image:
    """The frame upright (rotation applied), scaled to ``width``, ``height`` or within ``fit``, aspect kept.

    Always SDR BT.709 R'G'B' (what ``encode_image`` tags as sRGB): converted with the source's own matrix and
    range, HDR (PQ, HLG) tone-mapped after scaling (``stages.colour``).
    """
    import numpy as np
    from PIL import Image
    frame = item.frame
    dw, dh = display_size(frame.width, frame.height, item.rotation, item.stream.sample_aspect)
    if fit:
        scale = min(fit[0] / dw, fit[1] / dh)
        tw, th = max(1, round(dw * scale)), max(1, round(dh * scale))
    elif width:
        tw, th = width, max(1, round(width * dh / dw))
    elif height:
        tw, th = max(1, round(height * dw / dh)), height
    else:
        tw, th = dw, dh
    turns = rotation_turns(item.rotation)
    sw, sh = (th, tw) if turns % 2 else (tw, th)
    rgb = to_rgb24(frame, picture_colour(item), sw, sh)
    if turns:
        rgb = np.ascontiguousarray(np.rot90(rgb, k=turns))
    return Image.fromarray(rgb)


def encode_image(image: Image.Image, fmt: str, quality: int) -> bytes:
    """``image`` as JPEG, PNG or WebP bytes, tagged with an sRGB ICC profile (its pixels are BT.709 R'G'B')."""
    if fmt.lower() not in IMAGE_FORMATS:
        raise ValueError(f"image format {fmt!r} is not one of {', '.join(IMAGE_FORMATS)}")
    buf = io.BytesIO()
    kwargs: dict[str, Any] = {"quality": quality} if fmt.lower() != "png" else {}
    kwargs["icc_profile"] = srgb_icc_profile()
    image.save(buf, format=IMAGE_FORMATS[fmt.lower()], **kwargs)
    return buf.getvalue()


class TimeTicks:
    """The times a picture is wanted at, and which frame shows each one.

    Every ``every`` seconds from 0, or ``count`` times evenly spaced over the
    file (the middle of each of ``count`` equal parts, so neither a fade-in nor
    the last frame). A tick is shown by the first frame at or after it, within
    half a frame.
    """

    def __init__(self, every: float = 0.0, count: int = 0) -> None:
        if every < 0 or count < 0:
            raise ValueError("every and count must not be negative")
        self.every = every
        self.count = count
        self.times: list[float] | None = None
        self.next = 0

    def begin(self, item: VideoFrameItem) -> None:
        """Fix the tick times from the file's duration (``count`` mode)."""
        self._begin(item.stream)

    def _begin(self, stream: StreamInfo) -> None:
        if self.count:
            duration = stream.duration_s
            if not duration and stream.frame_count and stream.fps:
                duration = stream.frame_count / float(stream.fps)
            duration = duration or 0.0
            self.times = [duration * (i + 0.5) / self.count for i in range(self.count)]
        self.next = 0

    def due(self, item: VideoFrameItem) -> list[float]:
        """The tick times ``item`` is the picture for (none, one, or several when frames are sparse)."""
        return self.due_at(item.time, item.stream)

    def due_at(self, time: float, stream: StreamInfo) -> list[float]:
        """The tick times a frame of ``stream`` at ``time`` is the picture for (``due`` without the pixels).

        ``Decode`` asks it of the frames it decodes, and of those a seek skips, to give only the frames asked for.
        """
        if not self.every and not self.count:
            return []
        if self.times is None and self.count:
            self._begin(stream)
        fps = float(stream.fps) if stream.fps else 30.0
        limit = time + 0.5 / fps + 1e-6  # a tie between two frames goes to the earlier
        out = []
        while True:
            t = self._time(self.next)
            if t is None or t > limit:
                return out
            out.append(t)
            self.next += 1

    def _time(self, n: int) -> float | None:
        if self.times is not None:
            return self.times[n] if n < len(self.times) else None
        return n * self.every

    def after(self, t: float) -> float | None:
        """The tick after the one at ``t`` (None past the last of ``count``)."""
        if self.times is not None:
            later = [x for x in self.times if x > t + 1e-9]
            return later[0] if later else None
        return t + self.every


@dataclass(frozen=True, slots=True)
class Sampling:
    """The frames a picture stage needs of a ``Decode``, when not every one (``Decode(sampling=...)``).

    Those shown at the ticks of ``TimeTicks(every, count)``; with
    ``poster_search_s``, also every frame from the start to the first that
    ``is_blank`` does not call blank, or the first past that many seconds (a
    poster's search); with ``last``, the last frame too (where the video ends).
    Given these alone, the stage writes what it would have written from every frame.
    """

    every: float = 0.0
    count: int = 0
    poster_search_s: float | None = None
    last: bool = False


def check_name_template(template: str, **fields: Any) -> str:
    """``template`` filled with ``fields``; refuses a result that is not a plain file name."""
    name = template.format(**fields)
    if not name or "/" in name or "\\" in name or name in (".", "..") or "\0" in name:
        raise OutputError(f"name template {template!r} gives {name!r}, which is not a plain file name")
    return name


class Thumbnails(Stage):
    """Write ``poster.<fmt>`` (the first frame that is not blank) and pictures every N seconds or N times.

    ``every`` seconds (picture ``t0004.000.jpg`` is the first frame shown at or
    after 4 s, within half a frame) or ``count`` evenly spaced pictures; sized
    by ``width``, ``height`` or within a ``fit`` box; JPEG, PNG or WebP. Names
    come from the ``filename`` template (fields: ``time``, ``index``, ``n``, ``stem``) and never
    leave ``OUT/thumbnails/<file>/``. Frames are turned into pictures at once:
    a frame's memory may be reused after ``process``.
    """

    accepts = (FRAME,)
    cacheable = True
    cache_version = "2"  # pictures in SDR BT.709 (HDR tone-mapped), tagged sRGB
    preload = WORK_MODULES

    @property
    def report_fields(self) -> tuple[pa.Field, ...]:  # built for the report: pyarrow loads then
        import pyarrow as pa

        from pipeline.observe import card_field
        return (card_field("poster", pa.string(), "poster"), pa.field("thumbnail_count", pa.int32()))

    def __init__(self, *, every: float = 2.0, count: int = 0, width: int | None = 320, height: int | None = None,
                 fit: tuple[int, int] | None = None, poster: bool = True, fmt: str = "jpg", quality: int = 85,
                 poster_search_s: float = 10.0, filename: str = "t{time:08.3f}", name: str | None = None) -> None:
        super().__init__(name)
        if not isinstance(fmt, str) or fmt.lower() not in IMAGE_FORMATS:
            raise PipelineDefinitionError(f"thumbnail format {fmt!r} is not one of {', '.join(IMAGE_FORMATS)}")
        check_name_template(filename, time=1.5, index=45, n=1, stem="clip")
        where = type(self).__name__
        SECONDS_APART.validate("every", every, where)
        PICTURE_COUNT.validate("count", count, where)
        for side, value in (("width", width), ("height", height), *zip(("fit width", "fit height"), fit or ())):
            if value is not None:
                PICTURE_SIDE.validate(side, value, where)
        if fit is not None and len(fit) != 2:
            raise PipelineDefinitionError(f"{where} fit={fit!r}: must be a (width, height) pair")
        IMAGE_QUALITY.validate("quality", quality, where)
        SECONDS_APART.validate("poster_search_s", poster_search_s, where)
        self.every = 0.0 if count else every
        self.count = count
        self.width = None if (height or fit) else width
        self.height = height
        self.fit = tuple(fit) if fit else None
        self.poster = poster
        self.fmt = fmt.lower()
        self.quality = quality
        self.poster_search_s = poster_search_s
        self.filename = filename

    def sampling(self) -> Sampling:
        """The frames this stage needs: its ticks' and, for the poster, the frames up to the first not blank."""
        return Sampling(self.every, self.count, self.poster_search_s if self.poster else None)

    def begin(self, ctx: StageContext) -> None:
        ctx.state.update(ticks=TimeTicks(self.every, self.count), count=0, poster_done=not self.poster,
                         best=None, best_std=-1.0)

    def _image(self, item: VideoFrameItem) -> Image.Image:
        return frame_to_image(item, width=self.width, height=self.height, fit=self.fit)

    def process(self, item: VideoFrameItem, ctx: StageContext) -> None:
        st = ctx.state
        picture_colour(item, ctx)
        if not st["poster_done"]:
            blank, std = is_blank(item)
            if not blank or item.time > self.poster_search_s:
                self._save(self._image(item), ctx, "poster")
                st["poster_done"] = True
                st["best"] = None
            elif std > st["best_std"]:  # keep a picture, not the frame: its memory is reused
                st["best"], st["best_std"] = self._image(item), std
        image = None
        for t in st["ticks"].due(item):
            image = image or self._image(item)
            st["count"] += 1
            stem = check_name_template(self.filename, time=t, index=item.index, n=st["count"],
                                       stem=ctx.file.path.rsplit("/", 1)[-1].rsplit(".", 1)[0])
            self._save(image, ctx, stem)
        return None

    def end(self, ctx: StageContext) -> None:
        st = ctx.state
        if not st["poster_done"] and st["best"] is not None:  # every frame was blank: take the liveliest
            self._save(st["best"], ctx, "poster")
        ctx.record(thumbnail_count=st["count"])
        return None

    def _save(self, image: Image.Image, ctx: StageContext, stem: str) -> None:
        path = write_atomic(ctx.output_path("thumbnails", f"{stem}.{self.fmt}"),
                            encode_image(image, self.fmt, self.quality))
        ctx.add_output(path)
        if stem == "poster":
            ctx.record(poster=ctx.run.outputs[-1])
