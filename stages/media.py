"""Opening media with PyAV: clear errors for bad files, and orientation helpers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from pipeline.errors import StorageError, UnreadableFile
from pipeline.storage import input_size, is_url, open_input

from .errors import CorruptMedia, UndecodableStream, UnsupportedMedia

if TYPE_CHECKING:  # imported where used: building a pipeline loads none of them
    import av

__all__ = ["VIDEO_EXTENSIONS", "WORK_MODULES", "open_media", "open_container", "check_readable", "open_decoder",
           "StreamChoice", "choose_streams", "video_candidates", "audio_candidates", "check_picture_size",
           "ffmpeg_reason", "display_size", "rotation_turns", "fit_within", "sample_aspect"]

VIDEO_EXTENSIONS: tuple[str, ...] = (
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mxf", ".mts", ".m2ts", ".ts", ".mpg", ".mpeg",
    ".wmv", ".flv", ".3gp", ".ogv", ".dv", ".y4m",
)
"""Suffixes a folder walk picks up as video."""

WORK_MODULES: tuple[str, ...] = ("stages._av", "numpy", "pyarrow", "PIL.Image")
"""What the stages' work imports where it runs, in their methods (building a pipeline imports none of it): every
stage's ``preload``, so that the workers' server imports it once, ahead of the workers."""

# PyAV is imported where it is used, through ``_av`` (FFmpeg's logging set up there, once).


# Opening without probing. ``probesize`` 32 (FFmpeg's least) keeps find_stream_info from reading
# ahead, but not from decoding the first video packet it reads with a throwaway decoder (~16 ms
# a 720p keyframe, more at 1080p and 4K): ``skip_frame`` all has that decoder drop every frame.
# The option reaches only find_stream_info's decoders: PyAV opens the ones a caller decodes with
# without it. Audio decoders ignore it (what the header says of audio is known either way).
_NO_PROBE = {"probesize": "32", "skip_frame": "all"}
_DESCRIBED_BY_HEADER = frozenset({"mov,mp4,m4a,3gp,3g2,mj2"})


@contextmanager
def ffmpeg_reasons() -> Iterator[None]:
    """Let FFmpeg's error lines reach exceptions inside the block; keep codec threads out of it."""
    from ._av import av
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
    """Raise :class:`UnreadableFile` saying why, unless ``path`` is a readable file with something in it.

    A URL (``s3://...``) is looked up (one HEAD): a missing object or an empty one is an ``UnreadableFile``; a
    store that cannot be used (missing bucket, denied access, a dead endpoint), a ``StorageError`` naming it.
    """
    if is_url(path):
        if input_size(path) == 0:
            raise UnreadableFile(path, "file is empty (0 bytes)")
        return
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


def open_container(path: str, options: dict[str, str] | None = None) -> av.container.InputContainer:
    """``av.open(path)`` for reading; a URL is read through ``pipeline.storage.open_input`` (ranged reads behind a
    read-ahead buffer, closed with the container). Raises what ``av.open`` raises."""
    from ._av import av
    source = open_input(path)
    if isinstance(source, str):
        return av.open(source, metadata_errors="replace", options=options)
    try:  # the container holds the file object; it is closed when the container lets go of it (collected)
        return av.open(source, metadata_errors="replace", options=options)
    except BaseException:
        source.close()
        raise


@contextmanager
def open_media(path: str, *, probe: bool = True) -> Iterator[av.container.InputContainer]:
    """Open ``path`` for reading, turning every way it can fail into an ``InputError``.

    ``probe=False`` skips FFmpeg's stream probing (it decodes the first frame
    with a throwaway decoder: ~16 ms a 720p keyframe) where the container's
    header already describes every stream (MP4/MOV); what only a decoded frame
    tells (pixel format, colour, a sample aspect ratio stated only in the
    bitstream: ``sample_aspect``) is then known once the caller has decoded one.
    """
    from ._av import av
    check_readable(path)
    try:
        with ffmpeg_reasons():
            container = open_container(path, options=None if probe else _NO_PROBE)
            if not probe and container.format.name not in _DESCRIBED_BY_HEADER:
                container.close()
                container = open_container(path)
    except StorageError:  # the store, not the file (a bucket gone is a FileNotFoundError too): never a bad input
        raise
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


