"""Truly interlaced test clips: pictures rendered at field rate, woven in pairs, encoded field-coded.

A camera that shoots interlaced video samples the scene twice a frame: the
top field (even lines) at one instant and the bottom field (odd lines) half
a frame later, or the reverse for bottom field first. Here a scene that pans
horizontally is painted at twice the frame rate and every two consecutive
pictures are woven into one frame, so every moving vertical edge shows the
combs a deinterlacer must remove. The frames are then flagged (``setfield``)
and encoded the way broadcast and camcorders do: MPEG-2 with interlaced DCT
and motion estimation in an MPEG-TS, or H.264 with x264's field coding.

``make_striped_progressive_clip`` is the opposite case: progressive footage
whose sharp horizontal lines look like combs to a naive detector but must be
left untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = ["InterlacedSpec", "field_pictures", "weave", "make_interlaced_clip", "make_striped_progressive_clip",
           "NTSC_RATE", "NTSC_SAR", "MARGIN"]

NTSC_RATE = Fraction(30000, 1001)
NTSC_SAR = Fraction(32, 27)  # 720x480 shown at 16:9
SPEED = 6  # pixels the scene moves a field (12 a frame): combs 6 pixels deep on every edge
MARGIN = 16  # pixels at each border that the encoder's edge handling may touch; measures leave them out


@dataclass(frozen=True, slots=True)
class InterlacedSpec:
    """One interlaced clip: codec (``mpeg2video`` in MPEG-TS or ``libx264`` in MP4) and field order (tt or bb)."""

    name: str
    codec: str = "mpeg2video"
    field_order: str = "bb"
    width: int = 720
    height: int = 480
    frames: int = 24
    rate: Fraction = NTSC_RATE
    sar: Fraction = NTSC_SAR
    flagged: bool = True  # False: encoded as progressive, as a careless transcode leaves interlaced footage

    @property
    def container(self) -> str:
        return "mpegts" if self.codec == "mpeg2video" else "mp4"


def field_pictures(width: int, height: int, count: int, seed: int = 0) -> Iterator[np.ndarray]:
    """``count`` luma pictures of a scene panning right by ``SPEED`` pixels each, one per field instant.

    The scene is vertical bars of random width and brightness (sharp vertical
    edges, so horizontal motion combs them) over a soft vertical gradient (so
    lines are not all alike and a deinterlacer's interpolation has something
    to get wrong).
    """
    rng = np.random.default_rng(seed)
    span = width + SPEED * count + 64
    columns = np.empty(span, np.float64)
    x = 0
    while x < span:
        run = int(rng.integers(6, 40))
        columns[x:x + run] = rng.integers(40, 216)
        x += run
    gradient = np.linspace(-20.0, 20.0, height)[:, None]
    for i in range(count):
        offset = SPEED * (count - i)  # the window slides left over the bars: the scene moves right
        yield np.clip(columns[None, offset:offset + width] + gradient, 16, 235).astype(np.uint8)


def weave(earlier: np.ndarray, later: np.ndarray, top_first: bool) -> np.ndarray:
    """One interlaced frame: the first field's lines from ``earlier``, the second field's from ``later``."""
    frame = np.empty_like(earlier)
    first, second = (0, 1) if top_first else (1, 0)
    frame[first::2] = earlier[first::2]
    frame[second::2] = later[second::2]
    return frame


def _yuv420p(luma: np.ndarray) -> av.VideoFrame:
    h, w = luma.shape
    chroma = np.full((h // 2, w), 128, np.uint8)  # neutral U and V, stacked as PyAV lays out 4:2:0
    return av.VideoFrame.from_ndarray(np.concatenate([luma, chroma]), format="yuv420p")


def _flagger(frame: av.VideoFrame, time_base: Fraction, mode: str) -> av.filter.Graph:
    """A graph that marks frames interlaced, top or bottom field first (``setfield``), as encoders read it."""
    graph = av.filter.Graph()
    src = graph.add_buffer(width=frame.width, height=frame.height, format="yuv420p", time_base=time_base)
    setfield = graph.add("setfield", f"mode={mode}")
    sink = graph.add("buffersink")
    src.link_to(setfield)
    setfield.link_to(sink)
    graph.configure()
    return graph


def _add_video(out: av.container.OutputContainer, spec: InterlacedSpec, interlaced: bool) -> av.VideoStream:
    stream = out.add_stream(spec.codec, rate=spec.rate)
    stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
    stream.codec_context.sample_aspect_ratio = spec.sar
    if spec.codec == "mpeg2video":
        stream.codec_context.bit_rate = 12_000_000  # enough that the combs survive the encode
        stream.options = {"flags": "+ildct+ilme", "qmax": "6"} if interlaced else {"qmax": "6"}
    else:
        params = "interlaced=1:" + ("tff=1" if spec.field_order == "tt" else "bff=1") if interlaced else "keyint=30"
        stream.options = {"preset": "ultrafast", "crf": "16", "x264-params": params,
                          **({"flags": "+ildct+ilme"} if interlaced else {})}
    if interlaced:
        stream.codec_context.field_order = 2 if spec.field_order == "tt" else 3  # FFmpeg's AV_FIELD_TT / BB
    return stream


def make_interlaced_clip(path: str | Path, spec: InterlacedSpec, seed: int = 0) -> Path:
    """Write ``spec``'s clip to ``path``: woven field pairs, flagged and field-coded as ``spec.field_order`` says.

    With ``spec.flagged`` False the woven frames are encoded as progressive
    frames: the combs are in the pictures but no flag says so.
    """
    top_first = spec.field_order == "tt"
    pictures = list(field_pictures(spec.width, spec.height, 2 * spec.frames, seed))
    frames = [weave(pictures[2 * k], pictures[2 * k + 1], top_first) for k in range(spec.frames)]
    return _encode(path, spec, frames, interlaced=spec.flagged)


def make_striped_progressive_clip(path: str | Path, frames: int = 24, seed: int = 1) -> Path:
    """A progressive H.264 clip with one-line horizontal stripes and a panning scene (never to be deinterlaced).

    The stripes are as comb-like as a picture gets, and the panning bars move
    (each frame is one instant: nothing is woven), so a detector that mistook
    line-to-line contrast for combing would wrongly filter this clip.
    """
    spec = InterlacedSpec(Path(path).name, codec="libx264", field_order="progressive", width=640, height=360,
                          frames=frames, rate=Fraction(30), sar=Fraction(1))
    pictures = []
    for picture in field_pictures(spec.width, spec.height, 2 * frames, seed):
        picture = picture.copy()
        picture[60:120:2, :] = 30  # dark lines every other row, across the whole width
        picture[61:120:2, :] = 220
        pictures.append(picture)
    return _encode(path, spec, pictures[::2], interlaced=False)


def _encode(path: str | Path, spec: InterlacedSpec, frames: list[np.ndarray], interlaced: bool) -> Path:
    time_base = 1 / spec.rate
    with av.open(str(path), "w", format=spec.container) as out:
        stream = _add_video(out, spec, interlaced)
        flagger = None
        for index, luma in enumerate(frames):
            frame = _yuv420p(luma)
            frame.pts, frame.time_base = index, time_base
            if interlaced:
                flagger = flagger or _flagger(frame, time_base, "tff" if spec.field_order == "tt" else "bff")
                flagger.push(frame)
                frame = flagger.pull()
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return Path(path)
