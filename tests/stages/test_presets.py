"""The presets, from Python and from the command line, on generated samples."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from support.clips import CLIPS
from support.runs import result_for

from pipeline import RunResult, run
from pipeline.presets import available_presets
from stages import presets
from stages.sprites import parse_vtt


def test_every_issue_preset_is_installed() -> None:
    assert {"default", "thumbnails", "sprites", "metadata", "proxies", "transcode"} <= set(available_presets())


def test_the_default_preset_makes_metadata_levels_thumbnails_sprites_and_proxies(batch: RunResult) -> None:
    res = result_for(batch, "landscape_audio.mp4")
    rec = res.record
    assert rec["sprite_vtt"] == "sprites/landscape_audio/sprites.vtt"
    assert rec["audio_rms_dbfs"] == pytest.approx(-17.0, abs=0.5)
    assert rec["proxy"].startswith("proxies/") and rec["poster"].startswith("thumbnails/")
    assert rec["frame_count_exact"] is True and rec["bit_depth"] == 8
    assert (rec["decode_plan"], rec["frames_decoded"]) == ("straight", 90)  # the proxy needs every frame: one pass
    cues = parse_vtt((batch.out_dir / rec["sprite_vtt"]).read_text())
    assert cues[-1].end == pytest.approx(CLIPS["landscape_audio.mp4"].seconds, abs=0.05)
    silent = result_for(batch, "web_vp9.webm").record
    assert silent["audio_peak_dbfs"] is None
    table = pq.read_table(batch.out_dir / "report.parquet")
    assert {"sprite_vtt", "audio_peak_dbfs", "hdr", "proxy"} <= set(table.column_names)


def test_keyframe_thumbnails_show_keyframes(clip_dir: Path, tmp_path: Path) -> None:
    result = run(presets.thumbnails(thumb_every=1.0, keyframes_only=True), clip_dir, tmp_path, workers=2)
    rec = result_for(result, "landscape_audio.mp4").record
    assert rec["thumbnail_count"] >= 1 and rec["frame_count_exact"] is True  # from the MP4 index, not the decode
    assert not (tmp_path / "proxies").exists() and not (tmp_path / "sprites").exists()


def test_the_sprites_and_metadata_presets(clip_dir: Path, tmp_path: Path) -> None:
    sprites = run(presets.sprites(sprite_count=4, sprite_columns=2), clip_dir, tmp_path / "s", workers=2)
    assert result_for(sprites, "portrait_rot90.mp4").record["sprite_tiles"] == 4
    levels = run(presets.metadata(audio_levels=True), clip_dir, tmp_path / "m", workers=2)
    rec = result_for(levels, "landscape_audio.mp4").record
    assert rec["audio_rms_dbfs"] == pytest.approx(-17.0, abs=0.5) and rec["frame_count"] == 90


@pytest.mark.parametrize("preset,outputs", [("sprites", "sprites"), ("thumbnails", "thumbnails"),
                                            ("proxies", "proxies")])
def test_presets_run_from_the_command_line(clip_dir: Path, tmp_path: Path, preset: str, outputs: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pipeline", "run", str(clip_dir), "-o", str(tmp_path), "-p", preset,
                           "-q", "--exclude", "broken*"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert len([p for p in (tmp_path / outputs).rglob("*") if p.is_file()]) >= len(CLIPS)


# The options of issue 16: which streams, deinterlacing, HDR -------------------------------------------------

def test_the_stream_options_reach_both_the_description_and_the_decode(tmp_path: Path) -> None:
    from support.stream_clips import two_of_each_mkv

    folder = tmp_path / "in"
    folder.mkdir()
    two_of_each_mkv(folder / "two_of_each.mkv")
    result = run(presets.proxies(video_stream=1, audio_stream=0), folder, tmp_path / "out", workers=1)
    rec = result.files[0].record
    assert result.files[0].status == "ok", result.files[0].error
    assert (rec["video_stream"], rec["audio_stream"]) == (1, 0)
    assert (rec["width"], rec["height"], rec["audio_channels"]) == (320, 180, 2)  # Metadata read the same streams
    assert (rec["proxy_width"], rec["proxy_height"]) == (320, 180)


def test_a_transcode_for_editing_or_archive_keeps_both_fields_and_one_for_the_web_deinterlaces(
        tmp_path: Path) -> None:
    from support.interlaced_clips import InterlacedSpec, make_interlaced_clip

    folder = tmp_path / "in"
    folder.mkdir()
    make_interlaced_clip(folder / "broadcast.ts", InterlacedSpec("broadcast.ts", "mpeg2video", "bb", frames=8))
    applied = {}
    for profile, options in (("web", {}), ("archive", {}), ("web", {"deinterlace": "off"}),
                             ("archive", {"deinterlace": "bwdif"})):
        result = run(presets.transcode(profile=profile, **options), folder, tmp_path / f"out-{len(applied)}",
                     workers=1)
        assert result.files[0].status == "ok", result.files[0].error
        applied[(profile, options.get("deinterlace", ""))] = result.files[0].record["deinterlaced"]
    assert applied == {("web", ""): "bwdif", ("archive", ""): None, ("web", "off"): None,
                       ("archive", "bwdif"): "bwdif"}


def test_the_new_options_refuse_values_outside_their_bounds() -> None:
    from pipeline.errors import InvalidOption

    for call, message in ((lambda: presets.default(deinterlace="maybe"), "must be one of auto, off, bwdif, yadif"),
                          (lambda: presets.proxies(video_stream=-2), "-1 (the best, as FFmpeg chooses) or an "
                                                                      "integer from 0 to 1023"),
                          (lambda: presets.transcode(hdr="sdr"), "must be one of auto, tonemap, keep")):
        with pytest.raises(InvalidOption, match=message.replace("(", r"\(").replace(")", r"\)")):
            call()
