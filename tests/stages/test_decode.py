"""Decode: time ranges that seek to the exact frame, frame selection, pixel formats, upright frames, audio blocks."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from support.clips import make_bitstream_aspect_clip

from pipeline import FileItem, FileRun
from stages import ClipSpec, Decode, make_clip, read_frame_marker
from stages.decode import decode_file
from stages.errors import UnsupportedMedia
from stages.frames import AudioFrameItem, VideoFrameItem

FPS = 30


@pytest.fixture(scope="module")
def bframes_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s, 30 fps, with B-frames and a keyframe every 12 frames, rotated for display, with audio."""
    folder = tmp_path_factory.mktemp("decode")
    plain = make_clip(folder / "plain.mp4", ClipSpec("plain.mp4", 320, 180, 3.0, fps=FPS, audio=True,
                                                      rotation=-90))
    out_path = folder / "bframes.mp4"
    with av.open(str(plain)) as src, av.open(str(out_path), "w") as dst:
        vin, ain = src.streams.video[0], src.streams.audio[0]
        v = dst.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt = 320, 180, "yuv420p"
        v.options = {"preset": "fast", "crf": "16", "x264-params": "keyint=12:min-keyint=12:bframes=3:scenecut=0"}
        v.set_display_rotation(-90)
        a = dst.add_stream_from_template(ain)
        for packet in src.demux(vin, ain):
            if packet.stream is ain:
                if packet.dts is not None:
                    packet.stream = a
                    dst.mux(packet)
                continue
            for frame in packet.decode():
                frame.pict_type = 0
                for p in v.encode(frame):
                    dst.mux(p)
        for p in v.encode(None):
            dst.mux(p)
    return out_path


def decode(path: Path, **options: object) -> tuple[list[VideoFrameItem], list[AudioFrameItem], dict]:
    run = FileRun(FileItem.from_path(path, None), path.parent / "out", path.stem)
    out = list(decode_file(path, run=run, **options))
    return ([x for x in out if isinstance(x, VideoFrameItem)], [x for x in out if isinstance(x, AudioFrameItem)],
            run.record)


def marker(item: VideoFrameItem) -> int:
    gray = item.array("gray")
    return read_frame_marker(np.rot90(gray, k=1) if item.rotation == 0 and gray.shape[0] > gray.shape[1] else gray)


def test_the_clip_really_has_b_frames_and_short_gops(bframes_clip: Path) -> None:
    with av.open(str(bframes_clip)) as c:
        frames = list(c.decode(video=0))
    assert any(int(f.pict_type) == 3 for f in frames)  # AV_PICTURE_TYPE_B
    assert sum(f.key_frame for f in frames) >= 7


def test_every_frame_by_default_in_presentation_order(bframes_clip: Path) -> None:
    frames, _, record = decode(bframes_clip, audio=False)
    assert [f.index for f in frames] == list(range(3 * FPS))
    assert [marker(f) for f in frames] == list(range(3 * FPS))
    assert record["frame_count"] == 90 and record["frame_count_exact"] is True


@pytest.mark.parametrize("start", [0.5, 1.0, 1.37, 2.9])
def test_a_start_time_gives_exactly_the_first_frame_shown_at_or_after_it(bframes_clip: Path, start: float) -> None:
    frames, _, _ = decode(bframes_clip, audio=False, start=start)
    first = int(np.ceil(start * FPS - 0.5))
    assert marker(frames[0]) == first == frames[0].index
    assert frames[0].time == pytest.approx(first / FPS, abs=1e-3)
    assert [marker(f) for f in frames] == list(range(first, 3 * FPS))


def test_a_time_range_ends_before_its_end(bframes_clip: Path) -> None:
    frames, audio, record = decode(bframes_clip, start=1.0, end=2.0)
    assert [marker(f) for f in frames] == list(range(30, 60))
    assert "frame_count" not in record  # not every frame was decoded: the count is left to Metadata
    assert audio and all(1.0 - 0.03 <= a.time < 2.0 for a in audio)


