"""Which streams are decoded (FFmpeg's rules, never cover art, the options), and streams that change size."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from support.runs import result_for
from support.stream_clips import (
    COVER_SIZE,
    TS_FRAMES,
    TS_SIZE,
    cover_art_first_mp4,
    empty_track_first_mkv,
    size_changing_webm,
    tone_frequency,
    two_of_each_mkv,
    two_programme_ts,
)

from pipeline import FileItem, FileRun, InvalidOption, Pipeline, PipelineDefinitionError, RunResult, run
from stages import Decode, Encode, Metadata, SpriteSheet, Thumbnails, presets, probe
from stages.decode import decode_file
from stages.errors import EmptyStream, UndecodableStream, UnsupportedMedia
from stages.frames import AudioFrameItem, VideoFrameItem
from stages.media import choose_streams, open_media
from stages.transforms import numpy_stage

SIZES = [(160, 90), (320, 180), (480, 270), (640, 360), (800, 450), (960, 540), (1280, 720), (1600, 900),
         (1760, 990), (1920, 1080)]
FRAMES_EACH = 3
# 16:9, square, portrait, back to 16:9: the square and portrait segments must be pillarboxed, not stretched.
SHAPES = [(320, 180), (180, 180), (180, 320), (320, 180)]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder with every stream-choice clip and the two size-changing ones."""
    root = tmp_path_factory.mktemp("streams")
    two_programme_ts(root / "programme_change.ts")
    size_changing_webm(root / "sizes.webm", SIZES, FRAMES_EACH)
    size_changing_webm(root / "shapes.webm", SHAPES, FRAMES_EACH)
    cover_art_first_mp4(root / "cover_first.mp4")
    two_of_each_mkv(root / "two_of_each.mkv")
    empty_track_first_mkv(root / "empty_first.mkv")
    return root


