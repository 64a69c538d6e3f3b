"""Footage that looks like what users have, for the benchmarks: camera pans, grain, highlights, B-frames.

Test patterns (flat colour, a moving box, x264 ``ultrafast``) decode and
encode several times faster than camera footage and hide what colour and
deinterlacing cost. The clips here are made from one textured scene (several
octaves of noise, a brighter sky, small specular highlights), panned across
the frame, with an object crossing it and per-frame grain, encoded with the
encoders' ordinary presets (B-frames, CABAC):

* ``hdr_clip``: 10-bit HEVC, BT.2020 primaries, PQ (HDR10, with mastering
  display and MaxCLL metadata) or HLG; diffuse white at 203 nits and
  highlights to 1,000 nits, as BT.2408 grades them. ``tag="sdr"`` writes the
  same pixels tagged BT.709, to time the same decode and encode without a
  tone-map.
* ``interlaced_clip``: broadcast-style interlaced video, rendered at the field
  rate and woven into frames (the lines of each field from its own instant),
  field-coded MPEG-2 in MPEG-TS: 1080i25 (top field first) or 480i29.97
  (bottom field first, SAR 32:27, as NTSC DV and broadcast captures have it).

A clip is a few seconds long; the pixels depend only on ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import av.filter
import numpy as np
from PIL import Image

__all__ = ["hdr_clip", "interlaced_clip", "pq_encode", "hlg_encode", "Scene"]

DIFFUSE_WHITE_NITS = 203.0  # BT.2408's reference white for HDR
PEAK_NITS = 1000.0


def pq_encode(nits: np.ndarray) -> np.ndarray:
    """SMPTE ST 2084 (PQ) inverse EOTF: absolute luminance in nits to a 0-1 signal."""
    m1, m2, c1, c2, c3 = 2610 / 16384, 2523 / 4096 * 128, 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
    y = np.clip(nits / 10000.0, 0.0, 1.0) ** m1
    return ((c1 + c2 * y) / (1 + c3 * y)) ** m2


def hlg_encode(scene: np.ndarray) -> np.ndarray:
    """ARIB STD-B67 (HLG) OETF: scene light, 0-1 (1 = the camera's peak), to a 0-1 signal."""
    a, b, c = 0.17883277, 0.28466892, 0.55991073
    e = np.clip(scene, 0.0, 1.0)
    return np.where(e <= 1 / 12, np.sqrt(3 * e), a * np.log(np.maximum(12 * e - b, 1e-12)) + c)


def _bt709_encode(light: np.ndarray) -> np.ndarray:
    """BT.709 OETF: relative scene light, 0-1, to a 0-1 signal."""
    e = np.clip(light, 0.0, 1.0)
    return np.where(e < 0.018, 4.5 * e, 1.099 * e ** 0.45 - 0.099)


# (Kr, Kb) of each matrix
_MATRIX = {"bt2020nc": (0.2627, 0.0593), "bt709": (0.2126, 0.0722), "smpte170m": (0.299, 0.114)}


def _to_ycbcr(rgb: np.ndarray, matrix: str, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-linear R'G'B' (H x W x 3, 0-1) to limited-range Y'CbCr planes, chroma averaged 2x2 (4:2:0)."""
    kr, kb = _MATRIX[matrix]
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = kr * r + (1 - kr - kb) * g + kb * b
    cb = (b - y) / (2 * (1 - kb))
    cr = (r - y) / (2 * (1 - kr))
    scale = 1 << (bits - 8)
    h, w = y.shape
    sub = lambda p: p.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))  # noqa: E731
    return ((16 + 219 * y) * scale, (128 + 224 * sub(cb)) * scale, (128 + 224 * sub(cr)) * scale)


@dataclass
class Scene:
    """A textured landscape wider than the frame, in relative scene light (1.0 = diffuse white)."""

    width: int
    height: int
    light: np.ndarray  # H x (W + pan) x 3, float32

    @classmethod
    def make(cls, width: int, height: int, pan: int, seed: int) -> Scene:
        rng = np.random.default_rng(seed)
        canvas_w = width + pan
        base = np.zeros((height, canvas_w), np.float32)
        for octave in range(1, 7):  # coarse shapes to fine texture
            cells = (max(2, height >> (7 - octave)), max(2, canvas_w >> (7 - octave)))
            noise = Image.fromarray(rng.random(cells, dtype=np.float32), mode="F")
            base += np.asarray(noise.resize((canvas_w, height), Image.BICUBIC)) / (1.6 ** octave)
        base = (base - base.min()) / (np.ptp(base) or 1.0)
        sky = np.linspace(1.0, 0.0, height, dtype=np.float32)[:, None] ** 3  # a brighter band at the top
        luma = 0.03 + 0.55 * base ** 1.6 + 0.5 * sky
        tint = np.stack([1.0 + 0.25 * np.sin(base * 9), np.ones_like(base), 1.0 + 0.3 * np.cos(base * 7)], axis=-1)
        light = luma[..., None] * tint
        for _ in range(12):  # small specular highlights, up to the peak
            y, x = rng.integers(0, height - 8), rng.integers(0, canvas_w - 8)
            r = int(rng.integers(2, 6))
            light[y:y + r, x:x + r] = PEAK_NITS / DIFFUSE_WHITE_NITS * rng.uniform(0.5, 1.0)
        return cls(width, height, light.astype(np.float32))

    def view(self, x: int, obj_x: int) -> np.ndarray:
        """The frame seen with the camera at ``x`` and the crossing object's left edge at ``obj_x``."""
        frame = self.light[:, x:x + self.width].copy()
        h = self.height
        top, size = h // 3, max(8, h // 5)
        lo, hi = max(0, obj_x), min(self.width, obj_x + size)
        if hi > lo:
            frame[top:top + size, lo:hi] = (1.4, 0.9, 0.5)  # a bright orange panel, above diffuse white
        return frame


def _grain(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """A grain texture larger than the frame; each frame takes a window at a random offset."""
    return rng.normal(0.0, sigma, (shape[0] + 64, shape[1] + 64)).astype(np.float32)


def _window(tex: np.ndarray, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    oy, ox = rng.integers(0, 32) * 2, rng.integers(0, 32) * 2
    return tex[oy:oy + h, ox:ox + w]


def _frame(planes: tuple[np.ndarray, np.ndarray, np.ndarray], fmt: str) -> av.VideoFrame:
    y, u, v = planes
    dtype = np.uint16 if fmt.endswith("10le") else np.uint8
    top = (1 << (10 if dtype is np.uint16 else 8)) - 1
    packed = np.concatenate([np.clip(p, 0, top).astype(dtype).reshape(-1) for p in (y, u, v)])
    return av.VideoFrame.from_ndarray(packed.reshape(y.shape[0] * 3 // 2, y.shape[1]), format=fmt)


HdrKind = Literal["pq", "hlg"]
_CODES = {"bt2020": 9, "bt709": 1, "smpte2084": 16, "arib-std-b67": 18, "bt2020nc": 9, "smpte170m": 6}


def hdr_clip(path: Path, *, kind: HdrKind = "pq", tag: Literal["hdr", "sdr"] = "hdr", width: int = 1920,
             height: int = 1080, seconds: float = 4.0, fps: int = 25, seed: int = 1, preset: str = "fast") -> Path:
    """A 10-bit HEVC clip of a panned scene in PQ or HLG (or the same pixels tagged BT.709, ``tag="sdr"``)."""
    frames = round(seconds * fps)
    scene = Scene.make(width, height, pan=frames * 4, seed=seed)
    rng = np.random.default_rng(seed + 1)
    grain = _grain(rng, (height, width), 0.012)
    if kind == "pq":
        signal = pq_encode(scene.light * DIFFUSE_WHITE_NITS)
        transfer = "smpte2084"
    else:  # HLG: the camera's peak is 1000 nits on the reference display; diffuse white at 0.75 signal
        signal = hlg_encode(scene.light * 0.265)
        transfer = "arib-std-b67"
    tags = ("bt2020", transfer, "bt2020nc") if tag == "hdr" else ("bt709", "bt709", "bt709")
    params = [f"colorprim={tags[0]}", f"transfer={tags[1]}", f"colormatrix={tags[2]}", "log-level=error"]
    if tag == "hdr" and kind == "pq":
        params += ["hdr10=1", "master-display=G(8500,39850)B(6550,2300)R(35400,14600)WP(15635,16450)"
                   "L(10000000,50)", "max-cll=1000,400"]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx265", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p10le"
        cc = stream.codec_context
        cc.color_primaries, cc.color_trc, cc.colorspace = (_CODES[t] for t in tags)
        cc.color_range = 1
        stream.codec_tag = "hvc1"
        stream.options = {"preset": preset, "crf": "20", "x265-params": ":".join(params)}
        for i in range(frames):
            # The camera pans the (already encoded) scene; the object and the grain move in signal space.
            view = scene.view(i * 4, -width // 5 + i * width // frames)
            frame_signal = _signal_window(signal, scene, view, i * 4, kind)
            frame_signal = frame_signal + _window(grain, rng, height, width)[..., None]
            frame = _frame(_to_ycbcr(frame_signal, "bt2020nc", 10), "yuv420p10le")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def _signal_window(signal: np.ndarray, scene: Scene, view: np.ndarray, x: int, kind: HdrKind) -> np.ndarray:
    """The encoded scene at camera position ``x``, with the object (whose light ``view`` has) encoded too."""
    window = signal[:, x:x + scene.width].copy()
    moved = view != scene.light[:, x:x + scene.width]
    if moved.any():
        enc = pq_encode(view * DIFFUSE_WHITE_NITS) if kind == "pq" else hlg_encode(view * 0.265)
        window[moved] = enc[moved]
    return window


def interlaced_clip(path: Path, *, size: Literal["1080i", "480i"] = "1080i", seconds: float = 4.0,
                    seed: int = 2, bitrate: int = 0) -> Path:
    """Field-coded MPEG-2 in MPEG-TS: 1080i25 top field first, or 480i29.97 bottom field first (SAR 32:27)."""
    if size == "1080i":
        width, height, field_rate, tff, sar, matrix = 1920, 1080, Fraction(50), True, None, "bt709"
    else:
        width, height, field_rate, tff, sar, matrix = 720, 480, Fraction(60000, 1001), False, Fraction(32, 27), \
            "smpte170m"
    rate = field_rate / 2
    frames = round(seconds * float(rate))
    fields = frames * 2
    step = max(2, width // 240)  # pan per field
    scene = Scene.make(width, height, pan=fields * step, seed=seed)
    rng = np.random.default_rng(seed + 1)
    grain = _grain(rng, (height, width), 0.015)
    signal = _bt709_encode(scene.light * 0.8)

    def field(k: int) -> np.ndarray:
        view = scene.view(k * step, -width // 5 + k * width // fields)
        window = signal[:, k * step:k * step + width].copy()
        moved = view != scene.light[:, k * step:k * step + width]
        window[moved] = _bt709_encode(view * 0.8)[moved]
        return window + _window(grain, rng, height, width)[..., None]

    graph = av.filter.Graph()
    src = graph.add_buffer(width=width, height=height, format="yuv420p", time_base=1 / rate)
    tag = "bt709" if matrix == "bt709" else "smpte170m"
    mark = graph.add("setparams", f"field_mode={'tff' if tff else 'bff'}:color_primaries={tag}:color_trc={tag}"
                                  f":colorspace={matrix}:range=tv")
    sink = graph.add("buffersink")
    src.link_to(mark)
    mark.link_to(sink)
    graph.configure()
    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_stream("mpeg2video", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        cc = stream.codec_context
        cc.bit_rate = bitrate or (15_000_000 if size == "1080i" else 6_000_000)
        cc.gop_size = 12 if size == "1080i" else 15
        cc.max_b_frames = 2
        cc.field_order = 2 if tff else 3  # tt / bb
        if sar:
            cc.sample_aspect_ratio = sar
        cc.color_primaries = cc.color_trc = cc.colorspace = _CODES[matrix]
        stream.options = {"flags": "+ildct+ilme"}
        for i in range(frames):
            first, second = (_to_ycbcr(field(k), matrix, 8) for k in (2 * i, 2 * i + 1))
            top, bottom = (first, second) if tff else (second, first)
            woven = []  # each plane's even lines from the top field, odd lines from the bottom (4:2:0 by field)
            for t, b in zip(top, bottom):
                plane = np.empty_like(t)
                plane[0::2], plane[1::2] = t[0::2], b[1::2]
                woven.append(plane)
            frame = _frame(tuple(woven), "yuv420p")
            frame.pts = i
            frame.time_base = 1 / rate
            src.push(frame)
            flagged = sink.pull()
            for packet in stream.encode(flagged):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path
