"""Interlaced video: its field order, detecting combs flags do not announce, and deinterlacing with FFmpeg.

An interlaced frame holds two fields, its even lines (top field) and its odd
lines (bottom field), sampled half a frame apart. Shown as a progressive
picture (scaled for a proxy, a thumbnail), every moving edge is combed.
Where the fields come from is said in three places, none always right:

* the stream's field order (``codec_context.field_order``, FFmpeg's codes,
  named here as ffprobe prints them);
* each decoded frame's interlaced flag (PyAV 18 shows no top-field-first
  flag, but FFmpeg's filters read it: ``parity=auto``);
* the pixels, which FFmpeg's ``idet`` filter reads, for footage whose flags
  were lost in a careless transcode.

:class:`FieldPolicy` weighs them for one stream and hands frames through a
:class:`Deinterlacer` (a filter graph: buffer → bwdif/yadif → buffersink) or
untouched::

    decoded ─┬─ flagged interlaced, or the stream says tt/bb/tb/bt ─► bwdif
    frames   └─ else: hold the first few, run idet over them ─┬─ clear majority tff/bff ─► bwdif
                                                               └─ progressive / unsure ───► as decoded
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

from pipeline.presets import Option

if TYPE_CHECKING:  # imported where used: building a pipeline loads none of them
    import av
    import numpy as np

__all__ = ["Deinterlacer", "FieldPolicy", "FieldDetection", "detect_fields", "combing", "field_order_name",
           "FIELD_ORDERS", "INTERLACED_ORDERS", "DEINTERLACE", "FIELD_RATE"]

FIELD_ORDERS: dict[int, str] = {1: "progressive", 2: "tt", 3: "bb", 4: "tb", 5: "bt"}
"""FFmpeg's ``AVFieldOrder`` codes and ffprobe's names for them (0, unknown, has none: None)."""
INTERLACED_ORDERS = frozenset({"tt", "bb", "tb", "bt"})
# The field shown first: tb is "top coded first, bottom displayed first", bt the reverse.
_SHOWN_FIRST = {"tt": "tff", "bt": "tff", "bb": "bff", "tb": "bff"}

DEINTERLACE = Option(str, choices=("auto", "off", "bwdif", "yadif", "first_field"))
"""What ``Decode(deinterlace=...)`` takes: detect and use bwdif, never, or always with that filter."""
FIELD_RATE = Option(str, choices=("frame", "field"))
"""What ``Decode(rate=...)`` takes: one picture a frame, or one a field (twice the frame rate)."""

# idet's interlace threshold: how much more one weave must comb than the other to call a frame tff or bff.
# FFmpeg's 1.04 calls a slowly moving 10-bit test pattern (../shared/footage/torchcodec_h265_10bits.mp4)
# tff in every frame; at 1.5 it is undetermined, while woven footage stays tff/bff in every frame.
_IDET_THRESHOLD = 1.5
_DETECT_FRAMES = 12  # frames idet reads at the start of a stream that no flag calls interlaced
_DETECT_BYTES = 64 << 20  # ... fewer when that many frames would hold more memory (at least _DETECT_MIN)
_DETECT_MIN = 4
_MAJORITY = 2 / 3  # share of the frames read that idet must call interlaced, and of those one order


def field_order_name(code: int | None) -> str | None:
    """ffprobe's name for FFmpeg's field order code (None for unknown)."""
    return FIELD_ORDERS.get(int(code or 0))


def combing(luma: np.ndarray, margin: int = 0) -> float:
    """How combed a picture is: the mean absolute difference between each line and the mean of its neighbours.

    ``luma`` is one plane (H x W). Smooth or progressive pictures score a few
    units (only real horizontal edges add to it); woven fields of a moving
    scene score high, since every other line belongs to another instant.
    ``margin`` leaves out that many pixels at each border (pass the moving
    region alone, e.g. ``luma[y0:y1, x0:x1]``, to measure only motion).
    """
    import numpy as np
    y = luma.astype(np.float32)
    diff = np.abs(y[1:-1] - (y[:-2] + y[2:]) / 2)
    if margin:
        diff = diff[margin:-margin or None, margin:-margin or None]
    return float(diff.mean()) if diff.size else 0.0


# Filter graphs ------------------------------------------------------------------------


def _drain(graph: av.filter.Graph, out: list[av.VideoFrame]) -> None:
    """Move every frame the graph has ready into ``out``."""
    from ._av import av
    while True:
        try:
            out.append(graph.vpull())
        except (av.BlockingIOError, av.EOFError):
            return


def _graph(frame: av.VideoFrame, time_base: Fraction, chain: Iterable[tuple[str, str]], threads: int,
           sample_aspect: Fraction | None = None) -> av.filter.Graph:
    """buffer (sized, formatted and coloured as ``frame``) → each (filter, args) of ``chain`` → buffersink."""
    from ._av import av
    graph = av.filter.Graph()
    graph.threads = threads
    aspect = sample_aspect if sample_aspect and sample_aspect > 0 else Fraction(1)
    node = graph.add("buffer", video_size=f"{frame.width}x{frame.height}", pix_fmt=frame.format.name,
                     time_base=str(time_base), pixel_aspect=f"{aspect.numerator}/{aspect.denominator}",
                     colorspace=str(int(frame.colorspace)), range=str(int(frame.color_range)))
    for name, args in chain:
        step = graph.add(name, args)
        node.link_to(step)
        node = step
    sink = graph.add("buffersink")
    node.link_to(sink)
    graph.configure()
    return graph


class Deinterlacer:
    """One stream's frames through FFmpeg's bwdif or yadif, or one field of each (``buffer → filter → buffersink``).

    ``rate`` ``"frame"`` gives one picture a frame (``send_frame``); ``"field"``
    one a field, at twice the frame rate (``send_field``). ``parity`` is the
    field shown first: ``"tff"``, ``"bff"`` or ``"auto"`` (each frame's own
    flag, top first when unflagged). ``deint`` ``"all"`` filters every frame,
    ``"interlaced"`` only those flagged so (the others come out as they went
    in). ``"first_field"`` gives each frame's first field alone, half as many
    lines (their samples twice as tall), at no cost: a still made smaller
    than the field loses nothing. ``"field"`` keeps each frame's first field and scales it back to the
    frame's height: a picture of its own, needing no neighbour (frames far
    apart: a keyframes-only decode), at 1.1 ms a 1080 frame where FFmpeg's
    intra-field ``estdif`` takes 100 ms. Output frames keep the input's pixel
    format; their times come from their stamps (in a time base half the
    input's). The graph is built at the first frame and rebuilt, after
    flushing, when the size or pixel format changes. The filters hold a frame
    or two back: ``flush`` at the end of the stream gives them, so no frame is lost.
    """

    def __init__(self, filter: str = "bwdif", *, rate: str = "frame", parity: str = "auto", deint: str = "all",
                 time_base: Fraction = Fraction(1, 90000), sample_aspect: Fraction | None = None,
                 threads: int = 1) -> None:
        mode = {"frame": "send_frame", "field": "send_field"}[rate]
        self.filter = filter
        self.args = f"mode={mode}:parity={parity}:deint={deint}"
        self.parity = parity
        self.time_base = time_base
        self.sample_aspect = sample_aspect
        self.threads = threads
        self._graph: av.filter.Graph | None = None
        self._shape: tuple[int, int, str] | None = None

    def feed(self, frame: av.VideoFrame) -> list[av.VideoFrame]:
        """Push one frame (its ``pts`` in ``time_base``); the frames that came out of the filter."""
        out: list[av.VideoFrame] = []
        shape = (frame.width, frame.height, frame.format.name)
        if shape != self._shape:
            out.extend(self.flush())
            self._graph = _graph(frame, self.time_base, (*self._chain(frame), ("format", shape[2])),
                                 self.threads, self.sample_aspect)
            self._shape = shape
        assert self._graph is not None
        self._graph.vpush(frame)
        _drain(self._graph, out)
        return out

    def _chain(self, frame: av.VideoFrame) -> tuple[tuple[str, str], ...]:
        """The filters for frames like ``frame``."""
        first = "bottom" if self.parity == "bff" else "top"
        if self.filter == "first_field":  # the field alone, half the lines (FFmpeg's field filter: no copy)
            return (("field", f"type={first}"),)
        if self.filter != "field":
            return ((self.filter, self.args),)
        return (("field", f"type={first}"), ("scale", f"w={frame.width}:h={frame.height}:flags=bilinear"),
                ("setsar", str(self.sample_aspect or 1)))

    def flush(self) -> list[av.VideoFrame]:
        """End of stream: the frames the filter still held (the graph is then closed)."""
        out: list[av.VideoFrame] = []
        if self._graph is not None:
            self._graph.vpush(None)
            _drain(self._graph, out)
        self._graph = self._shape = None
        return out


# Detection ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldDetection:
    """What idet called each of the frames it read: top field first, bottom first, progressive, unsure."""

    tff: int = 0
    bff: int = 0
    progressive: int = 0
    undetermined: int = 0

    @property
    def frames(self) -> int:
        return self.tff + self.bff + self.progressive + self.undetermined

    @property
    def order(self) -> str | None:
        """``"tff"`` or ``"bff"`` when a clear majority of the frames are interlaced in one order, else None.

        At least two thirds of the frames read must be called interlaced, and
        two thirds of those in one order: a progressive picture that idet
        finds unsure, or now and then interlaced, is never filtered.
        """
        woven = self.tff + self.bff
        if not self.frames or woven < _MAJORITY * self.frames:
            return None
        if self.tff >= _MAJORITY * woven:
            return "tff"
        if self.bff >= _MAJORITY * woven:
            return "bff"
        return None


def detect_fields(frames: list[av.VideoFrame], time_base: Fraction = Fraction(1, 90000),
                  threads: int = 1) -> FieldDetection:
    """Run FFmpeg's ``idet`` over ``frames`` (the frames are not changed) and count its single-frame verdicts."""
    if not frames:
        return FieldDetection()
    graph = _graph(frames[0], time_base, (("idet", f"intl_thres={_IDET_THRESHOLD}"),), threads)
    seen: list[av.VideoFrame] = []
    shape = (frames[0].width, frames[0].height, frames[0].format.name)
    for frame in frames:
        if (frame.width, frame.height, frame.format.name) != shape:
            break  # the picture changed: what came before is enough to judge by
        graph.vpush(frame)
        _drain(graph, seen)
    graph.vpush(None)
    _drain(graph, seen)
    if not seen:
        return FieldDetection()
    counts = seen[-1].metadata  # idet's running totals, on its last frame
    return FieldDetection(*(round(float(counts.get(f"lavfi.idet.single.{key}", 0)))
                            for key in ("tff", "bff", "progressive", "undetermined")))


def _frames_to_read(frame: av.VideoFrame) -> int:
    """How many frames to hold for idet: ``_DETECT_FRAMES``, fewer for pictures so large they would hog memory."""
    nbytes = sum(p.buffer_size for p in frame.planes) or 1
    return max(_DETECT_MIN, min(_DETECT_FRAMES, _DETECT_BYTES // nbytes))


# The policy ---------------------------------------------------------------------------


class FieldPolicy:
    """Whether, and how, one stream's frames are deinterlaced; hands them on, filtered or as decoded.

    ``mode``: ``"off"`` never; ``"auto"`` with bwdif when frames are flagged
    interlaced (only those frames), when the stream's field order is
    interlaced, or when idet finds a clear majority of the first frames
    woven (then every frame, in the order it found); ``"bwdif"``/``"yadif"``
    every frame with that filter, the order from the same evidence (the
    frames' own flags when there is none). ``flags_only`` (a keyframes-only
    decode: frames far apart) runs no idet and makes each frame a picture of
    its first field alone (``Deinterlacer("field")``), since the others need
    the neighbouring frames; it never doubles the rate.

    Frames go in with their time in seconds and come out, in order, with
    theirs: the same frame and time when untouched, else the filter's
    output and the time of its stamp. Frames held for idet come out once it
    has decided; ``flush`` at the end of the stream gives what is still held.
    """

    def __init__(self, mode: str = "auto", rate: str = "frame", *, stream_order: str | None = None,
                 time_base: Fraction = Fraction(1, 90000), sample_aspect: Fraction | None = None,
                 flags_only: bool = False, threads: int = 1) -> None:
        self.mode = mode
        self.rate = "frame" if flags_only else rate
        self.stream_order = stream_order
        self.time_base = time_base
        self.sample_aspect = sample_aspect
        self.flags_only = flags_only
        self.threads = threads
        self.applied: str | None = None  # the filter in use, once one is
        self.decided_by: str | None = None  # "flags", "stream", "idet" or "option"
        self.detection: FieldDetection | None = None
        self._filter: Deinterlacer | None = None
        self._decided = mode == "off"
        self._held: list[tuple[av.VideoFrame, float]] = []
        self._hold_limit = _DETECT_FRAMES

    @property
    def halves_height(self) -> bool:
        """True when frames come out as their first field alone (half the lines, samples twice as tall)."""
        return self._filter is not None and self._filter.filter == "first_field"

    @property
    def decided(self) -> bool:
        """True once the policy has chosen (the frames it held for idet are out)."""
        return self._decided

    @property
    def per_frame(self) -> bool:
        """True when each picture comes out of its own frame alone, at once: untouched, or one field of it.

        Only then may a decode skip frames (``stages.decode_plan``): bwdif and yadif read the neighbours.
        """
        return self._decided and (self._filter is None or self._filter.filter in ("field", "first_field"))

    @property
    def doubles_rate(self) -> bool:
        """True when frames come out one a field (twice the frame rate)."""
        return self._filter is not None and self.rate == "field"

    def feed(self, frame: av.VideoFrame, t: float) -> list[tuple[av.VideoFrame, float]]:
        """One decoded frame and its time; the frames (and times) ready to hand on, in order."""
        if self._filter is not None:
            return self._filtered(frame, t)
        if self._decided:
            if self.mode in ("auto", "first_field") and frame.interlaced_frame:  # interlaced from here on
                self._start("flags", "auto", "interlaced")
                return self._filtered(frame, t)
            return [(frame, t)]
        if not self._held:
            self._hold_limit = _frames_to_read(frame)
        self._held.append((frame, t))
        if frame.interlaced_frame or self.stream_order in INTERLACED_ORDERS or self.flags_only \
                or len(self._held) >= self._hold_limit:
            return self._decide()
        return []

    def flush(self) -> list[tuple[av.VideoFrame, float]]:
        """End of stream: every frame still held by the detection or the filter."""
        out = self._decide() if not self._decided else []
        if self._filter is not None:
            out.extend(self._timed(self._filter.flush()))
        return out

    def _decide(self) -> list[tuple[av.VideoFrame, float]]:
        """Choose from the held frames' evidence, then release them through the choice."""
        held, self._held = self._held, []
        self._decided = True
        frames = [f for f, _ in held]
        forced = self.mode not in ("auto", "first_field")  # the others filter every frame, interlaced or not
        if any(f.interlaced_frame for f in frames):
            self._start("flags", "auto", "all" if forced else "interlaced")
        elif self.stream_order in INTERLACED_ORDERS:
            self._start("stream", _SHOWN_FIRST[self.stream_order], "all")
        elif not self.flags_only and frames:
            self.detection = detect_fields(frames, self.time_base, self.threads)
            if self.detection.order is not None:
                self._start("idet", self.detection.order, "all")
        if forced and self._filter is None:
            self._start("option", "auto", "all")
        if self._filter is None:
            return held
        out: list[tuple[av.VideoFrame, float]] = []
        for frame, t in held:
            out.extend(self._filtered(frame, t))
        return out

    def _start(self, evidence: str, parity: str, deint: str) -> None:
        name = "field" if self.flags_only else ("bwdif" if self.mode == "auto" else self.mode)
        if self.mode == "first_field":
            name, deint = "first_field", "all"  # every frame alike, so that the picture keeps one size
        if name in ("field", "first_field") and parity == "auto":  # one field taken: the stream says which is first
            parity = _SHOWN_FIRST.get(self.stream_order or "", "tff")
        self._filter = Deinterlacer(name, rate=self.rate, parity=parity, deint=deint, time_base=self.time_base,
                                    sample_aspect=self.sample_aspect, threads=self.threads)
        self.applied = name
        self.decided_by = evidence

    def _filtered(self, frame: av.VideoFrame, t: float) -> list[tuple[av.VideoFrame, float]]:
        assert self._filter is not None
        frame.pts = round(t / self.time_base)
        return self._timed(self._filter.feed(frame))

    @staticmethod
    def _timed(frames: list[av.VideoFrame]) -> list[tuple[av.VideoFrame, float]]:
        return [(f, float(f.pts * f.time_base)) for f in frames]
