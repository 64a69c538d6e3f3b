"""``Metadata``: what a file is, read from its headers (and its first frame, for rotation).

Rules worth knowing when reading a report row:

* **Frame count.** ``frame_count_exact`` is True when the count is the
  container's own per-frame index (MP4/MOV's sample table, ``nb_frames``) or
  a decoder in the same pipeline counted every frame. Any other count is an
  estimate: the header's ``nb_frames`` of a format that does not index every
  frame (AVI's stream length), else duration x average fps.
* **Variable frame rate.** ``fps`` is the average rate (frames over
  duration); ``base_fps`` is FFmpeg's ``r_frame_rate``, the lowest rate at
  which every timestamp falls on a tick. A constant-rate stream has the two
  equal. ``variable_frame_rate`` is True when they differ by more than 0.5%,
  or when FFmpeg found no such rate below the time base (``base_fps`` is then
  None); a base rate of exactly twice the average is an interlaced stream's
  field rate, not VFR. None when the average rate is unknown.
* **Interlacing.** ``field_order`` is the stream's field order as ffprobe
  names it: ``progressive``, ``tt`` (top field first), ``bb`` (bottom field
  first), ``tb`` or ``bt`` (coded in one order, shown in the other); None
  when the file does not say. ``interlaced`` is True when that order is an
  interlaced one or the first decoded frame is flagged interlaced. Both come
  from flags: footage whose flags were lost reads progressive or None here,
  though ``Decode`` (``deinterlace="auto"``) detects and deinterlaces it.
* **HDR.** ``hdr`` is True when the transfer is PQ (``smpte2084``) or HLG
  (``arib-std-b67``), or when the primaries are BT.2020 at 10 bits or more
  with no transfer tagged (an HDR master whose transfer tag was lost); an
  explicit SDR transfer (``bt709``, ``bt2020-10``...) is not HDR.
* **Aspect.** ``sar`` is the sample (pixel) aspect ratio as ``"num:den"``,
  None when the file does not say; ``dar`` is the display aspect ratio of the
  stored picture, width x SAR / height (square pixels when SAR is unknown),
  before rotation.
* **Colour.** Primaries, transfer, matrix and range carry FFmpeg's own names
  (``ffprobe`` prints the same); "unspecified" is None. ``mastering_max_nits``
  / ``mastering_min_nits`` (the SMPTE ST 2086 mastering display) and
  ``max_cll`` / ``max_fall`` (content light levels, nits) come from the first
  decoded frame's side data; None when absent. Dolby Vision's profile is not
  reported: PyAV 18 does not expose the stream's configuration record.
* **Streams.** ``video_stream`` / ``audio_stream`` are the numbers (among the
  file's video / audio streams, as ffmpeg's ``0:v:N``) of the streams described,
  those FFmpeg would choose (``choose_streams``: never cover art; the one with
  data, the default one, the largest), or those asked for; ``video_streams`` /
  ``audio_streams`` how many the file has. A chosen video stream that gives no
  frame yields to the next candidate, as in ``Decode``.
* **Tags.** The container's metadata tags (title, creation_time, encoder...)
  as one JSON object in a string column, since a Parquet column has one type.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from typing import TYPE_CHECKING, Any

from pipeline import FILE, FileItem, Stage, StageContext
from pipeline.storage import input_size

from .colour import COLOR_PRIMARIES, COLOR_RANGES, COLOR_SPACES, COLOR_TRANSFERS, HDR_TRANSFERS, Colour
from .decode import STREAM_NUMBER, frame_rate
from .deinterlace import INTERLACED_ORDERS, field_order_name
from .media import WORK_MODULES, choose_streams, display_size, open_media, sample_aspect

if TYPE_CHECKING:  # imported where used: building a pipeline loads none of them
    import av
    import pyarrow as pa

    METADATA_FIELDS: tuple[pa.Field, ...]
    """The Arrow fields of a :class:`MediaInfo`, in order (made on first use, by ``__getattr__``)."""

__all__ = ["MediaInfo", "probe", "Metadata", "METADATA_FIELDS", "COLOR_PRIMARIES", "COLOR_TRANSFERS",
           "COLOR_SPACES", "COLOR_RANGES"]


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """A file's container, video and audio facts, as one flat record (one report row)."""

    container: str
    container_long: str
    duration_s: float | None
    bit_rate: int | None
    stream_count: int
    video_stream: int | None = None
    video_streams: int = 0
    audio_stream: int | None = None
    audio_streams: int = 0
    size_bytes: int | None = None
    tags: str | None = None
    video_codec: str | None = None
    video_profile: str | None = None
    video_bit_rate: int | None = None
    width: int | None = None
    height: int | None = None
    display_width: int | None = None
    display_height: int | None = None
    sar: str | None = None
    sar_value: float | None = None
    dar: str | None = None
    dar_value: float | None = None
    fps: float | None = None
    base_fps: float | None = None
    variable_frame_rate: bool | None = None
    field_order: str | None = None
    interlaced: bool | None = None
    frame_count: int | None = None
    frame_count_exact: bool = False
    pix_fmt: str | None = None
    bit_depth: int | None = None
    color_primaries: str | None = None
    color_transfer: str | None = None
    color_space: str | None = None
    color_range: str | None = None
    hdr: bool | None = None
    mastering_max_nits: float | None = None
    mastering_min_nits: float | None = None
    max_cll: int | None = None
    max_fall: int | None = None
    rotation: int = 0
    has_audio: bool = False
    audio_codec: str | None = None
    audio_sample_rate: int | None = None
    audio_channels: int | None = None
    audio_layout: str | None = None
    audio_bit_rate: int | None = None


