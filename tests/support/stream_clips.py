"""Clips whose streams test the choice of stream and the decoding of size changes, made with PyAV.

Each maker writes one file and returns its path:

* ``two_programme_ts``: an MPEG-TS whose programme table changes mid-file. The
  first programme's MPEG-2 stream holds 3 packets with no decodable data (a
  picture with no sequence header before it); the second programme holds the
  real video and its sound. The two segments are written with their own PIDs
  and programme ids and joined byte for byte, as a broadcast recording that
  starts just before a programme change is.
* ``size_changing_webm``: one VP8 stream whose picture size changes at every
  segment (each segment from its own encoder, starting with a keyframe), as an
  adaptive-bitrate recording switches rungs.
* ``cover_art_first_mp4``: an MP4 whose first video stream is cover art (a PNG
  with the ``attached_pic`` disposition), then the real video and AAC sound.
* ``two_of_each_mkv``: two video streams of different sizes with the default
  flag on the smaller, and two audio streams with the default flag on the one
  with fewer channels: the rules, not the order or the size alone, choose.
* ``empty_track_first_mkv``: a Matroska file whose first (and larger) video
  track has a header and no packet, so probing cannot tell it is empty.
"""

from __future__ import annotations

import io
import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.stream import Disposition
from PIL import Image

__all__ = ["TS_FRAMES", "TS_SIZE", "two_programme_ts", "size_changing_webm", "cover_art_first_mp4",
           "two_of_each_mkv", "empty_track_first_mkv", "COVER_SIZE", "picture", "tone_frequency"]

TS_FRAMES = 30
TS_SIZE = (320, 180)
COVER_SIZE = (300, 300)


def picture(width: int, height: int, index: int) -> av.VideoFrame:
    """A moving diagonal gradient, ``width`` x ``height``, as a yuv420p frame (any size: odd heights too)."""
    y = ((np.arange(width)[None, :] + np.arange(height)[:, None] + 4 * index) % 200 + 28).astype(np.uint8)
    rgb = np.ascontiguousarray(np.stack([y, 255 - y, y // 2], axis=2))
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")


def _encode_video(out: av.container.OutputContainer, stream: av.video.stream.VideoStream, frames: int,
                  fps: int) -> None:
    for i in range(frames):
        frame = picture(stream.width, stream.height, i)
        frame.pts, frame.time_base = i, Fraction(1, fps)
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)


def _encode_tone(out: av.container.OutputContainer, stream: av.audio.stream.AudioStream, seconds: float,
                 frequency: float) -> None:
    """A sine at ``frequency`` Hz on every channel of ``stream`` (48 kHz)."""
    rate, block = 48000, 1152
    channels = stream.codec_context.layout.nb_channels
    samples = (0.2 * np.sin(2 * np.pi * frequency * np.arange(int(rate * seconds)) / rate)).astype(np.float32)
    fmt = stream.codec_context.format.name
    for start in range(0, len(samples), block):
        chunk = np.repeat(samples[None, start:start + block], channels, axis=0)
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=stream.codec_context.layout.name)
        frame.sample_rate, frame.pts = rate, start
        if fmt != "fltp":
            frame = av.AudioResampler(format=fmt, layout=frame.layout.name, rate=rate).resample(frame)[0]
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)


