"""Encoding: ``Encode`` writes each file's pictures (and audio) with a chosen codec into MP4, MOV, MKV or WebM.

``Proxy`` is ``Encode`` configured for small H.264 review copies, plus an
optional copy-through for sources that already are one. One code path
encodes for both::

    VideoFrameItem ─ scale (pad), turn upright ─ video encoder ─┐
    AudioFrameItem ─ audio encoder (when not remuxed) ──────────┼─ muxer ─ hidden part file
    source file ─ demux the decoded audio stream (remux) ───────┘   ─ commit (OUT/<category>/<file><ext>)

A long file may be encoded in parts (``splits``; ``Decode``'s ``split_s`` says
which files): each part's pictures, from one keyframe to the next part's, are
encoded by their own worker into a hidden scratch file with the same
settings, and ``join`` copies the parts' packets, without re-encoding, into
one output, with the sound of the whole file (remuxed or encoded) — the same
frames at the same times as one worker's encode::

    part 0 ─ decode its span ─ scale ─ encoder ─ scratch 0 ─┐
    part 1 ─ decode its span ─ scale ─ encoder ─ scratch 1 ─┼─ join: packets in order, stamps from each
    ...                                                     │  part's own, decode stamps made anew
    source file ─ audio (remux, or decode + encode) ────────┘  ─ commit (OUT/<category>/<file><ext>)

The output's size is fixed at the first picture. A stream that changes size
later has each picture scaled to it, its aspect kept: one of another shape is
fitted inside and padded with black (letterbox or pillarbox), never stretched.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pipeline import (
    AUDIO,
    FRAME,
    InputError,
    PartialOutput,
    Piece,
    PipelineDefinitionError,
    Stage,
    StageContext,
    StageError,
)
from pipeline.dataplane import transfer
from pipeline.errors import InvalidOption, UnreadableFile
from pipeline.outputs import fit_name
from pipeline.presets import Option
from pipeline.storage import is_url, open_input

from .colour import (
    SDR_BT709,
    Colour,
    picture_colour,
    sws_matrix,
    sws_range,
    tag_encoder,
    tag_frame,
    to_sdr_frame,
    x265_hdr_params,
)
from .frames import AudioFrameItem, VideoFrameItem
from .media import WORK_MODULES, choose_streams, display_size, fit_within, open_container, rotation_turns
from .transforms import rotate_frame

if TYPE_CHECKING:  # imported where used: building a pipeline loads none of them
    import av
    import pyarrow as pa

__all__ = ["Encode", "Proxy", "VideoCodec", "VIDEO_CODECS", "CONTAINERS", "AudioMode", "HdrMode", "ENCODER_PRESETS",
           "ENCODER_CRF", "VIDEO_SIDE", "CATEGORY"]


def _output_file(ctx: StageContext, category: str, extension: str) -> Path:
    """``OUT/category/<file key><extension>``; a name over 255 bytes is cut, ending in ``~<hash>`` (``fit_name``).

    The extension is added, never swapped for a suffix the key has (``day1.v2`` gives ``day1.v2.mp4``), so the
    name can outgrow the input's own: a 255-byte ``clip.ts`` gives a 256-byte ``clip.mp4``.
    """
    path = ctx.output_path(category)
    return path.with_name(fit_name(path.name + extension))


AudioMode = Literal["auto", "encode", False]
HdrMode = Literal["auto", "tonemap", "keep"]
_HDR_MODES = ("auto", "tonemap", "keep")


def _rotate_444(frame: av.VideoFrame, turns: int, deep: bool) -> av.VideoFrame:
    """``frame`` turned as full-resolution 4:4:4 (16-bit when ``deep``), for targets that are not 4:2:0."""
    import numpy as np

    from ._av import av
    if deep:  # PyAV gives yuv444p16le as H x W x 3
        arr = frame.reformat(format="yuv444p16le").to_ndarray()
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(np.rot90(arr, k=turns, axes=(0, 1))),
                                          format="yuv444p16le")
    arr = frame.reformat(format="yuv444p").to_ndarray()  # 3 x H x W
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(np.rot90(arr, k=turns, axes=(1, 2))), format="yuv444p")


# Codecs and containers ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VideoCodec:
    """How ``Encode`` drives one FFmpeg encoder: its defaults and which options its knobs map to."""

    pix_fmt: str | None  # None: keep the source's format when the encoder takes it, else yuv420p
    crf: str | None = None  # the encoder option that ``crf`` sets (None: no constant-quality mode)
    preset: str | None = None  # the encoder option that ``preset`` sets
    default_preset: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)  # always set (before the user's own)
    crf_options: Mapping[str, str] = field(default_factory=dict)  # set with a crf (VP9 needs b=0)


VIDEO_CODECS: dict[str, VideoCodec] = {
    "libx264": VideoCodec("yuv420p", crf="crf", preset="preset", default_preset="medium"),
    "libx265": VideoCodec("yuv420p", crf="crf", preset="preset", default_preset="medium"),
    "libvpx-vp9": VideoCodec("yuv420p", crf="crf", preset="cpu-used", default_preset="4",
                             options={"deadline": "good", "row-mt": "1"}, crf_options={"b": "0"}),
    "libsvtav1": VideoCodec("yuv420p", crf="crf", preset="preset", default_preset="8"),
    # ProRes: ``preset`` is the profile (proxy, lt, standard, hq, 4444); vendor apl0 as Apple writes it.
    "prores_ks": VideoCodec("yuv422p10le", preset="profile", default_preset="hq", options={"vendor": "apl0"}),
    # FFV1 version 3 with per-slice CRCs: the archival settings (lossless; no crf).
    "ffv1": VideoCodec(None, options={"level": "3", "slicecrc": "1"}),
}
"""The video encoders ``Encode`` knows."""

_X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                 "placebo")
ENCODER_PRESETS: dict[str, Option] = {
    "libx264": Option(str, choices=_X264_PRESETS),
    "libx265": Option(str, choices=_X264_PRESETS),
    "libvpx-vp9": Option(int, min=-8, max=8),  # cpu-used
    "libsvtav1": Option(int, min=-2, max=13),
    "prores_ks": Option(str, choices=("auto", "proxy", "lt", "standard", "hq", "4444", "4444xq")),  # profile
}
"""What ``preset`` takes for each encoder that has one (FFV1 has none), as this FFmpeg's encoders take it."""
ENCODER_CRF: dict[str, Option] = {
    "libx264": Option(float, min=0, max=51),
    "libx265": Option(float, min=0, max=51),
    "libvpx-vp9": Option(int, min=0, max=63),
    "libsvtav1": Option(int, min=0, max=63),
}
"""What ``crf`` takes for each encoder with a constant-quality mode (ProRes and FFV1 have none)."""
VIDEO_SIDE = Option(int, min=16, max=8192)
"""The bounds of ``max_width`` and ``max_height``."""