@cache
def _metadata_fields() -> tuple[pa.Field, ...]:
    """The Arrow fields of a :class:`MediaInfo`, in order (``METADATA_FIELDS``)."""
    import pyarrow as pa
    types: dict[str, pa.DataType] = {
        "container": pa.string(), "container_long": pa.string(), "duration_s": pa.float64(),
        "bit_rate": pa.int64(), "stream_count": pa.int32(),
        "video_stream": pa.int32(), "video_streams": pa.int32(),
        "audio_stream": pa.int32(), "audio_streams": pa.int32(),
        "size_bytes": pa.int64(), "tags": pa.string(),
        "video_codec": pa.string(), "video_profile": pa.string(), "video_bit_rate": pa.int64(),
        "width": pa.int32(), "height": pa.int32(), "display_width": pa.int32(), "display_height": pa.int32(),
        "sar": pa.string(), "sar_value": pa.float64(), "dar": pa.string(), "dar_value": pa.float64(),
        "fps": pa.float64(), "base_fps": pa.float64(), "variable_frame_rate": pa.bool_(),
        "field_order": pa.string(), "interlaced": pa.bool_(),
        "frame_count": pa.int64(), "frame_count_exact": pa.bool_(), "pix_fmt": pa.string(),
        "bit_depth": pa.int32(), "color_primaries": pa.string(), "color_transfer": pa.string(),
        "color_space": pa.string(), "color_range": pa.string(), "hdr": pa.bool_(),
        "mastering_max_nits": pa.float64(), "mastering_min_nits": pa.float64(), "max_cll": pa.int32(),
        "max_fall": pa.int32(),
        "rotation": pa.int32(), "has_audio": pa.bool_(), "audio_codec": pa.string(),
        "audio_sample_rate": pa.int32(), "audio_channels": pa.int32(), "audio_layout": pa.string(),
        "audio_bit_rate": pa.int64(),
    }
    from pipeline.observe import card_field
    return tuple(card_field(f.name, types[f.name], *_ON_CARD[f.name]) if f.name in _ON_CARD
                 else pa.field(f.name, types[f.name]) for f in dataclasses.fields(MediaInfo))


_ON_CARD = {  # what the report page shows of a file's metadata: (role, label, unit)
    "duration_s": ("fact", "duration", "s"), "display_width": ("fact", "picture"),
    "display_height": ("fact", "picture"), "fps": ("fact", "frame rate", "fps"), "video_codec": ("fact", "video"),
    "audio_codec": ("fact", "audio"), "audio_layout": ("fact", "channels"), "hdr": ("flag", "HDR"),
    "variable_frame_rate": ("flag", "VFR"), "interlaced": ("flag", "interlaced"), "rotation": ("flag", "rotated"),
}


