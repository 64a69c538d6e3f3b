"""``Decode``: one pass over a file's packets, emitting every video frame and audio block."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import av

from pipeline import AUDIO, FILE, FRAME, CorruptMedia, FileItem, Stage, StageContext, UnsupportedMedia

from .frames import AudioFrameItem, StreamInfo, VideoFrameItem
from .media import ffmpeg_reason, open_media

__all__ = ["Decode"]


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
                        t = float(frame.pts * vtb) - start if frame.pts is not None else (
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
    fps = vstream.average_rate or vstream.guessed_rate or None
    duration = container.duration / av.time_base if container.duration else None
    count = vstream.frames or (round(duration * float(fps)) if duration and fps else None)
    return StreamInfo(
        width=cc.width, height=cc.height, fps=fps, time_base=vstream.time_base,
        frame_count=count or None, sample_aspect=vstream.sample_aspect_ratio,
        audio_rate=astream.rate if astream is not None else None,
        audio_channels=astream.channels if astream is not None else None,
        duration_s=duration,
    )
