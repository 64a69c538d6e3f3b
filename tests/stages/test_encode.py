"""Encode and the transcode presets: what lands on disk, read back with PyAV."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline import FRAME, FileResult, Pipeline, PipelineDefinitionError, run, stage
from stages import ClipSpec, Decode, Encode, make_clip, presets, read_frame_marker

LANDSCAPE = ClipSpec("landscape.mp4", 320, 180, 1.0, fps=30, audio=True)
PORTRAIT = ClipSpec("portrait.mp4", 256, 144, 1.0, fps=25, audio=True, rotation=-90)
SILENT_VP9 = ClipSpec("silent.webm", 256, 144, 1.0, fps=24, codec="libvpx-vp9")


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One-second clips: landscape H.264 + AAC, portrait (rotated) H.264 + AAC, silent VP9."""
    root = tmp_path_factory.mktemp("encode_src")
    for i, spec in enumerate((LANDSCAPE, PORTRAIT, SILENT_VP9)):
        make_clip(root / spec.name, spec, seed=i)
    return root


def encode(src: Path, out: Path, *, upstream: Any = None, **options: Any) -> FileResult:
    """Decode ``src`` and run one ``Encode(**options)`` on it in this process; the file's result."""
    p = Pipeline("encode-test")
    node = p.add(Decode())
    if upstream is not None:
        node = p.add(upstream, after=node)
    p.add(Encode(**options), after=node)
    (result,) = run(p, src, out, executor="inline").files
    return result


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]


def audio_seconds(path: Path) -> float:
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        return sum(f.samples for f in c.decode(a)) / a.rate


def top_level_boxes(path: Path) -> list[str]:
    """The types of an MP4's top-level boxes, in file order (4-byte size, 4-byte type)."""
    data, boxes, offset = path.read_bytes(), [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset:offset + 8])
        if size == 1:  # a 64-bit size follows the type
            size = struct.unpack(">Q", data[offset + 8:offset + 16])[0]
        boxes.append(kind.decode("latin-1"))
        if size == 0:  # runs to the end of the file
            break
        offset += size
    return boxes