# Choosing streams ---------------------------------------------------------------------
#
# The rules are FFmpeg's. The ffmpeg command line (map_auto_video / map_auto_audio in
# fftools/ffmpeg_mux_init.c) scores each stream: 100000000 if packets of it were seen while
# probing, + 5000000 for the default disposition, + its pixels (video) or channels (audio); an
# attached picture scores 1. av_find_best_stream (what ffplay uses) skips streams with no
# decoder, and audio whose channels or sample rate are unknown, and prefers streams not meant
# for hearing- or visually-impaired audiences. PyAV shows neither "packets seen" nor the
# probe's frame count, so "has data" is read from what the probe leaves behind: a known size
# (video) or rate and channels (audio), and, where the header indexes every frame (MP4/MOV),
# at least one frame in the index. What that cannot tell (an empty Matroska track, whose size
# its header states) the decoder finds out: ``Decode`` then falls back to the next candidate.

_PACKETS_SEEN = 100_000_000
_DEFAULT_DISPOSITION = 5_000_000
_INDEXED_FORMATS = frozenset({"mov", "mp4"})  # demuxers whose stream frame count is an index of every frame


def _has_data(container: Any, stream: Any, known: bool) -> bool:
    """Whether ``stream`` shows signs of holding data: its parameters are ``known``, and an index lists frames."""
    if not known:
        return False
    if _INDEXED_FORMATS & set(container.format.name.split(",")):
        return bool(stream.frames)
    return True


def _video_score(container: Any, stream: Any) -> int:
    """The ffmpeg command line's score of a video stream (higher is better)."""
    from av.stream import Disposition
    cc = stream.codec_context
    pixels = max(0, cc.width) * max(0, cc.height)
    return (pixels + _PACKETS_SEEN * _has_data(container, stream, pixels > 0)
            + _DEFAULT_DISPOSITION * bool(stream.disposition & Disposition.default))


def _audio_rank(container: Any, stream: Any) -> tuple[bool, bool, bool, int]:
    """An audio stream's rank (higher is better): data seen, default, not for impaired audiences, channels."""
    from av.stream import Disposition
    return (_has_data(container, stream, True), bool(stream.disposition & Disposition.default),
            not stream.disposition & (Disposition.hearing_impaired | Disposition.visual_impaired),
            stream.channels or 0)


def _not_pictures(stream: Any) -> bool:
    """Whether ``stream`` is pictures that are not the video: cover art, chapter thumbnails."""
    from av.stream import Disposition
    return bool(stream.disposition & (Disposition.attached_pic | Disposition.timed_thumbnails))


def video_candidates(container: Any) -> list[Any]:
    """The video streams worth decoding, best first: with a decoder, not cover art nor timed thumbnails.

    Ordered by the ffmpeg command line's score (packets seen, then the
    default disposition, then the most pixels, roughly); ties go to the first.
    """
    streams = [s for s in container.streams.video
               if s.codec_context is not None and not _not_pictures(s)]
    return sorted(streams, key=lambda s: -_video_score(container, s))


def audio_candidates(container: Any) -> list[Any]:
    """The audio streams worth decoding, best first: with a decoder, channels and sample rate known.

    Ordered by data seen, the default disposition, not meant for hearing- or
    visually-impaired audiences, then the most channels; ties go to the first.
    """
    streams = [s for s in container.streams.audio
               if s.codec_context is not None and (s.channels or 0) > 0 and (s.rate or 0) > 0]
    return sorted(streams, key=lambda s: _audio_rank(container, s), reverse=True)


@dataclass(frozen=True, slots=True)
class StreamChoice:
    """The video and audio streams chosen in one open file, each with its number among its kind.

    A number is what ffmpeg's stream specifiers call ``0:v:N`` / ``0:a:N``:
    the stream's position among the file's video (audio) streams.
    ``video_fallbacks`` are the numbers of the other video candidates, best
    first (none when a number was asked for): what to decode when the chosen
    stream turns out to give no frame at all.
    """

    video: Any | None
    audio: Any | None
    video_number: int | None
    audio_number: int | None
    video_streams: int
    audio_streams: int
    video_fallbacks: tuple[int, ...] = ()

    def report(self) -> dict[str, int | None]:
        """The report columns that say which streams were used and how many there were."""
        return dict(video_stream=self.video_number, video_streams=self.video_streams,
                    audio_stream=self.audio_number, audio_streams=self.audio_streams)


