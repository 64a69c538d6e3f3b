"""``SpriteSheet``: timeline-scrubbing tiles in grid images, with the WebVTT file that maps times to tiles.

The format web players (Video.js, JW Player, Plyr) and editors read: each
cue of ``sprites.vtt`` covers a span of the video and points at a tile as
``sheet_000.jpg#xywh=x,y,w,h`` (a media fragment, relative to the VTT file).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline import FRAME, PipelineDefinitionError, Stage, StageContext, write_atomic
from pipeline.presets import Option

from .colour import picture_colour
from .frames import VideoFrameItem
from .media import WORK_MODULES
from .thumbnails import (
    IMAGE_FORMATS,
    IMAGE_QUALITY,
    PICTURE_COUNT,
    SECONDS_APART,
    Sampling,
    TimeTicks,
    encode_image,
    frame_to_image,
)

if TYPE_CHECKING:  # imported where used: building a pipeline loads none of them
    import pyarrow as pa
    from PIL import Image

__all__ = ["SpriteSheet", "SpriteCue", "vtt_timestamp", "parse_vtt", "TILE_WIDTH", "SHEET_TILES"]

TILE_WIDTH = Option(int, min=8, max=1024)
"""A sprite tile's width in pixels."""
SHEET_TILES = Option(int, min=1, max=32)
"""Tiles across (columns) or down (rows) a sheet: at most 32 x 1024 px wide."""


@dataclass(frozen=True, slots=True)
class SpriteCue:
    """One tile: the span of the video it stands for, its sheet and where on it."""

    start: float
    end: float
    sheet: str
    x: int
    y: int
    width: int
    height: int


def vtt_timestamp(seconds: float) -> str:
    """``HH:MM:SS.mmm``, as WebVTT writes times."""
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def _seconds(stamp: str) -> float:
    parts = stamp.strip().split(":")
    value = 0.0
    for p in parts:
        value = value * 60 + float(p)
    return value


