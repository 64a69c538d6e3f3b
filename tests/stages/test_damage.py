"""Damaged files read by ``Decode`` alone: the frames before the damage come out, then one clear error."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pipeline import FileItem, FileRun
from stages import ClipSpec, make_clip
from stages.decode import decode_file
from stages.errors import CorruptMedia, TruncatedMedia, UnsupportedMedia
from stages.frames import VideoFrameItem
from stages.samples import read_frame_marker

CLIP = ClipSpec("c.mp4", 96, 64, 2.0, fps=10, faststart=True)  # 20 frames, index before the data


def frames_until_error(path: Path, **options: object) -> tuple[list[int], BaseException | None, FileRun]:
    """The frame numbers burnt into the pictures decoded before the error, the error, and what was recorded."""
    run = FileRun(FileItem(str(path), path.name), path.parent, path.stem)
    seen = []
    try:
        for item in decode_file(path, run=run, pixel_format="gray", **options):
            if isinstance(item, VideoFrameItem):
                seen.append(read_frame_marker(item.frame.to_ndarray()))
    except CorruptMedia as exc:
        return seen, exc, run
    return seen, None, run


def write_y4m(path: Path, frames: int, width: int = 64, height: int = 48) -> bytes:
    header = f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode()
    data = header + b"".join(b"FRAME\n" + bytes([i]) * (width * height * 3 // 2) for i in range(frames))
    path.write_bytes(data)
    return data


def test_a_cut_mp4_gives_every_frame_before_the_cut_then_fails_as_truncated(tmp_path: Path) -> None:
    data = make_clip(tmp_path / "whole.mp4", CLIP).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:len(data) * 2 // 3])
    seen, error, run = frames_until_error(cut)
    assert isinstance(error, TruncatedMedia)
    assert seen == list(range(len(seen))) and 8 <= len(seen) < 20
    assert error.reason.startswith("truncated: the data ends at ") and f"({len(seen)} of 20 frames decoded)" \
        in error.reason
    assert str(error) == f"{cut}: {error.reason}"  # one line: the file, then what is wrong


def test_a_time_range_that_ends_before_the_cut_reads_no_damage(tmp_path: Path) -> None:
    data = make_clip(tmp_path / "whole.mp4", CLIP).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:len(data) * 2 // 3])
    seen, error, _ = frames_until_error(cut, end=0.5)
    assert error is None and seen == [0, 1, 2, 3, 4]


def test_an_index_with_no_data_is_truncated_and_an_unknown_codec_unsupported(tmp_path: Path) -> None:
    data = make_clip(tmp_path / "whole.mp4", CLIP).read_bytes()
    at = data.index(b"avc1", data.index(b"stsd"))  # the sample entry's codec, not the brand in ftyp
    unknown = tmp_path / "unknown.mp4"
    unknown.write_bytes(data[:at] + b"zzzz" + data[at + 4:])
    with pytest.raises(UnsupportedMedia, match="no decoder for the video stream's codec"):
        frames_until_error(unknown)
    only_header = tmp_path / "header.mp4"
    only_header.write_bytes(data[:data.index(b"mdat") + 4])  # index, and no data at all
    seen, error, _ = frames_until_error(only_header)
    assert seen == [] and isinstance(error, TruncatedMedia)
    assert error.reason == "truncated: no video data of the 2.00 s the header states (0 of 20 frames decoded)"


def test_raw_video_cut_short_gives_its_whole_frames_then_fails_as_truncated(tmp_path: Path) -> None:
    path = tmp_path / "cut.y4m"
    path.write_bytes(write_y4m(path, 5)[:-100])
    run = FileRun(FileItem(str(path), path.name), path.parent, path.stem)
    values = []
    with pytest.raises(TruncatedMedia, match=r"truncated: frame 4 is cut short \(4 whole frames before it read\)"):
        for item in decode_file(path, run=run):
            values.append(int(item.frame.to_ndarray()[0, 0]))
    assert values == [0, 1, 2, 3]


def test_raw_video_missing_a_frame_marker_gives_the_frames_before_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.y4m"
    data = bytearray(write_y4m(path, 5))
    second = data.index(b"FRAME", data.index(b"FRAME") + 1)
    data[second:second + 5] = b"XXXXX"
    path.write_bytes(bytes(data))
    count = 0
    with pytest.raises(CorruptMedia, match=f"frame 1: no FRAME marker at byte {second} "):
        for _ in decode_file(path):
            count += 1
    assert count == 1


@pytest.mark.parametrize("header, reason", [
    (b"W100000 H100000", "absurd picture size 100000x100000 in the header"),
    (b"W0 H48", "absurd picture size 0x48 in the header"),
    (b"W64 H48 F0:0", r"YUV4MPEG2 header has no frame rate \(F0:0\)"),
])
def test_an_absurd_raw_video_header_is_refused_before_anything_is_allocated(tmp_path: Path, header: bytes,
                                                                            reason: str) -> None:
    path = tmp_path / "absurd.y4m"
    path.write_bytes(b"YUV4MPEG2 " + header + b" C420jpeg\nFRAME\n" + bytes(64))
    with pytest.raises(CorruptMedia, match=reason):
        list(decode_file(path))


def test_a_stated_duration_comes_only_from_a_header_that_says_it(tmp_path: Path) -> None:
    import av

    from stages.damage import stated_duration
    webm = make_clip(tmp_path / "c.webm", replace(CLIP, codec="libvpx-vp9"))
    mp4 = make_clip(tmp_path / "c.mp4", CLIP)
    with av.open(str(webm)) as c:
        assert stated_duration(c, c.streams.video[0]) == pytest.approx(2.0)  # Matroska's DURATION tag
    with av.open(str(mp4)) as c:
        assert stated_duration(c, c.streams.video[0]) == pytest.approx(2.0)  # the MP4 index
