"""Interlaced footage: deinterlaced in proxies, thumbnails and sprites; progressive footage left alone.

The clips (``interlaced_clips``) are truly interlaced: a scene panning right
``SPEED`` pixels a field, painted at field rate and woven in pairs, so every
moving edge is combed unless the fields are put back in their own instants.
"""

from __future__ import annotations

import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from support.interlaced_clips import (
    MARGIN,
    NTSC_SAR,
    SPEED,
    InterlacedSpec,
    field_pictures,
    make_interlaced_clip,
    make_striped_progressive_clip,
    weave,
)
from support.runs import result_for

from pipeline import FileItem, FileRun, Pipeline, PipelineDefinitionError, RunResult, run
from stages import Decode, Metadata, Proxy, SpriteSheet, Thumbnails, presets
from stages.decode import decode_file
from stages.deinterlace import Deinterlacer, combing, detect_fields
from stages.metadata import probe

# relpath: (spec, the report's field_order and interlaced)
INTERLACED = {
    "broadcast_bff.ts": (InterlacedSpec("broadcast_bff.ts", "mpeg2video", "bb"), "bb"),
    "broadcast_tff.ts": (InterlacedSpec("broadcast_tff.ts", "mpeg2video", "tt"), "tt"),
    "camcorder_tff.mp4": (InterlacedSpec("camcorder_tff.mp4", "libx264", "tt"), "tt"),
    "camcorder_bff.mp4": (InterlacedSpec("camcorder_bff.mp4", "libx264", "bb"), "bb"),
    # Woven fields encoded as progressive frames: nothing flags them, idet finds them.
    "unflagged_tff.mp4": (InterlacedSpec("unflagged_tff.mp4", "libx264", "tt", flagged=False), "progressive"),
}
STRIPES = "stripes_progressive.mp4"
FRAMES = 24
PROXY_SIZE = (852, 480)  # 720x480 at 32:27 is shown 853x480, made even for 4:2:0
STILL_WIDTH = 854  # thumbnails and sprite tiles as large as the picture: nothing scaled away vertically


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("interlaced")
    for i, (rel, (spec, _)) in enumerate(INTERLACED.items()):
        make_interlaced_clip(folder / rel, spec, seed=i)
    make_striped_progressive_clip(folder / STRIPES)
    return folder


def _pipeline_off() -> Pipeline:
    """What the default preset makes (proxy, thumbnails, sprites), with deinterlacing turned off."""
    p = Pipeline("off")
    p.add(Metadata())
    decode = p.add(Decode(audio=False, deinterlace="off"))
    p.add(Thumbnails(every=0.25, width=STILL_WIDTH, fmt="png", poster=False), after=decode)
    p.add(SpriteSheet(every=0.25, tile_width=STILL_WIDTH, columns=2, rows=2, fmt="png"), after=decode)
    p.add(Proxy(audio=False), after=decode)
    return p


@pytest.fixture(scope="module")
def batch(clips: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """The default preset as shipped (Decode's default: deinterlace="auto") over the clips."""
    preset = presets.default(audio=False, thumb_every=0.25, thumb_width=STILL_WIDTH, thumb_format="png",
                             sprite_every=0.25, sprite_width=STILL_WIDTH, sprite_columns=2)
    return run(preset, clips, tmp_path_factory.mktemp("auto"), workers=2)


@pytest.fixture(scope="module")
def batch_off(clips: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    return run(_pipeline_off(), clips, tmp_path_factory.mktemp("off"), workers=2)


def _luma_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="gray") for f in c.decode(c.streams.video[0])]


def _video_combing(path: Path) -> float:
    """Mean combing of a video's frames (borders left out)."""
    return float(np.mean([combing(y, MARGIN) for y in _luma_frames(path)]))


def _image_combing(path: Path) -> float:
    return combing(np.asarray(Image.open(path).convert("L")), MARGIN)


def _shift(earlier: np.ndarray, later: np.ndarray, search: int = 3 * SPEED) -> int:
    """How many pixels right the picture moved from ``earlier`` to ``later`` (the best-matching offset)."""
    a, b = earlier.astype(np.float32), later.astype(np.float32)
    lo, hi = search + MARGIN, a.shape[1] - search - MARGIN
    errors = {s: float(np.abs(b[MARGIN:-MARGIN, lo:hi] - a[MARGIN:-MARGIN, lo - s:hi - s]).mean())
              for s in range(-search, search + 1)}
    return min(errors, key=errors.__getitem__)


