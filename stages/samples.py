"""Sample footage made with PyAV: moving, textured pictures with a machine-readable frame number.

Every frame carries its number twice at the top: as 16 black/white cells
(bit i of the number in cell i, least significant first), which survive
scaling and compression and are read back by :func:`read_frame_marker`, and
as digits a person can read.

PyAV, numpy and Pillow are imported by the functions that use them: the ``framepipe`` command loads this
module for ``add_command`` when it builds its parser (``framepipe --help`` among others).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import atomic_output

if TYPE_CHECKING:
    import av
    import numpy as np

__all__ = ["ClipSpec", "make_clip", "make_corrupt", "generate_samples", "read_frame_marker",
           "SAMPLE_SET", "MARKER_BITS", "add_command"]

MARKER_BITS = 16
_BAND_FRACTION = 12  # the marker band is 1/12 of the picture's height


@dataclass(frozen=True, slots=True)
class ClipSpec:
    """How to make one sample clip.

    ``pix_fmt`` is the encoded pixel format: ``"yuv420p10le"`` makes a 10-bit
    clip (``libx264`` High 10, or ``libx265`` Main 10), ``"yuv444p"`` allows an
    odd width or height with ``libx264`` (4:2:0 needs even sizes there; ``ffv1``
    in Matroska takes odd sizes in any format). The colour tags take FFmpeg's
    names (``"bt2020"``, ``"smpte2084"``, ``"bt2020nc"``) and are written into the
    bitstream, so ``libx265`` + ``yuv420p10le`` + bt2020/smpte2084 is an HDR10
    clip. ``sar`` is the sample (pixel) aspect ratio; ``tags`` the container's
    metadata (e.g. ``(("title", "Harbour"),)``); ``faststart`` puts an MP4's
    index before its data, as web MP4s have it (cut such a file and the frames
    before the cut still decode).
    """

    name: str
    width: int
    height: int
    seconds: float
    fps: int = 30
    codec: str = "libx264"
    audio: bool = False
    rotation: int = 0
    black_frames: int = 0
    pix_fmt: str = "yuv420p"
    color_primaries: str | None = None
    color_trc: str | None = None
    colorspace: str | None = None
    sar: Fraction | None = None
    tags: tuple[tuple[str, str], ...] = ()
    faststart: bool = False


SAMPLE_SET: tuple[ClipSpec, ...] = (
    ClipSpec("city_1080p_aac.mp4", 1920, 1080, 4.0, audio=True),
    ClipSpec("aerial_4k.mp4", 3840, 2160, 2.0),
    ClipSpec("web_720p_vp9.webm", 1280, 720, 3.0, codec="libvpx-vp9"),
    ClipSpec("phone_854x480_rot90.mp4", 854, 480, 3.0, rotation=-90, audio=True, black_frames=6),
)
"""The clips ``framepipe samples`` writes (plus ``broken_truncated.mp4``)."""


def _band_height(height: int) -> int:
    return max(8, height // _BAND_FRACTION)


def _cell_bounds(width: int) -> list[tuple[int, int]]:
    return [(round(i * width / MARKER_BITS), round((i + 1) * width / MARKER_BITS)) for i in range(MARKER_BITS)]


def read_frame_marker(picture: np.ndarray) -> int:
    """The frame number burnt into ``picture`` (H x W gray or H x W x 3 RGB, as stored, any size)."""
    import numpy as np
    gray = picture.mean(axis=2) if picture.ndim == 3 else picture.astype(np.float64)
    h, w = gray.shape
    band = _band_height(h)
    y0, y1 = max(0, band // 4), max(1, 3 * band // 4)
    value = 0
    for i, (x0, x1) in enumerate(_cell_bounds(w)):
        m = max(1, (x1 - x0) // 4)
        if gray[y0:y1, x0 + m:x1 - m].mean() > 128:
            value |= 1 << i
    return value


class _Painter:
    """Makes the frames of one clip: a textured background that pans, a moving box, the marker."""

    def __init__(self, width: int, height: int, frames: int, seed: int) -> None:
        import numpy as np
        from PIL import Image, ImageFont
        self.w, self.h = width, height
        rng = np.random.default_rng(seed)
        self.step = max(2, width // 240)
        pad_x, pad_y = self.step * frames + 2, self.step * frames // 2 + 2
        tw, th = width + pad_x, height + pad_y
        coarse = rng.integers(40, 215, size=(th // 24 + 2, tw // 24 + 2), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((tw, th), Image.BILINEAR), dtype=np.uint8)
        fine = rng.integers(-12, 13, size=(th, tw), dtype=np.int16)
        self.y_tex = np.clip(smooth.astype(np.int16) + fine, 16, 235).astype(np.uint8)
        cu = rng.integers(90, 166, size=(th // 48 + 2, tw // 48 + 2), dtype=np.uint8)
        cv = rng.integers(90, 166, size=(th // 48 + 2, tw // 48 + 2), dtype=np.uint8)
        self.u_tex = np.asarray(Image.fromarray(cu).resize((tw // 2 + 1, th // 2 + 1), Image.BILINEAR))
        self.v_tex = np.asarray(Image.fromarray(cv).resize((tw // 2 + 1, th // 2 + 1), Image.BILINEAR))
        self.band = _band_height(height)
        self.cells = _cell_bounds(width)
        self.font = ImageFont.load_default(size=max(8, int(self.band * 0.8)))

    def frame(self, index: int, black: bool) -> np.ndarray:
        import numpy as np
        from PIL import Image, ImageDraw

        from .transforms import join_yuv420p
        w, h, band = self.w, self.h, self.band
        dx, dy = self.step * index, (self.step * index) // 2
        if black:
            y = np.full((h, w), 16, np.uint8)
        else:
            y = self.y_tex[dy:dy + h, dx:dx + w].copy()
            box = max(8, h // 6)
            bx = int((w - box) * (0.5 + 0.45 * np.sin(index / 9.0)))
            by = band * 2 + (index * 4) % max(1, h - box - band * 2)
            y[by:by + box, bx:bx + box] = 230
        u = self.u_tex[dy // 2:dy // 2 + h // 2, dx // 2:dx // 2 + w // 2].copy()
        v = self.v_tex[dy // 2:dy // 2 + h // 2, dx // 2:dx // 2 + w // 2].copy()
        for bit, (x0, x1) in enumerate(self.cells):
            y[:band, x0:x1] = 235 if (index >> bit) & 1 else 16
        u[:band // 2] = 128
        v[:band // 2] = 128
        label = Image.new("L", (min(w, band * 7), band), 16)
        ImageDraw.Draw(label).text((2, 0), f"#{index:05d}", fill=235, font=self.font)
        y[band:2 * band, :label.width] = np.asarray(label)
        return join_yuv420p(y, u, v)


def make_clip(path: str | Path, spec: ClipSpec, seed: int = 0) -> Path:
    """Encode the clip ``spec`` describes to ``path`` (atomically) and return the path."""
    import av
    n = max(1, round(spec.seconds * spec.fps))
    # The painter works in 4:2:0 at an even size; odd sizes are cropped from one pixel more.
    painter = _Painter(spec.width + spec.width % 2, spec.height + spec.height % 2, n, seed)
    fmt = "webm" if spec.codec.startswith("libvpx") else "matroska" if spec.codec == "ffv1" else "mp4"
    with atomic_output(path) as part:
        options = {"movflags": "+faststart"} if spec.faststart and fmt == "mp4" else {}
        with av.open(str(part), "w", format=fmt, options=options) as out:
            for key, value in spec.tags:
                out.metadata[key] = value
            v = out.add_stream(spec.codec, rate=spec.fps)
            v.width, v.height, v.pix_fmt = spec.width, spec.height, spec.pix_fmt
            if spec.codec == "libx264":
                v.options = {"preset": "ultrafast", "crf": "20"}
                v.codec_context.thread_type = "FRAME"
            elif spec.codec == "libx265":
                v.options = {"preset": "ultrafast", "crf": "28", "x265-params": "log-level=error"}
            elif spec.codec.startswith("libvpx"):
                v.options = {"deadline": "realtime", "cpu-used": "8", "row-mt": "1", "crf": "32", "b": "0"}
            _set_colour_tags(v.codec_context, spec)
            if spec.sar:
                v.codec_context.sample_aspect_ratio = spec.sar
            if spec.rotation:
                v.set_display_rotation(spec.rotation)
            a = out.add_stream("aac", rate=48000, layout="stereo") if spec.audio else None
            for i in range(n):
                frame = _as_encoded(painter.frame(i, i < spec.black_frames), spec)
                frame.pts = i
                frame.time_base = Fraction(1, spec.fps)
                for packet in v.encode(frame):
                    out.mux(packet)
            for packet in v.encode(None):
                out.mux(packet)
            if a is not None:
                _write_tone(out, a, spec.seconds)
    return Path(path)


def _as_encoded(yuv420p: np.ndarray, spec: ClipSpec) -> av.VideoFrame:
    """A painted picture as a frame of ``spec``'s size and pixel format."""
    import av
    import numpy as np
    frame = av.VideoFrame.from_ndarray(yuv420p, format="yuv420p")
    if (frame.width, frame.height) != (spec.width, spec.height):
        planes = frame.to_ndarray(format="yuv444p")[:, :spec.height, :spec.width]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(planes), format="yuv444p")
    if frame.format.name != spec.pix_fmt:
        frame = frame.reformat(format=spec.pix_fmt)
    return frame