def _is_folder_name(name: str) -> bool:
    parts = name.split("/")
    return bool(name) and "\\" not in name and "\0" not in name and all(p not in ("", ".", "..") for p in parts)


CATEGORY = Option(str, test=_is_folder_name, what="a folder name inside the output folder (relative, no '..')")
"""What ``category`` takes: where under the output folder the files go."""

CONTAINERS: dict[str, str] = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}
"""Output extensions and the FFmpeg muxer each one picks."""

_VIDEO_IN = {
    "mp4": {"libx264", "libx265", "libvpx-vp9", "libsvtav1"},
    "mov": {"libx264", "libx265", "prores_ks"},
    "matroska": set(VIDEO_CODECS),
    "webm": {"libvpx-vp9", "libsvtav1"},
}
# Source audio codecs each container takes unchanged (a conservative list: what players accept).
_REMUXABLE = {
    "mp4": {"aac", "mp3", "alac", "ac3", "eac3"},
    "mov": {"aac", "mp3", "alac", "ac3", "eac3", "pcm_s16le", "pcm_s24le", "pcm_s16be", "pcm_s24be"},
    "matroska": {"aac", "mp3", "opus", "vorbis", "flac", "alac", "ac3", "eac3", "dts",
                 "pcm_s16le", "pcm_s24le", "pcm_f32le"},
    "webm": {"opus", "vorbis"},
}
_OPUS_RATES = (48000, 24000, 16000, 12000, 8000)
_PART_FORMAT = "matroska"  # a part's scratch file (any encoder goes in; the join takes its stamps from the encode)
_PART_SUFFIX = ".mkv"
# A first picture later than this means a trimmed start (Decode's ``start``): remuxed sound that
# ends before it is dropped. An earlier one is a stream offset, where everything stays (the AAC
# priming packet before 0 s included).
_TRIM_TOLERANCE_S = 0.25
_LOSSY_AUDIO = {"aac", "libopus"}


def _bit_depth(pix_fmt: str) -> int:
    """Bits per sample of the pixel format's widest component."""
    from ._av import av
    return max((c.bits for c in av.VideoFormat(pix_fmt).components), default=8)


def _is_rgb(pix_fmt: str) -> bool:
    from ._av import av
    return bool(av.VideoFormat(pix_fmt).is_rgb)


def _pixel_formats(codec: str) -> set[str]:
    """The pixel formats the encoder ``codec`` takes."""
    from ._av import av
    return {f.name for f in (av.codec.Codec(codec, "w").video_formats or [])}


def _default_audio_codec(video_codec: str, container: str) -> str:
    """Opus for WebM, PCM beside ProRes, FLAC beside FFV1, else AAC."""
    if container == "webm":
        return "libopus"
    if video_codec == "prores_ks":
        return "pcm_s16le"
    if video_codec == "ffv1" and container == "matroska":
        return "flac"
    return "aac"


# Remuxing the source's audio ---------------------------------------------------------


class _AudioRemux:
    """The source file's audio stream (the one ``Decode`` chose), copied packet by packet into the output.

    Timestamps move by the same origin the decoder takes off the pictures, so
    sound and picture keep their sync; packets are muxed as the pictures
    reach their time, so the two streams interleave.
    """

    def __init__(self, source: Any, stream: Any, target: Any, origin_s: float, first_picture_s: float) -> None:
        self.source = source
        self.packets = source.demux(stream)
        self.target = target
        self.shift = round(origin_s / stream.time_base)
        self.time_base = stream.time_base
        self.skip_before_s = first_picture_s  # a trimmed start (Decode's ``start``) drops the sound before it
        self.next: Any = None
        self.done = False

    def mux_until(self, container: Any, seconds: float | None) -> None:
        """Mux the packets that start at or before ``seconds`` (all that are left for None)."""
        while not self.done:
            if self.next is None:
                self.next = self._read()
                if self.next is None:
                    self.done = True
                    return
            packet, start_s = self.next
            if seconds is not None and start_s > seconds:
                return
            self.next = None
            container.mux(packet)

    def _read(self) -> tuple[Any, float] | None:
        for packet in self.packets:
            if (packet.dts is None and packet.pts is None) or packet.size == 0:
                continue  # the demuxer's end-of-stream marker
            if packet.pts is not None:
                packet.pts -= self.shift
            if packet.dts is not None:
                packet.dts -= self.shift
            stamp = packet.pts if packet.pts is not None else packet.dts
            start_s = float(stamp * self.time_base)
            end_s = start_s + float((packet.duration or 0) * self.time_base)
            if self.skip_before_s > _TRIM_TOLERANCE_S and end_s <= self.skip_before_s:
                continue
            packet.stream = self.target
            return packet, start_s
        return None

    def close(self) -> None:
        self.source.close()


