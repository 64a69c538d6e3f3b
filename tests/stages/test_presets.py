"""The presets, from Python and from the command line, on generated samples."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import CLIPS, result_for
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
