"""``Decode``: one pass over a file's packets, emitting every video frame and audio block."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import av

from pipeline import AUDIO, FILE, FRAME, CorruptMedia, FileItem, Stage, StageContext, UnsupportedMedia
from pipeline.buffers import BufferPool

from .frames import AudioFrameItem, StreamInfo, VideoFrameItem
from .media import ffmpeg_reason, open_media
from .y4m import Y4MFile

_RAW_SLOTS = 3

__all__ = ["Decode", "BestEffortTimestamps", "frame_rate"]


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
    count against the file's core budget. ``pixel_format`` converts every
    picture (e.g. ``"rgb24"`` for numpy stages); by default they stay as decoded.
    """

    accepts = (FILE,)
    emits = (FRAME, AUDIO)

    def __init__(self, *, audio: bool = True, pixel_format: str | None = None, name: str | None = None) -> None:
        super().__init__(name)
        self.audio = audio
        self.pixel_format = pixel_format
        if not audio:
            self.emits = (FRAME,)
        self._pool: BufferPool | None = None  # per process, for raw video read straight into slots

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_pool"] = None  # a pool belongs to the process that made it
        return state

    def teardown(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def process(self, item: FileItem, ctx: StageContext) -> Iterator[Any]:
        if item.path.lower().endswith(".y4m"):
            raw = self._open_y4m(item.path)
            if raw is not None:
                yield from self._read_y4m(raw, ctx)
                return
        yield from self._decode(item, ctx)

    def _open_y4m(self, path: str) -> Y4MFile | None:
        """The file as raw frames to read into slots, or None to let FFmpeg handle its layout."""
        raw = Y4MFile(path)
        if raw.pixel_format != "yuv420p" or len(raw.shape) != 2:
            raw.close()
            return None
        return raw

    def _read_y4m(self, raw: Y4MFile, ctx: StageContext) -> Iterator[Any]:
        with raw:
            if self._pool is None or self._pool.slot_size < raw.frame_size:
                self.teardown()
                self._pool = BufferPool(raw.frame_size, _RAW_SLOTS, name="y4m")
            info = StreamInfo(width=raw.width, height=raw.height, fps=raw.fps, time_base=1 / raw.fps,
                              frame_count=raw.frame_count, codec="rawvideo", pix_fmt=raw.pixel_format,
                              container="yuv4mpegpipe")
            for index, (lease, ref) in enumerate(raw.frames(self._pool)):
                with lease:  # the slot is reused once every consumer has seen the frame
                    frame = av.VideoFrame.from_numpy_buffer(ref.array(), format="yuv420p")
                    frame.pts, frame.time_base = index, info.time_base
                    yield VideoFrameItem(frame, index, index / float(raw.fps), 0, info)
                if index % 16 == 15:
                    ctx.progress(index + 1, raw.frame_count)
            if raw.frame_count == 0:
                raise CorruptMedia(raw.path, "no complete frame in the file")
            ctx.progress(raw.frame_count, raw.frame_count)
            ctx.record(frame_count=raw.frame_count, frame_count_exact=True, decode_errors=0)

    def _decode(self, item: FileItem, ctx: StageContext) -> Iterator[Any]:
        with open_media(item.path) as container:
            if not container.streams.video:
                raise UnsupportedMedia(item.path, "no video stream")
            vstream = container.streams.video[0]
            vstream.codec_context.thread_type = "AUTO"
            vstream.codec_context.thread_count = ctx.cpu_budget
            astream = container.streams.audio[0] if self.audio and container.streams.audio else None
            info = _stream_info(container, vstream, astream)
            start = _start_seconds(container, vstream)
            streams = [vstream] + ([astream] if astream is not None else [])
            vtb = vstream.time_base or info.time_base
            timestamps = BestEffortTimestamps()
            n_frames = 0
            errors = 0
            last_error = ""
            for packet in container.demux(*streams):
                try:
                    frames = packet.decode()
                except av.FFmpegError as exc:  # a corrupt packet: skip it, as players do
                    errors += 1
                    last_error = ffmpeg_reason(exc)
                    continue
                for frame in frames:
                    if packet.stream is vstream:
                        ts = timestamps(frame.pts, frame.dts)
                        if self.pixel_format and frame.format.name != self.pixel_format:
                            frame = frame.reformat(format=self.pixel_format)
                        t = float(ts * vtb) - start if ts is not None else (
                            n_frames / float(info.fps) if info.fps else 0.0)
                        yield VideoFrameItem(frame, n_frames, t, int(frame.rotation or 0), info)
                        n_frames += 1
                        if n_frames % 16 == 0:
                            ctx.progress(n_frames, info.frame_count)
                    else:
                        t = float(frame.pts * frame.time_base) - start if frame.pts is not None else 0.0
                        yield AudioFrameItem(frame, t, info)
        if n_frames == 0:
            detail = f": {last_error}" if last_error else ""
            raise CorruptMedia(item.path, f"no video frame could be decoded{detail}")
        if errors:
            ctx.warn(f"{errors} packet(s) failed to decode ({last_error}); {n_frames} frames decoded")
        ctx.progress(n_frames, n_frames)
        ctx.record(frame_count=n_frames, frame_count_exact=True, decode_errors=errors)


def _start_seconds(container: Any, vstream: Any) -> float:
    """The file's time origin: the container's start time, else the video stream's."""
    if container.start_time is not None:
        return container.start_time / av.time_base
    if vstream.start_time is not None and vstream.time_base:
        return float(vstream.start_time * vstream.time_base)
    return 0.0


def _stream_info(container: Any, vstream: Any, astream: Any) -> StreamInfo:
    cc = vstream.codec_context
    duration = container.duration / av.time_base if container.duration else None
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