def _decoded(path: Path, **options: object) -> tuple[list, dict]:
    """Every video item ``Decode(**options)`` gives for ``path``, and what it recorded."""
    file_run = FileRun(FileItem(str(path), path.name), path.parent, path.stem)
    items = [i for i in decode_file(path, run=file_run, audio=False, **options)]
    return items, file_run.record


# Proxies, thumbnails and sprites ------------------------------------------------------


@pytest.mark.parametrize("relpath", sorted(INTERLACED))
def test_the_proxy_of_interlaced_footage_has_no_combs(batch: RunResult, batch_off: RunResult, relpath: str) -> None:
    res, off = result_for(batch, relpath), result_for(batch_off, relpath)
    assert res.ok and off.ok, (res.error, off.error)
    proxy, proxy_off = batch.out_dir / res.record["proxy"], batch_off.out_dir / off.record["proxy"]
    assert (res.record["proxy_width"], res.record["proxy_height"]) == PROXY_SIZE
    combed, clean = _video_combing(proxy_off), _video_combing(proxy)
    assert combed > 8.0, combed  # the woven fields really comb
    assert clean < combed / 8, (clean, combed)
    assert len(_luma_frames(proxy)) == len(_luma_frames(proxy_off)) == FRAMES  # no frame lost


@pytest.mark.parametrize("relpath", sorted(INTERLACED))
def test_thumbnails_and_sprites_of_interlaced_footage_have_no_combs(batch: RunResult, batch_off: RunResult,
                                                                   relpath: str) -> None:
    res, off = result_for(batch, relpath), result_for(batch_off, relpath)
    stills = sorted(p for p in res.outputs if p.startswith(("thumbnails/", "sprites/")) and p.endswith(".png"))
    stills_off = sorted(p for p in off.outputs if p.startswith(("thumbnails/", "sprites/")) and p.endswith(".png"))
    assert len(stills) == len(stills_off) >= 4
    for mine, theirs in zip(stills, stills_off):
        clean, combed = _image_combing(batch.out_dir / mine), _image_combing(batch_off.out_dir / theirs)
        assert clean < combed / 4, (mine, clean, combed)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg command is not installed")
def test_the_proxy_is_as_clean_as_ffmpeg_bwdif_makes_it(batch: RunResult, clips: Path, tmp_path: Path) -> None:
    relpath = "broadcast_bff.ts"
    reference = tmp_path / "bwdif.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(clips / relpath), "-vf",
                    f"bwdif=mode=send_frame:parity=auto:deint=all,scale={PROXY_SIZE[0]}:{PROXY_SIZE[1]}",
                    "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-an", str(reference)],
                   check=True, timeout=120)
    mine = _video_combing(batch.out_dir / result_for(batch, relpath).record["proxy"])
    ffmpegs = _video_combing(reference)
    assert len(_luma_frames(reference)) == FRAMES
    assert mine < 2 * ffmpegs + 0.1, (mine, ffmpegs)  # (+0.1: both are well under one grey level)


# The report ---------------------------------------------------------------------------


@pytest.mark.parametrize("relpath", sorted(INTERLACED))
def test_the_report_gives_field_order_and_what_decode_did(batch: RunResult, relpath: str) -> None:
    rec = result_for(batch, relpath).record
    order = INTERLACED[relpath][1]
    assert rec["field_order"] == order
    assert rec["interlaced"] is (order != "progressive")
    assert rec["deinterlaced"] == "bwdif"
    assert rec["frame_count"] == FRAMES


def test_progressive_footage_is_reported_and_left_alone(batch: RunResult, batch_off: RunResult) -> None:
    rec = result_for(batch, STRIPES).record
    assert (rec["field_order"], rec["interlaced"], rec["deinterlaced"]) == ("progressive", False, None)
    assert result_for(batch_off, STRIPES).record["deinterlaced"] is None


def test_report_columns_are_declared_with_their_types(batch: RunResult) -> None:
    import pyarrow.parquet as pq
    schema = pq.read_schema(batch.out_dir / "report.parquet")
    assert str(schema.field("field_order").type) == "string"
    assert str(schema.field("interlaced").type) == "bool"
    assert str(schema.field("deinterlaced").type) == "string"


# Decode's options ---------------------------------------------------------------------


