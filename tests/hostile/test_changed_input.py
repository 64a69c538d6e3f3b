"""Inputs that change while a run reads them: the cache keeps only what was read from a stable file.

A file cut short while a stage reads it (a copy still in progress, a sync tool
rewriting it) and later restored to the same bytes and mtime has the
fingerprint it was listed with: what the cut run found must not be
remembered under it, as a failure or as results.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import av
import pytest
from support.clips import BROKEN
from support.runs import result_for

import pipeline.bookkeeping.memo as memo_module
from pipeline import FILE, FileItem, Pipeline, Stage, StageContext, run
from pipeline.bookkeeping.memo import Replay, lineages, memo_key
from pipeline.cache.disk import DiskCache
from stages import Metadata, presets
from stages.errors import CorruptMedia

CLIP = "landscape_audio.mp4"


def stage(result, name: str):  # noqa: ANN001, ANN201
    return next(s for s in result.stages if s.name == name)


def copy_in(clip_dir: Path, tmp_path: Path, rel: str = CLIP) -> Path:
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    return Path(shutil.copy2(clip_dir / rel, folder / Path(rel).name))


def restore(path: Path, data: bytes, mtime_ns: int) -> None:
    """Put back ``data`` and the mtime the file had: the same size, mtime and fingerprint as before."""
    path.write_bytes(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))


class CutInput(Stage):
    """Cuts its input to its first third when the file reaches it (another program truncating it mid-run)."""

    accepts = (FILE,)

    def process(self, item: FileItem, ctx: StageContext) -> None:
        os.truncate(item.path, item.size // 3)
        return None


class GrowInput(Stage):
    """Appends to its input when the file reaches it (a copy still being written while the run reads it)."""

    accepts = (FILE,)

    def process(self, item: FileItem, ctx: StageContext) -> None:
        with open(item.path, "ab") as f:
            f.write(b"\0" * 4096)
        return None


class Probe(Stage):
    """A cacheable reader: the file's frame count from its header, or ``CorruptMedia`` when it will not open.

    With ``_flicker`` (private: not a parameter, so not part of the cache key) the file is cut just before it
    is opened and put back, same bytes and mtime, right after: the cut is seen by this read alone.
    """

    accepts = (FILE,)
    cacheable = True

    def __init__(self, *, flicker: bool = False, name: str | None = None) -> None:
        super().__init__(name)
        self._flicker = flicker

    def process(self, item: FileItem, ctx: StageContext) -> None:
        path = Path(item.path)
        data = path.read_bytes() if self._flicker else b""
        if self._flicker:
            os.truncate(path, len(data) // 3)
        try:
            with av.open(str(path)) as container:
                ctx.record(probe_frames=container.streams.video[0].frames)
        except av.FFmpegError as exc:
            raise CorruptMedia(item.path, f"not a readable media file ({exc.strerror})") from exc
        finally:
            if self._flicker:
                restore(path, data, item.mtime_ns)
        return None


def probing(flicker: bool = False) -> Pipeline:
    p = Pipeline("probe")
    p.add(Probe(flicker=flicker))
    return p


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_a_file_cut_during_a_run_and_restored_after_it_is_not_remembered_as_failed(clip_dir: Path, tmp_path: Path,
                                                                                    executor: str) -> None:
    path = copy_in(clip_dir, tmp_path)
    data, mtime_ns = path.read_bytes(), path.stat().st_mtime_ns
    cache = tmp_path / "cache"
    cut = Pipeline("metadata")
    cut.add(CutInput())  # runs first: metadata opens a file already cut short
    cut.add(Metadata())
    first = run(cut, path.parent, tmp_path / "a", cache=cache, executor=executor, workers=1)
    assert result_for(first, CLIP).error == "[metadata] not a readable media file (moov atom not found)"
    restore(path, data, mtime_ns)
    again = run(presets.metadata(), path.parent, tmp_path / "b", cache=cache, executor=executor, workers=1)
    assert result_for(again, CLIP).ok, result_for(again, CLIP).error
    assert result_for(again, CLIP).record["width"] == 320
    assert stage(again, "metadata").cache_hits == 0  # nothing was kept for it
    clean = run(presets.metadata(), clip_dir / CLIP, tmp_path / "c", cache=False, executor="inline")
    assert result_for(again, CLIP).record == result_for(clean, CLIP).record


def test_a_file_cut_and_restored_within_the_read_is_not_remembered_as_failed(clip_dir: Path,
                                                                             tmp_path: Path) -> None:
    path = copy_in(clip_dir, tmp_path)
    before = path.stat()
    cache = tmp_path / "cache"
    first = run(probing(flicker=True), path.parent, tmp_path / "a", cache=cache, executor="inline")
    assert "not a readable media file" in result_for(first, CLIP).error
    after = path.stat()  # the same size, mtime and content: only the inode's change time tells
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert FileItem.from_path(path, path.parent).fingerprint == result_for(first, CLIP).file.fingerprint
    again = run(probing(), path.parent, tmp_path / "b", cache=cache, executor="inline")
    assert result_for(again, CLIP).ok, result_for(again, CLIP).error
    assert result_for(again, CLIP).record["probe_frames"] == 90
    assert stage(again, "probe").cache_hits == 0
    third = run(probing(), path.parent, tmp_path / "c", cache=cache, executor="inline")
    assert stage(third, "probe").cache_hits == 1  # a stable read is remembered as ever


def test_results_read_from_a_file_that_grew_during_the_run_are_not_remembered(clip_dir: Path,
                                                                              tmp_path: Path) -> None:
    path = copy_in(clip_dir, tmp_path)
    data, mtime_ns = path.read_bytes(), path.stat().st_mtime_ns
    listed = FileItem.from_path(path, path.parent)
    cache = tmp_path / "cache"
    growing = Pipeline("metadata")
    growing.add(Metadata())
    growing.add(GrowInput())  # after metadata has read it
    first = run(growing, path.parent, tmp_path / "a", cache=cache, executor="inline")
    assert result_for(first, CLIP).ok
    key = memo_key(growing.stages["metadata"], listed, lineages(growing)["metadata"], "landscape_audio")
    with DiskCache(cache, name="stages") as store:
        assert store.get(key) is None
    restore(path, data, mtime_ns)
    again = run(presets.metadata(), path.parent, tmp_path / "b", cache=cache, executor="inline")
    assert result_for(again, CLIP).ok and stage(again, "metadata").cache_hits == 0


def test_a_stable_corrupt_file_is_still_remembered_as_failed(clip_dir: Path, tmp_path: Path) -> None:
    path = copy_in(clip_dir, tmp_path, BROKEN)
    cache = tmp_path / "cache"
    first = run(presets.metadata(), path.parent, tmp_path / "a", cache=cache, executor="inline")
    again = run(presets.metadata(), path.parent, tmp_path / "b", cache=cache, executor="inline")
    assert result_for(again, BROKEN).error == result_for(first, BROKEN).error
    assert "moov atom not found" in result_for(again, BROKEN).error
    pipe = presets.metadata()
    key = memo_key(pipe.stages["metadata"], result_for(first, BROKEN).file, lineages(pipe)["metadata"], "broken")
    with DiskCache(cache, name="stages") as store:
        remembered = Replay.from_table(store.get(key)).record
    assert remembered["__input_error__"]["reason"] == "not a readable media file (moov atom not found)"


def test_a_file_is_checked_once_however_many_of_its_stages_are_kept(clip_dir: Path, tmp_path: Path,
                                                                    monkeypatch) -> None:  # noqa: ANN001
    path = copy_in(clip_dir, tmp_path)
    calls: list[str] = []

    def counted(p, size, mtime_ns):  # noqa: ANN001, ANN202
        calls.append(str(p))
        return fingerprint(p, size, mtime_ns)

    fingerprint = memo_module.fingerprint
    monkeypatch.setattr(memo_module, "fingerprint", counted)
    pipe = presets.thumbnails(thumb_every=1.0)
    cold = run(pipe, path.parent, tmp_path / "a", cache=tmp_path / "cache", executor="inline")
    kept = [s.name for s in cold.stages if s.cache_misses]
    assert len(kept) >= 3  # metadata, decode and thumbnails are kept...
    assert calls == [str(path)]  # ...after one look at the file
    warm = run(pipe, path.parent, tmp_path / "b", cache=tmp_path / "cache", executor="inline")
    assert stage(warm, "thumbnails").cache_hits == 1


class Unreadable(Stage):
    """Fails its file as unreadable while ``blocked`` exists (a permission or descriptor problem, since fixed)."""

    accepts = (FILE,)
    cacheable = True

    def __init__(self, blocked: Path) -> None:
        super().__init__("unreadable")
        self.blocked = str(blocked)

    def cache_params(self) -> dict[str, object]:
        return {}

    def process(self, item: FileItem, ctx: StageContext) -> None:
        from pipeline.errors import UnreadableFile
        if os.path.exists(self.blocked):
            raise UnreadableFile(item.path, "too many open files")
        ctx.record(readable=True)


def test_a_file_that_could_not_be_read_is_not_remembered_as_failed(tmp_path: Path) -> None:
    """Whether a file can be opened depends on the machine (permissions, limits), not on its content."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    blocked = tmp_path / "blocked"
    blocked.write_text("")
    p = Pipeline("unreadable", extensions=[".txt"])
    p.add(Unreadable(blocked))
    cache = tmp_path / "cache"
    first = run(p, folder, tmp_path / "out1", executor="inline", cache=cache)
    assert first.files[0].error == "[unreadable] too many open files"
    blocked.unlink()
    again = run(p, folder, tmp_path / "out2", executor="inline", cache=cache)
    assert again.files[0].ok and again.files[0].record == {"readable": True}