def tone_frequency(samples: np.ndarray, rate: int) -> float:
    """The strongest frequency in ``samples`` (one channel), to tell which tone a stream carries."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))


# An MPEG-TS whose first programme's video is undecodable ------------------------------


def _ts_segment(service: int, first_pid: int, pmt_pid: int, real: bool) -> bytes:
    """One programme as MPEG-TS bytes: the real MPEG-2 video with MP2 sound, or 3 undecodable video packets."""
    buf = io.BytesIO()
    options = {"mpegts_service_id": str(service), "mpegts_start_pid": hex(first_pid),
               "mpegts_pmt_start_pid": hex(pmt_pid)}
    with av.open(buf, "w", format="mpegts", options=options) as out:
        video = out.add_stream("mpeg2video", rate=25)
        video.width, video.height, video.pix_fmt = *TS_SIZE, "yuv420p"
        if real:
            audio = out.add_stream("mp2", rate=48000, layout="stereo")
            _encode_video(out, video, TS_FRAMES, 25)
            _encode_tone(out, audio, TS_FRAMES / 25, 440.0)
        else:
            # A picture start code, then a slice start code, then zeros: the parser cuts one packet per
            # picture, but with no sequence header before them no decoder can make a frame of them.
            payload = b"\x00\x00\x01\x00" + bytes(8) + b"\x00\x00\x01\x01" + bytes(184)
            for i in range(3):
                packet = av.Packet(payload)
                packet.stream, packet.time_base = video, Fraction(1, 90000)
                packet.pts = packet.dts = i * 3600
                out.mux(packet)
    return buf.getvalue()


def two_programme_ts(path: Path) -> Path:
    """A transport stream whose programme changes: an empty MPEG-2 stream first, then the real one."""
    empty = _ts_segment(1, 0x100, 0x1000, real=False)
    real = _ts_segment(2, 0x200, 0x1100, real=True)
    path.write_bytes(empty + real)
    return path


# A VP8 stream that changes size -------------------------------------------------------


def size_changing_webm(path: Path, sizes: list[tuple[int, int]], frames_each: int = 3, fps: int = 10) -> Path:
    """One VP8 stream in WebM whose pictures take each of ``sizes`` in turn, ``frames_each`` frames apiece.

    Each segment comes from its own encoder (so it starts with a keyframe
    that carries its size); every packet goes into the one stream, whose
    header states the first size.
    """
    with av.open(str(path), "w", format="webm") as out:
        stream = out.add_stream("libvpx", rate=fps)
        stream.width, stream.height, stream.pix_fmt = *sizes[0], "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        n = 0
        for width, height in sizes:
            encoder = av.CodecContext.create("libvpx", "w")
            encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
            encoder.time_base, encoder.framerate = Fraction(1, fps), fps
            encoder.options = {"deadline": "realtime", "cpu-used": "8", "crf": "32", "b": "0"}
            for _ in range(frames_each):
                frame = picture(width, height, n)
                frame.pts, frame.time_base = n, Fraction(1, fps)
                n += 1
                for packet in encoder.encode(frame):
                    packet.stream = stream
                    out.mux(packet)
            for packet in encoder.encode(None):
                packet.stream = stream
                out.mux(packet)
    return path


# Cover art before the video ------------------------------------------------------------


def _boxes(data: bytes, start: int, end: int) -> list[tuple[int, int, bytes]]:
    """The ISO-BMFF boxes between ``start`` and ``end``: (offset, size, type)."""
    found, at = [], start
    while at < end:
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        if size == 1:
            size = struct.unpack(">Q", data[at + 8:at + 16])[0]
        elif size == 0:
            size = end - at
        found.append((at, size, kind))
        at += size
    return found


def _user_data_first(data: bytes) -> bytes:
    """The MP4 with its ``moov/udta`` box (where the cover lives) moved before its tracks.

    FFmpeg's MP4 demuxer adds the cover as a stream when it reads ``udta``, so
    the cover becomes stream 0, as in files tagged by some tools. The moov
    keeps its size and the media data does not move: chunk offsets still hold.
    """
    moov = next(b for b in _boxes(data, 0, len(data)) if b[2] == b"moov")
    children = _boxes(data, moov[0] + 8, moov[0] + moov[1])
    order = sorted(children, key=lambda b: {b"mvhd": 0, b"udta": 1}.get(b[2], 2))
    body = b"".join(data[at:at + size] for at, size, _ in order)
    return data[:moov[0] + 8] + body + data[moov[0] + moov[1]:]


def cover_art_first_mp4(path: Path, frames: int = 25, fps: int = 25, size: tuple[int, int] = (160, 90)) -> Path:
    """An MP4 whose first video stream is a PNG cover (``attached_pic``), then H.264 video and AAC sound."""
    png = io.BytesIO()
    Image.new("RGB", COVER_SIZE, (200, 30, 30)).save(png, format="PNG")
    scratch = io.BytesIO()
    with av.open(scratch, "w", format="mp4") as out:
        cover = out.add_stream("png")
        cover.width, cover.height, cover.pix_fmt = *COVER_SIZE, "rgb24"
        cover.disposition = Disposition.attached_pic
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = *size, "yuv420p"
        video.options = {"preset": "ultrafast"}
        audio = out.add_stream("aac", rate=48000, layout="stereo")
        packet = av.Packet(png.getvalue())
        packet.stream, packet.time_base, packet.pts, packet.dts = cover, Fraction(1, fps), 0, 0
        packet.is_keyframe = True
        out.mux(packet)
        _encode_video(out, video, frames, fps)
        _encode_tone(out, audio, frames / fps, 440.0)
    path.write_bytes(_user_data_first(scratch.getvalue()))
    return path


# Several streams of each kind ---------------------------------------------------------


def two_of_each_mkv(path: Path, frames: int = 20, fps: int = 20) -> Path:
    """Video 0:v:0 160x90 (default) and 0:v:1 320x180; audio 0:a:0 stereo 440 Hz and 0:a:1 mono 660 Hz (default)."""
    with av.open(str(path), "w", format="matroska") as out:
        videos = []
        for (width, height), default in (((160, 90), True), ((320, 180), False)):
            v = out.add_stream("libx264", rate=fps)
            v.width, v.height, v.pix_fmt = width, height, "yuv420p"
            v.options = {"preset": "ultrafast"}
            v.disposition = Disposition.default if default else Disposition(0)
            videos.append(v)
        audios = []
        for layout, default in (("stereo", False), ("mono", True)):
            a = out.add_stream("aac", rate=48000, layout=layout)
            a.disposition = Disposition.default if default else Disposition(0)
            audios.append(a)
        for v in videos:
            _encode_video(out, v, frames, fps)
        for a, frequency in zip(audios, (440.0, 660.0)):
            _encode_tone(out, a, frames / fps, frequency)
    return path


def empty_track_first_mkv(path: Path, frames: int = 20, fps: int = 20) -> Path:
    """Matroska: video 0:v:0 640x360 with no packet at all, 0:v:1 160x90 with the frames, and AAC sound."""
    with av.open(str(path), "w", format="matroska") as out:
        empty = out.add_stream("libx264", rate=fps)
        empty.width, empty.height, empty.pix_fmt = 640, 360, "yuv420p"
        empty.options = {"preset": "ultrafast"}
        real = out.add_stream("libx264", rate=fps)
        real.width, real.height, real.pix_fmt = 160, 90, "yuv420p"
        real.options = {"preset": "ultrafast"}
        audio = out.add_stream("aac", rate=48000, layout="stereo")
        _encode_video(out, real, frames, fps)
        _encode_tone(out, audio, frames / fps, 440.0)
    return path
