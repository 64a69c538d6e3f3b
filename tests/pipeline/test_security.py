"""Security: outputs and cache entries stay in their folders, nothing read from disk is unpickled, shared
memory is private and unguessable, and a Python file runs only when the user names it.

Real runs, real files, real shared memory; payloads that would leave a marker file if they ever ran.
"""

from __future__ import annotations

import os
import pickle
import stat
import zlib
from pathlib import Path

import pytest
from support.arrays import array_pipeline, write_frames
from support.planting import LeavesAMarker, arrow_with_a_pickled_extension_type, outside_files, plant_row

from pipeline import FRAME, OutputError, Stage, run
from pipeline.cache import DiskCache
from pipeline.cache.disk import INLINE_MAX
from pipeline.dataplane.board import ProgressBoard
from pipeline.dataplane.buffers import BufferPool
from pipeline.dataplane.frame_pools import SlotAllocator
from pipeline.dataplane.segments import SEGMENT_PREFIX
from pipeline.errors import InvalidCacheName
from pipeline.outputs import safe_join

SHM = Path("/dev/shm")


# Output names -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("parts", [("..", "x.jpg"), ("/etc", "passwd"), ("a", "..", "..", "x"), ("link", "x.jpg"),
                                   ("trap.jpg",)])
def test_an_output_path_that_leads_out_of_its_folder_is_refused(tmp_path: Path, parts: tuple[str, ...]) -> None:
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    (out / "link").symlink_to(outside)  # a folder link inside OUT that leads out of it
    (out / "trap.jpg").symlink_to(outside / "victim")  # a file link that would write outside
    with pytest.raises(OutputError, match="would land outside"):
        safe_join(out, *parts)
    assert safe_join(out, "thumbnails", "clip", "poster.jpg") == out.resolve() / "thumbnails" / "clip" / "poster.jpg"


# The cache --------------------------------------------------------------------------------------------------


def test_cache_keys_with_parent_parts_or_absolute_paths_stay_inside_the_cache_folder(tmp_path: Path) -> None:
    root = tmp_path / "caches"
    keys = ["../../../escape", "/etc/passwd", "a/../../b", "..\\..\\c"]
    with DiskCache(root, name="stages") as cache:
        for i, key in enumerate(keys):
            cache.set(key, bytes([i]) * (INLINE_MAX + 1))  # large: each in a file of its own
        assert [cache.get(key) for key in keys] == [bytes([i]) * (INLINE_MAX + 1) for i in range(len(keys))]
    assert outside_files(tmp_path, root / "stages") == []
    for name in ("../x", "/tmp/x", "a/b", "..", ""):
        with pytest.raises(InvalidCacheName):
            DiskCache(root, name=name)


def test_a_planted_index_row_naming_a_file_outside_the_cache_is_a_miss_that_reads_and_removes_nothing(
        tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"secret" * 10_000)
    with DiskCache(tmp_path / "caches", name="stages") as cache:
        for file in ("../../../victim.txt", str(victim), "ab/../../../../victim.txt"):
            data = victim.read_bytes()
            plant_row(cache, "k", 0, None, file, len(data), zlib.crc32(data))
            assert cache.get("k") is None
    assert victim.read_bytes() == b"secret" * 10_000


def test_a_pickled_payload_planted_in_the_disk_cache_is_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    payload = pickle.dumps(LeavesAMarker(marker))
    with DiskCache(tmp_path / "caches", name="stages") as cache:
        cache.set("as bytes", payload)
        assert cache.get("as bytes") == payload  # bytes come back as bytes
        for kind in (1, 2, 3):  # claimed JSON, Arrow, or a kind that does not exist
            plant_row(cache, f"kind {kind}", kind, payload, None, len(payload), zlib.crc32(payload))
            assert cache.get(f"kind {kind}") is None
        cache.set("arrow", arrow_with_a_pickled_extension_type(marker))
        assert cache.get("arrow") is not None
    assert not marker.exists()


# Shared memory ----------------------------------------------------------------------------------------------


def segment_modes(names: list[str]) -> dict[str, int]:
    return {name: stat.S_IMODE(os.stat(SHM / name).st_mode) for name in names}


def random_part(name: str) -> str:
    return name.rsplit("_", 1)[-1]


def test_shared_memory_segments_are_private_to_their_user_and_named_with_64_random_bits() -> None:
    old_umask = os.umask(0)  # a permissive umask must not widen them
    try:
        with BufferPool(4096, slots=2) as a, BufferPool(4096, slots=2) as b:
            allocator = SlotAllocator(1 << 20)
            lease = allocator.grant(1000)
            board = ProgressBoard.create(4)
            try:
                names = [*a.segment_names(), *b.segment_names(), *allocator.pools[0].segment_names(),
                         board.segment.name]
                assert set(segment_modes(names).values()) == {0o600}
                for name in names:
                    assert name.startswith(f"{SEGMENT_PREFIX}{os.getpid()}_")
                    assert len(random_part(name)) >= 16 and int(random_part(name), 16) >= 0  # 16 hex digits
                assert len({random_part(n) for n in names}) == len(names)
            finally:
                assert lease is not None
                lease.release()
                allocator.close()
                board.close()
    finally:
        os.umask(old_umask)


class SegmentModes(Stage):
    """Records, from inside a worker, the modes of the segments the run's own process made."""

    accepts = (FRAME,)

    def __init__(self, run_pid: int) -> None:
        super().__init__()
        self.run_pid = run_pid

    def process(self, item, ctx):  # noqa: ANN001, ANN201
        if "modes" not in ctx.state:
            names = [p.name for p in SHM.iterdir() if p.name.startswith(f"{SEGMENT_PREFIX}{self.run_pid}_")]
            ctx.state["modes"] = sorted({stat.S_IMODE(os.stat(SHM / n).st_mode) for n in names})
            ctx.record(segments=len(names), segment_modes=ctx.state["modes"])


def test_the_segments_of_a_running_batch_are_0600(tmp_path: Path) -> None:
    p = array_pipeline()
    p.add(SegmentModes(os.getpid()), after="invert")  # frames that crossed processes in slots
    result = run(p, write_frames(tmp_path / "in" / "clip.npy", 48), tmp_path / "out", cache=False, workers=2)
    assert result.files[0].ok, result.files[0].error
    assert result.files[0].record["segments"] >= 2 and result.files[0].record["segment_modes"] == [0o600]
