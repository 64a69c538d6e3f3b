"""Typed caches of frames, thumbnails and metadata, and ``extract_frame``: random access that decodes once.

Each keeps its values in a memory tier (a bounded ``Cache``) in front of the
persistent ``DiskCache`` shared by every process and run, under the file's
fingerprint (size, mtime, first and last MiB) — so an edited file is a miss,
and nothing is unpickled: frames are Arrow tables, thumbnails bytes,
metadata JSON.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline import fingerprint
from pipeline.cache import Cache, CacheConfig, CacheManager, DiskCache, caching_disabled
from pipeline.storage import is_url

from .decode import decode_file
from .media import choose_streams, open_media
from .metadata import MediaInfo, probe
from .thumbnails import encode_image, frame_to_image

__all__ = ["FrameCache", "ThumbnailCache", "MetadataCache", "extract_frame", "caches", "default_caches"]

_FORMAT_VERSION = 2  # 2: streams chosen by FFmpeg's rules, not the first of each kind


def _fingerprint(path: str | os.PathLike[str]) -> str:
    """The file's fingerprint, hashed once per (path, size, mtime): a repeated ask reads nothing (a URL: its
    object's size, ETag and version, one HEAD each ask)."""
    if is_url(path):
        return fingerprint(path, 0, 0)
    st = os.stat(path)
    return _fingerprint_of(os.fspath(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _fingerprint_of(path: str, size: int, mtime_ns: int) -> str:
    return fingerprint(path, size, mtime_ns)


class _Tiered:
    """A memory tier in front of a disk tier; values are whatever the disk tier stores."""

    def __init__(self, name: str, memory_bytes: int, disk: DiskCache | None) -> None:
        self.name = name
        self.memory = Cache(CacheConfig(max_entries=None, max_size_bytes=memory_bytes))
        self.disk = disk

    def _get(self, key: str) -> Any:
        value = self.memory.get(key)
        if value is None and self.disk is not None:
            value = self.disk.get(key)
            if value is not None:
                self.memory.insert(key, value)
        return value

    def _put(self, key: str, value: Any) -> None:
        self.memory.insert(key, value)
        if self.disk is not None:
            self.disk.set(key, value)

    def clear(self) -> None:
        """Empty the memory tier (the disk tier is shared: clear it through the ``framepipe cache`` command)."""
        self.memory.clear()

    def statistics(self) -> Any:
        """The memory tier's counters and sizes (``Cache.statistics``)."""
        return self.memory.statistics()

    def metrics(self) -> Any:
        """The older name of :meth:`statistics`."""
        return self.statistics()


class FrameCache(_Tiered):
    """Decoded frames by (file, frame number or time, pixel format), as numpy arrays."""

    def __init__(self, disk: DiskCache | None = None, memory_bytes: int = 256 << 20, name: str = "frames") -> None:
        super().__init__(name, memory_bytes, disk)
        self.decodes = 0  # how many times a frame had to be decoded (the misses that cost)

    def frame(self, path: str | os.PathLike[str], index: int | None = None, time: float | None = None,
              pixel_format: str = "rgb24") -> np.ndarray:
        """The frame shown at ``time`` seconds, or frame number ``index``, decoded at most once."""
        if (index is None) == (time is None):
            raise ValueError("give a frame index or a time, not both")
        where = f"i{index}" if index is not None else f"t{time:.6f}"
        key = f"frame/v{_FORMAT_VERSION}/{_fingerprint(path)}/{where}/{pixel_format}"
        table = self._get(key)
        if isinstance(table, pa.Table):
            meta = table.schema.metadata
            shape = tuple(int(x) for x in meta[b"shape"].decode().split(","))
            return np.frombuffer(table.column("pixels")[0].as_py(), dtype=meta[b"dtype"].decode()).reshape(shape)
        arr = _decode_frame(str(path), index, time, pixel_format)
        self.decodes += 1
        schema = pa.schema([("pixels", pa.large_binary())],
                           metadata={"shape": ",".join(map(str, arr.shape)), "dtype": arr.dtype.str})
        self._put(key, pa.table({"pixels": [arr.tobytes()]}, schema=schema))
        return arr


class ThumbnailCache(_Tiered):
    """Encoded thumbnails by (file, time, width, format), as image bytes."""

    def __init__(self, frames: FrameCache, disk: DiskCache | None = None, memory_bytes: int = 64 << 20,
                 name: str = "thumbnails") -> None:
        super().__init__(name, memory_bytes, disk)
        self.frames = frames

    def thumbnail(self, path: str | os.PathLike[str], time: float, width: int = 320, fmt: str = "jpg",
                  quality: int = 85) -> bytes:
        """The picture of the frame shown at ``time``, ``width`` pixels wide, upright, as JPEG/PNG/WebP bytes."""
        key = f"thumb/v{_FORMAT_VERSION}/{_fingerprint(path)}/{time:.6f}/{width}/{fmt}/{quality}"
        data = self._get(key)
        if isinstance(data, bytes):
            return data
        item = _frame_item(str(path), time)
        data = encode_image(frame_to_image(item, width=width), fmt, quality)
        self._put(key, data)
        return data


class MetadataCache(_Tiered):
    """``probe`` results by file, as JSON."""

    def __init__(self, disk: DiskCache | None = None, memory_bytes: int = 16 << 20, name: str = "metadata") -> None:
        super().__init__(name, memory_bytes, disk)

    def probe(self, path: str | os.PathLike[str]) -> MediaInfo:
        """The file's :class:`MediaInfo`, read from its headers once."""
        key = f"meta/v{_FORMAT_VERSION}/{_fingerprint(path)}"
        found = self._get(key)
        if isinstance(found, dict):
            return MediaInfo(**found)
        info = probe(str(path))
        self._put(key, dataclasses.asdict(info))
        return info


def _frame_item(path: str, time: float) -> Any:
    for produced in decode_file(path, audio=False, start=time):
        return produced
    raise ValueError(f"{path}: no frame at or after {time} s")


def _decode_frame(path: str, index: int | None, time: float | None, pixel_format: str) -> np.ndarray:
    """Decode the one frame asked for: seek to the keyframe before it, decode up to it."""
    if index is not None:
        if index < 0:
            raise ValueError(f"frame index {index} is negative")
        with open_media(path) as c:
            video = choose_streams(path, c, with_audio=False).video  # the stream decode_file decodes
            rate = video.average_rate if video is not None else None
        if not rate:  # no frame rate to turn the number into a time: count from the start
            for produced in decode_file(path, audio=False):
                if produced.index == index:
                    return np.array(produced.array(pixel_format))
            raise IndexError(f"{path} has no frame {index}")
        time = index / float(rate)
    assert time is not None
    return np.array(_frame_item(path, time).array(pixel_format))


_DEFAULT: dict[str, Any] = {}


def default_caches() -> CacheManager:
    """This process's frame, thumbnail and metadata caches (on the default cache folder), made on first use."""
    if "manager" not in _DEFAULT:
        disk = None if caching_disabled() else DiskCache(name="media")
        frames = FrameCache(disk)
        manager = CacheManager()
        manager.add_clearable_cache(frames)
        manager.add_clearable_cache(ThumbnailCache(frames, disk))
        manager.add_clearable_cache(MetadataCache(disk))
        _DEFAULT["manager"] = manager
    return _DEFAULT["manager"]


def caches() -> CacheManager:
    """Alias of :func:`default_caches`."""
    return default_caches()


def extract_frame(path: str | os.PathLike[str], index: int | None = None, time: float | None = None, *,
                  pixel_format: str = "rgb24") -> np.ndarray:
    """Frame number ``index``, or the frame shown at ``time`` s, of ``path`` — decoded once, then cached.

    Seeks to the keyframe before the frame and decodes up to it (see
    ``Decode(start=...)``). An index becomes a time through the stream's
    average frame rate (exact at a constant rate); without one, frames are
    counted from the start.
    """
    frames: FrameCache = default_caches().get("frames")
    return frames.frame(path, index=index, time=time, pixel_format=pixel_format)