def _number(streams: Any, stream: Any) -> int | None:
    return None if stream is None else next(i for i, s in enumerate(streams) if s.index == stream.index)


def _asked_stream(path: str, streams: Any, kind: str, number: int) -> Any:
    """Stream ``number`` of ``kind`` (``video``/``audio``), or ``UnsupportedMedia`` saying how many there are."""
    from av.stream import Disposition
    if number >= len(streams):
        have = {0: f"no {kind} stream", 1: f"1 {kind} stream (0:{kind[0]}:0)"}.get(
            len(streams), f"{len(streams)} {kind} streams (0:{kind[0]}:0 to 0:{kind[0]}:{len(streams) - 1})")
        raise UnsupportedMedia(path, f"no {kind} stream 0:{kind[0]}:{number} to decode: the file has {have}")
    stream = streams[number]
    if stream.codec_context is None:
        raise UnsupportedMedia(path, f"no decoder for {kind} stream 0:{kind[0]}:{number}'s codec")
    if _not_pictures(stream):
        what = "cover art" if stream.disposition & Disposition.attached_pic else "timed thumbnails"
        raise UnsupportedMedia(path, f"video stream 0:v:{number} is {what}, not video")
    return stream


def choose_streams(path: str, container: Any, *, video: int | None = None, audio: int | None = None,
                   with_audio: bool = True) -> StreamChoice:
    """The video and audio streams to read from ``container``: those asked for by number, else the best.

    ``video``/``audio`` are numbers among the file's video/audio streams
    (``0:v:N``); one the file lacks, whose codec has no decoder, or that is
    cover art, is an ``UnsupportedMedia`` naming the file and how many it has. Unasked, the
    best candidate by FFmpeg's rules (``video_candidates``/``audio_candidates``),
    or None when there is none; no audio is chosen without ``with_audio``.
    """
    vs, aus = container.streams.video, container.streams.audio
    fallbacks: tuple[int, ...] = ()
    if video is not None:
        vstream = _asked_stream(path, vs, "video", video)
    else:
        ranked = video_candidates(container)
        vstream = ranked[0] if ranked else None
        fallbacks = tuple(_number(vs, s) for s in ranked[1:])  # type: ignore[misc]
    astream = None
    if with_audio:
        if audio is not None:
            astream = _asked_stream(path, aus, "audio", audio)
        else:
            ranked = audio_candidates(container)
            astream = ranked[0] if ranked else None
    return StreamChoice(vstream, astream, _number(vs, vstream), _number(aus, astream), len(vs), len(aus), fallbacks)


def open_decoder(path: str, codec_context: Any) -> None:
    """Start a stream's decoder now (set its threads first), so that one it refuses fails with FFmpeg's reason.

    Opened lazily, at the first packet, the decoder would fail with logging
    off and say only "Invalid data found"; opened here it says what is wrong
    ("Picture size 65535x65535 is invalid"). No codec thread runs yet to log.
    """
    from ._av import av
    try:
        with ffmpeg_reasons():
            codec_context.open(strict=False)
    except av.FFmpegError as exc:
        raise UndecodableStream(path, f"the {codec_context.name} decoder refuses the stream "
                                      f"({ffmpeg_reason(exc)})") from exc


_MAX_PICTURE = (1 << 31) - 1  # FFmpeg's av_image_check_size: (w + 128) x (h + 128) < INT_MAX / 8


def sample_aspect(stream: Any) -> Fraction | None:
    """A video stream's sample (pixel) aspect ratio as FFmpeg guesses it; None when nothing says.

    The container's (MP4's ``pasp``) first, else the codec's: what its
    decoder read from the bitstream (H.264's VUI) once it has decoded a frame,
    which a file opened without probing (``open_media(probe=False)``) knows
    only then.
    """
    for value in (stream.sample_aspect_ratio, stream.codec_context.sample_aspect_ratio
                  if stream.codec_context is not None else None):
        if value and value > 0:
            return Fraction(value)
    return None


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
