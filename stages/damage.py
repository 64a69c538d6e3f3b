"""``VideoDamage``: what went wrong reading one file's video, and whether the file fails for it.

A decode feeds it every video packet it reads, every packet that fails to
decode and the error that stops the reading, if one does. At the end it gives
one of:

* nothing: the video read and decoded cleanly;
* a warning: some packets failed to decode, but the data runs to the end the
  file states (the decoder skips such packets, as players do);
* :class:`TruncatedMedia`: the data ends well before the end the file states
  for its video (an interrupted copy or recording), or cannot be read past
  some point. Every frame before the cut has been handed on by then;
* :class:`EmptyStream` / :class:`UndecodableStream` / :class:`CorruptMedia`
  when not one frame decoded.

"The end the file states" is the video stream's duration, taken only from
headers that say it themselves (MP4/MOV's index, AVI's stream header,
Matroska's ``DURATION`` tag), never FFmpeg's estimate from the bit rate, so
that a complete file is never called truncated.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from .errors import CorruptMedia, EmptyStream, TruncatedMedia, UndecodableStream
from .media import ffmpeg_reason

__all__ = ["VideoDamage", "stated_duration", "read_packets"]

# Data may end this much before the stated end (or two frames, if more) and count as complete.
_END_SLACK_S = 0.5
_HEADER_DURATION_FORMATS = frozenset({"mov", "mp4", "avi"})


def stated_duration(container: Any, stream: Any) -> float | None:
    """Seconds of video the file's own header states (from the stream's start), else None."""
    if _HEADER_DURATION_FORMATS & set(container.format.name.split(",")):
        if stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
        return None
    tag = (stream.metadata or {}).get("DURATION")  # Matroska / WebM, as FFmpeg and mkvmerge write it
    if not tag:
        return None
    try:
        h, m, s = tag.split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)
    except ValueError:
        return None


class VideoDamage:
    """Counts one decode's video packets, failures and where the data ends; judges the file at the end."""

    def __init__(self, path: str, container: Any, stream: Any) -> None:
        self.path = path
        self.time_base = stream.time_base
        self.start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        self.stated_end = stated_duration(container, stream)
        self.fps = float(stream.average_rate) if stream.average_rate else None
        self.indexed = stream.frames or None
        self.packets = 0
        self.errors = 0
        self.first_error_s: float | None = None
        self.last_error = ""
        self.read_error = ""
        self.data_end = 0.0  # where the last video packet read ends, in seconds from the stream's start

    def _seconds(self, packet: Any, end: bool) -> float | None:
        ts = packet.pts if packet.pts is not None else packet.dts
        if ts is None or not self.time_base:
            return None
        return float((ts + ((packet.duration or 0) if end else 0)) * self.time_base) - self.start

    def packet(self, packet: Any) -> None:
        """A video packet was read (the empty packets that flush the decoder are not counted)."""
        if not packet.size:
            return
        self.packets += 1
        end = self._seconds(packet, end=True)
        if end is not None and end > self.data_end:
            self.data_end = end

    def decode_failed(self, packet: Any, exc: BaseException) -> None:
        """``packet`` failed to decode: the decoder skips it."""
        self.errors += 1
        self.last_error = ffmpeg_reason(exc)
        if self.first_error_s is None:
            self.first_error_s = self._seconds(packet, end=False)

    def read_failed(self, exc: BaseException) -> None:
        """The demuxer could read no further."""
        self.read_error = ffmpeg_reason(exc)

    def _frames(self, decoded: int) -> str:
        return f"{decoded} of {self.indexed} frames decoded" if self.indexed else f"{decoded} frames decoded"

    def verdict(self, decoded: int, *, to_the_end: bool) -> str | None:
        """Raise if the file is incomplete or no frame decoded; else a warning for skipped packets, or None.

        ``to_the_end``: the decode meant to read the whole stream (not stopped
        at the end of a time range), so an early end of the data is damage.
        """
        if decoded == 0:
            self._nothing_decoded()
        slack = max(_END_SLACK_S, 2 / self.fps if self.fps else 0.0)
        if to_the_end and self.stated_end is not None and self.data_end < self.stated_end - slack:
            cause = f"; reading stopped: {self.read_error}" if self.read_error else ""
            raise TruncatedMedia(self.path, f"truncated: the data ends at {self.data_end:.2f} s of "
                                            f"{self.stated_end:.2f} s ({self._frames(decoded)}){cause}")
        if to_the_end and self.read_error and self.stated_end is None:
            raise TruncatedMedia(self.path, f"unreadable after {self.data_end:.2f} s ({self.read_error}); "
                                            f"{self._frames(decoded)}")
        if not self.errors:
            return None
        where = f", the first at {self.first_error_s:.2f} s" if self.first_error_s is not None else ""
        return f"{self.errors} packet(s) failed to decode{where} ({self.last_error}); {self._frames(decoded)}"

    def _nothing_decoded(self) -> None:
        if self.packets == 0 and self.read_error:
            raise CorruptMedia(self.path, f"the video data cannot be read ({self.read_error})")
        if self.packets == 0 and self.stated_end:  # the header promises video the data does not hold
            raise TruncatedMedia(self.path, f"truncated: no video data of the {self.stated_end:.2f} s the header "
                                            f"states ({self._frames(0)})")
        if self.packets == 0:
            raise EmptyStream(self.path, "the video stream is empty (no packets)")
        detail = f": {self.last_error}" if self.last_error else ""
        raise UndecodableStream(self.path, f"no video frame could be decoded from {self.packets} packet(s){detail}")


def read_packets(container: Any, streams: list[Any], damage: VideoDamage | None) -> Generator[Any, None, None]:
    """``container.demux(*streams)``, ending (with each decoder flushed) where the demuxer fails.

    The failure goes to ``damage``; without one it is raised. At a clean end
    the demuxer gives the flushing packets itself.
    """
    from ._av import av
    packets = container.demux(*streams)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.FFmpegError as exc:
            if damage is None:
                raise CorruptMedia(container.name, f"unreadable ({ffmpeg_reason(exc)})") from exc
            damage.read_failed(exc)
            break
        yield packet
    for stream in streams:  # an empty packet drains the frames a decoder still holds
        flush = av.Packet()
        flush.stream = stream
        yield flush