def test_auto_leaves_progressive_pixels_exactly_as_decoded(clips: Path) -> None:
    auto, record = _decoded(clips / STRIPES)
    off, _ = _decoded(clips / STRIPES, deinterlace="off")
    assert record["deinterlaced"] is None
    assert len(auto) == len(off) == FRAMES
    for a, b in zip(auto, off):
        assert (a.index, a.time) == (b.index, b.time)
        assert np.array_equal(a.array(), b.array())


@pytest.mark.parametrize("relpath", sorted(INTERLACED))
def test_every_frame_comes_out_in_order_with_the_scene_moving_forward(clips: Path, relpath: str) -> None:
    items, record = _decoded(clips / relpath)
    assert record["frame_count"] == len(items) == FRAMES
    assert [i.index for i in items] == list(range(FRAMES))
    times = [i.time for i in items]
    assert all(b > a for a, b in zip(times, times[1:]))
    lumas = [i.frame.to_ndarray(format="gray") for i in items]
    # Fields taken in the wrong order would move the scene back and forth: every step is one frame's motion.
    assert [_shift(a, b) for a, b in zip(lumas, lumas[1:])] == [2 * SPEED] * (FRAMES - 1)


@pytest.mark.parametrize("relpath", ["broadcast_bff.ts", "camcorder_tff.mp4", "unflagged_tff.mp4"])
def test_field_rate_gives_a_picture_a_field(clips: Path, relpath: str) -> None:
    frames, _ = _decoded(clips / relpath)
    fields, record = _decoded(clips / relpath, rate="field")
    assert record["deinterlaced"] == "bwdif"
    assert record["frame_count"] == FRAMES  # the stream's frames, as the report counts them
    assert len(fields) == 2 * FRAMES
    assert [i.index for i in fields] == list(range(2 * FRAMES))
    times = [i.time for i in fields]
    assert all(b > a for a, b in zip(times, times[1:]))
    assert times[::2] == pytest.approx([i.time for i in frames], abs=1e-6)
    assert fields[0].stream.fps == 2 * frames[0].stream.fps
    lumas = [i.frame.to_ndarray(format="gray") for i in fields]
    assert [_shift(a, b) for a, b in zip(lumas, lumas[1:])] == [SPEED] * (2 * FRAMES - 1)


def test_frame_picking_options_work_on_deinterlaced_frames(clips: Path) -> None:
    path = clips / "broadcast_bff.ts"
    every, _ = _decoded(path)
    nth, _ = _decoded(path, every_nth=3)
    assert [i.index for i in nth] == [i.index for i in every][::3]
    assert all(combing(i.frame.to_ndarray(format="gray"), MARGIN) < 2 for i in nth)
    ranged, _ = _decoded(path, start=0.2, end=0.5)
    assert ranged and all(0.2 - 0.02 <= i.time < 0.5 for i in ranged)
    assert all(combing(i.frame.to_ndarray(format="gray"), MARGIN) < 2 for i in ranged)


def test_keyframes_only_trusts_the_flags_and_makes_each_frame_from_its_first_field(clips: Path) -> None:
    items, record = _decoded(clips / "broadcast_bff.ts", keyframes_only=True)
    assert record["deinterlaced"] == "field"
    assert {(i.frame.width, i.frame.height) for i in items} == {(720, 480)}
    assert items and all(combing(i.frame.to_ndarray(format="gray"), MARGIN) < 2 for i in items)
    _, record = _decoded(clips / "unflagged_tff.mp4", keyframes_only=True)
    assert record["deinterlaced"] is None  # no flag says so, and idet is not run on frames far apart


@pytest.mark.parametrize("mode", ["bwdif", "yadif"])
def test_a_named_filter_deinterlaces_every_frame(clips: Path, mode: str) -> None:
    items, record = _decoded(clips / "camcorder_bff.mp4", deinterlace=mode)
    assert record["deinterlaced"] == mode
    assert len(items) == FRAMES
    assert all(combing(i.frame.to_ndarray(format="gray"), MARGIN) < 2 for i in items)


@pytest.mark.parametrize("options", [dict(deinterlace="sometimes"), dict(deinterlace=True), dict(rate="double"),
                                     dict(rate="field", deinterlace="off"),
                                     dict(rate="field", deinterlace="first_field")])
def test_decode_refuses_options_it_does_not_take(options: dict) -> None:
    with pytest.raises(PipelineDefinitionError):
        Decode(**options)


