"""Metadata: what the report says of a clip equals what the clip was made with."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import BROKEN, CLIPS, result_for
from pipeline import CorruptMedia, RunResult, UnreadableFile
from stages import probe


@pytest.mark.parametrize("relpath", list(CLIPS))
def test_metadata_matches_how_the_clip_was_made(batch: RunResult, relpath: str) -> None:
    spec = CLIPS[relpath]
    rec = result_for(batch, relpath).record
    assert rec["width"] == spec.width and rec["height"] == spec.height
    assert rec["fps"] == pytest.approx(spec.fps, rel=1e-3)
    assert abs(rec["duration_s"] - spec.seconds) <= 1.0 / spec.fps + 0.03  # AAC priming may add a packet
    assert rec["frame_count"] == round(spec.seconds * spec.fps)
    assert rec["frame_count_exact"] is True
    assert rec["has_audio"] is spec.audio
    assert rec["video_codec"] == ("vp9" if spec.codec == "libvpx-vp9" else "h264")
    assert rec["rotation"] == spec.rotation
    turned = spec.rotation % 180 != 0
    assert (rec["display_width"], rec["display_height"]) == (
        (spec.height, spec.width) if turned else (spec.width, spec.height))
    if spec.audio:
        assert (rec["audio_codec"], rec["audio_sample_rate"], rec["audio_channels"]) == ("aac", 48000, 2)


def test_report_parquet_holds_every_file_with_its_status(batch: RunResult) -> None:
    rows = {r["relpath"]: r for r in pq.read_table(batch.out_dir / "report.parquet").to_pylist()}
    assert set(rows) == set(CLIPS) | {BROKEN}
    assert rows[BROKEN]["status"] == "failed"
    assert all(rows[rel]["status"] == "ok" for rel in CLIPS)
    assert rows["landscape_audio.mp4"]["bit_rate"] > 0
    assert rows["landscape_audio.mp4"]["container"].startswith("mov,mp4")


def test_probe_reads_headers_without_decoding_everything(clip_dir: Path) -> None:
    info = probe(str(clip_dir / "landscape_audio.mp4"))
    assert info.frame_count == 90 and info.frame_count_exact is False
    assert info.stream_count == 2


def test_probe_of_a_truncated_file_says_what_is_wrong(clip_dir: Path) -> None:
    with pytest.raises(CorruptMedia, match=r"broken\.mp4: not a readable media file \(moov atom not found\)"):
        probe(str(clip_dir / BROKEN))


@pytest.mark.parametrize("content, reason", [(None, "no such file"), (b"", "file is empty"),
                                             ("dir", "is a folder")])
def test_probe_of_unreadable_paths_names_the_problem(tmp_path: Path, content: object, reason: str) -> None:
    path = tmp_path / "x.mp4"
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(UnreadableFile, match=reason):
        probe(str(path))