@pytest.fixture(scope="module")
def batch(clips: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """The default preset over the clips, on worker processes."""
    return run(presets.default(thumb_every=0.5, thumb_width=160, sprite_every=0.5), clips,
               tmp_path_factory.mktemp("out"), workers=2)


def decode(path: Path, **options: object) -> tuple[list[VideoFrameItem], list[AudioFrameItem], FileRun]:
    file_run = FileRun(FileItem.from_path(path, None), path.parent / "out", path.stem)
    items = list(decode_file(path, run=file_run, **options))
    return ([i for i in items if isinstance(i, VideoFrameItem)], [i for i in items if isinstance(i, AudioFrameItem)],
            file_run)


def video_frames(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as c:
        return list(c.decode(c.streams.video[0]))


def streams_used(record: dict) -> tuple:
    return tuple(record[k] for k in ("video_stream", "video_streams", "audio_stream", "audio_streams"))


# A programme change: the first stream is empty ------------------------------------------


def test_the_first_video_stream_of_the_programme_change_is_the_reported_failure(clips: Path) -> None:
    """The fixture is the issue's file: its first video stream fails as the issue says."""
    with pytest.raises(UndecodableStream, match=r"no video frame could be decoded from 3 packet\(s\)"):
        decode(clips / "programme_change.ts", video_stream=0)


def test_a_programme_change_decodes_the_stream_that_holds_the_video(batch: RunResult) -> None:
    res = result_for(batch, "programme_change.ts")
    assert res.status == "ok", res.error
    assert res.record["frame_count"] == TS_FRAMES
    assert (res.record["width"], res.record["height"]) == TS_SIZE
    assert streams_used(res.record) == (1, 2, 0, 1)
    frames = video_frames(batch.out_dir / res.record["proxy"])
    assert len(frames) == TS_FRAMES
    with av.open(str(batch.out_dir / res.record["proxy"])) as c:
        assert c.streams.audio  # the second programme's sound came along


# Cover art ------------------------------------------------------------------------------


def test_cover_art_first_is_never_the_video(batch: RunResult) -> None:
    res = result_for(batch, "cover_first.mp4")
    assert res.status == "ok", res.error
    assert streams_used(res.record) == (1, 2, 0, 1)
    assert (res.record["width"], res.record["height"], res.record["frame_count"]) == (160, 90, 25)
    assert [(f.width, f.height) for f in video_frames(batch.out_dir / res.record["proxy"])] == [(160, 90)] * 25
    poster = np.asarray(Image.open(batch.out_dir / res.record["poster"]).convert("RGB"), dtype=float)
    assert poster.shape[:2] != COVER_SIZE and not (poster[..., 0].mean() > 150 > poster[..., 1].mean())


def test_cover_art_is_no_candidate_and_cannot_be_asked_for(clips: Path) -> None:
    path = clips / "cover_first.mp4"
    with open_media(str(path)) as c:
        assert c.streams.video[0].disposition & av.stream.Disposition.attached_pic
        choice = choose_streams(c.name, c)
        assert (choice.video_number, choice.video_fallbacks) == (1, ())
    with pytest.raises(UnsupportedMedia) as caught:
        decode(path, video_stream=0)
    assert str(caught.value) == f"{path}: video stream 0:v:0 is cover art, not video"


def test_a_file_whose_only_picture_is_cover_art_is_sound_only(tmp_path: Path) -> None:
    source = cover_art_first_mp4(tmp_path / "cover.mp4")
    only_cover = tmp_path / "song.mp4"
    with av.open(str(source)) as src, av.open(str(only_cover), "w") as dst:
        cover, audio = src.streams.video[0], src.streams.audio[0]
        out = {cover.index: dst.add_stream_from_template(cover), audio.index: dst.add_stream_from_template(audio)}
        out[cover.index].disposition = av.stream.Disposition.attached_pic
        for packet in src.demux(cover, audio):
            if packet.size:
                packet.stream = out[packet.stream.index]
                dst.mux(packet)
    with av.open(str(only_cover)) as c:
        assert [bool(s.disposition & av.stream.Disposition.attached_pic) for s in c.streams.video] == [True]
    frames, sound, file_run = decode(only_cover)
    assert frames == [] and sound
    assert file_run.warnings == ["[decode] no video stream but cover art (audio only): no pictures"]
    with pytest.raises(UnsupportedMedia, match="no video stream but cover art"):
        decode(only_cover, audio=False)


# FFmpeg's rules, and the options --------------------------------------------------------


def test_the_default_flag_chooses_over_size_and_channels(batch: RunResult) -> None:
    res = result_for(batch, "two_of_each.mkv")
    assert res.status == "ok", res.error
    assert streams_used(res.record) == (0, 2, 1, 2)
    assert (res.record["width"], res.record["height"], res.record["audio_channels"]) == (160, 90, 1)


def test_the_options_pick_the_streams_asked_for(clips: Path) -> None:
    path = clips / "two_of_each.mkv"
    frames, sound, file_run = decode(path, video_stream=1, audio_stream=0)
    assert {(f.width, f.height) for f in frames} == {(320, 180)} and len(frames) == 20
    assert {a.frame.layout.nb_channels for a in sound} == {2}
    assert streams_used(file_run.record) == (1, 2, 0, 2)
    assert {a.stream.audio_stream for a in sound} == {0} and {f.stream.video_stream for f in frames} == {1}
    info = probe(str(path), video_stream=1, audio_stream=0)
    assert (info.width, info.audio_channels, info.video_stream, info.audio_stream) == (320, 2, 1, 0)


@pytest.mark.parametrize("options, message", [
    ({"video_stream": 2}, "no video stream 0:v:2 to decode: the file has 2 video streams (0:v:0 to 0:v:1)"),
    ({"audio_stream": 5}, "no audio stream 0:a:5 to decode: the file has 2 audio streams (0:a:0 to 0:a:1)"),
])
def test_a_stream_the_file_lacks_is_a_clear_error(clips: Path, options: dict, message: str) -> None:
    path = clips / "two_of_each.mkv"
    with pytest.raises(UnsupportedMedia) as caught:
        decode(path, **options)
    assert str(caught.value) == f"{path}: {message}"
    with pytest.raises(UnsupportedMedia, match="the file has 1 video stream \\(0:v:0\\)"):
        decode(clips / "sizes.webm", video_stream=1)
    with pytest.raises(UnsupportedMedia, match="the file has no audio stream"):
        decode(clips / "sizes.webm", audio_stream=0)


def test_a_stream_number_must_be_a_number_from_0_and_sound_must_be_decoded_to_choose_it() -> None:
    with pytest.raises(InvalidOption, match="video_stream"):
        Decode(video_stream=-1)
    with pytest.raises(InvalidOption, match="audio_stream"):
        Metadata(audio_stream=-2)
    with pytest.raises(PipelineDefinitionError, match="audio=False"):
        Decode(audio=False, audio_stream=0)


def _audio_packets(path: Path, number: int) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.audio[number]) if p.size]