class _AudioEncode:
    """The source file's audio stream decoded and encoded into the output, as the pictures reach its time (the
    sound of a file whose pictures were encoded in parts): what ``Encode`` does with ``Decode``'s sound."""

    def __init__(self, source: Any, stream: Any, encoder: Any, origin_s: float) -> None:
        self.source = source
        self.frames = self._decoded(source.demux(stream), origin_s)
        self.encoder = encoder
        self.done = False

    @staticmethod
    def _decoded(packets: Iterator[Any], origin_s: float) -> Iterator[tuple[Any, float]]:
        from ._av import av
        for packet in packets:
            try:
                frames = packet.decode()
            except av.FFmpegError:  # a corrupt packet: skipped, as Decode skips it
                continue
            for frame in frames:
                t = float(frame.pts * frame.time_base) - origin_s if frame.pts is not None else 0.0
                if t >= 0:
                    yield frame, t

    def mux_until(self, container: Any, seconds: float | None) -> None:
        """Encode and mux the sound that starts at or before ``seconds`` (all that is left for None)."""
        while not self.done:
            if seconds is not None and self._peek is not None and self._peek[1] > seconds:
                return
            found = self._peek if self._peek is not None else next(self.frames, None)
            self._peek = None
            if found is None:
                self.done = True
                for packet in self.encoder.encode(None):
                    container.mux(packet)
                return
            if seconds is not None and found[1] > seconds:
                self._peek = found
                return
            frame = found[0]
            frame.pts = None  # the encoder numbers samples itself, as Encode has it
            for packet in self.encoder.encode(frame):
                container.mux(packet)

    _peek: tuple[Any, float] | None = None

    def close(self) -> None:
        self.source.close()


@dataclass(frozen=True, slots=True)
class _EncodedPart:
    """What one part of a file's encode hands to the join: its scratch file and the stamps of its pictures."""

    path: str
    stamps: list[int]  # in the order the pictures were given (shown)
    time_base: Fraction
    size: tuple[int, int]
    codec: str
    first_time: float  # the part's first picture, seconds of file time
    audio_stream: int | None  # the sound Decode chose (its number among the file's audio streams)
    audio_rate: int | None
    audio_channels: int | None
    video_stream: int | None


def _joined_packets(sources: list[Any], parts: list[_EncodedPart], video: Any) -> Iterator[tuple[Any, float]]:
    """The parts' packets in order, for ``video``: each one's presentation stamp the one its picture was given
    (a scratch container may round or shift stamps: packets are matched to pictures by rank), decode stamps
    made anew for the whole (each part's encoder started its own before the part's first picture).

    Two passes over the scratch files: the stamps first (the deepest reordering of any part sets the decode
    delay), then the packets, one at a time.
    """
    from ._av import av
    ranks: list[list[int]] = []  # per part, per packet in decode order: its picture's number in shown order
    shown: list[int] = []  # every picture's stamp, in shown order
    delay = 0
    for source, part in zip(sources, parts, strict=True):
        stamps = [p.pts for p in source.demux(source.streams.video[0]) if p.size]
        if len(stamps) != len(part.stamps):
            raise ValueError(f"a part has {len(stamps)} packets for {len(part.stamps)} pictures")
        rank = [0] * len(stamps)
        for r, n in enumerate(sorted(range(len(stamps)), key=lambda n: (stamps[n], n))):
            rank[n] = r
        own = sorted(part.stamps)
        if shown and own and own[0] <= shown[-1]:
            raise ValueError("the parts' pictures overlap in time")
        delay = max(delay, max((i - r for i, r in enumerate(rank)), default=0))
        ranks.append([len(shown) + r for r in rank])
        shown += own
    step = shown[1] - shown[0] if len(shown) > 1 else 1
    tb = parts[0].time_base
    i = 0
    for part, rank in zip(parts, ranks, strict=True):
        with av.open(part.path) as again:
            packets = (p for p in again.demux(again.streams.video[0]) if p.size)
            for packet, r in zip(packets, rank, strict=True):
                packet.pts = shown[r]
                packet.dts = shown[i - delay] if i >= delay else shown[0] - (delay - i) * step
                packet.duration = (shown[r + 1] - shown[r]) if r + 1 < len(shown) else step
                packet.time_base = tb
                packet.stream = video
                i += 1
                yield packet, float(packet.pts * tb)


def _open_source_audio(path: str, number: int | None) -> tuple[Any, Any] | None:
    """The source file opened again and its audio stream ``number`` (the one ``Decode`` decoded), or None.

    ``number`` None (a decode without audio) takes the stream ``Decode`` would
    have chosen (``choose_streams``). None when there is no audio, or the file
    cannot be read again.
    """
    from ._av import av
    try:
        source = open_container(path)
    except (av.FFmpegError, UnreadableFile):  # gone or changed since; a store that fails (StorageError) fails the
        return None                            # file rather than leave its proxy silent
    try:
        stream = choose_streams(path, source, audio=number).audio
    except InputError:  # the stream is gone (the file changed since it was decoded)
        stream = None
    if stream is None:
        source.close()
        return None
    return source, stream


def _origin_seconds(container: Any, video_number: int | None) -> float:
    """The time the decoder counts pictures from (as ``Decode`` does): the container's start time, else
    that of the video stream it decoded."""
    from ._av import av
    if container.start_time is not None:
        return container.start_time / av.time_base
    videos = container.streams.video
    video = videos[video_number] if video_number is not None and video_number < len(videos) else None
    if video is not None and video.start_time is not None and video.time_base:
        return float(video.start_time * video.time_base)
    return 0.0


# Fitting pictures of another shape -----------------------------------------------------

# A picture whose shape is within this many pixels of the output's is scaled to fill it: padding
# a line or two that rounding left over would only draw a black hairline at the edge.
_PAD_SLACK = 2


def _fit_inside(width: int, height: int, box_width: int, box_height: int) -> tuple[int, int]:
    """The size, even, at which a ``width`` x ``height`` picture fits the box with its aspect kept (the box
    itself when the shapes agree to within rounding)."""
    scale = min(box_width / width, box_height / height)
    w, h = round(width * scale), round(height * scale)
    if abs(w - box_width) <= _PAD_SLACK and abs(h - box_height) <= _PAD_SLACK:
        return box_width, box_height
    return max(2, w - w % 2), max(2, h - h % 2)