def _set_colour_tags(cc: Any, spec: ClipSpec) -> None:
    """Tag the encoder with ``spec``'s colour primaries, transfer and matrix (FFmpeg names)."""
    from .colour import COLOR_PRIMARIES, COLOR_SPACES, COLOR_TRANSFERS
    for attr, name, table in (("color_primaries", spec.color_primaries, COLOR_PRIMARIES),
                              ("color_trc", spec.color_trc, COLOR_TRANSFERS),
                              ("colorspace", spec.colorspace, COLOR_SPACES)):
        if name is None:
            continue
        codes = [code for code, known in table.items() if known == name]
        if not codes:
            raise ValueError(f"unknown {attr} {name!r}; FFmpeg names: {sorted(table.values())}")
        setattr(cc, attr, codes[0])


def _write_tone(out: Any, stream: Any, seconds: float) -> None:
    import av
    import numpy as np
    rate, block = 48000, 1024
    total = int(rate * seconds)
    t = np.arange(total) / rate
    left = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    right = (0.2 * np.sin(2 * np.pi * 660 * t)).astype(np.float32)
    for start in range(0, total, block):
        chunk = np.stack([left[start:start + block], right[start:start + block]])
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
        frame.sample_rate = rate
        frame.pts = start
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)


def make_corrupt(path: str | Path, source: str | Path) -> Path:
    """A truncated copy of ``source``: its first third, so the MP4 index (at the end) is missing."""
    data = Path(source).read_bytes()
    with atomic_output(path) as part:
        part.write_bytes(data[: len(data) // 3])
    return Path(path)


def _scaled(spec: ClipSpec, scale: float, seconds: float | None) -> ClipSpec:
    def even(x: float) -> int:
        return max(16, int(round(x * scale / 2)) * 2)
    return ClipSpec(spec.name, even(spec.width), even(spec.height), seconds or spec.seconds, spec.fps,
                    spec.codec, spec.audio, spec.rotation, spec.black_frames)


def generate_samples(folder: str | Path, *, scale: float = 1.0, seconds: float | None = None,
                     specs: tuple[ClipSpec, ...] = SAMPLE_SET) -> list[Path]:
    """Write the sample set into ``folder`` (sizes times ``scale``) plus one corrupt file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [make_clip(folder / s.name, _scaled(s, scale, seconds), seed=i) for i, s in enumerate(specs)]
    paths.append(make_corrupt(folder / "broken_truncated.mp4", paths[0]))
    return paths


def add_command(subparsers: Any) -> None:
    """Add ``framepipe samples DIR`` to the command line."""
    p = subparsers.add_parser("samples", help="write a small folder of sample footage (and one corrupt file)")
    p.add_argument("folder", help="where to write the samples")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every picture size (e.g. 0.25)")
    p.add_argument("--seconds", type=float, default=None, help="length of every clip (default: per clip)")
    p.set_defaults(func=_cmd_samples)


def _cmd_samples(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    paths = generate_samples(args.folder, scale=args.scale, seconds=args.seconds)
    for p in paths:
        print(f"{p}  {p.stat().st_size / 1e6:.2f} MB")
    print(f"{len(paths)} samples in {time.perf_counter() - start:.1f} s")
    return 0
