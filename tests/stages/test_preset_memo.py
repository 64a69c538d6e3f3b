"""Stage results of the video presets kept across runs: a second run replays every output and decodes nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.clips import CLIPS
from support.runs import output_files, result_for

from pipeline import run
from pipeline.bookkeeping.memo import lineages, memo_key
from pipeline.cache.disk import DiskCache
from stages import presets

GOOD = sorted(CLIPS)


def outputs(out: Path) -> dict[str, bytes]:
    return {rel: p.read_bytes() for rel, p in output_files(out).items()}


def stage(result, name: str):  # noqa: ANN001, ANN201
    return next(s for s in result.stages if s.name == name)


def test_a_second_run_replays_every_output_and_decodes_nothing(clip_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cold = run(presets.thumbnails(thumb_every=1.0), clip_dir, tmp_path / "cold", cache=cache, workers=2)
    warm = run(presets.thumbnails(thumb_every=1.0), clip_dir, tmp_path / "warm", cache=cache, workers=2)
    assert outputs(tmp_path / "cold") == outputs(tmp_path / "warm") and outputs(tmp_path / "warm")
    for rel in GOOD:
        assert result_for(warm, rel).record == result_for(cold, rel).record
        assert result_for(warm, rel).outputs == result_for(cold, rel).outputs
    assert stage(warm, "decode").items_in == 0 and stage(warm, "decode").frames == 0
    assert (stage(cold, "thumbnails").cache_hits, stage(cold, "thumbnails").cache_misses) == (0, len(GOOD))
    assert (stage(warm, "thumbnails").cache_hits, stage(warm, "thumbnails").cache_misses) == (len(GOOD), 0)
    assert "cache hit/miss" in warm.table()
    # the corrupt file fails the same way, from the cache
    assert result_for(warm, "broken.mp4").error == result_for(cold, "broken.mp4").error


def test_changing_one_file_recomputes_that_file_only(clip_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for rel in ("landscape_audio.mp4", "web_vp9.webm"):
        (folder / rel).write_bytes((clip_dir / rel).read_bytes())
    cache = tmp_path / "cache"
    run(presets.thumbnails(thumb_every=1.0), folder, tmp_path / "a", cache=cache)
    st = (folder / "web_vp9.webm").stat()
    os.utime(folder / "web_vp9.webm", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched
    again = run(presets.thumbnails(thumb_every=1.0), folder, tmp_path / "b", cache=cache)
    assert (stage(again, "thumbnails").cache_hits, stage(again, "thumbnails").cache_misses) == (1, 1)
    assert stage(again, "decode").items_in == 1  # only the touched file was decoded


def test_a_stage_or_upstream_parameter_change_is_a_miss(clip_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    run(presets.thumbnails(thumb_every=1.0), clip_dir, tmp_path / "a", cache=cache)
    wider = run(presets.thumbnails(thumb_every=1.0, thumb_width=200), clip_dir, tmp_path / "b", cache=cache)
    assert stage(wider, "thumbnails").cache_hits == 0
    keyframes = run(presets.thumbnails(thumb_every=1.0, keyframes_only=True), clip_dir, tmp_path / "c", cache=cache)
    assert stage(keyframes, "thumbnails").cache_hits == 0  # its frames come from another decode
    assert stage(keyframes, "metadata").cache_hits == len(GOOD)  # metadata does not depend on the decoder


def test_consumers_that_are_not_cached_keep_the_decoder_running(clip_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    pipe = presets.default(thumb_every=1.0, thumb_width=160)
    run(pipe, clip_dir, tmp_path / "a", cache=cache, workers=2)
    warm = run(pipe, clip_dir, tmp_path / "b", cache=cache, workers=2)
    assert stage(warm, "thumbnails").cache_hits == len(GOOD)
    assert stage(warm, "proxy").frames > 0 and stage(warm, "decode").items_in == len(GOOD)
    assert (tmp_path / "b" / result_for(warm, "landscape_audio.mp4").record["proxy"]).is_file()


def test_a_damaged_entry_is_a_miss_and_is_recomputed(clip_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    pipe = presets.metadata()
    first = run(pipe, clip_dir, tmp_path / "a", cache=cache)
    item = result_for(first, "landscape_audio.mp4").file
    key = memo_key(pipe.stages["metadata"], item, lineages(pipe)["metadata"], "landscape_audio")
    with DiskCache(cache, name="stages") as store:
        assert store.get(key) is not None
        store.set(key, b"not an arrow table")
    again = run(pipe, clip_dir, tmp_path / "b", cache=cache)
    assert result_for(again, "landscape_audio.mp4").record == result_for(first, "landscape_audio.mp4").record
    assert stage(again, "metadata").cache_misses == 1 and stage(again, "metadata").cache_hits == len(GOOD) - 1


def test_no_cache_keeps_nothing(clip_dir: Path, tmp_path: Path) -> None:
    first = run(presets.metadata(), clip_dir, tmp_path / "a", cache=False)
    assert (stage(first, "metadata").cache_hits, stage(first, "metadata").cache_misses) == (0, 0)
    assert "cache hit/miss" not in first.table()


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_both_executors_replay(clip_dir: Path, tmp_path: Path, executor: str) -> None:
    cache = tmp_path / "cache"
    run(presets.sprites(sprite_every=1.0), clip_dir, tmp_path / "a", cache=cache, executor=executor)
    warm = run(presets.sprites(sprite_every=1.0), clip_dir, tmp_path / "b", cache=cache, executor=executor)
    assert stage(warm, "sprite_sheet").cache_hits == len(GOOD)
    assert outputs(tmp_path / "a") == outputs(tmp_path / "b")


class BrokenStore:
    """A store whose every call fails, as a full disk or an unreadable index would."""

    def get(self, key, default=None):  # noqa: ANN001, ANN201
        raise OSError("disk I/O error")

    def set(self, key, value, ttl=None):  # noqa: ANN001, ANN201
        raise OSError("No space left on device")


def test_a_failing_cache_never_fails_a_file(clip_dir: Path, tmp_path: Path) -> None:
    from pipeline import FileItem, StageContext  # noqa: F401
    from pipeline.bookkeeping.memo import StageMemo
    from pipeline.executors.file_runner import FileRunner
    from pipeline.stage import FileRun
    pipe = presets.metadata()
    item = FileItem.from_path(clip_dir / "landscape_audio.mp4", clip_dir)
    memo = StageMemo(BrokenStore())
    result = FileRunner(pipe).run(FileRun(item, tmp_path, "landscape_audio", memo=memo))
    assert result.ok and result.record["width"] == 320
    assert any("not remembered" in e for e in memo._errors) and any("not looked up" in e for e in memo._errors)


def test_a_cache_folder_that_cannot_be_made_costs_the_cache_not_the_run(clip_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should go")
    result = run(presets.thumbnails(thumb_every=1.0), clip_dir, tmp_path / "out", cache=blocker, workers=2)
    assert [result_for(result, rel).ok for rel in GOOD] == [True] * len(GOOD)
    assert stage(result, "thumbnails").cache_misses == 0  # nothing could be kept


def test_a_file_with_the_same_content_under_another_name_gets_outputs_of_its_own(clip_dir: Path,
                                                                                  tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.mp4").write_bytes((clip_dir / "landscape_audio.mp4").read_bytes())
    os.link(folder / "a.mp4", folder / "b.mp4")  # the same content, size and mtime: the same fingerprint
    cache = tmp_path / "cache"
    first = run(presets.thumbnails(thumb_every=1.0), folder / "a.mp4", tmp_path / "first", cache=cache)
    both = run(presets.thumbnails(thumb_every=1.0), folder, tmp_path / "out", cache=cache, workers=1)
    a, b = result_for(both, "a.mp4"), result_for(both, "b.mp4")
    assert stage(both, "thumbnails").cache_hits == 1  # a.mp4 is replayed; b.mp4 is not a.mp4
    assert a.outputs == result_for(first, "a.mp4").outputs
    assert b.outputs == [rel.replace("/a/", "/b/") for rel in a.outputs]
    assert b.record == {k: v.replace("/a/", "/b/") if isinstance(v, str) else v for k, v in a.record.items()}
    for rel in b.outputs:
        assert (tmp_path / "out" / rel).read_bytes() == (tmp_path / "out" / rel.replace("/b/", "/a/")).read_bytes()
