"""Audio: samples as float arrays, and ``AudioLevels`` (peak and RMS loudness of each file)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pipeline import AUDIO, Stage, StageContext

from .frames import AudioFrameItem
from .media import WORK_MODULES

if TYPE_CHECKING:  # imported where used: building a pipeline loads none of them
    import av
    import numpy as np
    import pyarrow as pa

__all__ = ["AudioLevels", "float_samples", "dbfs"]

_SCALE = {"s16": 2.0 ** 15, "s32": 2.0 ** 31, "s64": 2.0 ** 63}


def float_samples(frame: av.AudioFrame) -> np.ndarray:
    """The frame's samples as float32 in [-1, 1], channels first (``channels x samples``)."""
    import numpy as np
    name = frame.format.name
    arr = frame.to_ndarray()
    base = name.rstrip("p")
    if base in _SCALE:
        arr = arr.astype(np.float32) / np.float32(_SCALE[base])
    elif base == "u8":
        arr = (arr.astype(np.float32) - 128.0) / 128.0
    else:
        arr = arr.astype(np.float32, copy=False)
    channels = len(frame.layout.channels)
    if not frame.format.is_planar:  # packed: one row of interleaved samples
        arr = arr.reshape(-1, channels).T
    return arr


def dbfs(level: float) -> float | None:
    """``level`` (1.0 = full scale) in dB relative to full scale; None for silence."""
    return 20.0 * math.log10(level) if level > 0 else None


class AudioLevels(Stage):
    """Record each file's audio peak and RMS level in dBFS (``audio_peak_dbfs``, ``audio_rms_dbfs``).

    Sample peak over all channels, and RMS over all samples of all channels;
    a silent or audio-less file records None. ``prefix`` names the columns
    (two of these stages in one pipeline need different ones).
    """

    accepts = (AUDIO,)
    cacheable = True
    preload = WORK_MODULES

    def __init__(self, *, prefix: str = "audio_", name: str | None = None) -> None:
        super().__init__(name)
        self.prefix = prefix

    @property
    def report_fields(self) -> tuple[pa.Field, ...]:  # built for the report: pyarrow loads then
        import pyarrow as pa
        return (pa.field(f"{self.prefix}peak_dbfs", pa.float64()), pa.field(f"{self.prefix}rms_dbfs", pa.float64()))

    def begin(self, ctx: StageContext) -> None:
        ctx.state.update(peak=0.0, sum_squares=0.0, samples=0)

    def process(self, item: AudioFrameItem, ctx: StageContext) -> None:
        import numpy as np
        x = float_samples(item.frame)
        if x.size:
            st = ctx.state
            st["peak"] = max(st["peak"], float(np.abs(x).max()))
            st["sum_squares"] += float(np.dot(x.reshape(-1), x.reshape(-1)))
            st["samples"] += x.size
        return None

    def end(self, ctx: StageContext) -> None:
        st = ctx.state
        rms = math.sqrt(st["sum_squares"] / st["samples"]) if st["samples"] else 0.0
        ctx.record(**{f"{self.prefix}peak_dbfs": dbfs(st["peak"]), f"{self.prefix}rms_dbfs": dbfs(rms)})
        return None
