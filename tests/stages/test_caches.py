"""Typed caches and random-access frames: asking twice decodes once, across processes through the disk tier."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.cache.disk import DiskCache
from pipeline.cache.manager import CacheManager, ClearableCache
from stages import ClipSpec, make_clip, read_frame_marker
from stages.caches import FrameCache, MetadataCache, ThumbnailCache


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return make_clip(tmp_path / "c.mp4", ClipSpec("c.mp4", 320, 180, 2.0, fps=30))


def test_a_frame_asked_for_twice_is_decoded_once_and_is_the_right_one(clip: Path, tmp_path: Path) -> None:
    frames = FrameCache(DiskCache(tmp_path / "cache", name="media"))
    first = frames.frame(clip, index=37)
    again = frames.frame(clip, index=37)
    assert frames.decodes == 1
    assert read_frame_marker(first) == 37 and np.array_equal(first, again)
    assert read_frame_marker(frames.frame(clip, time=1.5)) == 45
    assert read_frame_marker(frames.frame(clip, index=10, pixel_format="gray")) == 10
    with pytest.raises(ValueError, match="not both"):
        frames.frame(clip, index=1, time=1.0)


def test_the_disk_tier_serves_another_process(clip: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    FrameCache(DiskCache(cache, name="media")).frame(clip, index=12)
    code = ("import sys; from pipeline.cache.disk import DiskCache; from stages.caches import FrameCache\n"
            "from stages import read_frame_marker\n"
            f"f = FrameCache(DiskCache({str(cache)!r}, name='media'))\n"
            f"print(read_frame_marker(f.frame({str(clip)!r}, index=12)), f.decodes)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["12", "0"]  # the right frame, decoded by nobody in that process


def test_an_edited_file_is_a_miss(clip: Path, tmp_path: Path) -> None:
    frames = FrameCache(DiskCache(tmp_path / "cache", name="media"))
    frames.frame(clip, index=3)
    st = clip.stat()
    os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    frames.memory.clear()
    frames.frame(clip, index=3)
    assert frames.decodes == 2


def test_thumbnail_and_metadata_caches(clip: Path, tmp_path: Path) -> None:
    disk = DiskCache(tmp_path / "cache", name="media")
    frames = FrameCache(disk)
    thumbs = ThumbnailCache(frames, disk)
    jpeg = thumbs.thumbnail(clip, 1.0, width=160)
    assert jpeg[:2] == b"\xff\xd8" and thumbs.thumbnail(clip, 1.0, width=160) == jpeg
    meta = MetadataCache(disk)
    info = meta.probe(clip)
    assert (info.width, info.height) == (320, 180)
    assert MetadataCache(disk).probe(clip) == info  # from disk, as JSON


class UserCache:
    """Something of the user's that the manager can clear."""

    def __init__(self) -> None:
        self.name = "mine"
        self.items = {"a": 1}

    def clear(self) -> None:
        self.items.clear()


def test_the_manager_lists_clears_and_measures_every_cache(tmp_path: Path) -> None:
    manager = CacheManager()
    frames = manager.add_cache("frames", FrameCache(None))
    mine = manager.add_clearable_cache(UserCache())
    assert isinstance(mine, ClearableCache)
    assert manager.list_caches() == ["frames", "mine"]
    with pytest.raises(ValueError, match="already registered"):
        manager.add_cache("frames", frames)
    with pytest.raises(TypeError, match="ClearableCache"):
        manager.add_clearable_cache(object())  # type: ignore[arg-type]
    frames.memory.insert("k", b"v")
    stats = manager.statistics()
    assert stats["frames"].entries == 1 and stats["mine"] is None
    manager.clear_all()
    assert frames.memory.size() == 0 and mine.items == {}
