"""``Decode``: one pass over a file's packets, emitting every video frame and audio block."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from pipeline import (AUDIO, FILE, FRAME, EmptyStream, FileItem, FileRun, PipelineDefinitionError, Stage,
                      StageContext, UnsupportedMedia)
from pipeline.buffers import BufferPool
from pipeline.presets import Option

from .colour import Colour
from .frames import AudioFrameItem, StreamInfo, VideoFrameItem, wrap_pixels
from .damage import VideoDamage, read_packets
from .media import check_picture_size, check_readable, decodable, open_decoder, open_media, rotation_turns
from .transforms import rotate_frame
from .y4m import Y4MFile

_RAW_SLOTS = 3

__all__ = ["Decode", "BestEffortTimestamps", "decode_file", "frame_rate"]


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
    """Decode the first video stream (and the first audio stream, when ``audio``) of each file.

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

    def __init__(self, *, audio: bool = True, pixel_format: str | None = None, start: float | None = None,
                 end: float | None = None, fps: float | None = None, every_nth: int = 1,
                 keyframes_only: bool = False, upright: bool = False, audio_rate: int | None = None,
                 audio_layout: str | None = None, audio_block_s: float | None = None,
                 name: str | None = None) -> None:
        super().__init__(name)
        checks = {"every_nth": (every_nth, Option(int, min=1)), "fps": (fps, Option(float, above=0)),
                  "start": (start, Option(float, min=0)), "end": (end, Option(float, above=0)),
                  "audio_rate": (audio_rate, Option(int, min=1000, max=768_000)),
                  "audio_block_s": (audio_block_s, Option(float, above=0, max=60))}
        for key, (value, spec) in checks.items():
            if value is not None:
                spec.validate(key, value, type(self).__name__)
        if start is not None and end is not None and end <= start:
            raise PipelineDefinitionError(f"end ({end}) must come after start ({start})")
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
            ctx.record(frame_count=raw.frame_count, frame_count_exact=True, decode_errors=0)

    def _slot_pool(self, frame_size: int) -> BufferPool:
        """This process's pool of slots for raw frames, made (or remade larger) on demand; ``teardown`` closes it."""
        if self._pool is None or self._pool.slot_size < frame_size:
            self.teardown()
            self._pool = BufferPool(frame_size, _RAW_SLOTS, name="y4m")
        return self._pool

    def _decode(self, item: FileItem, ctx: StageContext) -> Iterator[Any]:
        with open_media(item.path, probe=False) as container:
            vstream, astream = self._streams(item.path, container, ctx)
            damage = VideoDamage(item.path, container, vstream) if vstream is not None else None
            if vstream is not None:
                check_picture_size(item.path, vstream.codec_context.width, vstream.codec_context.height)
                vstream.codec_context.thread_type = "AUTO"
                vstream.codec_context.thread_count = ctx.cpu_budget
                if self.keyframes_only:
                    vstream.codec_context.skip_frame = "NONKEY"
                open_decoder(item.path, vstream.codec_context)
            info = _stream_info(container, vstream, astream)
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
            timestamps = BestEffortTimestamps()
            decoded = audio_errors = 0
            done = False
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
                            decoded / float(info.fps) if info.fps else 0.0)
                        decoded += 1
                        if self.range_end is not None and t >= self.range_end - pick.half_frame:
                            done = True
                            break
                        index = pick(t, decoded - 1)
                        if index is None:
                            continue
                        if info.pix_fmt is None:  # opened without probing: the first frame tells
                            info = dataclasses.replace(info, pix_fmt=frame.format.name)
                        if info.colour is None:  # tags and side data do not cross processes: the stream carries them
                            info = dataclasses.replace(info, colour=Colour.from_frame(frame))
                        yield self._video_item(frame, index, t, info)
                        if pick.emitted % 16 == 0:
                            ctx.progress(pick.emitted, info.frame_count)
                    else:
                        t = float(frame.pts * frame.time_base) - origin if frame.pts is not None else 0.0
                        if self.range_start is not None and t < self.range_start - 0.001:
                            continue
                        if self.range_end is not None and t >= self.range_end:
                            if vstream is None:
                                done = True
                                break
                            continue
                        if blocks is None:
                            yield AudioFrameItem(frame, t, info)
                        else:
                            yield from blocks.feed(frame, t)
                if done:
                    break
            if blocks is not None:
                yield from blocks.feed(None)
        if audio_errors:
            ctx.warn(f"{audio_errors} audio packet(s) failed to decode")
        if damage is None:
            ctx.record(frame_count=0, frame_count_exact=True, decode_errors=audio_errors)
            return
        ctx.record(decode_errors=damage.errors + audio_errors)
        warning = damage.verdict(decoded, to_the_end=not done)  # raises for a truncated file, every frame given
        if warning:
            ctx.warn(warning)
        ctx.progress(pick.emitted, pick.emitted)
        if not self._drops_frames:  # else not every frame was seen: leave the count to the metadata
            ctx.record(frame_count=decoded, frame_count_exact=True)

    def _streams(self, path: str, container: Any, ctx: StageContext) -> tuple[Any, Any]:
        """The video and audio streams to decode: the first of each kind FFmpeg has a decoder for."""
        vstream = decodable(container.streams.video)
        astream = decodable(container.streams.audio) if self.audio else None
        if vstream is None and container.streams.video:
            raise UnsupportedMedia(path, "no decoder for the video stream's codec")
        if vstream is None and astream is None:
            if container.streams.audio and not self.audio:
                raise UnsupportedMedia(path, "no video stream (audio only), and this pipeline decodes no audio")
            raise UnsupportedMedia(path, "no video stream")
        if vstream is None:
            ctx.warn("no video stream (audio only): no pictures")
        return vstream, astream

    def _video_item(self, frame: av.VideoFrame, index: int, t: float, info: StreamInfo) -> VideoFrameItem:
        if self.pixel_format and frame.format.name != self.pixel_format:
            frame = frame.reformat(format=self.pixel_format)
        rotation = int(frame.rotation or 0)
        if self.upright and rotation_turns(rotation):
            frame = rotate_frame(frame, rotation_turns(rotation))
            rotation = 0
        return VideoFrameItem(frame, index, t, rotation, info)


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


def _stream_info(container: Any, vstream: Any, astream: Any) -> StreamInfo:
    duration = container.duration / av.time_base if container.duration else None
    if vstream is None:  # audio only
        return StreamInfo(width=0, height=0, fps=None, time_base=astream.time_base, frame_count=0,
                          audio_rate=astream.rate, audio_channels=astream.channels, duration_s=duration,
                          container=container.format.name, audio_codec=astream.codec_context.name)
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
    )