@pytest.mark.parametrize("relpath", ["broadcast_bff.ts", "camcorder_tff.mp4", "unflagged_tff.mp4"])
def test_first_field_gives_each_frame_its_first_field_with_samples_twice_as_tall(clips: Path, relpath: str) -> None:
    items, record = _decoded(clips / relpath, deinterlace="first_field")
    full, _ = _decoded(clips / relpath)
    assert record["deinterlaced"] == "first_field" and len(items) == len(full) == FRAMES
    assert {(i.frame.width, i.frame.height) for i in items} == {(720, 240)}
    assert {i.stream.sample_aspect for i in items} == {NTSC_SAR / 2}  # shown at the same 16:9
    assert all(combing(i.frame.to_ndarray(format="gray"), MARGIN) < 2 for i in items)
    # The field is the one shown first: the scene stands where bwdif's frame shows it (within a line's worth).
    assert _shift(full[5].frame.to_ndarray(format="gray")[::2], items[5].frame.to_ndarray(format="gray")) == 0


def test_first_field_leaves_progressive_footage_alone(clips: Path) -> None:
    items, record = _decoded(clips / STRIPES, deinterlace="first_field")
    off, _ = _decoded(clips / STRIPES, deinterlace="off")
    assert record["deinterlaced"] is None
    assert all(np.array_equal(a.frame.to_ndarray(), b.frame.to_ndarray()) for a, b in zip(items, off))


def test_the_stills_presets_take_the_first_field_and_keep_the_shown_shape(clips: Path, tmp_path: Path) -> None:
    result = run(presets.thumbnails(thumb_every=0.25, thumb_format="png"), clips, tmp_path / "out", workers=2)
    res = result_for(result, "broadcast_bff.ts")
    assert res.ok, res.error
    assert res.record["deinterlaced"] == "first_field"
    stills = sorted(p for p in res.outputs if p.endswith(".png"))
    assert len(stills) >= 4
    for rel in stills:
        picture = Image.open(result.out_dir / rel)
        assert picture.size == (320, 180)  # 720x480 at 32:27 is shown 16:9, from a field as from a frame
        assert _image_combing(result.out_dir / rel) < 2


# The parts ----------------------------------------------------------------------------


def _woven(width: int, height: int, count: int, top_first: bool) -> list[av.VideoFrame]:
    pictures = list(field_pictures(width, height, 2 * count))
    frames = []
    for k in range(count):
        luma = weave(pictures[2 * k], pictures[2 * k + 1], top_first)
        frame = av.VideoFrame.from_ndarray(luma, format="gray")
        frame.pts = k
        frames.append(frame)
    return frames


def test_idet_finds_woven_frames_and_their_order_but_not_progressive_ones() -> None:
    assert detect_fields(_woven(320, 240, 8, top_first=True)).order == "tff"
    assert detect_fields(_woven(320, 240, 8, top_first=False)).order == "bff"
    progressive = [av.VideoFrame.from_ndarray(p, format="gray") for p in field_pictures(320, 240, 8)]
    assert detect_fields(progressive).order is None


def test_the_deinterlacer_rebuilds_for_a_new_size_and_loses_no_frame() -> None:
    deinterlacer = Deinterlacer("bwdif", parity="tff", time_base=Fraction(1))
    frames = _woven(320, 240, 5, top_first=True) + _woven(256, 144, 5, top_first=True)
    for i, frame in enumerate(frames):
        frame.pts = i
    out = [o for f in frames for o in deinterlacer.feed(f)] + deinterlacer.flush()
    assert [(o.width, o.height) for o in out] == [(f.width, f.height) for f in frames]
    assert [o.pts * o.time_base for o in out] == list(range(len(frames)))
    assert all(o.format.name == "gray" for o in out)
    assert all(combing(o.to_ndarray(), 8) < 2 for o in out)


# Real footage -------------------------------------------------------------------------


def test_real_footage_reads_progressive_or_unknown_and_is_not_deinterlaced(footage: Path) -> None:
    for path in sorted(footage.iterdir()):
        if path.suffix not in (".mp4", ".mov", ".avi", ".webm"):
            continue
        info = probe(str(path))
        assert info.field_order in ("progressive", None), path.name
        assert info.interlaced is False, path.name
    # idet's own default threshold calls this 10-bit test pattern interlaced; Decode must not.
    pattern = footage / "torchcodec_h265_10bits.mp4"
    auto, record = _decoded(pattern)
    off, _ = _decoded(pattern, deinterlace="off")
    assert record["deinterlaced"] is None
    assert all(np.array_equal(a.array(), b.array()) for a, b in zip(auto, off)) and len(auto) == len(off) == 30