def test_a_target_fps_takes_the_first_frame_of_each_tick_and_never_duplicates(bframes_clip: Path) -> None:
    frames, _, _ = decode(bframes_clip, audio=False, fps=7)  # ticks every 4.29 frames: 0, 4, 9, 13...
    assert [marker(f) for f in frames] == [round(k * FPS / 7) for k in range(21)]
    assert len(decode(bframes_clip, audio=False, fps=60)[0]) == 90  # faster than the source: every frame once


def test_every_nth_frame(bframes_clip: Path) -> None:
    frames, _, _ = decode(bframes_clip, audio=False, every_nth=10)
    assert [marker(f) for f in frames] == list(range(0, 90, 10))


def test_keyframes_only_decodes_just_the_keyframes(bframes_clip: Path) -> None:
    frames, _, _ = decode(bframes_clip, audio=False, keyframes_only=True)
    assert [marker(f) for f in frames] == list(range(0, 90, 12))
    assert [f.index for f in frames] == list(range(0, 90, 12))


@pytest.mark.parametrize("fmt,shape", [("rgb24", (180, 320, 3)), ("gray", (180, 320)), ("yuv420p", (270, 320))])
def test_pixel_formats(bframes_clip: Path, fmt: str, shape: tuple[int, ...]) -> None:
    frames, _, _ = decode(bframes_clip, audio=False, pixel_format=fmt, end=0.2)
    assert {f.format for f in frames} == {fmt}
    assert frames[0].array().shape == shape


def test_upright_turns_the_pixels_and_clears_the_rotation(bframes_clip: Path) -> None:
    stored, _, _ = decode(bframes_clip, audio=False, end=0.1)
    upright, _, _ = decode(bframes_clip, audio=False, end=0.1, upright=True)
    assert stored[0].rotation == -90 and (stored[0].width, stored[0].height) == (320, 180)
    assert upright[0].rotation == 0 and (upright[0].width, upright[0].height) == (180, 320)
    assert np.array_equal(np.rot90(stored[0].array("gray"), k=-1), upright[0].array("gray"))


def test_a_sample_aspect_only_the_bitstream_states_reaches_every_frame(tmp_path: Path) -> None:
    # No pasp box: the MP4 is opened without probing, so the aspect is known once the first frame is decoded.
    video, _, _ = decode(make_bitstream_aspect_clip(tmp_path / "vui_aspect.mp4"))
    assert len(video) == 15
    assert {(item.stream.sample_aspect, item.stream.pix_fmt) for item in video} == {(Fraction(4, 3), "yuv420p")}


def test_audio_resampled_to_float32_in_one_second_blocks(bframes_clip: Path) -> None:
    _, audio, _ = decode(bframes_clip, audio_rate=16000, audio_layout="mono")
    assert all(a.frame.format.name == "flt" and a.frame.sample_rate == 16000 for a in audio)
    assert all(a.frame.layout.name == "mono" for a in audio)
    assert [a.frame.samples for a in audio[:-1]] == [16000] * (len(audio) - 1)
    assert [a.time for a in audio] == [pytest.approx(float(i)) for i in range(len(audio))]
    assert sum(a.frame.samples for a in audio) == pytest.approx(3 * 16000, rel=0.03)


def test_an_audio_only_file_gives_its_audio(tmp_path: Path) -> None:
    path = tmp_path / "voice.m4a"
    with av.open(str(path), "w") as out:
        a = out.add_stream("aac", rate=48000, layout="mono")
        samples = (0.1 * np.sin(np.arange(48000) / 48000 * 2 * np.pi * 300)).astype(np.float32)
        for start in range(0, 48000, 1024):
            frame = av.AudioFrame.from_ndarray(samples[None, start:start + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 48000, start, Fraction(1, 48000)
            for p in a.encode(frame):
                out.mux(p)
        for p in a.encode(None):
            out.mux(p)
    frames, audio, record = decode(path)
    assert frames == [] and sum(x.frame.samples for x in audio) >= 47000
    assert record["frame_count"] == 0
    with pytest.raises(UnsupportedMedia, match="no video stream"):
        decode(path, audio=False)


def test_options_are_checked_when_the_stage_is_made() -> None:
    with pytest.raises(ValueError, match="every_nth"):
        Decode(every_nth=0)
    with pytest.raises(ValueError, match="end"):
        Decode(start=2.0, end=1.0)
