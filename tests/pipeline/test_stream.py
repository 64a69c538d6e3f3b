"""``Pipeline.stream()``: each file's result reaches the caller as the file finishes (or in input order), with
run()'s options and failure handling; a consumer that stops early stops the run and leaves nothing behind.

Where a test needs one file to finish before another, the other waits (``wait-for PATH`` in support.text) for a
file that the caller's ``events`` create when the first is done: an event, not a time.
"""

from __future__ import annotations

import gc
import json
import os
import threading
from pathlib import Path

import pytest
from support.arrays import array_pipeline, write_frames
from support.text import text_pipeline, write_texts

from pipeline import run


class _MarkWhenDone:
    """Run events that create ``marker`` once the file ``name`` is done."""

    def __init__(self, name: str, marker: Path) -> None:
        self.name, self.marker = name, marker

    def file_started(self, task: object) -> None:
        pass

    def file_progress(self, index: int, stage: str, done: int, total: int | None) -> None:
        pass

    def file_done(self, result: object) -> None:
        if result.file.relpath == self.name:  # type: ignore[attr-defined]
            self.marker.touch()


def _streams() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("framepipe stream")]


@pytest.mark.parametrize("ordered, first", [(False, "b.txt"), (True, "a.txt")])
def test_results_come_as_files_finish_or_in_input_order(tmp_path: Path, ordered: bool, first: str) -> None:
    marker = tmp_path / "b.done"
    inputs = write_texts(tmp_path / "in", {"a.txt": f"one\nwait-for {marker}", "b.txt": "two\nthree"})
    got = list(text_pipeline().stream(inputs, tmp_path / "out", workers=2, ordered=ordered, cache=False,
                                      events=_MarkWhenDone("b.txt", marker)))

    assert [r.file.relpath for r in got][0] == first  # a cannot end before b has
    assert sorted(r.file.relpath for r in got) == ["a.txt", "b.txt"] and all(r.ok for r in got)
    assert {r.file.relpath: r.record["line_count"] for r in got} == {"a.txt": 2, "b.txt": 2}
    assert (tmp_path / "out" / "shout" / "a.txt").read_text() == f"ONE\nWAIT-FOR {str(marker).upper()}"
    assert not _streams()


def test_a_failed_file_is_a_result_and_a_resumed_one_comes_too(tmp_path: Path) -> None:
    inputs = write_texts(tmp_path / "in", {"good.txt": "one", "bad.txt": "boom"})
    out = tmp_path / "out"
    run(text_pipeline(), inputs, out, workers=1, cache=False, select=None, extensions=[".txt"])
    (inputs / "new.txt").write_text("two")
    got = {r.file.relpath: r for r in text_pipeline().stream(inputs, out, workers=1, cache=False, ordered=True)}

    assert got["good.txt"].resumed and got["new.txt"].ok and not got["new.txt"].resumed
    assert got["bad.txt"].status == "failed" and "boom" in (got["bad.txt"].error or "")
    assert list(got) == ["bad.txt", "good.txt", "new.txt"]  # input order (the walk sorts names)


def test_without_out_the_run_works_in_a_folder_it_removes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    inputs = write_texts(tmp_path / "in", {"a.txt": "one", "b.txt": "two"})
    got = [r.file.relpath for r in text_pipeline().stream(inputs, workers=1, cache=False)]

    assert sorted(got) == ["a.txt", "b.txt"]
    assert not list(scratch.iterdir())


@pytest.mark.parametrize("how", ["break", "raise", "collect"])
def test_a_consumer_that_stops_early_stops_the_run(tmp_path: Path, how: str) -> None:
    never = tmp_path / "never"  # the files after the first wait for it: only stopping the run ends them
    files = {"a.txt": "one", **{f"w{i}.txt": f"x\nwait-for {never}" for i in range(4)}}
    inputs = write_texts(tmp_path / "in", files)
    out = tmp_path / "out"
    seen = []
    if how == "break":  # (the iterator is the loop's alone: it is closed as the loop is left)
        for r in text_pipeline().stream(inputs, out, workers=2, cache=False, ordered=True):
            seen.append(r)
            break
    elif how == "raise":
        with pytest.raises(RuntimeError, match="the consumer's own"):
            for r in text_pipeline().stream(inputs, out, workers=2, cache=False, ordered=True):
                seen.append(r)
                raise RuntimeError("the consumer's own error")
    else:
        results = text_pipeline().stream(inputs, out, workers=2, cache=False, ordered=True)
        seen.append(next(results))
        del results
        gc.collect()
    first, = seen

    assert first.file.relpath == "a.txt" and first.ok
    assert not _streams()  # the run's thread ended: its workers stopped
    ledger = [json.loads(line)["file"] for line in (out / "ledger.jsonl").read_text().splitlines()]
    assert ledger == ["a.txt"]
    assert not (out / "shout" / "w0.txt").exists()
    assert not [p for p in out.rglob("*") if ".framepipe-staging" in p.parts and p.is_file()]
    again = {r.file.relpath: r.resumed for r in text_pipeline().stream(inputs, out, workers=2, cache=False,
                                                                      events=_MarkWhenDone("a.txt", never))}
    assert again == {"a.txt": True, **{f"w{i}.txt": False for i in range(4)}}


def test_stopping_a_stream_of_frames_in_shared_memory_leaves_no_segment(tmp_path: Path) -> None:
    clips = [write_frames(tmp_path / "in" / f"c{i}.npy", 400, seed=i) for i in range(4)]
    for r in array_pipeline(keep_every=100).stream(clips, tmp_path / "out", workers=2, cache=False):
        assert r.ok  # one file done while the others' frames are out in slots, in the map stage's workers
        break

    assert not _streams()
    assert not list(Path("/dev/shm").glob(f"framepipe_{os.getpid()}_*"))  # every pool's segment unlinked
