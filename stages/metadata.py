"""``Metadata``: what a file is, read from its headers (and its first frame, for rotation)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import av
import pyarrow as pa

from pipeline import FILE, FileItem, Stage, StageContext

from .decode import frame_rate
from .media import display_size, open_media

__all__ = ["MediaInfo", "probe", "Metadata", "METADATA_FIELDS"]


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """A file's container, video and audio facts, as one flat record (one report row)."""

    container: str
    container_long: str
    duration_s: float | None
    bit_rate: int | None
    stream_count: int
    video_codec: str | None = None
    video_profile: str | None = None
    width: int | None = None
    height: int | None = None
    display_width: int | None = None
    display_height: int | None = None
    fps: float | None = None
    frame_count: int | None = None
    frame_count_exact: bool = False
    pix_fmt: str | None = None
    rotation: int = 0
    has_audio: bool = False
    audio_codec: str | None = None
    audio_sample_rate: int | None = None
    audio_channels: int | None = None
    audio_layout: str | None = None


_ARROW_TYPES: dict[str, pa.DataType] = {
    "container": pa.string(), "container_long": pa.string(), "duration_s": pa.float64(),
    "bit_rate": pa.int64(), "stream_count": pa.int32(), "video_codec": pa.string(),
    "video_profile": pa.string(), "width": pa.int32(), "height": pa.int32(),
    "display_width": pa.int32(), "display_height": pa.int32(), "fps": pa.float64(),
    "frame_count": pa.int64(), "frame_count_exact": pa.bool_(), "pix_fmt": pa.string(),
    "rotation": pa.int32(), "has_audio": pa.bool_(), "audio_codec": pa.string(),
    "audio_sample_rate": pa.int32(), "audio_channels": pa.int32(), "audio_layout": pa.string(),
}
METADATA_FIELDS: tuple[pa.Field, ...] = tuple(
    pa.field(f.name, _ARROW_TYPES[f.name]) for f in dataclasses.fields(MediaInfo))
"""The Arrow fields of a :class:`MediaInfo`, in order."""


def probe(path: str) -> MediaInfo:
    """Read ``path``'s facts from its headers; decodes one frame only to learn its rotation."""
    with open_media(path) as c:
        duration = c.duration / av.time_base if c.duration else None
        info: dict[str, Any] = dict(
            container=c.format.name, container_long=c.format.long_name, duration_s=duration,
            bit_rate=c.bit_rate or None, stream_count=len(c.streams))
        if c.streams.video:
            v = c.streams.video[0]
            cc = v.codec_context
            if duration is None and v.duration and v.time_base:
                duration = info["duration_s"] = float(v.duration * v.time_base)
            rate = frame_rate(v, duration)
            fps = float(rate) if rate else None
            count = v.frames or (round(duration * fps) if duration and fps else None)
            rotation = _first_frame_rotation(c, v)
            dw, dh = display_size(cc.width, cc.height, rotation, v.sample_aspect_ratio)
            info.update(video_codec=cc.name, video_profile=cc.profile, width=cc.width, height=cc.height,
                        display_width=dw, display_height=dh, fps=fps, frame_count=count,
                        frame_count_exact=False, pix_fmt=cc.pix_fmt, rotation=rotation)
        if c.streams.audio:
            a = c.streams.audio[0]
            info.update(has_audio=True, audio_codec=a.codec_context.name, audio_sample_rate=a.rate,
                        audio_channels=a.channels, audio_layout=a.layout.name)
        return MediaInfo(**info)


def _first_frame_rotation(container: Any, stream: Any) -> int:
    try:
        for frame in container.decode(stream):
            return int(frame.rotation or 0)
    except av.FFmpegError:
        pass
    return 0


class Metadata(Stage):
    """Record each file's :class:`MediaInfo` in its report row.

    The frame count here is the header's (or duration x fps) unless a decoder
    in the same pipeline already counted every frame.
    """

    accepts = (FILE,)
    report_fields = METADATA_FIELDS + (pa.field("decode_errors", pa.int32()),)

    def process(self, item: FileItem, ctx: StageContext) -> None:
        info = dataclasses.asdict(probe(item.path))
        if ctx.run.record.get("frame_count_exact"):  # a decoder counted them already
            info.pop("frame_count")
            info.pop("frame_count_exact")
        ctx.record(**info)
        return None
