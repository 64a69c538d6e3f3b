"""Opening media with PyAV: clear errors for bad files, and orientation helpers."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from typing import Any

import av
import av.logging

from pipeline import CorruptMedia, UndecodableStream, UnreadableFile

__all__ = ["VIDEO_EXTENSIONS", "open_media", "check_readable", "open_decoder", "decodable", "check_picture_size",
           "ffmpeg_reason", "display_size", "rotation_turns", "fit_within"]

VIDEO_EXTENSIONS: tuple[str, ...] = (
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mxf", ".mts", ".m2ts", ".ts", ".mpg", ".mpeg",
    ".wmv", ".flv", ".3gp", ".ogv", ".dv", ".y4m",
)
"""Suffixes a folder walk picks up as video."""

# PyAV's Python log callback can deadlock a threaded codec: a decoder thread
# that logs waits for the GIL while the thread holding it waits for the decoder
# (PyAV issues #751, #909; seen here about once in 30 runs of a file failing
# mid-decode). It is off, except around ``av.open``, where no codec thread runs
# yet and FFmpeg's own reason ("moov atom not found") is worth having on the
# exception (``exc.log``). PyAV's Python logger stays quiet in either case.
av.logging.set_level(None)
logging.getLogger("libav").setLevel(logging.CRITICAL)


_NO_PROBE = {"probesize": "32"}  # FFmpeg's least: find_stream_info reads (and decodes) next to nothing
_DESCRIBED_BY_HEADER = frozenset({"mov,mp4,m4a,3gp,3g2,mj2"})


@contextmanager
def ffmpeg_reasons() -> Iterator[None]:
    """Let FFmpeg's error lines reach exceptions inside the block; keep codec threads out of it."""
    av.logging.set_level(av.logging.ERROR)
    try:
        yield
    finally:
        av.logging.set_level(None)


def ffmpeg_reason(exc: BaseException) -> str:
    """FFmpeg's own words for ``exc``: its last error log line, else the error text."""
    log = getattr(exc, "log", None)
    if log and len(log) >= 3 and log[2]:
        return str(log[2]).strip()
    strerror = getattr(exc, "strerror", None)
    return str(strerror or exc)


def check_readable(path: str) -> None:
    """Raise :class:`UnreadableFile` saying why, unless ``path`` is a readable file with something in it."""
    if os.path.isdir(path):
        raise UnreadableFile(path, "is a folder, not a file")
    try:
        size = os.path.getsize(path)
    except FileNotFoundError as exc:
        raise UnreadableFile(path, "no such file") from exc
    except OSError as exc:  # a link loop, a name too long...
        raise UnreadableFile(path, (exc.strerror or str(exc)).lower()) from exc
    if size == 0:
        raise UnreadableFile(path, "file is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise UnreadableFile(path, "permission denied")


@contextmanager
def open_media(path: str, *, probe: bool = True) -> Iterator[av.container.InputContainer]:
    """Open ``path`` for reading, turning every way it can fail into an ``InputError``.

    ``probe=False`` skips FFmpeg's stream probing (it decodes the first frames
    with a throwaway decoder: ~16 ms a 1080p file) where the container's header
    already describes every stream (MP4/MOV); what only a decoded frame tells
    (pixel format, colour) is then known once the caller has decoded one.
    """
    check_readable(path)
    try:
        with ffmpeg_reasons():
            container = av.open(path, metadata_errors="replace", options=None if probe else _NO_PROBE)
            if not probe and container.format.name not in _DESCRIBED_BY_HEADER:
                container.close()
                container = av.open(path, metadata_errors="replace")
    except av.error.PermissionError as exc:
        raise UnreadableFile(path, "permission denied") from exc
    except (av.error.FileNotFoundError, FileNotFoundError) as exc:
        raise UnreadableFile(path, "no such file") from exc
    except av.FFmpegError as exc:
        raise CorruptMedia(path, f"not a readable media file ({ffmpeg_reason(exc)})") from exc
    try:
        yield container
    finally:
        container.close()


def decodable(streams: Any) -> Any:
    """The first of ``streams`` FFmpeg has a decoder for (PyAV gives the others no codec context), else None."""
    return next((s for s in streams if s.codec_context is not None), None)


def open_decoder(path: str, codec_context: Any) -> None:
    """Start a stream's decoder now (set its threads first), so that one it refuses fails with FFmpeg's reason.

    Opened lazily, at the first packet, the decoder would fail with logging
    off and say only "Invalid data found"; opened here it says what is wrong
    ("Picture size 65535x65535 is invalid"). No codec thread runs yet to log.
    """
    try:
        with ffmpeg_reasons():
            codec_context.open(strict=False)
    except av.FFmpegError as exc:
        raise UndecodableStream(path, f"the {codec_context.name} decoder refuses the stream "
                                      f"({ffmpeg_reason(exc)})") from exc


_MAX_PICTURE = (1 << 31) - 1  # FFmpeg's av_image_check_size: (w + 128) x (h + 128) < INT_MAX / 8


def check_picture_size(path: str, width: int, height: int) -> None:
    """Refuse a picture size no decoder takes (over FFmpeg's own limit), before anything is allocated for it.

    0 passes: a header that does not say leaves the size to the decoder.
    """
    if width < 0 or height < 0 or (width + 128) * (height + 128) >= _MAX_PICTURE // 8:
        raise CorruptMedia(path, f"absurd picture size {width}x{height} in the header")


def rotation_turns(rotation: int | float | None) -> int:
    """Quarter turns counter-clockwise (``np.rot90``'s ``k``) that show a frame upright."""
    return int(round((rotation or 0) / 90.0)) % 4


def display_size(width: int, height: int, rotation: int | float | None = 0,
                 sample_aspect: Fraction | None = None) -> tuple[int, int]:
    """The size a player shows: stored size, stretched by the sample aspect ratio, then rotated."""
    if sample_aspect and sample_aspect > 0 and sample_aspect != 1:
        width = max(1, round(width * sample_aspect))
    if rotation_turns(rotation) % 2:
        return height, width
    return width, height


def fit_within(width: int, height: int, max_width: int, max_height: int, *, even: bool = True,
               upscale: bool = False) -> tuple[int, int]:
    """The largest size with ``width:height``'s aspect that fits the box (portrait pictures get the box turned)."""
    if height > width and max_width > max_height:
        max_width, max_height = max_height, max_width
    scale = min(max_width / width, max_height / height)
    if not upscale:
        scale = min(scale, 1.0)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    if even:
        w, h = max(2, w - w % 2), max(2, h - h % 2)
    return w, h