class _Padder:
    """Pads pictures of one size and pixel format to the output size, centred on black.

    FFmpeg's pad filter, not ``transforms.pad_pixels``: an encoder's pixel
    format may be any (10-bit 4:2:2 for ProRes, the source's for FFV1), and
    the filter keeps each one's chroma planes aligned and knows its black.
    """

    def __init__(self, key: tuple[tuple[int, int], str], width: int, height: int) -> None:
        from ._av import av
        (w, h), fmt = key
        self.key = key
        self.graph = av.filter.Graph()
        source = self.graph.add_buffer(width=w, height=h, format=fmt, time_base=Fraction(1, 1))
        pad = self.graph.add("pad", f"{width}:{height}:(ow-iw)/2:(oh-ih)/2:black")
        sink = self.graph.add("buffersink")
        source.link_to(pad)
        pad.link_to(sink)
        self.graph.configure()

    def pad(self, picture: av.VideoFrame) -> av.VideoFrame:
        """``picture`` centred in the output size."""
        self.graph.push(picture)
        return self.graph.pull()


# The stage ---------------------------------------------------------------------------


class Encode(Stage):
    """Encode each file's pictures, upright and fitted in ``max_width`` x ``max_height``, with its audio.

    Written to ``OUT/<category>/<file><extension>`` atomically (a hidden part
    file renamed on success, removed on failure). The container follows the
    extension (.mp4, .mov, .mkv, .webm). Rate control: ``crf`` (constant
    quality) or ``bitrate`` (bits/s); ``preset`` is the encoder's speed preset
    (x264/x265/SVT-AV1 ``preset``, VP9 ``cpu-used``, ProRes profile).

    Audio (``audio``): ``"auto"`` copies the source's audio stream (the one
    ``Decode`` decoded, else the one it would choose) unchanged when the
    container takes its codec (AAC into MP4/MOV/MKV, Opus or Vorbis into
    WebM/MKV...), else encodes the decoded audio with
    ``audio_codec`` (default: AAC; Opus for WebM; PCM s16le beside ProRes;
    FLAC beside FFV1 in MKV). ``"encode"`` always encodes; ``False`` drops it.
    Encoding needs ``Decode(audio=True)`` upstream; remuxing reads the file
    again and copies the sound from the first picture on to the end (after a
    ``Decode(end=...)``, choose ``"encode"``). Matroska and WebM cannot store
    negative stamps, so a remuxed AAC's priming (about 21 ms) moves both
    streams forward together. ``faststart`` (MP4/MOV only) puts the index
    before the media data, so a player can start while downloading.

    Colour (``hdr``): every output is tagged with its primaries, transfer,
    matrix and range. An SDR source keeps its own (guessed where untagged:
    BT.709 for HD, else BT.601), its matrix unchanged. An HDR source (PQ or
    HLG) is tone-mapped to SDR BT.709 (``stages.colour``) with ``"tonemap"``,
    kept as it is (tags, and for x265 its mastering display and light levels)
    with ``"keep"``; ``"auto"`` keeps it when the output has 10 bits or more
    (ProRes 422 HQ, FFV1 of a 10-bit source) and tone-maps 8-bit outputs.

    Report columns (``column`` prefix, default the stage name): path, width,
    height, codec and whether the audio was remuxed.
    """

    accepts = (FRAME, AUDIO)
    splits = True
    preload = WORK_MODULES

    def __init__(self, *, codec: str = "libx264", crf: int | None = None, bitrate: int | None = None,
                 preset: str | None = None, gop: int | None = None, pix_fmt: str | None = None,
                 max_width: int | None = None, max_height: int | None = None, extension: str = ".mp4",
                 category: str = "transcodes", faststart: bool = False, audio: AudioMode = "auto",
                 audio_codec: str | None = None, audio_bitrate: int = 128_000,
                 codec_options: Mapping[str, str] | None = None, hdr: HdrMode = "auto", column: str | None = None,
                 name: str | None = None) -> None:
        super().__init__(name)
        ext = extension if extension.startswith(".") else f".{extension}"
        ext = ext.lower()
        if codec not in VIDEO_CODECS:
            raise PipelineDefinitionError(f"unknown video codec {codec!r} (known: {', '.join(VIDEO_CODECS)})")
        if ext not in CONTAINERS:
            raise PipelineDefinitionError(f"cannot write {ext!r} files (known: {', '.join(CONTAINERS)})")
        if codec not in _VIDEO_IN[CONTAINERS[ext]]:
            raise PipelineDefinitionError(f"{codec} does not go into {ext} files")
        if audio not in ("auto", "encode", False):
            raise PipelineDefinitionError(f"audio must be 'auto', 'encode' or False, not {audio!r}")
        if hdr not in _HDR_MODES:
            raise PipelineDefinitionError(f"hdr must be one of {', '.join(map(repr, _HDR_MODES))}, not {hdr!r}")
        if pix_fmt is not None and pix_fmt not in _pixel_formats(codec):
            raise PipelineDefinitionError(
                f"{codec} cannot encode {pix_fmt} (it takes: {', '.join(sorted(_pixel_formats(codec)))})")
        if crf is not None and bitrate is not None:
            raise PipelineDefinitionError("give crf or bitrate, not both")
        self._check_settings(codec, crf, bitrate, preset, gop, max_width, max_height, audio_bitrate, category)
        self.codec = codec
        self.crf = crf
        self.bitrate = bitrate
        self.preset = preset
        self.gop = gop
        self.pix_fmt = pix_fmt
        self.max_width = max_width
        self.max_height = max_height
        self.extension = ext
        self.format = CONTAINERS[ext]
        self.category = category
        self.faststart = faststart and self.format in ("mp4", "mov")
        self.audio: AudioMode = audio
        self.audio_codec = audio_codec or _default_audio_codec(codec, self.format)
        self.audio_bitrate = audio_bitrate
        self.codec_options = dict(codec_options or {})
        self.hdr: HdrMode = hdr
        self.column = column or self.name

    @property
    def report_fields(self) -> tuple[pa.Field, ...]:  # built for the report: pyarrow loads then
        import pyarrow as pa

        from pipeline.observe import card_field
        c = self.column
        return (card_field(c, pa.string(), "link"), pa.field(f"{c}_width", pa.int32()),
                pa.field(f"{c}_height", pa.int32()), pa.field(f"{c}_codec", pa.string()),
                pa.field(f"{c}_audio_remuxed", pa.bool_()))

    def _check_settings(self, codec: str, crf: float | None, bitrate: int | None, preset: str | None,
                        gop: int | None, max_width: int | None, max_height: int | None, audio_bitrate: int,
                        category: str) -> None:
        """Refuse values the encoder (or the output folder) would refuse at every file (``InvalidOption``)."""
        where = type(self).__name__
        CATEGORY.validate("category", category, where)
        if crf is not None:
            if codec not in ENCODER_CRF:
                raise InvalidOption("crf", crf, f"left out ({codec} has no constant-quality mode)", where)
            try:
                ENCODER_CRF[codec].check(crf)
            except ValueError:
                raise InvalidOption("crf", crf, f"{ENCODER_CRF[codec].accepts} for {codec}", where) from None
        if preset is not None:
            if codec not in ENCODER_PRESETS:
                raise InvalidOption("preset", preset, f"left out ({codec} has no preset)", where)
            try:
                ENCODER_PRESETS[codec].parse(str(preset))
            except ValueError:
                raise InvalidOption("preset", preset, f"{ENCODER_PRESETS[codec].accepts} for {codec}", where) from None
        for name, value, spec in (("bitrate", bitrate, Option(int, min=1)), ("gop", gop, Option(int, min=0)),
                                  ("max_width", max_width, VIDEO_SIDE), ("max_height", max_height, VIDEO_SIDE),
                                  ("audio_bitrate", audio_bitrate, Option(int, min=1))):
            if value is not None:
                spec.validate(name, value, where)

    # Stage hooks ----------------------------------------------------------------------

    def begin(self, ctx: StageContext) -> None:
        ctx.state.update(out=None, container=None, video=None, audio=None, remux=None, pending_audio=[],
                         size=None, turns=0, pix_fmt=None, frames=0, last_pts=None, padder=None,
                         codec=self.codec, colour=None, out_colour=None, tonemap=False, threads=1, stamps=[],
                         first_time=None, info=None)

    def process(self, item: VideoFrameItem | AudioFrameItem, ctx: StageContext) -> None:
        st = ctx.state
        if isinstance(item, AudioFrameItem):
            if self.audio is False or st["remux"] is not None or not item.stream.has_video:
                return None  # (no video: no picture will ever open the output, so keep no sound for it)
            if st["container"] is None:  # streams are added at the first picture
                st["pending_audio"].append(item)
            else:
                self._encode_audio(item, st)
            return None
        if st["container"] is None:
            self._open(item, ctx)
        if st["remux"] is not None:
            st["remux"].mux_until(st["container"], item.time)
        self._encode_video(item, st)
        return None

    def end(self, ctx: StageContext) -> None:
        st = ctx.state
        container = st["container"]
        if container is None:
            if ctx.part is None:
                ctx.warn("no picture to encode; nothing written")
            return None
        for packet in st["video"].encode(None):
            container.mux(packet)
        if ctx.part is not None:
            self._hand_over_part(ctx)
            return None
        remuxed = st["remux"] is not None
        if remuxed:
            st["remux"].mux_until(container, None)
            st["remux"].close()
            st["remux"] = None
        elif st["audio"] is not None:
            for packet in st["audio"].encode(None):
                container.mux(packet)
        container.close()  # with faststart, FFmpeg moves the index to the front here
        st["container"] = None
        ctx.add_output(st["out"].commit())
        w, h = st["size"]
        self._record(ctx, ctx.run.outputs[-1], w, h, remuxed)
        return None

    def abort(self, ctx: StageContext) -> None:
        st = ctx.state
        for key in ("container", "remux"):
            if st.get(key) is not None:
                try:
                    st[key].close()
                except Exception:  # already failing: the first error is the one to report
                    pass
                st[key] = None
        if st.get("out") is not None:
            st["out"].discard()

    def _record(self, ctx: StageContext, path: str, width: int, height: int, remuxed: bool) -> None:
        from ._av import av
        c = self.column
        ctx.record(**{c: path, f"{c}_width": width, f"{c}_height": height,
                      f"{c}_codec": av.codec.Codec(ctx.state["codec"], "w").canonical_name,
                      f"{c}_audio_remuxed": remuxed})

    # Opening the output ---------------------------------------------------------------

    def _open(self, item: VideoFrameItem, ctx: StageContext) -> None:
        from ._av import av
        st = ctx.state
        frame, info = item.frame, item.stream
        st["first_time"], st["info"] = item.time, info
        # A part sizes its output by the stream's first size, as the first part's first picture does: every
        # part's output is the same size even where the stream changes size (pictures are fitted to it).
        width, height = (info.width, info.height) if ctx.part is not None and info.width and info.height \
            else (frame.width, frame.height)
        dw, dh = display_size(width, height, item.rotation, info.sample_aspect)
        w, h = fit_within(dw, dh, self.max_width or dw, self.max_height or dh)
        st["size"] = (w, h)
        st["turns"] = rotation_turns(item.rotation)
        st["colour"] = picture_colour(item, ctx)
        st["codec"], pix_fmt, st["tonemap"] = self._video_plan(item, st["colour"])
        st["out_colour"] = self._output_colour(st["colour"], st["tonemap"], pix_fmt, w, h)
        st["threads"] = ctx.cpu_budget
        if ctx.part is not None:  # one part of the file: its pictures alone, into a scratch file for the join
            out = st["out"] = PartialOutput(_output_file(ctx, self.category, f"{self.extension}.{ctx.part.index:03d}"
                                                                           f"{_PART_SUFFIX}"))
            container = st["container"] = av.open(str(out.part), "w", format=_PART_FORMAT)
            st["video"] = self._add_video(container, item, ctx, pix_fmt)
            st["pix_fmt"] = st["video"].pix_fmt
            return
        out = st["out"] = PartialOutput(_output_file(ctx, self.category, self.extension))
        options = {"movflags": "+faststart"} if self.faststart else {}
        container = st["container"] = av.open(str(out.part), "w", format=self.format, options=options)
        st["video"] = self._add_video(container, item, ctx, pix_fmt)
        st["pix_fmt"] = st["video"].pix_fmt
        if self.audio == "auto":
            self._try_remux(container, item, ctx)
        pending, st["pending_audio"] = st["pending_audio"], []
        if self.audio and st["remux"] is None and (pending or info.audio_rate):
            st["audio"] = self._add_audio(container, info.audio_rate, info.audio_channels)
            for a in pending:
                self._encode_audio(a, st)

    def _video_plan(self, item: VideoFrameItem, colour: Colour) -> tuple[str, str, bool]:
        """This file's encoder, its pixel format, and whether the pictures are tone-mapped to SDR."""
        spec = VIDEO_CODECS[self.codec]
        pix_fmt = self.pix_fmt or spec.pix_fmt or self._source_pix_fmt(item)
        tonemap = colour.hdr and (self.hdr == "tonemap" or (self.hdr == "auto" and _bit_depth(pix_fmt) < 10))
        return self.codec, pix_fmt, tonemap

    @staticmethod
    def _output_colour(colour: Colour, tonemap: bool, pix_fmt: str, width: int, height: int) -> Colour:
        """What the output's pictures are: SDR BT.709 when tone-mapped, else the source's colour; an RGB
        source encoded as Y'CbCr gets the matrix players guess for its size, limited range."""
        if tonemap:
            return SDR_BT709
        if colour.matrix == "gbr" and not _is_rgb(pix_fmt):
            guess = Colour.guess(width, height, pix_fmt, primaries=colour.primaries, transfer=colour.transfer)
            return Colour(colour.primaries, colour.transfer, guess.matrix, "tv", colour.mastering, colour.max_cll,
                          colour.max_fall)
        return colour

    def _add_video(self, container: Any, item: VideoFrameItem, ctx: StageContext, pix_fmt: str) -> Any:
        codec, out_colour = ctx.state["codec"], ctx.state["out_colour"]
        spec, info = VIDEO_CODECS[codec], item.stream
        w, h = ctx.state["size"]
        video = container.add_stream(codec, rate=info.fps if info.fps else Fraction(30))
        video.width, video.height = w, h
        video.pix_fmt = pix_fmt
        tag_encoder(video.codec_context, out_colour)
        video.time_base = info.time_base
        video.codec_context.time_base = info.time_base
        if self.gop:
            video.codec_context.gop_size = self.gop
        options = dict(spec.options)
        preset = self.preset or spec.default_preset
        if spec.preset and preset:
            options[spec.preset] = str(preset)
        if self.bitrate:
            video.codec_context.bit_rate = self.bitrate
        elif spec.crf and self.crf is not None:
            options[spec.crf] = str(self.crf)
            options.update(spec.crf_options)
        options.update(self._thread_options(codec, video, ctx.cpu_budget))
        if codec == "libx265":  # x265 writes the VUI and the HDR10 SEI from its own parameters
            options["x265-params"] += ":" + x265_hdr_params(out_colour)
        user = dict(self.codec_options)
        if "x265-params" in user and codec == "libx265":
            options["x265-params"] += ":" + user.pop("x265-params")
        options.update(user)
        video.options = options
        if codec == "libx265" and self.format in ("mp4", "mov"):
            video.codec_tag = "hvc1"  # the tag Apple players require for HEVC
        return video

    def _source_pix_fmt(self, item: VideoFrameItem) -> str:
        """The decoded picture's format when the encoder takes it (FFV1 keeps 4:2:2, 10-bit...), else yuv420p."""
        fmt = item.format
        return fmt if fmt in _pixel_formats(self.codec) else "yuv420p"

    def _thread_options(self, codec: str, video: Any, budget: int) -> dict[str, str]:
        """Encoder threads within the file's core budget, in the way each encoder uses them best."""
        cc = video.codec_context
        if codec == "libx264":
            # x264's default in PyAV is sliced threads, which barely help; frame threads do. One
            # more than the budget: with as many threads as the file's cores, the file's own
            # thread waits on x264 while it encodes, so decoding and encoding never overlap, and
            # a file left alone at the end of a batch keeps one of two cores idle (with a budget
            # of 2, 3 is what x264 itself picks for 2 cores).
            cc.thread_type = "FRAME"
            cc.thread_count = budget + 1
        elif codec == "libx265":
            return {"x265-params": f"log-level=error:pools={budget}"}
        elif codec == "libsvtav1":
            # SVT-AV1 prints its whole configuration to stderr unless told otherwise, through the
            # environment only; a user's own SVT_LOG wins.
            os.environ.setdefault("SVT_LOG", "1")
            return {"svtav1-params": f"lp={budget}"}
        elif codec == "ffv1":
            cc.thread_type = "SLICE"
            cc.thread_count = budget
        else:
            cc.thread_count = budget
        return {}

    def _try_remux(self, container: Any, item: VideoFrameItem, ctx: StageContext) -> None:
        found = _open_source_audio(ctx.file.path, item.stream.audio_stream)
        if found is None:
            return
        source, stream = found
        if stream.codec_context.name not in _REMUXABLE[self.format]:
            source.close()
            return
        target = container.add_stream_from_template(stream)
        ctx.state["remux"] = _AudioRemux(source, stream, target, _origin_seconds(source, item.stream.video_stream),
                                         item.time)

    def _add_audio(self, container: Any, rate: int | None, channels: int | None) -> Any:
        rate = rate or 48000
        if self.audio_codec == "libopus" and rate not in _OPUS_RATES:
            rate = 48000
        audio = container.add_stream(self.audio_codec, rate=rate, layout="mono" if channels == 1 else "stereo")
        if self.audio_codec in _LOSSY_AUDIO:
            audio.bit_rate = self.audio_bitrate
        return audio

    # Writing --------------------------------------------------------------------------

    def _encode_video(self, item: VideoFrameItem, st: dict[str, Any]) -> None:
        frame = tag_frame(self._fitted(item, st), st["out_colour"])
        tb = st["video"].codec_context.time_base
        pts = round(item.time / tb)
        if st["last_pts"] is not None and pts <= st["last_pts"]:  # stamps must rise for the muxer
            pts = st["last_pts"] + 1
        st["last_pts"] = frame.pts = pts
        st["stamps"].append(pts)
        frame.time_base = tb
        frame.pict_type = 0  # let the encoder choose; a decoded frame's type would be forced on it
        for packet in st["video"].encode(frame):
            st["container"].mux(packet)
        st["frames"] += 1

    def _fitted(self, item: VideoFrameItem, st: dict[str, Any]) -> av.VideoFrame:
        """The picture upright at the output size: scaled to it, or, when its shape differs (a stream that
        changed size), scaled to fit inside and padded with black."""
        w, h = st["size"]
        frame = item.frame
        shown = display_size(frame.width, frame.height, item.rotation, item.stream.sample_aspect)
        inner = _fit_inside(*shown, w, h)
        picture = self._upright(self._in_output_colour(item, inner, st), inner, st["turns"], st["pix_fmt"])
        if inner == (w, h):
            return picture
        key = (inner, st["pix_fmt"])
        if st["padder"] is None or st["padder"].key != key:
            st["padder"] = _Padder(key, w, h)
        return st["padder"].pad(picture)

    @staticmethod
    def _in_output_colour(item: VideoFrameItem, size: tuple[int, int], st: dict[str, Any]) -> av.VideoFrame:
        """The picture in the output's colour at ``size`` (as shown): tone-mapped (scaled first), or converted
        from RGB with the output's matrix and range, at the size before turning; else the source's frame
        unchanged (the scaler keeps a Y'CbCr picture's matrix and range)."""
        frame = item.frame
        rgb_in, rgb_out = _is_rgb(frame.format.name), _is_rgb(st["pix_fmt"])
        if not st["tonemap"] and (rgb_out or not rgb_in):
            return frame
        (w, h), out = size, st["out_colour"]
        sw, sh = (h, w) if st["turns"] % 2 else (w, h)
        if st["tonemap"]:
            frame = to_sdr_frame(frame, st["colour"], sw, sh, st["threads"])
        if rgb_out:
            return frame.reformat(width=sw, height=sh, format=st["pix_fmt"])
        return frame.reformat(width=sw, height=sh, format=st["pix_fmt"], dst_colorspace=sws_matrix(out),
                              dst_color_range=sws_range(out))

    @staticmethod
    def _upright(source: av.VideoFrame, size: tuple[int, int], turns: int, fmt: str) -> av.VideoFrame:
        """The picture at ``size`` (width x height as shown) and pixel format ``fmt``, turned upright."""
        from ._av import av
        w, h = size
        if not turns:
            return source.reformat(width=w, height=h, format=fmt)
        sw, sh = (h, w) if turns % 2 else (w, h)
        if fmt == "yuv420p":
            return rotate_frame(source.reformat(width=sw, height=sh, format="yuv420p"), turns)
        deep = av.VideoFormat(fmt).components[0].bits > 8
        return _rotate_444(source.reformat(width=sw, height=sh), turns, deep).reformat(format=fmt)

    def _encode_audio(self, item: AudioFrameItem, st: dict[str, Any]) -> None:
        if st["audio"] is None or item.time < 0:
            return
        frame = item.frame
        frame.pts = None  # the encoder numbers samples itself; audio starts with the picture
        for packet in st["audio"].encode(frame):
            st["container"].mux(packet)


    # Parts of a file ----------------------------------------------------------------------

    def _hand_over_part(self, ctx: StageContext) -> None:
        """Close this part's scratch file and hand it to the join, with the stamps its pictures were given."""
        st = ctx.state
        st["container"].close()
        st["container"] = None
        info = st["info"]
        w, h = st["size"]
        ctx.hand_over(_EncodedPart(str(st["out"].part), st["stamps"], st["video"].codec_context.time_base, (w, h),
                                   st["codec"], st["first_time"], info.audio_stream, info.audio_rate,
                                   info.audio_channels, info.video_stream), scratch=[st["out"].part])
        st["out"] = None  # the scratch file stays until the file is done: the engine removes it

    def join(self, pieces: Sequence[Piece], ctx: StageContext) -> None:
        """The file's output from its parts' packets (no re-encoding), with the whole file's sound."""
        from ._av import av
        parts: list[_EncodedPart] = [p.value for p in pieces if p.value is not None]
        if not parts:
            ctx.warn("no picture to encode; nothing written")
            return
        first = parts[0]
        if any(p.size != first.size or p.codec != first.codec or p.time_base != first.time_base for p in parts):
            raise StageError(self.name, ctx.file.relpath, "the parts of the file were encoded at different sizes "
                             "or with different codecs: encode it whole (Decode(split_s=None))")
        st = ctx.state
        st["codec"] = first.codec
        out = st["out"] = PartialOutput(_output_file(ctx, self.category, self.extension))
        options = {"movflags": "+faststart"} if self.faststart else {}
        container = st["container"] = av.open(str(out.part), "w", format=self.format, options=options)
        sources = [av.open(p.path) for p in parts]
        try:
            templates = [src.streams.video[0] for src in sources]
            extradata = {bytes(t.codec_context.extradata or b"") for t in templates}
            if len(extradata) > 1:
                raise StageError(self.name, ctx.file.relpath, "the parts' encoders wrote different stream headers")
            video = container.add_stream_from_template(templates[0])
            video.time_base = first.time_base
            if first.codec == "libx265" and self.format in ("mp4", "mov"):
                video.codec_tag = "hvc1"
            sound = self._join_sound(container, first, ctx)
            for packet, seconds in _joined_packets(sources, parts, video):
                if sound is not None:
                    sound.mux_until(container, seconds)
                container.mux(packet)
            if sound is not None:
                sound.mux_until(container, None)
                sound.close()
            container.close()
            st["container"] = None
        finally:
            for src in sources:
                src.close()
        ctx.add_output(out.commit())
        self._record(ctx, ctx.run.outputs[-1], *first.size, isinstance(sound, _AudioRemux))

    def _join_sound(self, container: Any, first: _EncodedPart, ctx: StageContext) -> _AudioRemux | _AudioEncode | None:
        """The whole file's sound for a joined output: remuxed where ``audio`` and the container allow, else
        decoded and encoded (as ``Encode`` does the sound ``Decode`` gives it); None without sound."""
        if self.audio is False:
            return None
        found = _open_source_audio(ctx.file.path, first.audio_stream)
        if found is None:
            return None
        source, stream = found
        origin = _origin_seconds(source, first.video_stream)
        if self.audio == "auto" and stream.codec_context.name in _REMUXABLE[self.format]:
            target = container.add_stream_from_template(stream)
            return _AudioRemux(source, stream, target, origin, first.first_time)
        if first.audio_rate is None:  # the pipeline's Decode takes no sound: a whole encode would have none
            source.close()
            return None
        audio = ctx.state["audio"] = self._add_audio(container, first.audio_rate, first.audio_channels)
        return _AudioEncode(source, stream, audio, origin)


