"""Security of runs over video: output names a video stage makes, stage results of a video preset planted in
the cache, and Python files planted in the input folder of a video run (the engine's own cases are in
tests/pipeline/test_security.py)."""

from __future__ import annotations

import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from support.cli import PLANTED
from support.planting import LeavesAMarker, arrow_with_a_pickled_extension_type, outside_files, plant_row

from pipeline import OutputError, run
from pipeline.bookkeeping.memo import Replay, StageMemo, lineages, memo_key
from pipeline.cache import DiskCache
from stages import Thumbnails, presets


@pytest.mark.parametrize("template", ["../t{n}", "/tmp/t{n}", "sub/t{n}", "..", "{stem}/../../t{n}", "a\\b{n}"])
def test_a_thumbnail_name_template_that_would_leave_its_folder_is_refused_when_the_stage_is_made(
        template: str) -> None:
    with pytest.raises(OutputError, match="not a plain file name"):
        Thumbnails(filename=template)


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


@pytest.mark.slow
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
