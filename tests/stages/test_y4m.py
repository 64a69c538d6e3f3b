"""Raw YUV4MPEG2 video: frames read by the kernel straight into pool slots, then through the pipeline;
outside a pipeline (``decode_file``, the caches), frames that own their pixels and no shared memory left behind."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from pipeline import run
from pipeline.dataplane.buffers import BufferPool
from pipeline.dataplane.segments import SEGMENT_PREFIX
from stages import ClipSpec, make_clip, presets, read_frame_marker
from stages.caches import FrameCache, ThumbnailCache, extract_frame
from stages.decode import decode_file
from stages.errors import CorruptMedia
from stages.frames import VideoFrameItem
from stages.y4m import Y4MFile


def write_y4m(path: Path, source: Path, colorspace: str = "420jpeg") -> list[np.ndarray]:
    """Decode ``source`` and write its frames as a Y4M file by hand; return the frames written."""
    frames = []
    fmt = {"420jpeg": "yuv420p", "444": "yuv444p"}[colorspace]
    with av.open(str(source)) as c:
        v = c.streams.video[0]
        rate = v.average_rate
        for frame in c.decode(v):
            frames.append(frame.reformat(format=fmt).to_ndarray())
            width, height = frame.width, frame.height
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F{rate.numerator}:{rate.denominator} Ip A1:1 C{colorspace}\n".encode())
        for data in frames:
            f.write(b"FRAME\n")
            f.write(np.ascontiguousarray(data).tobytes())
    return frames


@pytest.fixture(scope="module")
def y4m(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    root = tmp_path_factory.mktemp("y4m")
    make_clip(root / "src.mp4", ClipSpec("src.mp4", 320, 184, 2.0, fps=25), seed=3)
    frames = write_y4m(root / "raw.y4m", root / "src.mp4")
    return root / "raw.y4m", frames


def test_header_and_frame_offsets_are_read_from_the_map(y4m: tuple[Path, list[np.ndarray]]) -> None:
    path, frames = y4m
    with Y4MFile(str(path)) as raw:
        assert (raw.width, raw.height, raw.fps, raw.pixel_format) == (320, 184, Fraction(25), "yuv420p")
        assert raw.frame_count == len(frames) == 50
        assert raw.shape == (276, 320)


def test_frames_land_in_pool_slots_bit_exact(y4m: tuple[Path, list[np.ndarray]]) -> None:
    path, frames = y4m
    with Y4MFile(str(path)) as raw, BufferPool(raw.frame_size, 2) as pool:
        for i, (lease, ref) in enumerate(raw.frames(pool)):
            with lease:
                assert np.array_equal(ref.array(), frames[i])
                assert ref.seq == i and ref.time == pytest.approx(i / 25)
                assert read_frame_marker(ref.array()[:184]) == i
        assert pool.free_slots == 2


def test_a_truncated_last_frame_is_dropped_and_a_bad_header_is_corrupt(tmp_path: Path,
                                                                      y4m: tuple[Path, list[np.ndarray]]) -> None:
    path, _ = y4m
    cut = tmp_path / "cut.y4m"
    cut.write_bytes(path.read_bytes()[:-100])
    with Y4MFile(str(cut)) as raw:
        assert raw.frame_count == 49
    bad = tmp_path / "bad.y4m"
    bad.write_bytes(b"NOTY4M W2 H2\n")
    with pytest.raises(CorruptMedia, match="not a YUV4MPEG2 file"):
        Y4MFile(str(bad))


def test_the_default_preset_runs_on_raw_video_through_the_slots(y4m: tuple[Path, list[np.ndarray]],
                                                                tmp_path: Path) -> None:
    path, frames = y4m
    result = run(presets.default(thumb_every=1.0), path, tmp_path, workers=1)
    res = result.files[0]
    assert res.ok, res.error
    assert res.record["frame_count"] == 50 and res.record["frame_count_exact"]
    t1 = np.asarray(Image.open(tmp_path / "thumbnails" / "raw" / "t0001.000.jpg").convert("RGB"))
    assert read_frame_marker(t1) == 25
    with av.open(str(tmp_path / res.record["proxy"])) as c:
        decoded = [f.to_ndarray(format="gray") for f in c.decode(c.streams.video[0])]
    assert len(decoded) == 50
    assert [read_frame_marker(g) for g in decoded[::10]] == [0, 10, 20, 30, 40]


def test_layouts_other_than_420_go_through_ffmpeg(tmp_path: Path, y4m: tuple[Path, list[np.ndarray]]) -> None:
    src = tmp_path / "src.mp4"
    make_clip(src, ClipSpec("src.mp4", 160, 96, 1.0, fps=10), seed=4)
    write_y4m(tmp_path / "full.y4m", src, colorspace="444")
    result = run(presets.default(), tmp_path / "full.y4m", tmp_path / "out", workers=1)
    assert result.files[0].ok, result.files[0].error
    assert result.files[0].record["frame_count"] == 10


def segments() -> set[str]:
    """This process's shared-memory segments: names in /dev/shm, and mappings (an unlinked one still mapped counts)."""
    prefix = f"{SEGMENT_PREFIX}{os.getpid()}_"
    named = {n for n in os.listdir("/dev/shm") if n.startswith(prefix)}
    maps = Path("/proc/self/maps").read_text().split()
    return named | {w.removeprefix("/dev/shm/") for w in maps if w.startswith(f"/dev/shm/{prefix}")}


def luma_marker(item: VideoFrameItem) -> int:
    return read_frame_marker(item.array()[:184])  # the Y plane of a stacked 4:2:0 frame


def test_frames_kept_from_decode_file_read_their_own_pixels_after_it_ends(y4m: tuple[Path, list[np.ndarray]]) -> None:
    path, frames = y4m
    before = segments()
    kept = list(decode_file(path, audio=False))  # exhausted
    assert [luma_marker(item) for item in kept] == list(range(50))
    assert all(np.array_equal(item.array(), frames[i]) for i, item in enumerate(kept))
    gen = decode_file(path, audio=False)
    first = [next(gen) for _ in range(5)]
    gen.close()  # closed part way
    assert [luma_marker(item) for item in first] == [0, 1, 2, 3, 4]
    assert np.array_equal(first[4].array(), frames[4])
    assert read_frame_marker(first[2].array("gray")) == 2  # a conversion reads them too
    assert segments() == before


def test_breaking_out_of_decode_file_leaves_no_segment(y4m: tuple[Path, list[np.ndarray]]) -> None:
    path, frames = y4m
    before = segments()
    for _ in range(5):
        for item in decode_file(path, audio=False):
            if item.index == 3:
                break
        assert segments() == before
    assert luma_marker(item) == 3 and np.array_equal(item.array(), frames[3])


def test_a_long_lived_process_asking_caches_for_raw_frames_keeps_no_segment(
        y4m: tuple[Path, list[np.ndarray]]) -> None:
    path, _ = y4m
    before = segments()
    frames = FrameCache()  # memory tier only: every new frame is decoded
    thumbs = ThumbnailCache(frames)
    for i in range(0, 50, 5):
        assert read_frame_marker(frames.frame(path, index=i, pixel_format="gray")) == i
        assert read_frame_marker(extract_frame(path, index=i + 1, pixel_format="gray")) == i + 1
        assert thumbs.thumbnail(path, i / 25, width=80)[:2] == b"\xff\xd8"
        for _item in decode_file(path, audio=False):  # a whole pass, through the raw path
            pass
        assert segments() == before
    assert frames.decodes == 10