def parse_vtt(text: str) -> list[SpriteCue]:
    """The cues of a sprite WebVTT file (the inverse of what ``SpriteSheet`` writes)."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("WEBVTT"):
        raise ValueError("not a WebVTT file: the first line must start with WEBVTT")
    cues = []
    for i, line in enumerate(lines):
        if "-->" in line:
            a, b = line.split("-->")
            target = lines[i + 1].strip()
            sheet, _, frag = target.partition("#xywh=")
            x, y, w, h = (int(v) for v in frag.split(","))
            cues.append(SpriteCue(_seconds(a), _seconds(b.split()[0]), sheet, x, y, w, h))
    return cues


def _letterboxed(tile: Image.Image, width: int, height: int) -> Image.Image:
    """``tile`` (a frame of a stream that changed shape) fitted in the sheet's tile size, centred on black."""
    from PIL import Image
    scale = min(width / tile.width, height / tile.height)
    w, h = max(1, round(tile.width * scale)), max(1, round(tile.height * scale))
    if abs(w - width) <= 1 and abs(h - height) <= 1:  # the same shape, but for rounding
        return tile.resize((width, height))
    fitted = tile.resize((w, h))
    box = Image.new("RGB", (width, height))
    box.paste(fitted, ((width - fitted.width) // 2, (height - fitted.height) // 2))
    return box


class SpriteSheet(Stage):
    """Tiles every ``every`` seconds (or ``count`` evenly spaced) in ``columns`` x ``rows`` grids, plus WebVTT.

    Writes ``OUT/sprites/<file>/sheet_000.jpg`` (more sheets when the tiles
    outgrow one) and ``OUT/sprites/<file>/sprites.vtt``. A tile shows the first
    frame at or after its cue's start (within half a frame), upright, ``tile_width``
    wide with the shown aspect kept (every tile has the first one's size: a later
    frame of another shape is fitted inside it on black). A cue ends where the next begins; the last
    at the end of the video.
    """

    accepts = (FRAME,)
    cacheable = True
    cache_version = "2"  # tiles in SDR BT.709 (HDR tone-mapped), sheets tagged sRGB
    preload = WORK_MODULES

    @property
    def report_fields(self) -> tuple[pa.Field, ...]:  # built for the report: pyarrow loads then
        import pyarrow as pa

        from pipeline.observe import card_field
        return (card_field("sprite_vtt", pa.string(), "scrubber"), pa.field("sprite_sheets", pa.int32()),
                pa.field("sprite_tiles", pa.int32()))

    def __init__(self, *, every: float = 2.0, count: int = 0, tile_width: int = 160, columns: int = 10,
                 rows: int = 10, fmt: str = "jpg", quality: int = 80, name: str | None = None) -> None:
        super().__init__(name)
        if not isinstance(fmt, str) or fmt.lower() not in IMAGE_FORMATS:
            raise PipelineDefinitionError(f"sprite format {fmt!r} is not one of {', '.join(IMAGE_FORMATS)}")
        where = type(self).__name__
        SECONDS_APART.validate("every", every, where)
        PICTURE_COUNT.validate("count", count, where)
        TILE_WIDTH.validate("tile_width", tile_width, where)
        SHEET_TILES.validate("columns", columns, where)
        SHEET_TILES.validate("rows", rows, where)
        IMAGE_QUALITY.validate("quality", quality, where)
        if not every and not count:
            raise PipelineDefinitionError("a sprite sheet needs every > 0 or count > 0")
        self.every = 0.0 if count else every
        self.count = count
        self.tile_width = tile_width
        self.columns = columns
        self.rows = rows
        self.fmt = fmt.lower()
        self.quality = quality

    def sampling(self) -> Sampling:
        """The frames this stage needs: its ticks', and the last (where the last cue ends)."""
        return Sampling(self.every, self.count, last=True)

    def begin(self, ctx: StageContext) -> None:
        ctx.state.update(ticks=TimeTicks(self.every, self.count), sheet=None, tiles=0, sheets=[], cues=[],
                         tile_size=None, last_time=0.0, fps=None)

    def process(self, item: VideoFrameItem, ctx: StageContext) -> None:
        st = ctx.state
        st["last_time"] = item.time
        st["fps"] = float(item.stream.fps) if item.stream.fps else st["fps"]
        st["duration"] = item.stream.duration_s
        picture_colour(item, ctx)
        tile = None
        for t in st["ticks"].due(item):
            tile = tile or frame_to_image(item, width=self.tile_width)
            self._place(tile, t, ctx)
        return None

    def _place(self, tile: Image.Image, t: float, ctx: StageContext) -> None:
        from PIL import Image
        st = ctx.state
        if st["tile_size"] is None:
            st["tile_size"] = tile.size
        tw, th = st["tile_size"]
        if tile.size != (tw, th):
            tile = _letterboxed(tile, tw, th)
        per_sheet = self.columns * self.rows
        slot = st["tiles"] % per_sheet
        if slot == 0:
            self._flush(ctx)
            st["sheet"] = Image.new("RGB", (tw * self.columns, th * self.rows))
        x, y = (slot % self.columns) * tw, (slot // self.columns) * th
        st["sheet"].paste(tile, (x, y))
        st["cues"].append([t, None, len(st["sheets"]), x, y, tw, th])
        st["tiles"] += 1

    def _flush(self, ctx: StageContext) -> None:
        """Write the sheet being filled (cropped to its used rows)."""
        st = ctx.state
        sheet = st["sheet"]
        if sheet is None:
            return
        tw, th = st["tile_size"]
        used = st["tiles"] - len(st["sheets"]) * self.columns * self.rows
        rows = -(-used // self.columns)
        if rows < self.rows:
            sheet = sheet.crop((0, 0, sheet.width, rows * th))
        name = f"sheet_{len(st['sheets']):03d}.{self.fmt}"
        path = write_atomic(ctx.output_path("sprites", name), encode_image(sheet, self.fmt, self.quality))
        ctx.add_output(path)
        st["sheets"].append(name)
        st["sheet"] = None

    def end(self, ctx: StageContext) -> None:
        st = ctx.state
        if not st["tiles"]:
            ctx.warn("no frame to make a sprite sheet from")
            return None
        self._flush(ctx)
        video_end = st["last_time"] + (1.0 / st["fps"] if st["fps"] else 0.0)
        if st.get("duration"):
            video_end = max(video_end, st["duration"])
        cues = st["cues"]
        lines = ["WEBVTT", ""]
        for i, (start, _, sheet, x, y, w, h) in enumerate(cues):
            stop = cues[i + 1][0] if i + 1 < len(cues) else max(video_end, start + 0.001)
            lines += [f"{vtt_timestamp(start)} --> {vtt_timestamp(stop)}",
                      f"{st['sheets'][sheet]}#xywh={x},{y},{w},{h}", ""]
        path = write_atomic(ctx.output_path("sprites", "sprites.vtt"), "\n".join(lines).encode())
        ctx.add_output(path)
        ctx.record(sprite_vtt=ctx.run.outputs[-1], sprite_sheets=len(st["sheets"]), sprite_tiles=st["tiles"])
        return None