def __getattr__(name: str) -> Any:
    """``METADATA_FIELDS``, made on first use: pyarrow loads then, not when a pipeline is built."""
    if name == "METADATA_FIELDS":
        return _metadata_fields()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Demuxers whose nb_frames is their index of every frame (MP4/MOV's sample table).
_INDEXED_FORMATS = frozenset({"mov", "mp4"})
_VFR_TOLERANCE = 0.005


def probe(path: str, *, video_stream: int | None = None, audio_stream: int | None = None) -> MediaInfo:
    """Read ``path``'s facts from its headers; decodes one frame to learn its rotation, pixel format and colour.

    That frame is the first keyframe, decoded alone (``_first_frame``): a
    probe costs about one keyframe's decode, however long the file.

    The streams described are FFmpeg's choice, or the numbers asked for
    (``video_stream`` / ``audio_stream``, as ffmpeg's ``0:v:N`` / ``0:a:N``).
    """
    info, framed, fallbacks = _probe(path, video_stream, audio_stream)
    for number in fallbacks:  # as Decode does: a chosen stream that gives no frame yields to the next candidate
        if framed:
            break
        retry, framed, _ = _probe(path, number, audio_stream)
        if framed:
            info = retry
    return info


def _probe(path: str, video_stream: int | None, audio_stream: int | None) -> tuple[MediaInfo, bool, tuple[int, ...]]:
    """The facts of the streams chosen, whether the video stream gave a frame, and the other video candidates."""
    from ._av import av
    with open_media(path, probe=False) as c:
        duration = c.duration / av.time_base if c.duration else None
        choice = choose_streams(path, c, video=video_stream, audio=audio_stream)
        info: dict[str, Any] = dict(
            container=c.format.name, container_long=c.format.long_name, duration_s=duration,
            bit_rate=c.bit_rate or None, stream_count=len(c.streams), **choice.report(),
            size_bytes=input_size(path), tags=_tags_json(c.metadata))
        video, a = choice.video, choice.audio
        framed = False
        if video is not None:
            facts, framed = _video_facts(c, video, duration)
            info.update(facts)
        if a is not None:
            info.update(has_audio=True, audio_codec=a.codec_context.name, audio_sample_rate=a.rate or None,
                        audio_channels=a.channels or None, audio_layout=_layout_name(a),
                        audio_bit_rate=a.codec_context.bit_rate or None)
        return MediaInfo(**info), framed, choice.video_fallbacks


def _video_facts(c: Any, v: Any, duration: float | None) -> tuple[dict[str, Any], bool]:
    """The video stream's facts, and whether it gave a frame (what its rotation, format and colour come from)."""
    cc = v.codec_context
    stream_duration = float(v.duration * v.time_base) if v.duration and v.time_base else None
    if duration is None:
        duration = stream_duration
    rate = frame_rate(v, duration)
    fps = float(rate) if rate else None
    base, vfr = _base_rate(v, rate)
    count, exact = _frame_count(c, v, stream_duration or duration, fps)
    first = _first_frame(c, v)  # before reading cc.pix_fmt, colour and field order: the decoded frame sets them
    rotation = int(first.rotation or 0) if first is not None else 0
    woven = bool(first.interlaced_frame) if first is not None else False
    field_order = field_order_name(cc.field_order)
    colour = Colour.from_frame(first) if first is not None else None
    mastering = colour.mastering if colour is not None else None
    sar = sample_aspect(v)
    dw, dh = display_size(cc.width, cc.height, rotation, sar)
    dar = Fraction(cc.width, cc.height) * (sar or 1) if cc.width and cc.height else None
    depth = _bit_depth(cc.pix_fmt)
    primaries = COLOR_PRIMARIES.get(int(cc.color_primaries))
    transfer = COLOR_TRANSFERS.get(int(cc.color_trc))
    hdr = transfer in HDR_TRANSFERS or (
        transfer is None and primaries == "bt2020" and depth is not None and depth >= 10)
    return dict(
        duration_s=duration, video_codec=cc.name, video_profile=cc.profile,
        video_bit_rate=cc.bit_rate or None, width=cc.width, height=cc.height,
        display_width=dw, display_height=dh, sar=_ratio(sar), sar_value=float(sar) if sar else None,
        dar=_ratio(dar), dar_value=float(dar) if dar else None, fps=fps,
        base_fps=float(base) if base else None, variable_frame_rate=vfr, field_order=field_order,
        interlaced=field_order in INTERLACED_ORDERS or woven, frame_count=count,
        frame_count_exact=exact, pix_fmt=cc.pix_fmt, bit_depth=depth, color_primaries=primaries,
        color_transfer=transfer, color_space=COLOR_SPACES.get(int(cc.colorspace)),
        color_range=COLOR_RANGES.get(int(cc.color_range)), hdr=hdr,
        mastering_max_nits=mastering.max_nits if mastering is not None else None,
        mastering_min_nits=mastering.min_nits if mastering is not None else None,
        max_cll=colour.max_cll if colour is not None else None,
        max_fall=colour.max_fall if colour is not None else None, rotation=rotation), first is not None


def _base_rate(v: Any, average: Fraction | None) -> tuple[Fraction | None, bool | None]:
    """The stream's ``r_frame_rate`` (None when it is only its time base) and whether it is VFR."""
    base = _positive(v.base_rate)
    tick_rate = 1 / Fraction(v.time_base) if v.time_base else None
    if base is not None and base == tick_rate and base != average:
        base = None  # no common rate coarser than the time base: the timestamps are irregular
    if not average:
        return base, None
    if base is None:
        return None, True
    if base == 2 * average:  # an interlaced stream's field rate
        return base, False
    return base, abs(base - average) / average > _VFR_TOLERANCE


def _frame_count(c: Any, v: Any, duration: float | None, fps: float | None) -> tuple[int | None, bool]:
    """The frame count and whether it is exact (a per-frame index) rather than an estimate."""
    if v.frames:
        return v.frames, bool(_INDEXED_FORMATS & set(c.format.name.split(",")))
    if duration and fps:
        return round(duration * fps), False
    return None, False


def _bit_depth(pix_fmt: str | None) -> int | None:
    """Bits per sample of the pixel format's widest component (10 for ``yuv420p10le``)."""
    from ._av import av
    if not pix_fmt:
        return None
    try:
        components = av.VideoFormat(pix_fmt).components
    except (ValueError, av.FFmpegError):
        return None
    return max((comp.bits for comp in components), default=None) or None


def _positive(value: Any) -> Fraction | None:
    return Fraction(value) if value and value > 0 else None


def _ratio(value: Fraction | None) -> str | None:
    return f"{value.numerator}:{value.denominator}" if value else None


def _layout_name(stream: Any) -> str | None:
    try:
        return stream.layout.name or None
    except (AttributeError, ValueError):
        return None


def _tags_json(metadata: Any) -> str | None:
    tags = {str(k): str(v) for k, v in dict(metadata or {}).items()}
    return json.dumps(tags, ensure_ascii=False, sort_keys=True) if tags else None


def _first_frame(container: Any, stream: Any) -> av.VideoFrame | None:
    """The stream's first decoded frame, or None when it gives none (empty, or nothing decodes).

    Only its facts are wanted, not its pixels, so as little is decoded as can
    be: once a keyframe is in, the decoder is drained rather than fed on
    until its reordering delay lets a frame out (a stream with B-frames would
    otherwise cost two or three frames' decoding more). The frame is then the
    first in decoding order, which carries the stream's first parameter sets
    and SEI (mastering display, light levels). One thread: slice threads
    would shorten one multi-slice frame's decode at more CPU, and a batch
    fills the cores with files.
    """
    from ._av import av
    cc = stream.codec_context
    cc.thread_type = "NONE"
    cc.thread_count = 1
    try:
        for packet in container.demux(stream):
            frames = cc.decode(packet) if packet.size else []
            if not frames and packet.is_keyframe:
                frames = cc.decode(None)  # drain: what the decoder holds comes out now
                if not frames:
                    cc.flush_buffers()  # a keyframe that gave nothing: on to the next packets
            if frames:
                return frames[0]
        return next(iter(cc.decode(None)), None)  # the end: what a stream without a keyframe flag left held
    except av.FFmpegError:
        return None


class Metadata(Stage):
    """Record each file's :class:`MediaInfo` in its report row.

    The frame count here is the header's (or duration x fps) unless a decoder
    in the same pipeline already counted every frame. ``video_stream`` /
    ``audio_stream`` describe those streams (give the ``Decode`` of the same
    pipeline the same numbers).
    """

    accepts = (FILE,)
    cacheable = True
    cache_version = "4"  # 2: streams chosen and named; 3: field_order and interlaced; 4: HDR light levels
    preload = WORK_MODULES

    @property
    def report_fields(self) -> tuple[pa.Field, ...]:  # built for the report: pyarrow loads then
        import pyarrow as pa
        return _metadata_fields() + (pa.field("decode_errors", pa.int32()),)

    def __init__(self, name: str | None = None, *, video_stream: int | None = None,
                 audio_stream: int | None = None, **options: Any) -> None:
        super().__init__(name, **options)
        for key, value in (("video_stream", video_stream), ("audio_stream", audio_stream)):
            if value is not None:
                STREAM_NUMBER.validate(key, value, type(self).__name__)
        self.video_stream = video_stream
        self.audio_stream = audio_stream

    def process(self, item: FileItem, ctx: StageContext) -> None:
        info = dataclasses.asdict(probe(item.path, video_stream=self.video_stream, audio_stream=self.audio_stream))
        if ctx.run.record.get("frame_count_exact"):  # a decoder counted them already (Metadata ran after it)
            info.pop("frame_count")
            info.pop("frame_count_exact")
        ctx.record(**info)
        return None
