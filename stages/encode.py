"""``Proxy``: a smaller H.264 copy of each file for editing and review, with its audio."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av
import numpy as np
import pyarrow as pa

from pipeline import AUDIO, FRAME, PartialOutput, Stage, StageContext
from pipeline.zerocopy import transfer

from .frames import AudioFrameItem, VideoFrameItem
from .media import display_size, fit_within, rotation_turns

__all__ = ["Proxy", "rotate_yuv420p", "split_yuv420p", "join_yuv420p"]


def split_yuv420p(packed: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y, U and V planes in PyAV's packed yuv420p array (planes back to back)."""
    flat = packed.reshape(-1)
    ys, cs = width * height, (width // 2) * (height // 2)
    return (flat[:ys].reshape(height, width), flat[ys:ys + cs].reshape(height // 2, width // 2),
            flat[ys + cs:ys + 2 * cs].reshape(height // 2, width // 2))


def join_yuv420p(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Pack Y, U and V planes into the array ``VideoFrame.from_ndarray(..., format="yuv420p")`` takes."""
    h, w = y.shape
    return np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(h * 3 // 2, w)


def rotate_yuv420p(frame: av.VideoFrame, turns: int) -> av.VideoFrame:
    """``frame`` (yuv420p, even size) turned ``turns`` quarter turns counter-clockwise."""
    w, h = frame.width, frame.height
    y, u, v = split_yuv420p(frame.to_ndarray(), w, h)
    y, u, v = (np.rot90(p, k=turns) for p in (y, u, v))
    out = join_yuv420p(y, u, v)
    return av.VideoFrame.from_ndarray(out, format="yuv420p")


class Proxy(Stage):
    """Encode an upright H.264 MP4 that fits ``max_width`` x ``max_height`` (turned for portrait).

    Never upscales. Audio is re-encoded to AAC. x264 runs frame-threaded on the
    file's core budget. Written to ``OUT/proxies/<file>.mp4``, atomically.
    With ``passthrough``, a source that already is such a file (H.264 4:2:0 in
    MP4/MOV, within the box, unrotated, AAC or no audio) is copied in the
    kernel instead of re-encoded.
    """

    accepts = (FRAME, AUDIO)
    report_fields = (pa.field("proxy", pa.string()), pa.field("proxy_width", pa.int32()),
                     pa.field("proxy_height", pa.int32()), pa.field("proxy_passthrough", pa.bool_()))

    def __init__(self, *, max_width: int = 1280, max_height: int = 720, codec: str = "libx264",
                 preset: str = "veryfast", crf: int = 23, audio: bool = True, audio_bitrate: int = 128_000,
                 passthrough: bool = False, name: str | None = None) -> None:
        super().__init__(name)
        self.passthrough = passthrough
        self.max_width = max_width
        self.max_height = max_height
        self.codec = codec
        self.preset = preset
        self.crf = crf
        self.audio = audio
        self.audio_bitrate = audio_bitrate

    def begin(self, ctx: StageContext) -> None:
        ctx.state.update(out=None, container=None, video=None, audio=None, pending_audio=[], size=None,
                         turns=0, frames=0, last_pts=None, copy=False)

    def process(self, item: VideoFrameItem | AudioFrameItem, ctx: StageContext) -> None:
        st = ctx.state
        if st["copy"]:
            return None
        if st["container"] is None and isinstance(item, VideoFrameItem) and self._can_copy(item):
            st["copy"] = True
            return None
        if isinstance(item, AudioFrameItem):
            if not self.audio:
                return None
            if st["container"] is None:  # streams are added at the first picture
                st["pending_audio"].append(item)
            else:
                self._encode_audio(item, st)
            return None
        if st["container"] is None:
            self._open(item, ctx)
        self._encode_video(item, st)
        return None

    def end(self, ctx: StageContext) -> None:
        st = ctx.state
        if st["copy"]:
            out = st["out"] = PartialOutput(ctx.output_path("proxies").with_suffix(".mp4"))
            transfer(ctx.file.path, out.part)
            ctx.add_output(out.commit())
            info = ctx.run.record
            ctx.record(proxy=ctx.run.outputs[-1], proxy_width=info.get("width"), proxy_height=info.get("height"),
                       proxy_passthrough=True)
            return None
        container = st["container"]
        if container is None:
            ctx.warn("no picture to encode; no proxy written")
            return None
        for packet in st["video"].encode(None):
            container.mux(packet)
        if st["audio"] is not None:
            for packet in st["audio"].encode(None):
                container.mux(packet)
        container.close()
        st["container"] = None
        path = st["out"].commit()
        ctx.add_output(path)
        w, h = st["size"]
        ctx.record(proxy=ctx.run.outputs[-1], proxy_width=w, proxy_height=h, proxy_passthrough=False)
        return None

    def abort(self, ctx: StageContext) -> None:
        st = ctx.state
        if st.get("container") is not None:
            try:
                st["container"].close()
            except Exception:
                pass
            st["container"] = None
        if st.get("out") is not None:
            st["out"].discard()

    # ------------------------------------------------------------------

    def _can_copy(self, item: VideoFrameItem) -> bool:
        """Whether the source file already is a proxy this stage would make (so a copy will do)."""
        info, frame = item.stream, item.frame
        if not self.passthrough or item.rotation or info.codec != "h264" or info.pix_fmt != "yuv420p":
            return False
        if not (info.container or "").startswith("mov,mp4") or (info.sample_aspect not in (None, 0, 1)):
            return False
        if info.audio_codec not in (None, "aac") or (info.audio_codec and not self.audio):
            return False
        w, h = frame.width, frame.height
        return fit_within(w, h, self.max_width, self.max_height) == (w, h)

    def _open(self, item: VideoFrameItem, ctx: StageContext) -> None:
        st = ctx.state
        frame, info = item.frame, item.stream
        dw, dh = display_size(frame.width, frame.height, item.rotation, info.sample_aspect)
        w, h = fit_within(dw, dh, self.max_width, self.max_height)
        st["size"] = (w, h)
        st["turns"] = rotation_turns(item.rotation)
        out = st["out"] = PartialOutput(ctx.output_path("proxies").with_suffix(".mp4"))
        container = st["container"] = av.open(str(out.part), "w", format="mp4")
        rate = info.fps if info.fps else Fraction(30)
        video = container.add_stream(self.codec, rate=rate)
        video.width, video.height = w, h
        video.pix_fmt = "yuv420p"
        video.time_base = info.time_base
        video.codec_context.time_base = info.time_base
        video.options = {"preset": self.preset, "crf": str(self.crf)}
        # x264's default in PyAV is sliced threads, which barely help; frame threads do.
        video.codec_context.thread_type = "FRAME"
        video.codec_context.thread_count = ctx.cpu_budget
        st["video"] = video
        pending = st["pending_audio"]
        if self.audio and (pending or info.audio_rate):
            channels = info.audio_channels or 2
            audio = container.add_stream("aac", rate=info.audio_rate or 48000,
                                         layout="mono" if channels == 1 else "stereo")
            audio.bit_rate = self.audio_bitrate
            st["audio"] = audio
            for a in pending:
                self._encode_audio(a, st)
        st["pending_audio"] = []

    def _encode_video(self, item: VideoFrameItem, st: dict[str, Any]) -> None:
        w, h = st["size"]
        turns = st["turns"]
        sw, sh = (h, w) if turns % 2 else (w, h)
        frame = item.frame.reformat(width=sw, height=sh, format="yuv420p")
        if turns:
            frame = rotate_yuv420p(frame, turns)
        tb = st["video"].codec_context.time_base
        pts = round(item.time / tb)
        if st["last_pts"] is not None and pts <= st["last_pts"]:  # stamps must rise for the muxer
            pts = st["last_pts"] + 1
        st["last_pts"] = frame.pts = pts
        frame.time_base = tb
        frame.pict_type = 0  # let x264 choose; a decoded frame's type would be forced on it
        for packet in st["video"].encode(frame):
            st["container"].mux(packet)
        st["frames"] += 1

    def _encode_audio(self, item: AudioFrameItem, st: dict[str, Any]) -> None:
        if st["audio"] is None:
            return
        if item.time < 0:
            return
        frame = item.frame
        frame.pts = None  # the encoder numbers samples itself; audio starts with the picture
        for packet in st["audio"].encode(frame):
            st["container"].mux(packet)