@pytest.mark.parametrize("decode_options, source_stream", [
    ({}, 1),  # the default flag's stream
    ({"audio_stream": 0}, 0),
    ({"audio": False}, 1),  # no sound decoded: the stream Decode would have chosen
])
def test_the_remuxed_sound_is_the_stream_the_decoder_chose(clips: Path, tmp_path: Path, decode_options: dict,
                                                           source_stream: int) -> None:
    p = Pipeline("remux")
    d = p.add(Decode(**decode_options))
    p.add(Encode(codec="libx264", extension=".mkv", preset="ultrafast", category="copies"), after=d)
    result = run(p, [clips / "two_of_each.mkv"], tmp_path / "out", workers=1)
    res = result.files[0]
    assert res.status == "ok", res.error
    assert res.record["encode_audio_remuxed"] is True
    copy = tmp_path / "out" / res.record["encode"]
    assert _audio_packets(copy, 0) == _audio_packets(clips / "two_of_each.mkv", source_stream)
    with av.open(str(copy)) as c:
        samples = np.concatenate([f.to_ndarray()[0] for f in c.decode(audio=0)])
        assert tone_frequency(samples, 48000) == pytest.approx((440, 660)[source_stream], abs=5)


# A stream that probing cannot tell is empty ----------------------------------------------


def test_an_empty_track_chosen_by_the_rules_falls_back_to_the_next(batch: RunResult, clips: Path) -> None:
    res = result_for(batch, "empty_first.mkv")
    assert res.status == "ok", res.error
    assert streams_used(res.record) == (1, 2, 0, 1)
    assert (res.record["width"], res.record["height"], res.record["frame_count"]) == (160, 90, 20)
    assert ("[decode] video stream 0:v:0 gave no frame (the video stream is empty (no packets)); "
            "decoded video stream 0:v:1 instead") in res.warnings
    assert len(video_frames(batch.out_dir / res.record["proxy"])) == 20
    # The sound read on the way is given once, not once for each stream tried.
    _, sound, _ = decode(clips / "empty_first.mkv")
    _, asked, _ = decode(clips / "empty_first.mkv", video_stream=1)
    assert [a.time for a in sound] == [a.time for a in asked]


def test_an_empty_stream_asked_for_fails_without_falling_back(clips: Path) -> None:
    with pytest.raises(EmptyStream, match="the video stream is empty"):
        decode(clips / "empty_first.mkv", video_stream=0)


# Streams that change size --------------------------------------------------------------


def test_a_size_change_is_decoded_through_and_told_once(batch: RunResult) -> None:
    res = result_for(batch, "sizes.webm")
    assert res.status == "ok", res.error
    assert res.record["frame_count"] == len(SIZES) * FRAMES_EACH
    assert res.record["size_changes"] == len(SIZES) - 1 and res.record["pix_fmt_changes"] == 0
    sizes = ", ".join(f"{w}x{h}" for w, h in SIZES)
    assert [w for w in res.warnings if "size" in w] == [f"[decode] video size changes 9 times: {sizes}"]


def test_a_size_change_gives_each_frame_at_its_own_size(clips: Path) -> None:
    frames, _, _ = decode(clips / "sizes.webm")
    assert [(f.width, f.height) for f in frames] == [s for s in SIZES for _ in range(FRAMES_EACH)]


def test_the_proxy_of_a_size_change_has_every_frame_at_one_size(batch: RunResult) -> None:
    res = result_for(batch, "sizes.webm")
    frames = video_frames(batch.out_dir / res.record["proxy"])
    assert len(frames) == len(SIZES) * FRAMES_EACH
    assert {(f.width, f.height) for f in frames} == {SIZES[0]}  # the size opened at the first frame
    thumbnails = [o for o in res.outputs if o.startswith("thumbnails/") and not o.endswith("poster.jpg")]
    assert len(thumbnails) == 6 and res.record["poster"]  # every 0.5 s of 3 s
    for o in thumbnails:
        assert Image.open(batch.out_dir / o).size == (160, 90)
    assert res.record["sprite_tiles"] == 6 and res.record["sprite_sheets"] == 1