class Proxy(Encode):
    """Encode an upright H.264 MP4 that fits ``max_width`` x ``max_height`` (turned for portrait).

    ``Encode`` configured for review copies: never upscales, audio re-encoded
    to AAC, x264 frame-threaded on the file's core budget plus one, written to
    ``OUT/proxies/<file>.mp4`` atomically. With ``passthrough``, a source that
    already is such a file (H.264 4:2:0 in MP4/MOV, within the box, unrotated,
    AAC or no audio, not HDR) is copied in the kernel instead of re-encoded.

    HDR sources (``hdr``): ``"tonemap"`` (the default) gives an SDR BT.709
    proxy like any other; ``"keep"`` gives a 10-bit HEVC proxy (x265,
    ``hvc1``) with the source's colour tags, mastering display and light levels.
    """

    def __init__(self, *, max_width: int = 1280, max_height: int = 720, codec: str = "libx264",
                 preset: str = "veryfast", crf: int = 23, audio: bool = True, audio_bitrate: int = 128_000,
                 passthrough: bool = False, hdr: Literal["tonemap", "keep"] = "tonemap",
                 name: str | None = None) -> None:
        if hdr not in ("tonemap", "keep"):
            raise PipelineDefinitionError(f"a proxy's hdr must be 'tonemap' or 'keep', not {hdr!r}")
        super().__init__(codec=codec, crf=crf, preset=preset, max_width=max_width, max_height=max_height,
                         extension=".mp4", category="proxies", audio="encode" if audio else False,
                         audio_codec="aac", audio_bitrate=audio_bitrate, hdr=hdr, name=name)
        self.passthrough = passthrough
        self.splits = not passthrough  # whether a source is copied is told at its first picture: whole files only

    @property
    def report_fields(self) -> tuple[pa.Field, ...]:  # built for the report: pyarrow loads then
        import pyarrow as pa

        from pipeline.observe import card_field
        return (card_field("proxy", pa.string(), "link"), pa.field("proxy_width", pa.int32()),
                pa.field("proxy_height", pa.int32()), pa.field("proxy_passthrough", pa.bool_()))

    def begin(self, ctx: StageContext) -> None:
        super().begin(ctx)
        ctx.state["copy"] = False

    def process(self, item: VideoFrameItem | AudioFrameItem, ctx: StageContext) -> None:
        st = ctx.state
        if st["copy"]:
            return None
        if st["container"] is None and isinstance(item, VideoFrameItem) and self._can_copy(item):
            st["copy"] = True
            return None
        return super().process(item, ctx)

    def end(self, ctx: StageContext) -> None:
        if not ctx.state["copy"]:
            return super().end(ctx)
        out = ctx.state["out"] = PartialOutput(_output_file(ctx, self.category, self.extension))
        if is_url(ctx.file.path):  # the object, copied as it is read (no file to copy by range)
            with open_input(ctx.file.path) as src, open(out.part, "wb") as dst:
                shutil.copyfileobj(src, dst, 8 << 20)
        else:
            transfer(ctx.file.path, out.part)
        ctx.add_output(out.commit())
        info = ctx.run.record
        ctx.record(proxy=ctx.run.outputs[-1], proxy_width=info.get("width"), proxy_height=info.get("height"),
                   proxy_passthrough=True)
        return None

    def _record(self, ctx: StageContext, path: str, width: int, height: int, remuxed: bool) -> None:
        ctx.record(proxy=path, proxy_width=width, proxy_height=height, proxy_passthrough=False)

    def _video_plan(self, item: VideoFrameItem, colour: Colour) -> tuple[str, str, bool]:
        """H.264 as configured; for an HDR source kept as HDR, 10-bit HEVC."""
        if colour.hdr and self.hdr == "keep":
            return "libx265", "yuv420p10le", False
        return super()._video_plan(item, colour)

    def _can_copy(self, item: VideoFrameItem) -> bool:
        """Whether the source file already is a proxy this stage would make (so a copy will do)."""
        info, frame = item.stream, item.frame
        if not self.passthrough or item.rotation or info.codec != "h264" or info.pix_fmt != "yuv420p":
            return False
        if info.colour is not None and info.colour.hdr:  # 8-bit PQ/HLG H.264: tone-mapped or re-encoded as HEVC
            return False
        if not (info.container or "").startswith("mov,mp4") or (info.sample_aspect not in (None, 0, 1)):
            return False
        if info.audio_codec not in (None, "aac") or (info.audio_codec and not self.audio):
            return False
        w, h = frame.width, frame.height
        return fit_within(w, h, self.max_width, self.max_height) == (w, h)
