"""``Decode``: one pass over a file's packets, emitting every video frame and audio block."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import av

from pipeline import AUDIO, FILE, FRAME, CorruptMedia, FileItem, Stage, StageContext, UnsupportedMedia

from .frames import AudioFrameItem, StreamInfo, VideoFrameItem
from .media import ffmpeg_reason, open_media

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
    count against the file's core budget.
    """

    accepts = (FILE,)
    emits = (FRAME, AUDIO)

    def __init__(self, *, audio: bool = True, name: str | None = None) -> None:
        super().__init__(name)
        self.audio = audio
        if not audio:
            self.emits = (FRAME,)

    def process(self, item: FileItem, ctx: StageContext) -> Iterator[Any]:
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
        duration_s=duration,
    )
