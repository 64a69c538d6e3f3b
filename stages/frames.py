"""The items the video stages pass along: decoded video frames and audio blocks."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar

import av

from pipeline import AUDIO, FRAME

__all__ = ["StreamInfo", "VideoFrameItem", "AudioFrameItem"]


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What downstream stages need to know of the decoded file's streams."""

    width: int
    height: int
    fps: Fraction | None
    time_base: Fraction
    frame_count: int | None
    sample_aspect: Fraction | None = None
    audio_rate: int | None = None
    audio_channels: int | None = None
    duration_s: float | None = None
    codec: str | None = None
    pix_fmt: str | None = None
    container: str | None = None
    audio_codec: str | None = None


@dataclass(slots=True)
class VideoFrameItem:
    """A decoded picture, its number in the stream and its time in seconds from the file's start."""

    kind: ClassVar[str] = FRAME
    frame: av.VideoFrame
    index: int
    time: float
    rotation: int
    stream: StreamInfo


@dataclass(slots=True)
class AudioFrameItem:
    """A block of decoded audio samples and its time in seconds from the file's start."""

    kind: ClassVar[str] = AUDIO
    frame: av.AudioFrame
    time: float
    stream: StreamInfo