def files_under(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


# Codecs ------------------------------------------------------------------------------


CODECS = [  # encoder, extension, stream codec, pixel format written
    ("libx264", ".mp4", "h264", "yuv420p"),
    ("libx265", ".mp4", "hevc", "yuv420p"),
    ("libvpx-vp9", ".webm", "vp9", "yuv420p"),
    ("libsvtav1", ".mkv", "av1", "yuv420p"),
    ("prores_ks", ".mov", "prores", "yuv422p10le"),
    ("ffv1", ".mkv", "ffv1", "yuv420p"),
]


@pytest.mark.parametrize("codec, ext, stream_codec, pix_fmt", CODECS)
def test_each_codec_writes_every_frame_in_order_at_the_source_size(clips: Path, tmp_path: Path, codec: str,
                                                                   ext: str, stream_codec: str, pix_fmt: str) -> None:
    fast = {"libx264": "ultrafast", "libx265": "ultrafast", "libvpx-vp9": "8", "libsvtav1": "12"}.get(codec)
    res = encode(clips / LANDSCAPE.name, tmp_path, codec=codec, extension=ext, preset=fast)
    assert res.ok, res.error
    path = tmp_path / res.record["encode"]
    assert path == tmp_path / "transcodes" / f"landscape{ext}"
    assert (res.record["encode_width"], res.record["encode_height"], res.record["encode_codec"]) == (
        320, 180, stream_codec)
    n = round(LANDSCAPE.seconds * LANDSCAPE.fps)
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        assert v.codec_context.name in (stream_codec, "libdav1d")
        assert (v.codec_context.width, v.codec_context.height) == (320, 180)
        if codec == "libsvtav1":  # no AV1 decoder is assumed: count packets and read their stamps
            times = sorted(float(p.pts * p.time_base) for p in c.demux(v) if p.size)
            assert len(times) == n
        else:
            assert v.codec_context.format.name == pix_fmt
            times, markers = [], []
            for i, frame in enumerate(c.decode(v)):
                times.append(frame.time)
                if i % 6 == 0:
                    markers.append((i, read_frame_marker(frame.to_ndarray(format="gray"))))
            assert len(times) == n
            assert all(i == m for i, m in markers), markers
    # every frame keeps its time: frame i is shown at i / fps. (Matroska cannot store the remuxed
    # AAC's priming packet at -21 ms, so the muxer moves both streams forward together.)
    assert times[0] == pytest.approx(0.0, abs=0.025)
    assert [t - times[0] for t in times] == pytest.approx([i / LANDSCAPE.fps for i in range(n)],
                                                          abs=0.5 / LANDSCAPE.fps)


@pytest.mark.parametrize("codec, ext", [("libx264", ".mp4"), ("prores_ks", ".mov")])
def test_portrait_pictures_are_turned_upright_and_fitted_to_the_turned_box(clips: Path, tmp_path: Path,
                                                                           codec: str, ext: str) -> None:
    # 256x144 stored, shown 144x256; a 240x240 box scales it to 135x240, kept even for 4:2:x chroma
    res = encode(clips / PORTRAIT.name, tmp_path, codec=codec, extension=ext, max_width=240, max_height=240)
    assert (res.record["encode_width"], res.record["encode_height"]) == (134, 240)
    with av.open(str(tmp_path / res.record["encode"])) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == round(PORTRAIT.seconds * PORTRAIT.fps)
    assert all(f.rotation == 0 for f in frames)  # the pixels are upright, no rotation flag to apply
    for i in (0, 7, 24):
        gray = np.rot90(frames[i].to_ndarray(format="gray"), k=1)  # turn back to read the marker
        assert read_frame_marker(gray) == i


def test_a_small_source_is_never_upscaled(clips: Path, tmp_path: Path) -> None:
    res = encode(clips / LANDSCAPE.name, tmp_path, max_width=1920, max_height=1080, preset="ultrafast")
    assert (res.record["encode_width"], res.record["encode_height"]) == (320, 180)


def test_a_raw_y4m_source_encodes_every_frame(clips: Path, tmp_path: Path) -> None:
    src = raw_copy(clips / LANDSCAPE.name, tmp_path / "landscape.y4m")
    res = encode(src, tmp_path / "out", codec="ffv1", extension=".mkv")
    with av.open(str(tmp_path / "out" / res.record["encode"])) as c:
        assert not c.streams.audio
        frames = [f.to_ndarray() for f in c.decode(video=0)]
    with av.open(str(clips / LANDSCAPE.name)) as c:
        assert all(np.array_equal(a, f.to_ndarray()) for a, f in zip(frames, c.decode(video=0), strict=True))


def test_gop_bounds_the_distance_between_keyframes(clips: Path, tmp_path: Path) -> None:
    def keyframes(**options: Any) -> list[int]:
        res = encode(clips / LANDSCAPE.name, tmp_path / str(options), preset="ultrafast", **options)
        with av.open(str(tmp_path / str(options) / res.record["encode"])) as c:
            return [i for i, f in enumerate(c.decode(video=0)) if f.key_frame]

    every5 = keyframes(gop=5)
    assert every5[0] == 0 and max(np.diff(every5 + [30])) <= 5
    assert len(keyframes()) < len(every5)  # x264's own interval (250) is far longer than the clip


# Audio -------------------------------------------------------------------------------


@pytest.mark.parametrize("codec, ext", [("libx264", ".mp4"), ("prores_ks", ".mov"), ("ffv1", ".mkv")])
def test_audio_the_container_takes_is_remuxed_packet_for_packet(clips: Path, tmp_path: Path, codec: str,
                                                                ext: str) -> None:
    src = clips / LANDSCAPE.name
    res = encode(src, tmp_path, codec=codec, extension=ext)
    path = tmp_path / res.record["encode"]
    assert res.record["encode_audio_remuxed"] is True
    with av.open(str(path)) as c:
        assert c.streams.audio[0].codec_context.name == "aac"
    assert audio_packets(path) == audio_packets(src)
    assert audio_seconds(path) == pytest.approx(LANDSCAPE.seconds, rel=0.05)


def test_a_trimmed_start_remuxes_only_the_sound_from_the_first_picture_on(clips: Path, tmp_path: Path) -> None:
    p = Pipeline("trimmed")
    p.add(Encode(preset="ultrafast"), after=p.add(Decode(start=0.5)))
    (res,) = run(p, clips / LANDSCAPE.name, tmp_path, executor="inline").files
    path = tmp_path / res.record["encode"]
    assert res.record["encode_audio_remuxed"] is True
    with av.open(str(path)) as c:
        first_picture = next(c.decode(video=0)).time
        a = c.streams.audio[0]
        first_sound = float(a.start_time * a.time_base)
    assert first_picture == pytest.approx(0.5, abs=0.5 / LANDSCAPE.fps)
    assert first_picture - 1024 / 48000 <= first_sound <= first_picture  # within one AAC packet
    assert audio_seconds(path) == pytest.approx(LANDSCAPE.seconds - 0.5, abs=2 * 1024 / 48000)


def test_audio_webm_cannot_take_is_reencoded_to_opus(clips: Path, tmp_path: Path) -> None:
    res = encode(clips / LANDSCAPE.name, tmp_path, codec="libvpx-vp9", extension=".webm", preset="8")
    path = tmp_path / res.record["encode"]
    assert res.record["encode_audio_remuxed"] is False
    with av.open(str(path)) as c:
        assert c.streams.audio[0].codec_context.name == "opus"
    assert audio_seconds(path) == pytest.approx(LANDSCAPE.seconds, rel=0.05)


@pytest.mark.parametrize("audio, expected", [("encode", "pcm_s16le"), (False, None)])
def test_audio_can_be_forced_to_encode_or_dropped(clips: Path, tmp_path: Path, audio: Any,
                                                  expected: str | None) -> None:
    res = encode(clips / LANDSCAPE.name, tmp_path, codec="prores_ks", extension=".mov", audio=audio)
    path = tmp_path / res.record["encode"]
    assert res.record["encode_audio_remuxed"] is False
    with av.open(str(path)) as c:
        codecs = [s.codec_context.name for s in c.streams.audio]
    assert codecs == ([expected] if expected else [])
    if expected:
        assert audio_seconds(path) == pytest.approx(LANDSCAPE.seconds, rel=0.05)


def test_a_silent_source_gives_a_silent_output(clips: Path, tmp_path: Path) -> None:
    res = encode(clips / SILENT_VP9.name, tmp_path, preset="ultrafast")
    with av.open(str(tmp_path / res.record["encode"])) as c:
        assert not c.streams.audio
    assert res.record["encode_audio_remuxed"] is False


# Outputs -----------------------------------------------------------------------------


@pytest.mark.parametrize("faststart, index_first", [(True, True), (False, False)])
def test_faststart_puts_the_index_before_the_media_data(clips: Path, tmp_path: Path, faststart: bool,
                                                        index_first: bool) -> None:
    res = encode(clips / LANDSCAPE.name, tmp_path, faststart=faststart, preset="ultrafast")
    boxes = top_level_boxes(tmp_path / res.record["encode"])
    assert boxes[0] == "ftyp" and {"moov", "mdat"} <= set(boxes)
    assert (boxes.index("moov") < boxes.index("mdat")) is index_first


def test_the_output_appears_only_under_its_final_name(clips: Path, tmp_path: Path) -> None:
    res = encode(clips / LANDSCAPE.name, tmp_path, category="renders", preset="ultrafast")
    assert res.outputs == ["renders/landscape.mp4"]
    assert files_under(tmp_path / "renders") == ["landscape.mp4"]  # no hidden part file left beside it


@stage(accepts=FRAME, emits=FRAME)
def _fail_at_frame_10(item: Any, ctx: Any) -> Any:
    if item.index == 10:
        raise RuntimeError("upstream broke at frame 10")
    return [item]


def raw_copy(src: Path, dst: Path) -> Path:
    """``src``'s pictures as a YUV4MPEG2 file (read without a decoder)."""
    with av.open(str(src)) as c:
        v = c.streams.video[0]
        header = f"YUV4MPEG2 W{v.width} H{v.height} F{v.average_rate.numerator}:{v.average_rate.denominator} C420jpeg\n"
        frames = [f.to_ndarray(format="yuv420p").tobytes() for f in c.decode(v)]
    dst.write_bytes(header.encode() + b"".join(b"FRAME\n" + f for f in frames))
    return dst


@pytest.mark.parametrize("case", ["encoder refuses to open", "file fails mid-way"])
def test_a_failing_encode_leaves_no_file(clips: Path, tmp_path: Path, case: str) -> None:
    # A raw source, so no decoder is left mid-file when the file fails: PyAV can deadlock freeing a
    # frame-threaded decoder whose threads are still logging (a Decode matter, not an Encode one).
    src = raw_copy(clips / LANDSCAPE.name, tmp_path / "landscape.y4m")
    out = tmp_path / "out"
    if case == "encoder refuses to open":  # x264 has no such profile
        res = encode(src, out, codec_options={"profile": "no-such-profile"})
    else:  # frames 0-9 are already written when the file fails
        res = encode(src, out, upstream=_fail_at_frame_10, preset="ultrafast")
    assert not res.ok
    assert "encode" not in res.record
    assert not (out / "transcodes").exists() or files_under(out / "transcodes") == []


@pytest.mark.parametrize("options, message", [
    (dict(codec="prores_ks", extension=".webm"), "does not go into .webm"),
    (dict(codec="libaom-av1"), "unknown video codec"),
    (dict(extension=".avi"), "cannot write '.avi'"),
    (dict(crf=20, bitrate=1_000_000), "crf or bitrate"),
    (dict(audio="copy"), "audio must be"),
    (dict(codec="prores_ks", extension=".mov", pix_fmt="yuv420p"), "prores_ks cannot encode yuv420p"),
])
def test_impossible_settings_fail_when_the_pipeline_is_built(options: dict[str, Any], message: str) -> None:
    with pytest.raises(PipelineDefinitionError, match=message):
        Encode(**options)


# Presets -----------------------------------------------------------------------------


def test_web_profile_is_h264_aac_with_the_index_first(clips: Path, tmp_path: Path) -> None:
    (res,) = run(presets.transcode(profile="web", preset="ultrafast"), clips / LANDSCAPE.name, tmp_path,
                 executor="inline").files
    path = tmp_path / res.record["transcode"]
    assert path == tmp_path / "web" / "landscape.mp4"
    with av.open(str(path)) as c:
        assert [s.codec_context.name for s in c.streams] == ["h264", "aac"]
        assert c.streams.video[0].codec_context.format.name == "yuv420p"
    boxes = top_level_boxes(path)
    assert boxes.index("moov") < boxes.index("mdat")


def test_archive_profile_is_lossless_ffv1_with_every_frame_a_keyframe(clips: Path, tmp_path: Path) -> None:
    src = clips / LANDSCAPE.name
    (res,) = run(presets.transcode(profile="archive"), src, tmp_path, executor="inline").files
    path = tmp_path / res.record["transcode"]
    assert path.suffix == ".mkv" and res.record["transcode_audio_remuxed"] is True
    with av.open(str(src)) as c:
        original = [f.to_ndarray() for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.name == "ffv1"
        archived = list(c.decode(video=0))
    assert all(f.key_frame for f in archived)
    assert len(archived) == len(original)
    assert all(np.array_equal(a.to_ndarray(), o) for a, o in zip(archived, original))  # bit for bit
    assert audio_packets(path) == audio_packets(src)


def test_proxies_preset_writes_proxies_and_no_thumbnails(clips: Path, tmp_path: Path) -> None:
    (res,) = run(presets.proxies(), clips / PORTRAIT.name, tmp_path, executor="inline").files
    assert res.record["proxy"] == "proxies/portrait.mp4" and res.record["proxy_passthrough"] is False
    assert (res.record["proxy_width"], res.record["proxy_height"]) == (144, 256)
    assert not (tmp_path / "thumbnails").exists()


def test_unknown_transcode_profile_is_refused() -> None:
    with pytest.raises(PipelineDefinitionError, match="option profile=tiny: must be one of proxy, edit, web, archive"):
        presets.transcode(profile="tiny")


def test_cli_transcodes_a_folder_for_editing(clips: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "pipeline", "run", str(clips), "-o", str(out), "-q",
                           "-j", "1", "-p", "transcode", "-O", "profile=edit"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = {r["relpath"]: r for r in pq.read_table(out / "report.parquet").to_pylist()}
    assert set(rows) == {LANDSCAPE.name, PORTRAIT.name, SILENT_VP9.name}
    for rel, row in rows.items():
        path = out / row["transcode"]
        assert path == out / "edit" / rel.replace(Path(rel).suffix, ".mov")
        with av.open(str(path)) as c:
            v = c.streams.video[0]
            assert v.codec_context.name == "prores" and v.codec_context.format.name == "yuv422p10le"
            assert v.profile == "HQ"
            audio = [s.codec_context.name for s in c.streams.audio]
        # AAC goes into MOV unchanged; a silent source stays silent
        assert audio == ([] if rel == SILENT_VP9.name else ["aac"])
        assert row["transcode_audio_remuxed"] is (rel != SILENT_VP9.name)
