"""Clips whose groups of pictures put a planned decode to the test, made with PyAV's libx264 (video library).

Each is a marker clip (``stages.make_clip``: its frame number in every
picture) re-encoded with CABAC (x264's ``fast`` preset), B-frames and the
keyframe interval its x264 parameters give; optionally with black frames first
(a poster's search), a scene cut (the picture below the marker's band inverted
from that frame on, where x264 puts a keyframe of its own), or a variable frame
rate (frames lasting in turn the durations given, on a 1 ms time base).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from stages import ClipSpec, make_clip

__all__ = ["GopSpec", "make_gop_clip", "keyframe_times"]


@dataclass(frozen=True, slots=True)
class GopSpec:
    """One clip: its name (``.mp4`` or ``.mkv``), length, rate and x264 parameters, and what else it has."""

    name: str
    seconds: float
    fps: int = 25
    x264: str = "keyint=250:min-keyint=25:bframes=3"
    black_frames: int = 0
    cut_at: int | None = None  # the frame from which the picture is inverted (a scene cut)
    vfr_ms: tuple[int, ...] = ()  # frame durations in ms, in turn (empty: a constant rate)
    width: int = 320
    height: int = 240


def make_gop_clip(folder: Path, spec: GopSpec) -> Path:
    """Write the clip ``spec`` describes into ``folder``; its path."""
    plain = make_clip(folder / f"plain-{spec.name}.mp4",
                      ClipSpec("plain.mp4", spec.width, spec.height, spec.seconds, fps=spec.fps,
                               black_frames=spec.black_frames))
    path = folder / spec.name
    band = 2 * max(8, spec.height // 12)  # the marker's cells and its digits stay as they are
    with av.open(str(plain)) as src, av.open(str(path), "w") as dst:
        v = dst.add_stream("libx264", rate=spec.fps)
        v.width, v.height, v.pix_fmt = spec.width, spec.height, "yuv420p"
        v.options = {"preset": "fast", "crf": "23", "x264-params": spec.x264}
        time_base = Fraction(1, 1000) if spec.vfr_ms else Fraction(1, spec.fps)
        v.codec_context.time_base = time_base
        pts = 0
        for i, frame in enumerate(src.decode(video=0)):
            if spec.cut_at is not None and i >= spec.cut_at:
                yuv = frame.to_ndarray(format="yuv420p")
                yuv[band:spec.height] = 255 - yuv[band:spec.height]
                frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            frame.pts, frame.time_base = pts, time_base
            pts += spec.vfr_ms[i % len(spec.vfr_ms)] if spec.vfr_ms else 1
            frame.pict_type = 0  # let x264 choose (a decoded frame's type would be forced)
            for packet in v.encode(frame):
                dst.mux(packet)
        for packet in v.encode(None):
            dst.mux(packet)
    plain.unlink()
    return path


def keyframe_times(path: Path) -> list[float]:
    """The presentation times of the clip's keyframes, from its packets."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        return sorted(float(p.pts * stream.time_base) for p in c.demux(stream) if p.size and p.is_keyframe)
