"""``Decode``: one pass over a file's packets, emitting every video frame and audio block."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pyarrow as pa

from pipeline import AUDIO, FILE, FRAME, FileItem, FileRun, InputError, PipelineDefinitionError, Stage, StageContext
from pipeline.dataplane import BufferPool
from pipeline.presets import Option

from .colour import Colour
from .damage import VideoDamage, read_packets
from .deinterlace import DEINTERLACE, FIELD_RATE, FieldPolicy, field_order_name
from .errors import EmptyStream, UnsupportedMedia
from .frames import AudioFrameItem, StreamInfo, VideoFrameItem, wrap_pixels
from .media import (
    StreamChoice,
    check_picture_size,
    check_readable,
    choose_streams,
    open_decoder,
    open_media,
    rotation_turns,
)
from .transforms import rotate_frame
from .y4m import Y4MFile

_RAW_SLOTS = 3

__all__ = ["Decode", "BestEffortTimestamps", "PictureChanges", "decode_file", "frame_rate", "STREAM_NUMBER"]

STREAM_NUMBER = Option(int, min=0, max=1023)
"""What ``video_stream`` / ``audio_stream`` take: a stream's number among the file's streams of its kind."""


class BestEffortTimestamps:
    """Picks each frame's timestamp as FFmpeg's ``best_effort_timestamp`` does.

    Some files (AVI with packed B-frames) carry presentation stamps that go
    backwards while their decode stamps are sound: count how often each kind
    fails to increase and trust the one that fails less.
    """

    __slots__ = ("faulty_pts", "faulty_dts", "last_pts", "last_dts")

    def __init__(self) -> None:
        self.faulty_pts = self.faulty_dts = 0
        self.last_pts: int | None = None
        self.last_dts: int | None = None

    def __call__(self, pts: int | None, dts: int | None) -> int | None:
        if dts is not None:
            self.faulty_dts += self.last_dts is not None and dts <= self.last_dts
            self.last_dts = dts
        if pts is not None:
            self.faulty_pts += self.last_pts is not None and pts <= self.last_pts
            self.last_pts = pts
        if pts is not None and (dts is None or self.faulty_pts <= self.faulty_dts):
            return pts
        return dts


def frame_rate(stream: Any, duration_s: float | None) -> Fraction | None:
    """A stream's average frame rate; else frames over duration; else None (never a time base's 1000)."""
    if stream.average_rate:
        return Fraction(stream.average_rate)
    if stream.frames and duration_s:
        return Fraction(stream.frames) / Fraction(duration_s).limit_denominator(1_000_000)
    return None


class Decode(Stage):
    """Decode the best video stream (and the best audio stream, when ``audio``) of each file.

    The streams are those FFmpeg would choose (``choose_streams``): never
    cover art; the one with data, the default one, the largest. When the
    chosen video stream gives no frame at all, the next candidate is decoded.
    ``video_stream`` / ``audio_stream`` ask for one by its number among the
    file's video / audio streams (ffmpeg's ``0:v:N``); a file without it fails.
    The report says which were used (``video_stream``, ``audio_stream``) and how
    many there were (``video_streams``, ``audio_streams``).

    A stream whose picture size or pixel format changes is decoded through
    its changes: each frame comes at its own size (consumers scale), and
    the sizes seen are given in one warning at the end (report column
    ``size_changes``; ``pix_fmt_changes`` for pixel formats).

    A packet that fails to decode is skipped and counted, as players do; the
    file fails only when no frame decodes at all. FFmpeg's decoder threads
    count against the file's core budget. A file without video gives its
    audio alone (when ``audio``); one with neither fails as unsupported.

    Options, all off by default:

    * ``pixel_format``: convert every picture (``"rgb24"``, ``"yuv420p"``, ``"gray"``...).
    * ``start`` / ``end`` (seconds): a time range. Decoding seeks to the
      keyframe at or before ``start`` and drops the frames before it, so the
      first frame given is the first one *shown* at or after ``start`` (exact
      with B-frames and variable frame rate: times come from each frame's
      presentation stamp, not from its position).
    * ``fps``: at most this many frames a second, taking the first frame shown
      at or after each tick of ``1/fps`` (within half a source frame); never
      duplicates a frame.
    * ``every_nth``: one decoded frame in N.
    * ``keyframes_only``: the decoder skips every other frame (fast thumbnails).
    * ``upright``: apply the file's rotation to the pixels (frames then carry rotation 0).
    * ``deinterlace`` (default ``"auto"``): interlaced video is deinterlaced
      with FFmpeg's bwdif when its frames or stream say so, or when idet finds
      the first frames woven though nothing says so (``stages.deinterlace``);
      progressive video is left as decoded. ``"bwdif"``/``"yadif"``: every
      frame, with that filter; ``"off"``: never. A ``keyframes_only`` decode
      trusts the flags alone and makes each frame a picture of its first field (``field``).
      The report's ``deinterlaced`` column names the filter used (None: none).
    * ``rate``: ``"frame"`` (default) gives one picture a frame; ``"field"``
      one a field of deinterlaced video, at twice the frame rate (the frames'
      ``stream.fps`` and ``time_base`` say so).
    * ``audio_rate`` / ``audio_layout`` / ``audio_block_s``: resample audio to
      packed float32 at this rate and layout, in blocks of this many seconds
      (any of them set turns resampling on; blocks default to 1 s).

    A frame's ``index`` is its number in the stream when every frame is
    decoded from the start; after a seek, or with ``keyframes_only``, it is
    ``round(time x fps)`` (exact at a constant frame rate).

    Raw 4:2:0 ``.y4m`` video, read whole, goes straight into shared-memory
    slots that are reused: such a frame is valid until the next item is
    pulled from ``process`` (``decode_file`` gives frames that own their pixels).
    """

    accepts = (FILE,)
    emits = (FRAME, AUDIO)
    cacheable = True  # its report columns (frame count, decode errors); it runs while a consumer needs frames
    cache_version = "3"  # 2: streams chosen by FFmpeg's rules, size changes told; 3: deinterlacing

    report_fields = (pa.field("video_stream", pa.int32()), pa.field("video_streams", pa.int32()),
                     pa.field("audio_stream", pa.int32()), pa.field("audio_streams", pa.int32()),
                     pa.field("size_changes", pa.int32()), pa.field("pix_fmt_changes", pa.int32()),
                     pa.field("deinterlaced", pa.string()))

    def __init__(self, *, audio: bool = True, pixel_format: str | None = None, start: float | None = None,
                 end: float | None = None, fps: float | None = None, every_nth: int = 1,
                 keyframes_only: bool = False, upright: bool = False, audio_rate: int | None = None,
                 audio_layout: str | None = None, audio_block_s: float | None = None,
                 video_stream: int | None = None, audio_stream: int | None = None,
                 deinterlace: str = "auto", rate: str = "frame", name: str | None = None) -> None:
        super().__init__(name)
        checks = {"every_nth": (every_nth, Option(int, min=1)), "fps": (fps, Option(float, above=0)),
                  "video_stream": (video_stream, STREAM_NUMBER), "audio_stream": (audio_stream, STREAM_NUMBER),
                  "start": (start, Option(float, min=0)), "end": (end, Option(float, above=0)),
                  "audio_rate": (audio_rate, Option(int, min=1000, max=768_000)),
                  "audio_block_s": (audio_block_s, Option(float, above=0, max=60))}
        for key, (value, spec) in checks.items():
            if value is not None:
                spec.validate(key, value, type(self).__name__)
        if start is not None and end is not None and end <= start:
            raise PipelineDefinitionError(f"end ({end}) must come after start ({start})")
        if audio_stream is not None and not audio:
            raise PipelineDefinitionError(f"audio_stream={audio_stream} asks for sound, but audio=False decodes none")
        self.video_stream = video_stream
        self.audio_stream = audio_stream
        self.deinterlace = DEINTERLACE.validate("deinterlace", deinterlace, type(self).__name__)
        self.rate = FIELD_RATE.validate("rate", rate, type(self).__name__)
        if self.rate == "field" and self.deinterlace in ("off", "first_field"):
            raise PipelineDefinitionError(f"rate='field' gives a picture a field: it needs deinterlace='auto', "
                                          f"'bwdif' or 'yadif', not {self.deinterlace!r}")
        self.audio = audio
        self.pixel_format = pixel_format
        self.range_start = start
        self.range_end = end
        self.fps = fps
        self.every_nth = every_nth
        self.keyframes_only = keyframes_only
        self.upright = upright
        self.resample = audio and any(v is not None for v in (audio_rate, audio_layout, audio_block_s))
        self.audio_rate = audio_rate
        self.audio_layout = audio_layout
        self.audio_block_s = audio_block_s or 1.0
        if not audio:
            self.emits = (FRAME,)
        self._pool: BufferPool | None = None  # per process, for raw video read straight into slots
        self._reuse_slots = True  # False (decode_file): raw frames are read into arrays they own

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_pool"] = None  # a pool belongs to the process that made it
        return state

    def teardown(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    @property
    def _drops_frames(self) -> bool:
        return (self.range_start is not None or self.range_end is not None or self.fps is not None
                or self.every_nth > 1 or self.keyframes_only)

    def process(self, item: FileItem, ctx: StageContext) -> Iterator[Any]:
        if item.path.lower().endswith(".y4m") and not (self._drops_frames or self.upright):
            raw = self._open_y4m(item.path)
            if raw is not None:
                yield from self._read_y4m(raw, ctx)
                return
        yield from self._decode(item, ctx)

    def _open_y4m(self, path: str) -> Y4MFile | None:
        """The file as raw frames to read into slots, or None to let FFmpeg handle its layout."""
        check_readable(path)
        raw = Y4MFile(path)
        if raw.pixel_format != "yuv420p" or len(raw.shape) != 2:
            raw.close()
            return None
        return raw

    def _read_y4m(self, raw: Y4MFile, ctx: StageContext) -> Iterator[Any]:
        with raw:
            if raw.frame_count == 0:  # before sizing slots by what the header claims
                raise raw.damage or EmptyStream(raw.path, "no frame in the file")
            pool = self._slot_pool(raw.frame_size) if self._reuse_slots else None
            info = StreamInfo(width=raw.width, height=raw.height, fps=raw.fps, time_base=1 / raw.fps,
                              frame_count=raw.frame_count, codec="rawvideo", pix_fmt=raw.pixel_format,
                              container="yuv4mpegpipe")
            for index in range(raw.frame_count):
                # In a slot, the frame is a view valid until the next one is pulled: the lease is
                # released when this generator resumes (every local consumer has seen it by then,
                # and one that sends it to another process has copied it out). Without slots the
                # frame owns its pixels.
                lease = pool.acquire() if pool is not None else None
                with lease if lease is not None else contextlib.nullcontext():
                    pixels = raw.read(index, lease).array() if lease is not None else raw.read_array(index)
                    frame = wrap_pixels(pixels, "yuv420p")
                    frame.pts, frame.time_base = index, info.time_base
                    if self.pixel_format and self.pixel_format != "yuv420p":
                        frame = frame.reformat(format=self.pixel_format)
                    yield VideoFrameItem(frame, index, index / float(raw.fps), 0, info)
                if index % 16 == 15:
                    ctx.progress(index + 1, raw.frame_count)
            ctx.progress(raw.frame_count, raw.frame_count)
            if raw.damage is not None:  # every whole frame before it is given
                raise raw.damage
            ctx.record(frame_count=raw.frame_count, frame_count_exact=True, decode_errors=0, video_stream=0,
                       video_streams=1, audio_stream=None, audio_streams=0, size_changes=0, pix_fmt_changes=0,
                       deinterlaced=None)

    def _slot_pool(self, frame_size: int) -> BufferPool:
        """This process's pool of slots for raw frames, made (or remade larger) on demand; ``teardown`` closes it."""
        if self._pool is None or self._pool.slot_size < frame_size:
            self.teardown()
            self._pool = BufferPool(frame_size, _RAW_SLOTS, name="y4m")
        return self._pool

    def _decode(self, item: FileItem, ctx: StageContext) -> Iterator[Any]:
        """Decode the chosen streams; if the chosen video stream gives no frame at all, the next candidate.

        Probing cannot always tell an empty stream (a Matroska track whose
        header states a size, and no packet after it): the decoder finds out.
        A retry reads the file again; the audio already given is not given again.
        """
        result = _Pass()
        yield from self._decode_streams(item, ctx, result)
        assert result.choice is not None
        for number in result.choice.video_fallbacks:
            if result.decoded or result.damage is None:
                break
            again = _Pass(skip_audio=result.audio_items)
            yield from self._decode_streams(item, ctx, again, video=number)
            if again.decoded:
                ctx.warn(f"video stream 0:v:{result.choice.video_number} gave no frame "
                         f"({_why_no_frame(result.damage)}); decoded video stream 0:v:{number} instead")
                result = again
        self._report(ctx, result)

    def _decode_streams(self, item: FileItem, ctx: StageContext, result: _Pass,
                        video: int | None = None) -> Iterator[Any]:
        """One pass over the file's chosen streams (video stream ``video``, else the best), giving their frames.

        What it used and saw goes into ``result``.
        """
        with open_media(item.path, probe=False) as container:
            choice = result.choice = self._streams(item.path, container, ctx, video)
            vstream, astream = choice.video, choice.audio
            damage = VideoDamage(item.path, container, vstream) if vstream is not None else None
            if vstream is not None:
                check_picture_size(item.path, vstream.codec_context.width, vstream.codec_context.height)
                vstream.codec_context.thread_type = "AUTO"
                vstream.codec_context.thread_count = ctx.cpu_budget
                if self.keyframes_only:
                    vstream.codec_context.skip_frame = "NONKEY"
                open_decoder(item.path, vstream.codec_context)
            info = _stream_info(container, vstream, astream, choice)
            origin = _start_seconds(container, vstream or astream)
            if self.range_start:
                _seek(container, vstream or astream, origin + self.range_start)
            pick = _FramePicker(self, info)
            blocks = None
            if self.resample and astream is not None:
                rate = self.audio_rate or astream.rate
                blocks = _AudioBlocks(av.AudioResampler(format="flt", layout=self.audio_layout or None, rate=rate,
                                                        frame_size=max(1, round(rate * self.audio_block_s))),
                                      rate, info)
            streams = [s for s in (vstream, astream) if s is not None]
            vtb = vstream.time_base if vstream is not None else None
            fields = self._field_policy(vstream, ctx) if vstream is not None else None
            timestamps = BestEffortTimestamps()
            decoded = given = audio_errors = 0
            done = per_field = half_height = False

            def give(pictures: list[tuple[av.VideoFrame, float]]) -> Iterator[VideoFrameItem]:
                """The items for pictures out of the deinterlacer (or as decoded), up to the range's end."""
                nonlocal info, pick, given, done, per_field, half_height
                for picture, t in pictures:
                    if not per_field and fields is not None and fields.doubles_rate:
                        per_field, info = True, _per_field(info)  # one picture a field from now on
                        pick = _FramePicker(self, info) if not given else pick
                    if not half_height and fields is not None and fields.halves_height:
                        half_height, info = True, _half_height(info)  # one field a picture from now on
                    if self.range_end is not None and t >= self.range_end - pick.half_frame:
                        done = True
                        return
                    index = pick(t, given)
                    given += 1
                    if index is None:
                        continue
                    if info.pix_fmt is None:  # opened without probing: the first frame tells
                        info = dataclasses.replace(info, pix_fmt=picture.format.name)
                    yield self._video_item(picture, index, t, info)
                    if pick.emitted % 16 == 0:
                        ctx.progress(pick.emitted, info.frame_count)

            frame_fps = info.fps
            for packet in read_packets(container, streams, damage):
                if damage is not None and packet.stream is vstream:
                    damage.packet(packet)
                if self.keyframes_only and packet.stream is vstream and packet.size and not packet.is_keyframe:
                    continue  # the decoder would drop it anyway (skip_frame): do not even hand it over
                try:
                    frames = packet.decode()
                except av.FFmpegError as exc:  # a corrupt packet: skip it, as players do
                    if damage is not None and packet.stream is vstream:
                        damage.decode_failed(packet, exc)
                    else:
                        audio_errors += 1
                    continue
                for frame in frames:
                    if packet.stream is vstream:
                        ts = timestamps(frame.pts, frame.dts)
                        t = float(ts * vtb) - origin if ts is not None else (
                            decoded / float(frame_fps) if frame_fps else 0.0)
                        decoded += 1
                        result.pictures.see(frame)
                        if info.colour is None:  # tags and side data do not cross processes: the stream carries them
                            info = dataclasses.replace(info, colour=Colour.from_frame(frame))
                        assert fields is not None
                        yield from give(fields.feed(frame, t))
                        if done:
                            break
                    else:
                        t = float(frame.pts * frame.time_base) - origin if frame.pts is not None else 0.0
                        if self.range_start is not None and t < self.range_start - 0.001:
                            continue
                        if self.range_end is not None and t >= self.range_end:
                            if vstream is None:
                                done = True
                                break
                            continue
                        yield from result.new_audio([AudioFrameItem(frame, t, info)] if blocks is None
                                                    else blocks.feed(frame, t))
                if done:
                    break
            if fields is not None and not done:  # the frames the deinterlacer (or its detection) still holds
                yield from give(fields.flush())
            if blocks is not None:
                yield from result.new_audio(blocks.feed(None))
        result.damage, result.decoded, result.done = damage, decoded, done
        result.audio_errors, result.emitted = audio_errors, pick.emitted
        result.deinterlaced = fields.applied if fields is not None else None

    def _report(self, ctx: StageContext, result: _Pass) -> None:
        """Record what the decode used and saw; warn of what a user should know; fail a file with no frame."""
        assert result.choice is not None
        ctx.record(**result.choice.report())
        audio_errors, damage = result.audio_errors, result.damage
        if audio_errors:
            ctx.warn(f"{audio_errors} audio packet(s) failed to decode")
        if damage is None:
            ctx.record(frame_count=0, frame_count_exact=True, decode_errors=audio_errors, deinterlaced=None)
            return
        ctx.record(decode_errors=damage.errors + audio_errors, deinterlaced=result.deinterlaced)
        warning = damage.verdict(result.decoded, to_the_end=not result.done)  # raises for a truncated file
        if warning:
            ctx.warn(warning)
        pictures = result.pictures
        ctx.record(size_changes=pictures.size_changes, pix_fmt_changes=pictures.format_changes)
        for change in pictures.warnings():
            ctx.warn(change)
        ctx.progress(result.emitted, result.emitted)
        if not self._drops_frames:  # else not every frame was seen: leave the count to the metadata
            ctx.record(frame_count=result.decoded, frame_count_exact=True)

    def _field_policy(self, vstream: Any, ctx: StageContext) -> FieldPolicy:
        """How this stream's frames are deinterlaced (``stages.deinterlace``), from the options and its field order."""
        order = field_order_name(vstream.codec_context.field_order)
        return FieldPolicy(self.deinterlace, self.rate, stream_order=order, time_base=vstream.time_base,
                           sample_aspect=vstream.sample_aspect_ratio,
                           flags_only=self.keyframes_only, threads=ctx.cpu_budget)

    def _streams(self, path: str, container: Any, ctx: StageContext, video: int | None) -> StreamChoice:
        """The video and audio streams to decode (``choose_streams``); fails when there is nothing to decode.

        ``video`` (a number among the video streams) overrides the option: a fallback's retry.
        """
        choice = choose_streams(path, container, video=self.video_stream if video is None else video,
                                audio=self.audio_stream, with_audio=self.audio)
        videos = container.streams.video
        if choice.video is None and any(s.codec_context is None for s in videos):
            raise UnsupportedMedia(path, "no decoder for the video stream's codec")
        what = "no video stream but cover art" if videos else "no video stream"
        if choice.video is None and choice.audio is None:
            if container.streams.audio and not self.audio:
                raise UnsupportedMedia(path, f"{what} (audio only), and this pipeline decodes no audio")
            raise UnsupportedMedia(path, what)
        if choice.video is None:
            ctx.warn(f"{what} (audio only): no pictures")
        return choice

    def _video_item(self, frame: av.VideoFrame, index: int, t: float, info: StreamInfo) -> VideoFrameItem:
        if self.pixel_format and frame.format.name != self.pixel_format:
            frame = frame.reformat(format=self.pixel_format)
        rotation = int(frame.rotation or 0)
        if self.upright and rotation_turns(rotation):
            frame = rotate_frame(frame, rotation_turns(rotation))
            rotation = 0
        return VideoFrameItem(frame, index, t, rotation, info)


