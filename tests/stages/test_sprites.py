"""Sprite sheets: grids of tiles and a WebVTT file whose every cue points at the tile showing its start time."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import Pipeline, run
from stages import ClipSpec, Decode, make_clip, read_frame_marker
from stages.sprites import SpriteSheet, parse_vtt, vtt_timestamp

FPS = 30


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sprites")
    make_clip(folder / "wide.mp4", ClipSpec("wide.mp4", 320, 180, 3.0, fps=FPS))
    make_clip(folder / "tall.mp4", ClipSpec("tall.mp4", 320, 180, 2.0, fps=FPS, rotation=-90))
    return folder


def sprites(folder: Path, out: Path, executor: str = "local", **options: object):  # noqa: ANN201
    p = Pipeline("sprites")
    p.add(SpriteSheet(**options), after=p.add(Decode(audio=False)))  # type: ignore[arg-type]
    result = run(p, folder, out, executor=executor, workers=2)
    return {r.file.relpath: r for r in result.files}


def shown_at(t: float) -> int:
    """The frame shown at ``t``: the nearest, a tie going to the earlier."""
    return math.ceil(t * FPS - 0.5 - 1e-9)


def tile_of(out: Path, key: str, cue) -> np.ndarray:  # noqa: ANN001
    sheet = Image.open(out / "sprites" / key / cue.sheet).convert("RGB")
    return np.asarray(sheet.crop((cue.x, cue.y, cue.x + cue.width, cue.y + cue.height)))


def test_every_cue_points_at_the_tile_of_the_frame_shown_at_its_start(clips: Path, tmp_path: Path) -> None:
    results = sprites(clips, tmp_path, every=0.5, columns=4, rows=2, tile_width=160)
    rec = results["wide.mp4"].record
    cues = parse_vtt((tmp_path / rec["sprite_vtt"]).read_text())
    assert [c.start for c in cues] == [pytest.approx(0.5 * i) for i in range(6)]
    assert [c.end for c in cues] == [pytest.approx(0.5 * i) for i in range(1, 7)]  # the last ends with the video
    assert rec["sprite_tiles"] == 6 and rec["sprite_sheets"] == 1
    for cue in cues:
        assert (cue.width, cue.height) == (160, 90)
        assert read_frame_marker(tile_of(tmp_path, "wide", cue)) == shown_at(cue.start)


def test_tiles_beyond_one_grid_go_on_further_sheets_and_the_last_is_cropped(clips: Path, tmp_path: Path) -> None:
    results = sprites(clips, tmp_path, every=0.25, columns=3, rows=2, tile_width=96)
    rec = results["wide.mp4"].record
    cues = parse_vtt((tmp_path / rec["sprite_vtt"]).read_text())
    assert rec["sprite_tiles"] == 12 and rec["sprite_sheets"] == 2
    assert [c.sheet for c in cues] == ["sheet_000.jpg"] * 6 + ["sheet_001.jpg"] * 6
    second = Image.open(tmp_path / "sprites" / "wide" / "sheet_001.jpg")
    assert second.size == (3 * 96, 2 * 54)
    for cue in cues:
        assert read_frame_marker(tile_of(tmp_path, "wide", cue)) == shown_at(cue.start)


def test_a_count_spreads_tiles_over_the_video_and_rotated_clips_are_upright(clips: Path, tmp_path: Path) -> None:
    results = sprites(clips, tmp_path, count=4, columns=4, rows=1, tile_width=90, executor="inline")
    rec = results["tall.mp4"].record
    cues = parse_vtt((tmp_path / rec["sprite_vtt"]).read_text())
    assert [c.start for c in cues] == [pytest.approx(2.0 * (i + 0.5) / 4) for i in range(4)]
    for cue in cues:
        tile = tile_of(tmp_path, "tall", cue)
        assert tile.shape[0] > tile.shape[1]  # portrait, as shown
        assert read_frame_marker(np.rot90(tile, k=1)) == shown_at(cue.start)


def test_vtt_timestamps() -> None:
    assert vtt_timestamp(0) == "00:00:00.000"
    assert vtt_timestamp(3723.4567) == "01:02:03.457"
    with pytest.raises(ValueError, match="WEBVTT"):
        parse_vtt("00:00:00.000 --> 00:00:01.000\nsheet.jpg#xywh=0,0,1,1\n")


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="format"):
        SpriteSheet(fmt="gif")
    with pytest.raises(ValueError, match="every > 0 or count > 0"):
        SpriteSheet(every=0)
