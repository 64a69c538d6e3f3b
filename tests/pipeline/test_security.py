"""Security: outputs and cache entries stay in their folders, nothing read from disk is unpickled, shared
memory is private and unguessable, and a Python file runs only when the user names it.

Real runs, real files, real shared memory; payloads that would leave a marker file if they ever ran.
"""

from __future__ import annotations

import os
import pickle
import shutil
import sqlite3
import stat
import subprocess
import sys
import zlib
from pathlib import Path

import pyarrow as pa
import pytest

from pipeline import FRAME, OutputError, Stage, run
from pipeline.board import ProgressBoard
from pipeline.buffers import BufferPool
from pipeline.cache import DiskCache
from pipeline.cache.disk import INLINE_MAX
from pipeline.errors import InvalidCacheName
from pipeline.frame_pools import SlotAllocator
from pipeline.memo import Replay, StageMemo, lineages, memo_key
from pipeline.outputs import safe_join
from pipeline.shm import SEGMENT_PREFIX
from support.cli import PLANTED
from stages import Thumbnails, presets

SHM = Path("/dev/shm")


class LeavesAMarker:
    """Unpickling this opens ``path`` for writing: the file appears if anything ever unpickles it."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (self.path, "w")


def outside_files(root: Path, inside: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and inside not in p.parents]


# Output names -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("template", ["../t{n}", "/tmp/t{n}", "sub/t{n}", "..", "{stem}/../../t{n}", "a\\b{n}"])
def test_a_thumbnail_name_template_that_would_leave_its_folder_is_refused_when_the_stage_is_made(
        template: str) -> None:
    with pytest.raises(OutputError, match="not a plain file name"):
        Thumbnails(filename=template)


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


def test_an_output_folder_that_is_a_link_is_followed_but_a_link_inside_it_leading_out_fails_its_files(
        clip_dir: Path, tmp_path: Path) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(clip_dir / "landscape_audio.mp4", inp)
    real, outside = tmp_path / "real", tmp_path / "outside"
    real.mkdir()
    outside.mkdir()
    (tmp_path / "out").symlink_to(real)  # OUT itself: the user named it, it is followed
    result = run(presets.thumbnails(thumb_every=1.0, thumb_width=64), inp, tmp_path / "out", cache=False)
    assert result.files[0].ok and (real / "thumbnails" / "landscape_audio" / "poster.jpg").is_file()

    out = tmp_path / "out2"
    out.mkdir()
    (out / "thumbnails").symlink_to(outside)  # planted inside OUT: refused
    result = run(presets.thumbnails(thumb_every=1.0, thumb_width=64), inp, out, cache=False)
    failed = result.files[0]
    assert not failed.ok and failed.error is not None and "would land outside" in failed.error
    # Stages write into the file's staging folder; the link is met when its outputs are published.
    assert failed.error.startswith("[publish] output path 'thumbnails/landscape_audio/")
    assert failed.outputs == [] and list(outside.iterdir()) == []


def test_an_input_whose_name_is_dots_gets_its_outputs_inside_the_output_folder(clip_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "in" / "...mp4"  # its stem is "..": a proxy named after it would have been OUT/../out.mp4
    src.parent.mkdir()
    shutil.copy(clip_dir / "web_vp9.webm", src)
    out = tmp_path / "out"
    result = run(presets.default(thumb_width=64, sprite_every=1.0), [src], out, cache=False)
    assert result.files[0].ok, result.files[0].error
    assert outside_files(tmp_path, out) == [src]
    assert (out / "proxies" / "___mp4.mp4").is_file() and (out / "thumbnails" / "___mp4" / "poster.jpg").is_file()


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


def plant_row(cache: DiskCache, key: str, kind: int, value: bytes | None, file: str | None, size: int,
              crc: int) -> None:
    """Write an index row as someone with write access to the cache folder could."""
    with sqlite3.connect(cache.path / "index.sqlite") as db:
        db.execute("DELETE FROM entries WHERE key = ?", (key,))
        seq = db.execute("SELECT coalesce(max(seq), 0) + 1000 FROM entries").fetchone()[0]
        db.execute("INSERT INTO entries (seq, key, kind, file, size, crc, cost, expires, value) "
                   "VALUES (?, ?, ?, ?, ?, ?, 100, 1e300, ?)", (seq, key, kind, file, size, crc, value))
        db.execute("INSERT INTO usage (seq, accessed, hits) VALUES (?, 0, 1)", (seq,))


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


def arrow_with_a_pickled_extension_type(marker: Path, table: pa.Table | None = None) -> pa.Table:
    """``table`` plus a column whose type claims to be the pickle-based ``arrow.py_extension_type``."""
    field = pa.field("x", pa.binary(), metadata={b"ARROW:extension:name": b"arrow.py_extension_type",
                                                 b"ARROW:extension:metadata": pickle.dumps(LeavesAMarker(marker))})
    table = table if table is not None else pa.table({"y": [1]})
    column = pa.array([b"x"] * table.num_rows, pa.binary())
    return table.append_column(field, column).replace_schema_metadata(table.schema.metadata)


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


def test_stage_results_planted_as_pickles_in_the_cache_folder_are_misses_and_the_run_is_right(
        clip_dir: Path, tmp_path: Path) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    for name in ("landscape_audio.mp4", "web_vp9.webm"):
        shutil.copy(clip_dir / name, inp)
    marker, cache_dir = tmp_path / "unpickled", tmp_path / "cache"
    pipeline = presets.thumbnails(thumb_every=1.0, thumb_width=64)
    clean = run(pipeline, inp, tmp_path / "clean", cache=False)
    run(pipeline, inp, tmp_path / "first", cache=cache_dir)
    payload = pickle.dumps(LeavesAMarker(marker))
    with DiskCache(cache_dir, name="stages") as cache:
        keys = [row[0] for row in sqlite3.connect(cache.path / "index.sqlite").execute("SELECT key FROM entries")]
        assert keys
        for i, key in enumerate(keys):  # every remembered result swapped for something that unpickles
            if i % 3 == 0:
                cache.set(key, payload)
            elif i % 3 == 1:
                plant_row(cache, key, 2, payload, None, len(payload), zlib.crc32(payload))
            else:
                cache.set(key, arrow_with_a_pickled_extension_type(marker, cache.get(key)))

    again = run(pipeline, inp, tmp_path / "again", cache=cache_dir)
    assert not marker.exists()
    assert [(r.status, r.record, sorted(r.outputs)) for r in again.files] == \
        [(r.status, r.record, sorted(r.outputs)) for r in clean.files]
    for rel in clean.files[0].outputs:
        assert (tmp_path / "again" / rel).read_bytes() == (tmp_path / "clean" / rel).read_bytes()


def test_a_remembered_result_naming_an_output_outside_the_folder_is_a_miss(clip_dir: Path, tmp_path: Path) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(clip_dir / "web_vp9.webm", inp)
    cache_dir = tmp_path / "cache"
    pipeline = presets.thumbnails(thumb_every=1.0, thumb_width=64)
    first = run(pipeline, inp, tmp_path / "first", cache=cache_dir)
    thumbnails = pipeline.stages["thumbnails"]
    key = memo_key(thumbnails, first.files[0].file, lineages(pipeline)["thumbnails"], "web_vp9")
    targets = [tmp_path.parent / "escape.jpg", tmp_path / "escape.jpg", Path("/tmp") / "escape.jpg"]
    existed = [t.exists() for t in targets]
    with DiskCache(cache_dir, name="stages") as cache:
        assert Replay.from_table(cache.get(key)).outputs  # the real entry, about to be replaced
        for i, name in enumerate(["../../escape.jpg", "thumbnails/../../escape.jpg", "/tmp/escape.jpg"]):
            planted = Replay({"thumbnail_count": 1}, {name: b"planted"}).to_table()
            cache.set(key, planted)
            assert StageMemo(cache).lookup(thumbnails, first.files[0].file, lineages(pipeline)["thumbnails"],
                                          "web_vp9") is None
            again = run(pipeline, inp, tmp_path / f"again{i}", cache=cache_dir)
            assert again.files[0].ok and again.files[0].record == first.files[0].record  # recomputed
    assert [t.exists() for t in targets] == existed


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


def test_the_segments_of_a_running_batch_are_0600(clip_dir: Path, tmp_path: Path) -> None:
    from support.video import video_pipeline
    p = video_pipeline()
    p.add(SegmentModes(os.getpid()), after="invert")  # frames that crossed processes in slots
    result = run(p, clip_dir / "web_vp9.webm", tmp_path / "out", cache=False, workers=2)
    assert result.files[0].ok, result.files[0].error
    assert result.files[0].record["segments"] >= 2 and result.files[0].record["segment_modes"] == [0o600]


# Python files -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("start_method", ["forkserver", "loky", "spawn"])
def test_framepipe_run_imports_no_python_file_of_the_input_folder_even_run_from_inside_it(
        clip_dir: Path, tmp_path: Path, start_method: str) -> None:
    inp, markers = tmp_path / "footage", tmp_path / "markers"
    inp.mkdir()
    markers.mkdir()
    shutil.copy(clip_dir / "web_vp9.webm", inp)
    for module in PLANTED:  # what a shared folder of downloads could hold
        (inp / f"{module}.py").write_text(f"open({str(markers / module)!r}, 'w').close()\n")
    command = Path(sys.executable).parent / "framepipe"
    proc = subprocess.run([str(command), "run", ".", "-o", str(tmp_path / "out"), "-p", "metadata", "--no-cache",
                           "-q"], cwd=inp, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "FRAMEPIPE_START_METHOD": start_method})
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in markers.iterdir()) == []

    named = subprocess.run([str(command), "run", ".", "-o", str(tmp_path / "out2"), "-P", "my_pipeline.py",
                            "--no-cache", "-q"], cwd=inp, capture_output=True, text=True, timeout=600)
    assert named.returncode == 2 and "my_pipeline.py defines neither build" in named.stderr
    assert sorted(p.name for p in markers.iterdir()) == ["my_pipeline"]  # the file the user named, and only it