class PictureChanges:
    """The picture sizes and pixel formats a video stream goes through, and how often it changes them.

    A stream may change size mid-way (VP8/VP9 and H.264 allow it at a
    keyframe; an adaptive-bitrate recording switches rungs): each frame is
    given at its own size, and the changes are told once, at the end.
    """

    __slots__ = ("sizes", "formats", "size_changes", "format_changes", "_last")

    _LISTED = 12  # sizes named in a warning; past that the middle ones are elided

    def __init__(self) -> None:
        self.sizes: list[tuple[int, int]] = []  # distinct sizes, in the order first seen
        self.formats: list[str] = []
        self.size_changes = 0
        self.format_changes = 0
        self._last: tuple[int, int, str] | None = None

    def see(self, frame: av.VideoFrame) -> None:
        """Note one decoded frame's size and pixel format."""
        now = (frame.width, frame.height, frame.format.name)
        if now == self._last:
            return
        if self._last is not None:
            self.size_changes += now[:2] != self._last[:2]
            self.format_changes += now[2] != self._last[2]
        if now[:2] not in self.sizes:
            self.sizes.append(now[:2])
        if now[2] not in self.formats:
            self.formats.append(now[2])
        self._last = now

    def warnings(self) -> list[str]:
        """One line for size changes and one for pixel-format changes (none when the stream kept both)."""
        out = []
        if self.size_changes:
            named = [f"{w}x{h}" for w, h in self.sizes]
            if len(named) > self._LISTED:
                named = named[:self._LISTED // 2] + ["..."] + named[-self._LISTED // 2:]
            out.append(f"video size changes {_times(self.size_changes)}: {', '.join(named)}")
        if self.format_changes:
            out.append(f"video pixel format changes {_times(self.format_changes)}: {', '.join(self.formats)}")
        return out


def _why_no_frame(damage: VideoDamage) -> str:
    """Why a stream gave no frame, in the words its failure would have had."""
    try:
        damage.verdict(0, to_the_end=True)
    except InputError as exc:
        return exc.reason
    return "no frame decoded"


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


@dataclasses.dataclass
class _Pass:
    """What one pass over a file's chosen streams used and saw (a retry on another video stream is a new pass)."""

    skip_audio: int = 0  # audio items an earlier pass gave already
    audio_items: int = 0
    choice: StreamChoice | None = None
    damage: VideoDamage | None = None
    decoded: int = 0
    done: bool = False  # stopped at the end of a time range
    audio_errors: int = 0
    emitted: int = 0
    pictures: PictureChanges = dataclasses.field(default_factory=PictureChanges)
    deinterlaced: str | None = None  # the filter that deinterlaced the pictures, if one did

    def new_audio(self, items: Iterable[AudioFrameItem]) -> Iterator[AudioFrameItem]:
        """``items`` less those an earlier pass gave (decoding the same sound again gives the same items)."""
        for audio in items:
            self.audio_items += 1
            if self.audio_items > self.skip_audio:
                yield audio


class _FramePicker:
    """Which decoded frames a ``Decode`` gives, and the number each carries."""

    def __init__(self, decode: Decode, info: StreamInfo) -> None:
        self.every_nth = decode.every_nth
        self.step = 1.0 / decode.fps if decode.fps else None
        self.range_start = decode.range_start or 0.0
        self.next_t = self.range_start
        self.fps = float(info.fps) if info.fps else None
        self.half_frame = 0.5 / self.fps + 1e-6 if self.fps else 0.0  # ties go to the earlier frame
        self.numbered_by_time = bool(decode.range_start) or decode.keyframes_only
        self.emitted = 0
        self.kept = 0

    def __call__(self, t: float, decoded_index: int) -> int | None:
        """The frame's number if it is given, else None."""
        if t < self.range_start - self.half_frame:
            return None  # decoded from the keyframe before the range
        self.kept += 1
        if (self.kept - 1) % self.every_nth:
            return None
        if self.step is not None:
            if t + self.half_frame < self.next_t:
                return None
            while self.next_t <= t + self.half_frame:
                self.next_t += self.step
        self.emitted += 1
        if self.numbered_by_time and self.fps:
            return round(t * self.fps)
        return decoded_index


def _half_height(info: StreamInfo) -> StreamInfo:
    """``info`` for pictures of one field: half the lines, so samples twice as tall (half the sample aspect)."""
    return dataclasses.replace(info, sample_aspect=(info.sample_aspect or Fraction(1)) / 2)


def _per_field(info: StreamInfo) -> StreamInfo:
    """``info`` for pictures a field apart: twice the rate and the count, half the time base."""
    return dataclasses.replace(info, fps=info.fps * 2 if info.fps else None, time_base=info.time_base / 2,
                               frame_count=info.frame_count * 2 if info.frame_count else None)


def _seek(container: Any, stream: Any, seconds: float) -> None:
    """Seek to the keyframe at or before ``seconds`` (file time); a failed seek decodes from the start."""
    try:
        container.seek(max(0, int(seconds / stream.time_base)), stream=stream, backward=True, any_frame=False)
    except av.FFmpegError:
        container.seek(0)


class _AudioBlocks:
    """Audio resampled to packed float32 in fixed-size blocks, each timed by the samples before it."""

    def __init__(self, resampler: Any, rate: int, info: StreamInfo) -> None:
        self.resampler = resampler
        self.rate = rate
        self.info = info
        self.origin: float | None = None
        self.samples = 0

    def feed(self, frame: av.AudioFrame | None, t: float | None = None) -> Iterator[AudioFrameItem]:
        """The blocks completed by ``frame`` (``None`` flushes the last, shorter one)."""
        if self.origin is None and t is not None:
            self.origin = t
        for block in self.resampler.resample(frame):
            yield AudioFrameItem(block, (self.origin or 0.0) + self.samples / self.rate, self.info)
            self.samples += block.samples


def decode_file(path: str | os.PathLike[str], *, run: FileRun | None = None,
                **options: Any) -> Iterator[VideoFrameItem | AudioFrameItem]:
    """The items ``Decode(**options)`` gives for one file, outside any pipeline (random access, notebooks).

    ``run`` collects what the stage records (frame count, decode errors);
    without it they are dropped. Every item owns its pixels (a raw ``.y4m``
    frame is read into an array of its own, not into a reused shared-memory
    slot): keep items as long as you like, after the loop ends, after a
    ``break`` or after ``close()``. Nothing shared is left behind.
    """
    p = Path(path)
    if run is None:
        run = FileRun(FileItem(str(p), p.name), p.parent, p.stem)
    decode = Decode(**options)
    decode._reuse_slots = False  # no other process to share slots with: nothing kept may view one
    try:
        yield from decode.process(run.file, StageContext(run, "decode"))
    finally:
        decode.teardown()


def _start_seconds(container: Any, vstream: Any) -> float:
    """The file's time origin: the container's start time, else the video stream's."""
    if container.start_time is not None:
        return container.start_time / av.time_base
    if vstream.start_time is not None and vstream.time_base:
        return float(vstream.start_time * vstream.time_base)
    return 0.0


def _stream_info(container: Any, vstream: Any, astream: Any, choice: StreamChoice) -> StreamInfo:
    duration = container.duration / av.time_base if container.duration else None
    if vstream is None:  # audio only
        return StreamInfo(width=0, height=0, fps=None, time_base=astream.time_base, frame_count=0,
                          audio_rate=astream.rate, audio_channels=astream.channels, duration_s=duration,
                          container=container.format.name, audio_codec=astream.codec_context.name,
                          audio_stream=choice.audio_number)
    cc = vstream.codec_context
    fps = frame_rate(vstream, duration)
    count = vstream.frames or (round(duration * float(fps)) if duration and fps else None)
    return StreamInfo(
        width=cc.width, height=cc.height, fps=fps, time_base=vstream.time_base,
        frame_count=count or None, sample_aspect=vstream.sample_aspect_ratio,
        audio_rate=astream.rate if astream is not None else None,
        audio_channels=astream.channels if astream is not None else None,
        duration_s=duration, codec=cc.name, pix_fmt=cc.pix_fmt, container=container.format.name,
        audio_codec=astream.codec_context.name if astream is not None else None,
        video_stream=choice.video_number, audio_stream=choice.audio_number,
    )