def test_a_picture_of_another_shape_is_padded_not_stretched(batch: RunResult) -> None:
    res = result_for(batch, "shapes.webm")
    assert res.status == "ok", res.error
    assert res.record["size_changes"] == 3
    frames = video_frames(batch.out_dir / res.record["proxy"])
    assert {(f.width, f.height) for f in frames} == {(320, 180)}
    for i, frame in enumerate(frames):
        luma = frame.to_ndarray(format="gray").astype(float)
        w, h = SHAPES[i // FRAMES_EACH]
        inner = round(w * 180 / h)  # the picture's width inside the output, aspect kept
        side = (320 - inner) // 2
        if side:  # pillarboxed: black bars each side, the picture between them
            assert luma[:, :side - 2].max() <= 20 and luma[:, -(side - 2):].max() <= 20, i
        assert luma[:, side + 4:320 - side - 4].mean() > 60, i


@numpy_stage
def negative(rgb: np.ndarray) -> np.ndarray:
    """A map stage: the negative of an RGB frame (it runs in worker processes, so frames cross in slots)."""
    return 255 - rgb


@pytest.mark.slow
def test_frames_of_every_size_cross_processes_in_shared_memory(clips: Path, tmp_path: Path) -> None:
    p = Pipeline("negatives")
    d = p.add(Decode(audio=False, pixel_format="rgb24"))
    n = p.add(negative, after=d)
    p.add(Thumbnails(every=0.3, width=None, fmt="png", poster=False), after=n)
    result = run(p, [clips / "sizes.webm"], tmp_path / "out", workers=2)
    res = result.files[0]
    assert res.status == "ok", res.error
    assert result.peak_slots >= 1  # the frames went to the workers in shared-memory slots
    frames, _, _ = decode(clips / "sizes.webm", audio=False, pixel_format="rgb24")
    pictures = sorted(o for o in res.outputs if o.endswith(".png"))  # named by time: in time order
    shown = frames[::3]  # a picture every 0.3 s of 0.1 s frames: frames 0, 3, 6...
    assert len(pictures) == len(shown) == 10
    assert len({(f.width, f.height) for f in shown}) == len(SIZES)  # every size crossed
    for path, frame in zip(pictures, shown):
        got = np.asarray(Image.open(tmp_path / "out" / path))
        assert got.shape == (frame.height, frame.width, 3)
        assert np.array_equal(got, 255 - frame.array())


def test_sprites_keep_the_first_tile_size_and_letterbox_other_shapes(clips: Path, tmp_path: Path) -> None:
    p = Pipeline("sprites")
    d = p.add(Decode(audio=False))
    p.add(SpriteSheet(every=0.3, tile_width=64, columns=4, rows=4, fmt="png"), after=d)
    res = run(p, [clips / "shapes.webm"], tmp_path / "out", workers=1).files[0]
    assert res.status == "ok", res.error
    sheet = np.asarray(Image.open(tmp_path / "out" / next(o for o in res.outputs if "sheet_000" in o)).convert("L"))
    assert sheet.shape == (36, 64 * 4)  # 4 tiles (0, 0.3, 0.6, 0.9 s) of 64x36, the first frame's shape
    square = sheet[:, 64:128].astype(float)  # the second tile, at 0.3 s: the 180x180 segment
    assert square[:, :10].max() <= 20 and square[:, -10:].max() <= 20 and square[:, 24:40].mean() > 60


# Real footage: the same streams as before ------------------------------------------------


def test_real_footage_chooses_the_streams_it_always_did(footage: Path) -> None:
    files = sorted(p for p in footage.iterdir() if p.suffix.lower() in (".mp4", ".mov", ".avi", ".webm", ".mkv"))
    assert files
    for path in files:
        with open_media(str(path)) as c:
            before_video = next((i for i, s in enumerate(c.streams.video) if s.codec_context is not None), None)
            before_audio = next((i for i, s in enumerate(c.streams.audio) if s.codec_context is not None), None)
            choice = choose_streams(str(path), c)
        assert (choice.video_number, choice.audio_number) == (before_video, before_audio), path.name

