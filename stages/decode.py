"""``Decode``: one pass over a file's packets, emitting every video frame and audio block."""

from __future__ import annotations

import bisect
import contextlib
import copy
import dataclasses
import os
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import (
    AUDIO,
    FILE,
    FRAME,
    FileItem,
    FileRun,
    InputError,
    Piece,
    PipelineDefinitionError,
    Stage,
    StageContext,
)
from pipeline.presets import Option
from pipeline.storage import is_url

from .colour import Colour
from .damage import VideoDamage, read_packets
from .decode_plan import DecodePlan, StreamIndex, plan_decode, scan_index, seek_target
from .deinterlace import DEINTERLACE, FIELD_RATE, FieldPolicy, field_order_name
from .errors import EmptyStream, UnsupportedMedia
from .frames import AudioFrameItem, StreamInfo, VideoFrameItem, wrap_pixels
from .media import (
    WORK_MODULES,
    StreamChoice,
    check_picture_size,
    check_readable,
    choose_streams,
    open_decoder,
    open_media,
    rotation_turns,
    sample_aspect,
)
from .thumbnails import Sampling, TimeTicks, is_blank
from .transforms import rotate_frame
from .y4m import Y4MFile

if TYPE_CHECKING:  # imported where used: building a pipeline loads none of them
    import av
    import pyarrow as pa

    from pipeline.dataplane import BufferPool

_RAW_SLOTS = 3

__all__ = ["Decode", "Span", "BestEffortTimestamps", "PictureChanges", "decode_file", "frame_rate", "STREAM_NUMBER"]

STREAM_NUMBER = Option(int, min=0, max=1023)
"""What ``video_stream`` / ``audio_stream`` take: a stream's number among the file's streams of its kind."""
PLAN = Option(str, choices=("auto", "straight"))
"""What ``plan`` takes: seek where the file's index says it is cheaper, or always decode straight through."""
PARTS_PER_WORKER = 2  # at most this many parts a worker: the last ones to finish are short, and end together
SPLIT_COLUMNS_ADDED = ("frames_decoded", "frame_count", "decode_errors", "size_changes", "pix_fmt_changes")


@dataclasses.dataclass(frozen=True, slots=True)
class Span:
    """One part of a file cut at keyframes: the frames shown from ``start`` (its keyframe, at stamp ``key_pts``)
    up to ``end`` (the next part's keyframe; None: to the end), in seconds of file time."""

    start: float | None  # None: the first part, from the file's start
    end: float | None
    key_pts: int | None


class BestEffortTimestamps:
    """Picks each frame's timestamp as FFmpeg's ``best_effort_timestamp`` does.

    Some files (AVI with packed B-frames) carry presentation stamps that go
    backwards while their decode stamps are sound: count how often each kind
    fails to increase and trust the one that fails less.
    """

    __slots__ = ("faulty_pts", "faulty_dts", "last_pts", "last_dts")

    def __init__(self) -> None:
        self.faulty_pts = self.faulty_dts = 0
        self.last_pts: int | None = None
        self.last_dts: int | None = None

    def __call__(self, pts: int | None, dts: int | None) -> int | None:
        if dts is not None:
            self.faulty_dts += self.last_dts is not None and dts <= self.last_dts
            self.last_dts = dts
        if pts is not None:
            self.faulty_pts += self.last_pts is not None and pts <= self.last_pts
            self.last_pts = pts
        if pts is not None and (dts is None or self.faulty_pts <= self.faulty_dts):
            return pts
        return dts


def frame_rate(stream: Any, duration_s: float | None) -> Fraction | None:
    """A stream's average frame rate; else frames over duration; else None (never a time base's 1000)."""
    if stream.average_rate:
        return Fraction(stream.average_rate)
    if stream.frames and duration_s:
        return Fraction(stream.frames) / Fraction(duration_s).limit_denominator(1_000_000)
    return None


class Decode(Stage):
    """Decode the best video stream (and the best audio stream, when ``audio``) of each file.

    The streams are those FFmpeg would choose (``choose_streams``): never
    cover art; the one with data, the default one, the largest. When the
    chosen video stream gives no frame at all, the next candidate is decoded.
    ``video_stream`` / ``audio_stream`` ask for one by its number among the
    file's video / audio streams (ffmpeg's ``0:v:N``); a file without it fails.
    The report says which were used (``video_stream``, ``audio_stream``) and how
    many there were (``video_streams``, ``audio_streams``).

    A stream whose picture size or pixel format changes is decoded through
    its changes: each frame comes at its own size (consumers scale), and
    the sizes seen are given in one warning at the end (report column
    ``size_changes``; ``pix_fmt_changes`` for pixel formats).

    A packet that fails to decode is skipped and counted, as players do; the
    file fails only when no frame decodes at all. FFmpeg's decoder threads
    count against the file's core budget. A file without video gives its
    audio alone (when ``audio``); one with neither fails as unsupported.

    Options, all off by default:

    * ``pixel_format``: convert every picture (``"rgb24"``, ``"yuv420p"``, ``"gray"``...).
    * ``start`` / ``end`` (seconds): a time range. Decoding seeks to the
      keyframe at or before ``start`` and drops the frames before it, so the
      first frame given is the first one *shown* at or after ``start`` (exact
      with B-frames and variable frame rate: times come from each frame's
      presentation stamp, not from its position).
    * ``fps``: at most this many frames a second, taking the first frame shown
      at or after each tick of ``1/fps`` (within half a source frame); never
      duplicates a frame.
    * ``every_nth``: one decoded frame in N.
    * ``keyframes_only``: the decoder skips every other frame (fast thumbnails).
    * ``upright``: apply the file's rotation to the pixels (frames then carry rotation 0).
    * ``deinterlace`` (default ``"auto"``): interlaced video is deinterlaced
      with FFmpeg's bwdif when its frames or stream say so, or when idet finds
      the first frames woven though nothing says so (``stages.deinterlace``);
      progressive video is left as decoded. ``"bwdif"``/``"yadif"``: every
      frame, with that filter; ``"off"``: never. A ``keyframes_only`` decode
      trusts the flags alone and makes each frame a picture of its first field (``field``).
      The report's ``deinterlaced`` column names the filter used (None: none).
    * ``rate``: ``"frame"`` (default) gives one picture a frame; ``"field"``
      one a field of deinterlaced video, at twice the frame rate (the frames'
      ``stream.fps`` and ``time_base`` say so).
    * ``audio_rate`` / ``audio_layout`` / ``audio_block_s``: resample audio to
      packed float32 at this rate and layout, in blocks of this many seconds
      (any of them set turns resampling on; blocks default to 1 s).
    * ``sampling``: what the picture stages this Decode feeds need
      (``Thumbnails.sampling()``, ``SpriteSheet.sampling()``), when none of its
      consumers needs every frame: only those frames are given, and the stages
      write what they would have written from every frame.
    * ``split_s`` (default 20): a file at least this long is cut at keyframes
      into parts (of a quarter of it at least, two per worker at most) when
      its pipeline's encoders can run in parts (segment-parallel encoding,
      ``Encode``): each part decodes its own span in its own worker, without
      sound (the encoder takes it from the whole file when it joins the
      parts); progressive video only. A file that starts when no other waits
      (the end of a batch, where workers would idle) is cut from half of
      ``split_s``. None: never cut.
    * ``sampling_when_split``: when the file is cut, what the stages that see
      the whole file need (``Thumbnails.sampling()``...), given as ``sampling``
      is, without sound (the default preset sets it beside a proxy).
    * ``plan`` (default ``"auto"``): when not every frame is given (``fps``,
      ``every_nth``, ``sampling``) and no sound is decoded, the file's index
      is read first (packets only, no decoding) and each wanted frame is reached
      by seeking to the keyframe before it, wherever that decodes far fewer
      frames than straight through (``stages.decode_plan``): the frames given
      are the same. ``"straight"``: always one pass. The report says which
      (``decode_plan``) and how many frames were decoded (``frames_decoded``).

    A frame's ``index`` is its number in the stream when every frame is
    decoded from the start; after a seek, or with ``keyframes_only``, it is
    ``round(time x fps)`` (exact at a constant frame rate).

    Raw 4:2:0 ``.y4m`` video, read whole, goes straight into shared-memory
    slots that are reused: such a frame is valid until the next item is
    pulled from ``process`` (``decode_file`` gives frames that own their pixels).
    """

    accepts = (FILE,)
    emits = (FRAME, AUDIO)
    cacheable = True  # its report columns (frame count, decode errors); it runs while a consumer needs frames
    cache_version = "4"  # 2: streams chosen by FFmpeg's rules, size changes told; 3: deinterlacing; 4: plans
    preload = WORK_MODULES

    @property
    def report_fields(self) -> tuple[pa.Field, ...]:  # built for the report: pyarrow loads then
        import pyarrow as pa
        return (pa.field("video_stream", pa.int32()), pa.field("video_streams", pa.int32()),
                pa.field("audio_stream", pa.int32()), pa.field("audio_streams", pa.int32()),
                pa.field("size_changes", pa.int32()), pa.field("pix_fmt_changes", pa.int32()),
                pa.field("deinterlaced", pa.string()), pa.field("decode_plan", pa.string()),
                pa.field("frames_decoded", pa.int32()))

    def __init__(self, *, audio: bool = True, pixel_format: str | None = None, start: float | None = None,
                 end: float | None = None, fps: float | None = None, every_nth: int = 1,
                 keyframes_only: bool = False, upright: bool = False, audio_rate: int | None = None,
                 audio_layout: str | None = None, audio_block_s: float | None = None,
                 video_stream: int | None = None, audio_stream: int | None = None,
                 deinterlace: str = "auto", rate: str = "frame", sampling: Sampling | Sequence[Sampling] = (),
                 plan: str = "auto", split_s: float | None = 20.0,
                 sampling_when_split: Sampling | Sequence[Sampling] = (), name: str | None = None) -> None:
        super().__init__(name)
        checks = {"every_nth": (every_nth, Option(int, min=1)), "fps": (fps, Option(float, above=0)),
                  "video_stream": (video_stream, STREAM_NUMBER), "audio_stream": (audio_stream, STREAM_NUMBER),
                  "start": (start, Option(float, min=0)), "end": (end, Option(float, above=0)),
                  "audio_rate": (audio_rate, Option(int, min=1000, max=768_000)),
                  "audio_block_s": (audio_block_s, Option(float, above=0, max=60)),
                  "split_s": (split_s, Option(float, min=1))}
        for key, (value, spec) in checks.items():
            if value is not None:
                spec.validate(key, value, type(self).__name__)
        if start is not None and end is not None and end <= start:
            raise PipelineDefinitionError(f"end ({end}) must come after start ({start})")
        if audio_stream is not None and not audio:
            raise PipelineDefinitionError(f"audio_stream={audio_stream} asks for sound, but audio=False decodes none")
        self.video_stream = video_stream
        self.audio_stream = audio_stream
        self.deinterlace = DEINTERLACE.validate("deinterlace", deinterlace, type(self).__name__)
        self.rate = FIELD_RATE.validate("rate", rate, type(self).__name__)
        self.plan = PLAN.validate("plan", plan, type(self).__name__)
        self.sampling = _samplings(sampling, "sampling")
        self.sampling_when_split = _samplings(sampling_when_split, "sampling_when_split")
        self.split_s = split_s
        if self.rate == "field" and self.deinterlace in ("off", "first_field"):
            raise PipelineDefinitionError(f"rate='field' gives a picture a field: it needs deinterlace='auto', "
                                          f"'bwdif' or 'yadif', not {self.deinterlace!r}")
        self.audio = audio
        self.pixel_format = pixel_format
        self.range_start = start
        self.range_end = end
        self.fps = fps
        self.every_nth = every_nth
        self.keyframes_only = keyframes_only
        self.upright = upright
        self.resample = audio and any(v is not None for v in (audio_rate, audio_layout, audio_block_s))
        self.audio_rate = audio_rate
        self.audio_layout = audio_layout
        self.audio_block_s = audio_block_s or 1.0
        if not audio:
            self.emits = (FRAME,)
        self._pool: BufferPool | None = None  # per process, for raw video read straight into slots
        self._reuse_slots = True  # False (decode_file): raw frames are read into arrays they own
        self._span: Span | None = None  # set on the copy that decodes one part of a file

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_pool"] = None  # a pool belongs to the process that made it
        return state

    def teardown(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    @property
    def _drops_frames(self) -> bool:
        return (self.range_start is not None or self.range_end is not None or self.fps is not None
                or self.every_nth > 1 or self.keyframes_only)

    def _may_plan(self, vstream: Any, astream: Any) -> bool:
        """Whether a seek could skip frames: some are left out, and neither sound nor a filter needs the others."""
        sparse = self.fps is not None or self.every_nth > 1 or bool(self.sampling)
        return (self.plan == "auto" and sparse and vstream is not None and astream is None
                and not self.keyframes_only and self.rate == "frame" and self.deinterlace not in ("bwdif", "yadif"))

    def process(self, item: FileItem, ctx: StageContext) -> Iterator[Any]:
        if ctx.part is not None:  # one part of the file: its span, pictures only
            yield from self._variant(range_start=ctx.part.span.start, range_end=ctx.part.span.end, plan="straight",
                                     sampling=(), _span=ctx.part.span)._decode(item, ctx)
            return
        if ctx.split and self.sampling_when_split:  # the encoders run in parts: the rest need only these
            yield from self._variant(sampling=self.sampling_when_split, audio=False)._decode(item, ctx)
            if self.audio:  # (a seek plan skips sound: it comes in a pass of its own)
                yield from self._sound_alone(item, ctx)
            return
        if item.path.lower().endswith(".y4m") and not (self._drops_frames or self.upright or is_url(item.path)):
            raw = self._open_y4m(item.path)
            if raw is not None:
                yield from self._read_y4m(raw, ctx)
                return
        yield from self._decode(item, ctx)

    def _variant(self, **changes: Any) -> Decode:
        """A copy of this stage with other settings, for one file (the stage itself is shared by every file)."""
        other = copy.copy(self)
        for key, value in changes.items():
            setattr(other, key, value)
        return other

    def _sound_alone(self, item: FileItem, ctx: StageContext) -> Iterator[AudioFrameItem]:
        """The chosen audio stream's blocks in a pass of their own, timed as ``_decode`` times them."""
        from ._av import av
        with open_media(item.path, probe=False) as container:
            choice = self._streams(item.path, container, ctx, None)
            astream = choice.audio
            if astream is None:
                return
            ctx.record(audio_stream=choice.audio_number)
            info = _stream_info(container, choice.video, astream, choice)
            origin = _start_seconds(container, choice.video or astream)
            blocks = None
            if self.resample:
                rate = self.audio_rate or astream.rate
                blocks = _AudioBlocks(av.AudioResampler(format="flt", layout=self.audio_layout or None, rate=rate,
                                                        frame_size=max(1, round(rate * self.audio_block_s))),
                                      rate, info)
            errors = 0
            for packet in read_packets(container, [astream], None):
                try:
                    frames = packet.decode()
                except av.FFmpegError:
                    errors += 1
                    continue
                for frame in frames:
                    t = float(frame.pts * frame.time_base) - origin if frame.pts is not None else 0.0
                    yield from [AudioFrameItem(frame, t, info)] if blocks is None else blocks.feed(frame, t)
            if blocks is not None:
                yield from blocks.feed(None)
            if errors:
                ctx.warn(f"{errors} audio packet(s) failed to decode")

    # Parts of a file ---------------------------------------------------------------------

    def parts(self, file: FileItem, ctx: StageContext, workers: int) -> list[Span] | None:
        """Where to cut a long file for encoders that run in parts: at keyframes, into parts of about equal
        length (see ``split_s``); None to keep it whole."""
        from ._av import av
        if self.split_s is None or workers < 2 or self._drops_frames or self.resample or self.rate != "frame" \
                or self.deinterlace not in ("auto", "off") or file.path.lower().endswith(".y4m"):
            return None
        shortest = self.split_s / 4  # a part's least length
        least = 2 * shortest if ctx.batch_ending else self.split_s  # (at a batch's end, workers are idle)
        try:
            with open_media(file.path, probe=False) as container:
                stated = container.duration / av.time_base if container.duration else None
                if stated is not None and stated < least:
                    return None  # (before reading the file's index)
                choice = choose_streams(file.path, container, video=self.video_stream, audio=self.audio_stream,
                                        with_audio=self.audio)
                vstream = choice.video
                if vstream is None or (self.deinterlace == "auto" and
                                       field_order_name(vstream.codec_context.field_order) != "progressive"):
                    return None
                origin = _start_seconds(container, vstream)
                number = vstream.index
            index = scan_index(file.path, number, origin)
        except InputError:
            return None  # the file's own decode says what is wrong with it, as it would have
        if index is None or not index.times:
            return None
        length = index.times[-1] - index.times[0]
        if length < least:
            return None
        count = min(PARTS_PER_WORKER * workers, max(2, int(length // shortest)))
        keys = [(float(index.pts[k] * index.time_base) - origin, index.pts[k]) for k in index.keyframes]
        cuts: list[tuple[float, int]] = []
        for i in range(1, count):
            target = index.times[0] + length * i / count
            near = min(keys, key=lambda key: abs(key[0] - target))
            if near[0] > index.times[0] and (not cuts or near[0] > cuts[-1][0]):
                cuts.append(near)
        if not cuts:
            return None
        starts: list[tuple[float | None, int | None]] = [(None, None), *cuts]
        return [Span(start, starts[i + 1][0] if i + 1 < len(starts) else None, key)
                for i, (start, key) in enumerate(starts)]

    def join(self, pieces: Sequence[Piece], ctx: StageContext) -> None:
        """The file's columns from its parts: the streams of the first, the counts added up."""
        if not pieces:
            return
        record = dict(pieces[0].record)
        for key in SPLIT_COLUMNS_ADDED:
            values = [p.record.get(key) for p in pieces]
            record[key] = sum(values) if all(isinstance(v, int) for v in values) else None
        record["decode_plan"] = f"parts ({len(pieces)})"
        ctx.record(**record)

    def _open_y4m(self, path: str) -> Y4MFile | None:
        """The file as raw frames to read into slots, or None to let FFmpeg handle its layout."""
        check_readable(path)
        raw = Y4MFile(path)
        if raw.pixel_format != "yuv420p" or len(raw.shape) != 2:
            raw.close()
            return None
        return raw

    def _read_y4m(self, raw: Y4MFile, ctx: StageContext) -> Iterator[Any]:
        with raw:
            if raw.frame_count == 0:  # before sizing slots by what the header claims
                raise raw.damage or EmptyStream(raw.path, "no frame in the file")
            pool = self._slot_pool(raw.frame_size) if self._reuse_slots else None
            info = StreamInfo(width=raw.width, height=raw.height, fps=raw.fps, time_base=1 / raw.fps,
                              frame_count=raw.frame_count, codec="rawvideo", pix_fmt=raw.pixel_format,
                              container="yuv4mpegpipe")
            for index in range(raw.frame_count):
                # In a slot, the frame is a view valid until the next one is pulled: the lease is
                # released when this generator resumes (every local consumer has seen it by then,
                # and one that sends it to another process has copied it out). Without slots the
                # frame owns its pixels.
                lease = pool.acquire() if pool is not None else None
                with lease if lease is not None else contextlib.nullcontext():
                    pixels = raw.read(index, lease).array() if lease is not None else raw.read_array(index)
                    frame = wrap_pixels(pixels, "yuv420p")
                    frame.pts, frame.time_base = index, info.time_base
                    if self.pixel_format and self.pixel_format != "yuv420p":
                        frame = frame.reformat(format=self.pixel_format)
                    yield VideoFrameItem(frame, index, index / float(raw.fps), 0, info, keyframe=True)
                if index % 16 == 15:
                    ctx.progress(index + 1, raw.frame_count)
            ctx.progress(raw.frame_count, raw.frame_count)
            if raw.damage is not None:  # every whole frame before it is given
                raise raw.damage
            ctx.record(frame_count=raw.frame_count, frame_count_exact=True, decode_errors=0, video_stream=0,
                       video_streams=1, audio_stream=None, audio_streams=0, size_changes=0, pix_fmt_changes=0,
                       deinterlaced=None, decode_plan="straight", frames_decoded=raw.frame_count)

    def _slot_pool(self, frame_size: int) -> BufferPool:
        """This process's pool of slots for raw frames, made (or remade larger) on demand; ``teardown`` closes it."""
        from pipeline.dataplane import BufferPool
        if self._pool is None or self._pool.slot_size < frame_size:
            self.teardown()
            self._pool = BufferPool(frame_size, _RAW_SLOTS, name="y4m")
        return self._pool

    def _decode(self, item: FileItem, ctx: StageContext) -> Iterator[Any]:
        """Decode the chosen streams; if the chosen video stream gives no frame at all, the next candidate.

        Probing cannot always tell an empty stream (a Matroska track whose
        header states a size, and no packet after it): the decoder finds out.
        A retry reads the file again; the audio already given is not given again.
        """
        result = yield from self._one_pass(item, ctx)
        assert result.choice is not None
        for number in result.choice.video_fallbacks:
            if result.decoded or result.damage is None:
                break
            again = yield from self._one_pass(item, ctx, skip_audio=result.audio_items, video=number)
            if again.decoded:
                ctx.warn(f"video stream 0:v:{result.choice.video_number} gave no frame "
                         f"({_why_no_frame(result.damage)}); decoded video stream 0:v:{number} instead")
                result = again
        self._report(ctx, result)

    def _one_pass(self, item: FileItem, ctx: StageContext, skip_audio: int = 0,
                  video: int | None = None) -> Generator[Any, None, _Pass]:
        """One pass over the file (``_decode_streams``); where a seek plan finds the file is not as its index
        says, the file is decoded again straight through, giving only the frames after those already given."""
        result = _Pass(skip_audio=skip_audio)
        try:
            yield from self._decode_streams(item, ctx, result, video)
            return result
        except _PlanBroken as exc:
            ctx.warn(f"the seek plan was given up ({exc}): decoded again straight through")
        again = _Pass(skip_audio=skip_audio, skip_video=result.video_items)
        yield from self._decode_streams(item, ctx, again, video, planned=False)
        return again

    def _decode_streams(self, item: FileItem, ctx: StageContext, result: _Pass,
                        video: int | None = None, planned: bool = True) -> Iterator[Any]:
        """One pass over the file's chosen streams (video stream ``video``, else the best), giving their frames.

        What it used and saw goes into ``result``. ``planned``: decode by a
        seek plan where the file's index says that is cheaper (``_may_plan``).
        """
        from ._av import av
        with open_media(item.path, probe=False) as container:
            choice = result.choice = self._streams(item.path, container, ctx, video)
            vstream, astream = choice.video, choice.audio
            damage = VideoDamage(item.path, container, vstream) if vstream is not None else None
            if vstream is not None:
                check_picture_size(item.path, vstream.codec_context.width, vstream.codec_context.height)
                vstream.codec_context.thread_type = "AUTO"
                vstream.codec_context.thread_count = ctx.cpu_budget
                if self.keyframes_only:
                    vstream.codec_context.skip_frame = "NONKEY"
                open_decoder(item.path, vstream.codec_context)
            info = _stream_info(container, vstream, astream, choice)
            origin = _start_seconds(container, vstream or astream)
            planning = self._plan(item.path, vstream, astream, info, origin) if planned else None
            if self._span is not None and self._span.key_pts is not None:
                _seek_stamp(container, vstream, self._span.key_pts)  # exactly the part's keyframe
            elif self.range_start:
                _seek(container, vstream or astream, origin + self.range_start)
            pick = _FramePicker(self, info)
            sampler = _Sampler(self.sampling) if self.sampling else None
            blocks = None
            if self.resample and astream is not None:
                rate = self.audio_rate or astream.rate
                blocks = _AudioBlocks(av.AudioResampler(format="flt", layout=self.audio_layout or None, rate=rate,
                                                        frame_size=max(1, round(rate * self.audio_block_s))),
                                      rate, info)
            streams = [s for s in (vstream, astream) if s is not None and (self._span is None or s is vstream)]
            vtb = vstream.time_base if vstream is not None else None
            fields = self._field_policy(vstream, ctx) if vstream is not None else None
            timestamps = BestEffortTimestamps()
            decoded = given = audio_errors = 0
            done = per_field = half_height = False

            def give(pictures: list[tuple[av.VideoFrame, float]]) -> Iterator[VideoFrameItem]:
                """The items for pictures out of the deinterlacer (or as decoded), up to the range's end."""
                nonlocal info, pick, given, done, per_field, half_height
                for picture, t in pictures:
                    if not per_field and fields is not None and fields.doubles_rate:
                        per_field, info = True, _per_field(info)  # one picture a field from now on
                        pick = _FramePicker(self, info) if not given else pick
                    if not half_height and fields is not None and fields.halves_height:
                        half_height, info = True, _half_height(info)  # one field a picture from now on
                    if self.range_end is not None and t >= self.range_end - pick.half_frame:
                        done = True
                        return
                    index = pick(t, given)
                    given += 1
                    if index is None:
                        continue
                    if info.pix_fmt is None:  # opened without probing: the first frame tells
                        info = dataclasses.replace(info, pix_fmt=picture.format.name)
                    if sampler is not None and not sampler.wants(t, info):
                        sampler.hold(picture, index, t, info)  # the last frame, if no other comes
                        continue
                    yield from result.new_video(self._sampled_item(picture, index, t, info, sampler))
                    if pick.emitted % 16 == 0:
                        ctx.progress(pick.emitted, info.frame_count)

            def skip(t: float) -> None:
                """A frame the plan does not decode: the pickers count it as straight through would; none wants it."""
                nonlocal given
                index = pick(t, given)
                given += 1
                if index is None:
                    return
                if sampler is None or sampler.wants(t, info):
                    raise _PlanBroken(f"the frame at {t:.3f} s was skipped, but is wanted")
                sampler.hold(None, index, t, info)

            def lead_over() -> bool:
                """Whether the frames that must be decoded from the start are out (``_PlanRun``)."""
                return (decoded > 0 and (fields is None or fields.decided)
                        and (sampler is None or not sampler.in_lead))

            run = None
            if planning is not None and planning[0].kind == "seek":
                assert vstream is not None and damage is not None and fields is not None
                run = _PlanRun(*planning, first=0 if not self.range_start else None)
                packets = run.packets(container, vstream, damage, lead_over, fields)
            else:
                packets = read_packets(container, streams, damage)
            frame_fps = info.fps
            for packet in packets:
                if damage is not None and packet.stream is vstream:
                    damage.packet(packet)
                if self.keyframes_only and packet.stream is vstream and packet.size and not packet.is_keyframe:
                    continue  # the decoder would drop it anyway (skip_frame): do not even hand it over
                try:
                    frames = packet.decode()
                except av.FFmpegError as exc:  # a corrupt packet: skip it, as players do
                    if damage is not None and packet.stream is vstream:
                        damage.decode_failed(packet, exc)
                    else:
                        audio_errors += 1
                    continue
                for frame in frames:
                    if packet.stream is vstream:
                        ts = timestamps(frame.pts, frame.dts)
                        t = float(ts * vtb) - origin if ts is not None else (
                            decoded / float(frame_fps) if frame_fps else 0.0)
                        decoded += 1
                        result.pictures.see(frame)
                        if info.colour is None:  # tags and side data do not cross processes: the stream carries them
                            info = dataclasses.replace(info, colour=Colour.from_frame(frame))
                        assert fields is not None
                        if decoded == 1 and not info.sample_aspect:  # opened without probing: the decoder tells
                            aspect = fields.sample_aspect = sample_aspect(vstream)
                            info = dataclasses.replace(info, sample_aspect=aspect)
                        if run is not None and not run.place(ts, skip):
                            continue  # decoded before, by a seek that landed early
                        pictures = fields.feed(frame, t)
                        if run is not None and run.following and (len(pictures) != 1 or not fields.per_frame):
                            raise _PlanBroken("the deinterlacer turned to one that reads neighbouring frames")
                        yield from give(pictures)
                        if done:
                            break
                    else:
                        t = float(frame.pts * frame.time_base) - origin if frame.pts is not None else 0.0
                        if self.range_start is not None and t < self.range_start - 0.001:
                            continue
                        if self.range_end is not None and t >= self.range_end:
                            if vstream is None:
                                done = True
                                break
                            continue
                        yield from result.new_audio([AudioFrameItem(frame, t, info)] if blocks is None
                                                    else blocks.feed(frame, t))
                if done:
                    break
            stopped = run is not None and run.stopped  # every wanted frame is out: nothing is held that is wanted
            if fields is not None and not done and not stopped:  # what the deinterlacer (or its detection) holds
                yield from give(fields.flush())
            if sampler is not None and sampler.held is not None:  # the last frame, which no tick wanted
                picture, index, t, held_info = sampler.held
                if picture is None:
                    raise _PlanBroken("the last frame was skipped")
                yield from result.new_video(self._sampled_item(picture, index, t, held_info, None))
            if blocks is not None:
                yield from result.new_audio(blocks.feed(None))
        result.damage, result.decoded, result.done = damage, decoded, done or stopped
        result.audio_errors, result.emitted = audio_errors, pick.emitted
        result.deinterlaced = fields.applied if fields is not None else None
        if vstream is not None:
            result.plan = "seek" if run is not None and run.following else "straight"
            result.indexed = len(run.index.shown) if run is not None and run.following else None

    def _sampled_item(self, picture: av.VideoFrame, index: int, t: float, info: StreamInfo,
                      sampler: _Sampler | None) -> VideoFrameItem:
        """The item for a picture given; one given while a poster is searched for tells the search."""
        video_item = self._video_item(picture, index, t, info)
        if sampler is not None:
            sampler.given(video_item)
        return video_item

    def _plan(self, path: str, vstream: Any, astream: Any, info: StreamInfo,
              origin: float) -> tuple[DecodePlan, StreamIndex] | None:
        """How to decode the file, from its index (``stages.decode_plan``); None when no plan can skip a frame."""
        if not self._may_plan(vstream, astream):
            return None
        index = scan_index(path, vstream.index, origin)
        if index is None:
            return None
        pick = _FramePicker(self, info)
        sampler = _Sampler(self.sampling, lead=False) if self.sampling else None
        wanted: list[int] = []
        last = None
        for frame, t in enumerate(index.times):  # what the pickers would give, frame by frame
            if self.range_end is not None and t >= self.range_end - pick.half_frame:
                break
            if pick(t, frame) is None:
                continue
            last = frame
            if sampler is None or sampler.wants(t, info):
                wanted.append(frame)
        if sampler is not None and sampler.last and last is not None and wanted[-1:] != [last]:
            wanted.append(last)
        start = 0
        if self.range_start:  # decoding starts at the keyframe before the range
            first = bisect.bisect_left(index.times, self.range_start - pick.half_frame)
            start = index.keyframe_for(first) if first < len(index.times) else len(index.pts)
        return plan_decode(index, wanted, start), index

    def _report(self, ctx: StageContext, result: _Pass) -> None:
        """Record what the decode used and saw; warn of what a user should know; fail a file with no frame."""
        assert result.choice is not None
        ctx.record(**result.choice.report())
        ctx.record(decode_plan=result.plan, frames_decoded=result.decoded)
        audio_errors, damage = result.audio_errors, result.damage
        if audio_errors:
            ctx.warn(f"{audio_errors} audio packet(s) failed to decode")
        if damage is None:
            ctx.record(frame_count=0, frame_count_exact=True, decode_errors=audio_errors, deinterlaced=None)
            return
        ctx.record(decode_errors=damage.errors + audio_errors, deinterlaced=result.deinterlaced)
        warning = damage.verdict(result.decoded, to_the_end=not result.done)  # raises for a truncated file
        if warning:
            ctx.warn(warning)
        pictures = result.pictures
        ctx.record(size_changes=pictures.size_changes, pix_fmt_changes=pictures.format_changes)
        for change in pictures.warnings():
            ctx.warn(change)
        ctx.progress(result.emitted, result.emitted)
        if self._span is not None:  # one part of the file: the frames of its span (the join adds them up)
            ctx.record(frame_count=result.emitted, frame_count_exact=True)
        elif not self._drops_frames:  # else not every frame was seen: leave the count to the metadata
            # A seek plan (for the frames ``sampling`` asks for) counted every frame in the index instead.
            ctx.record(frame_count=result.decoded if result.indexed is None else result.indexed,
                       frame_count_exact=True)

    def _field_policy(self, vstream: Any, ctx: StageContext) -> FieldPolicy:
        """How this stream's frames are deinterlaced (``stages.deinterlace``), from the options and its field order."""
        order = field_order_name(vstream.codec_context.field_order)
        return FieldPolicy(self.deinterlace, self.rate, stream_order=order, time_base=vstream.time_base,
                           sample_aspect=vstream.sample_aspect_ratio,
                           flags_only=self.keyframes_only, threads=ctx.cpu_budget)

    def _streams(self, path: str, container: Any, ctx: StageContext, video: int | None) -> StreamChoice:
        """The video and audio streams to decode (``choose_streams``); fails when there is nothing to decode.

        ``video`` (a number among the video streams) overrides the option: a fallback's retry.
        """
        choice = choose_streams(path, container, video=self.video_stream if video is None else video,
                                audio=self.audio_stream, with_audio=self.audio)
        videos = container.streams.video
        if choice.video is None and any(s.codec_context is None for s in videos):
            raise UnsupportedMedia(path, "no decoder for the video stream's codec")
        what = "no video stream but cover art" if videos else "no video stream"
        if choice.video is None and choice.audio is None:
            if container.streams.audio and not self.audio:
                raise UnsupportedMedia(path, f"{what} (audio only), and this pipeline decodes no audio")
            raise UnsupportedMedia(path, what)
        if choice.video is None:
            ctx.warn(f"{what} (audio only): no pictures")
        return choice

    def _video_item(self, frame: av.VideoFrame, index: int, t: float, info: StreamInfo) -> VideoFrameItem:
        keyframe = bool(frame.key_frame)  # (a reformatted or rotated frame no longer says)
        if self.pixel_format and frame.format.name != self.pixel_format:
            frame = frame.reformat(format=self.pixel_format)
        rotation = int(frame.rotation or 0)
        if self.upright and rotation_turns(rotation):
            frame = rotate_frame(frame, rotation_turns(rotation))
            rotation = 0
        return VideoFrameItem(frame, index, t, rotation, info, keyframe=keyframe)


class PictureChanges:
    """The picture sizes and pixel formats a video stream goes through, and how often it changes them.

    A stream may change size mid-way (VP8/VP9 and H.264 allow it at a
    keyframe; an adaptive-bitrate recording switches rungs): each frame is
    given at its own size, and the changes are told once, at the end.
    """

    __slots__ = ("sizes", "formats", "size_changes", "format_changes", "_last")

    _LISTED = 12  # sizes named in a warning; past that the middle ones are elided

    def __init__(self) -> None:
        self.sizes: list[tuple[int, int]] = []  # distinct sizes, in the order first seen
        self.formats: list[str] = []
        self.size_changes = 0
        self.format_changes = 0
        self._last: tuple[int, int, str] | None = None

    def see(self, frame: av.VideoFrame) -> None:
        """Note one decoded frame's size and pixel format."""
        now = (frame.width, frame.height, frame.format.name)
        if now == self._last:
            return
        if self._last is not None:
            self.size_changes += now[:2] != self._last[:2]
            self.format_changes += now[2] != self._last[2]
        if now[:2] not in self.sizes:
            self.sizes.append(now[:2])
        if now[2] not in self.formats:
            self.formats.append(now[2])
        self._last = now

    def warnings(self) -> list[str]:
        """One line for size changes and one for pixel-format changes (none when the stream kept both)."""
        out = []
        if self.size_changes:
            named = [f"{w}x{h}" for w, h in self.sizes]
            if len(named) > self._LISTED:
                named = named[:self._LISTED // 2] + ["..."] + named[-self._LISTED // 2:]
            out.append(f"video size changes {_times(self.size_changes)}: {', '.join(named)}")
        if self.format_changes:
            out.append(f"video pixel format changes {_times(self.format_changes)}: {', '.join(self.formats)}")
        return out


def _why_no_frame(damage: VideoDamage) -> str:
    """Why a stream gave no frame, in the words its failure would have had."""
    try:
        damage.verdict(0, to_the_end=True)
    except InputError as exc:
        return exc.reason
    return "no frame decoded"


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


@dataclasses.dataclass
class _Pass:
    """What one pass over a file's chosen streams used and saw (a retry on another video stream is a new pass)."""

    skip_audio: int = 0  # audio items an earlier pass gave already
    audio_items: int = 0
    choice: StreamChoice | None = None
    damage: VideoDamage | None = None
    decoded: int = 0
    done: bool = False  # stopped at the end of a time range
    audio_errors: int = 0
    emitted: int = 0
    pictures: PictureChanges = dataclasses.field(default_factory=PictureChanges)
    deinterlaced: str | None = None  # the filter that deinterlaced the pictures, if one did
    skip_video: int = 0  # video items an earlier pass gave already (by a seek plan it gave up)
    video_items: int = 0
    plan: str | None = None  # "seek" or "straight" (None: no video)
    indexed: int | None = None  # the frames the index lists, when a seek plan left some undecoded

    def new_audio(self, items: Iterable[AudioFrameItem]) -> Iterator[AudioFrameItem]:
        """``items`` less those an earlier pass gave (decoding the same sound again gives the same items)."""
        for audio in items:
            self.audio_items += 1
            if self.audio_items > self.skip_audio:
                yield audio

    def new_video(self, item: VideoFrameItem) -> Iterator[VideoFrameItem]:
        """``item``, unless an earlier pass gave it (a straight pass gives the frames a seek plan gave, first)."""
        self.video_items += 1
        if self.video_items > self.skip_video:
            yield item


class _FramePicker:
    """Which decoded frames a ``Decode`` gives, and the number each carries."""

    def __init__(self, decode: Decode, info: StreamInfo) -> None:
        self.every_nth = decode.every_nth
        self.step = 1.0 / decode.fps if decode.fps else None
        self.range_start = decode.range_start or 0.0
        self.next_t = self.range_start
        self.fps = float(info.fps) if info.fps else None
        self.half_frame = 0.5 / self.fps + 1e-6 if self.fps else 0.0  # ties go to the earlier frame
        self.numbered_by_time = bool(decode.range_start) or decode.keyframes_only
        self.emitted = 0
        self.kept = 0

    def __call__(self, t: float, decoded_index: int) -> int | None:
        """The frame's number if it is given, else None."""
        if t < self.range_start - self.half_frame:
            return None  # decoded from the keyframe before the range
        self.kept += 1
        if (self.kept - 1) % self.every_nth:
            return None
        if self.step is not None:
            if t + self.half_frame < self.next_t:
                return None
            while self.next_t <= t + self.half_frame:
                self.next_t += self.step
        self.emitted += 1
        if self.numbered_by_time and self.fps:
            return round(t * self.fps)
        return decoded_index


class _Sampler:
    """Which of the frames the pickers give are wanted by the stages fed (``Decode(sampling=...)``).

    A frame is wanted when it shows a tick of some stage's ``TimeTicks``, or
    while a poster is searched for (every frame from the start until one is
    not blank, or is past the search); for a stage that asks for the last
    frame, the latest frame nobody wanted is held until another is given or
    the stream ends. Each stage then sees the frames it would have chosen.
    """

    def __init__(self, sampling: Sequence[Sampling], *, lead: bool = True) -> None:
        self.ticks = [TimeTicks(s.every, s.count) for s in sampling]
        self.searches = [s.poster_search_s for s in sampling if s.poster_search_s is not None] if lead else []
        self.last = any(s.last for s in sampling)
        self.held: tuple[av.VideoFrame | None, int, float, StreamInfo] | None = None

    @property
    def in_lead(self) -> bool:
        """True while a poster is searched for: every frame is wanted."""
        return bool(self.searches)

    def wants(self, t: float, stream: StreamInfo) -> bool:
        """Whether the frame at ``t`` is wanted by a tick or a poster's search (the ticks it shows are used up)."""
        due = [bool(ticks.due_at(t, stream)) for ticks in self.ticks]  # every stage's ticks, not the first's alone
        return any(due) or self.in_lead

    def hold(self, picture: av.VideoFrame | None, index: int, t: float, stream: StreamInfo) -> None:
        """A frame nobody wants now: held as the last one, if that is asked for (None: a frame a seek skipped)."""
        if self.last:
            self.held = (picture, index, t, stream)

    def given(self, item: VideoFrameItem) -> None:
        """A frame was given: nothing is held; while a poster is searched for, the search may end at it."""
        self.held = None
        if self.searches:
            blank, _ = is_blank(item)
            self.searches = [s for s in self.searches if blank and item.time <= s]


class _PlanBroken(Exception):
    """The file is not as its index says: a frame the index does not list, a seek that lands past its keyframe."""


class _PlanRun:
    """Carries out a seek plan (``stages.decode_plan``): the packets to decode, the seeks, the frames skipped.

    Decoding starts as straight through does and stays so while the lead
    lasts: the first frame (its colour tags describe the stream), the
    deinterlacer's choice, a poster's search. Then each step reads on, or seeks
    to its keyframe, until its frame is out; the frames a seek skipped are
    counted by the pickers as if decoded (``skip``). Where frames do not come
    as the index says, ``_PlanBroken`` is raised; the lead, which decodes every
    frame anyway, gives up the plan instead and carries on straight through.
    """

    def __init__(self, plan: DecodePlan, index: StreamIndex, first: int | None) -> None:
        self.plan, self.index = plan, index
        self.frame_of, self.packet_of = index.frame_of(), index.packet_of()
        self.next_frame = first  # the frame the lead expects next (None: any, after a time range's seek)
        self.offered = -1  # the last frame handed to the pickers, decoded or skipped
        self.fed = -1  # the last packet read
        self.following = False  # the lead is over: the steps are followed
        self.abandoned = False  # the lead found the file unlike its index, or a filter that needs every frame
        self.stopped = False  # every wanted frame is out
        self.seeks = 0

    def packets(self, container: Any, vstream: Any, damage: VideoDamage, lead_over: Callable[[], bool],
                fields: FieldPolicy) -> Iterator[Any]:
        """The packets to decode, in order, seeking where the plan says (a seek flushes the decoder)."""
        packets: Generator[Any, None, None] = read_packets(container, [vstream], damage)
        steps, step, sought = self.plan.steps, 0, -1
        while True:
            if not (self.following or self.abandoned) and lead_over():
                self.following = fields.per_frame  # bwdif or yadif chosen: every frame is needed after all
                self.abandoned = not self.following
            if self.following:
                while step < len(steps) and steps[step].until <= self.offered:
                    step += 1
                if step == len(steps):
                    self.stopped = True
                    return
                key = steps[step].seek
                # Seek only ahead of what was read: a frame in the group being read is reached by reading on.
                if key is not None and key > self.fed and sought != step:
                    sought = step
                    packets.close()
                    packets = self._seek(container, vstream, damage, key)
            packet = next(packets, None)
            if packet is None:
                return
            if packet.size and packet.pts in self.packet_of:
                self.fed = max(self.fed, self.packet_of[packet.pts])
            yield packet

    def _seek(self, container: Any, vstream: Any, damage: VideoDamage, key: int) -> Generator[Any, None, None]:
        """Seek to the keyframe of packet ``key``; the packets from there on (``_PlanBroken`` if it landed past it)."""
        from ._av import av
        try:
            container.seek(seek_target(self.index, key), stream=vstream, backward=True, any_frame=False)
        except av.FFmpegError as exc:
            raise _PlanBroken(f"a seek failed: {exc}") from exc
        self.seeks += 1
        packets = read_packets(container, [vstream], damage)
        first = next(packets, None)
        landed = self.packet_of.get(first.pts) if first is not None and first.size else None
        if first is None or landed is None or landed > key or not first.is_keyframe:  # earlier only costs frames
            raise _PlanBroken(f"a seek to the keyframe at stamp {self.index.pts[key]} landed elsewhere")
        return _then(first, packets)

    def place(self, ts: int | None, skip: Callable[[float], None]) -> bool:
        """Number a decoded frame by its stamp; False when it was handed on already (a seek that landed early).

        In the lead, frames must come one after another as the index lists
        them, else the plan is given up; after it, the frames a seek skipped
        are handed to ``skip`` first.
        """
        if self.abandoned:
            return True
        frame = self.frame_of.get(ts) if ts is not None else None
        if not self.following:
            if frame is None or (self.next_frame is not None and frame != self.next_frame):
                self.abandoned = True  # this decode is not what the index describes: straight through it is
            else:
                self.offered, self.next_frame = frame, frame + 1
            return True
        if frame is None:
            raise _PlanBroken(f"a frame at stamp {ts} that the index does not list")
        if frame <= self.offered:
            return False
        for skipped in range(self.offered + 1, frame):
            skip(self.index.times[skipped])
        self.offered = frame
        return True


def _then(first: Any, rest: Iterator[Any]) -> Generator[Any, None, None]:
    """``first``, then what ``rest`` gives (a generator: it can be closed)."""
    yield first
    yield from rest


def _half_height(info: StreamInfo) -> StreamInfo:
    """``info`` for pictures of one field: half the lines, so samples twice as tall (half the sample aspect)."""
    return dataclasses.replace(info, sample_aspect=(info.sample_aspect or Fraction(1)) / 2)


def _per_field(info: StreamInfo) -> StreamInfo:
    """``info`` for pictures a field apart: twice the rate and the count, half the time base."""
    return dataclasses.replace(info, fps=info.fps * 2 if info.fps else None, time_base=info.time_base / 2,
                               frame_count=info.frame_count * 2 if info.frame_count else None)


def _seek_stamp(container: Any, stream: Any, pts: int) -> None:
    """Seek to the keyframe at stamp ``pts`` (a part of a file starts there)."""
    container.seek(pts, stream=stream, backward=True, any_frame=False)


def _samplings(sampling: Sampling | Sequence[Sampling], option: str) -> tuple[Sampling, ...]:
    found = (sampling,) if isinstance(sampling, Sampling) else tuple(sampling)
    if not all(isinstance(s, Sampling) for s in found):
        raise PipelineDefinitionError(f"{option} takes what Thumbnails.sampling() and SpriteSheet.sampling() "
                                      f"give, not {sampling!r}")
    return found


def _seek(container: Any, stream: Any, seconds: float) -> None:
    """Seek to the keyframe at or before ``seconds`` (file time); a failed seek decodes from the start."""
    from ._av import av
    try:
        container.seek(max(0, int(seconds / stream.time_base)), stream=stream, backward=True, any_frame=False)
    except av.FFmpegError:
        container.seek(0)


class _AudioBlocks:
    """Audio resampled to packed float32 in fixed-size blocks, each timed by the samples before it."""

    def __init__(self, resampler: Any, rate: int, info: StreamInfo) -> None:
        self.resampler = resampler
        self.rate = rate
        self.info = info
        self.origin: float | None = None
        self.samples = 0

    def feed(self, frame: av.AudioFrame | None, t: float | None = None) -> Iterator[AudioFrameItem]:
        """The blocks completed by ``frame`` (``None`` flushes the last, shorter one)."""
        if self.origin is None and t is not None:
            self.origin = t
        for block in self.resampler.resample(frame):
            yield AudioFrameItem(block, (self.origin or 0.0) + self.samples / self.rate, self.info)
            self.samples += block.samples


def decode_file(path: str | os.PathLike[str], *, run: FileRun | None = None,
                **options: Any) -> Iterator[VideoFrameItem | AudioFrameItem]:
    """The items ``Decode(**options)`` gives for one file, outside any pipeline (random access, notebooks).

    ``run`` collects what the stage records (frame count, decode errors);
    without it they are dropped. Every item owns its pixels (a raw ``.y4m``
    frame is read into an array of its own, not into a reused shared-memory
    slot): keep items as long as you like, after the loop ends, after a
    ``break`` or after ``close()``. Nothing shared is left behind.
    """
    p = Path(path)
    if run is None:
        run = FileRun(FileItem(str(p), p.name), p.parent, p.stem)
    decode = Decode(**options)
    decode._reuse_slots = False  # no other process to share slots with: nothing kept may view one
    try:
        yield from decode.process(run.file, StageContext(run, "decode"))
    finally:
        decode.teardown()


def _start_seconds(container: Any, vstream: Any) -> float:
    """The file's time origin: the container's start time, else the video stream's."""
    from ._av import av
    if container.start_time is not None:
        return container.start_time / av.time_base
    if vstream.start_time is not None and vstream.time_base:
        return float(vstream.start_time * vstream.time_base)
    return 0.0


def _stream_info(container: Any, vstream: Any, astream: Any, choice: StreamChoice) -> StreamInfo:
    from ._av import av
    duration = container.duration / av.time_base if container.duration else None
    if vstream is None:  # audio only
        return StreamInfo(width=0, height=0, fps=None, time_base=astream.time_base, frame_count=0,
                          audio_rate=astream.rate, audio_channels=astream.channels, duration_s=duration,
                          container=container.format.name, audio_codec=astream.codec_context.name,
                          audio_stream=choice.audio_number)
    cc = vstream.codec_context
    fps = frame_rate(vstream, duration)
    count = vstream.frames or (round(duration * float(fps)) if duration and fps else None)
    return StreamInfo(
        width=cc.width, height=cc.height, fps=fps, time_base=vstream.time_base,
        frame_count=count or None, sample_aspect=vstream.sample_aspect_ratio,
        audio_rate=astream.rate if astream is not None else None,
        audio_channels=astream.channels if astream is not None else None,
        duration_s=duration, codec=cc.name, pix_fmt=cc.pix_fmt, container=container.format.name,
        audio_codec=astream.codec_context.name if astream is not None else None,
        video_stream=choice.video_number, audio_stream=choice.audio_number,
    )
