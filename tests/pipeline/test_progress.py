"""The progress display (``observe.progress``) and the tally it draws (``observe.tally``): what a user sees."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from pipeline import FILE, Pipeline, Stage, StageContext, run
from pipeline.executors import FileTask
from pipeline.items import FileItem
from pipeline.observe.metrics import StageStats
from pipeline.observe.progress import ConsoleProgress, SilentProgress, clock_time
from pipeline.observe.tally import BatchTally
from pipeline.results import FAILED, OK, FileResult

MB = 1_000_000


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def task(index: int, name: str, size: int = 10 * MB) -> FileTask:
    return FileTask(FileItem(f"/in/{name}", name, size=size, index=index), Path("/out"), Path(name).stem)


def result(t: FileTask, status: str = OK, frames: int = 0, **kw: Any) -> FileResult:
    stats = {"decode": StageStats("decode", frames=frames)} if frames else {}
    return FileResult(t.file, status, stats=stats, wall_s=1.5, error=None if status == OK else "broken", **kw)


# The tally ------------------------------------------------------------------------------------------------


def test_rates_and_eta_come_from_input_bytes_and_frames_done() -> None:
    clock = Clock()
    tally = BatchTally(3, total_bytes=30 * MB, clock=clock)
    a, b, c = task(0, "a.mp4"), task(1, "b.mp4"), task(2, "c.mp4")
    tally.started(a)
    tally.started(b)
    tally.progressed(1, "decode", 50, 100)
    clock.now += 10
    tally.finished(result(a, frames=300))
    f = tally.figures()
    assert (f.files_total, f.files_done, f.files_failed) == (3, 1, 0)
    assert f.elapsed_s == 10
    assert f.frames_per_s == (300 + 50) / 10
    assert f.bytes_per_s == 15 * MB / 10  # a whole, half of b
    assert f.eta_s == pytest.approx(15 * MB / (1.5 * MB))  # 15 MB left at 1.5 MB/s
    assert [(x.name, x.stage, x.done, x.total) for x in f.in_flight] == [("b.mp4", "decode", 50, 100)]
    tally.started(c)
    tally.finished(result(b, FAILED))
    clock.now += 10
    tally.finished(result(c, frames=10))
    clock.now += 60  # the report is written: the batch's pace is that of its files
    f = tally.figures()
    assert f.eta_s == 0 and f.files_failed == 1 and not f.in_flight
    assert f.elapsed_s == 20 and f.bytes_per_s == 30 * MB / 20  # a failed file was gone through too


def test_files_that_took_no_work_count_as_done_but_not_in_the_pace() -> None:
    clock = Clock()
    tally = BatchTally(3, total_bytes=30 * MB, clock=clock)
    earlier, replayed, worked = task(0, "a.mp4"), task(1, "b.mp4"), task(2, "c.mp4")
    tally.finished(result(earlier, resumed=True))
    tally.started(replayed)
    tally.finished(result(replayed, replayed=True))
    tally.started(worked)
    tally.progressed(2, "decode", 25, 100)
    clock.now += 5
    f = tally.figures()
    assert f.files_done == 2 and f.bytes_per_s == 2.5 * MB / 5
    assert f.eta_s == pytest.approx(7.5 * MB / (0.5 * MB))  # only c's 7.5 MB are left to do


def test_without_sizes_the_eta_is_by_files() -> None:
    clock = Clock()
    tally = BatchTally(4, clock=clock)
    assert tally.figures().eta_s is None  # nothing done: no estimate
    for i in range(4):
        tally.started(task(i, f"{i}.mp4", size=0))
    clock.now += 8
    tally.finished(result(task(0, "0.mp4", size=0)))
    assert tally.figures().eta_s == 3 * 8  # three files left at 8 s a file


def test_clock_time() -> None:
    assert [clock_time(s) for s in (0, 59.6, 65, 3600 + 61)] == ["0:00:00", "0:01:00", "0:01:05", "1:01:01"]


# The display ----------------------------------------------------------------------------------------------


def test_the_live_block_shows_done_total_rates_eta_and_each_file_in_flight() -> None:
    buf = io.StringIO()
    clock = Clock()
    progress = ConsoleProgress(2, console=Console(file=buf, force_terminal=True, width=140), total_bytes=20 * MB,
                               clock=clock)
    assert progress.live
    a, b = task(0, "first.mp4"), task(1, "second.mp4")
    try:
        progress.file_started(a)
        progress.file_started(b)
        progress.file_progress(1, "decode", 40, 100)
        clock.now += 4
        progress.file_done(result(a, frames=200))
        progress.refresh()
    finally:
        progress.close()
    shown = buf.getvalue()
    assert "ok     first.mp4  (1.50 s, 0 outputs)" in shown  # the finished file's line, above the block
    assert "1/2 files" in shown
    assert "60 frames/s" in shown and "3.5 MB/s" in shown  # (200 + 40) frames and 14 MB in 4 s
    assert "ETA 0:00:02" in shown  # 6 MB left at 3.5 MB/s
    assert "second.mp4  decode 40/100   40%" in shown
    assert "\x1b[" in shown  # drawn in place, with the terminal's control codes


def test_quiet_gives_plain_lines_and_loads_no_display() -> None:
    buf = io.StringIO()
    progress = ConsoleProgress(2, stream=buf, live=False)
    a = task(0, "a.mp4")
    progress.file_started(a)
    progress.file_progress(0, "decode", 1, 2)
    progress.file_done(result(a))
    progress.close()
    assert buf.getvalue().splitlines() == ["start  a.mp4", "ok     a.mp4  (1.50 s, 0 outputs)"]
    assert progress.done == 1 and progress.total == 2


def test_a_stream_that_is_no_terminal_gets_plain_lines() -> None:
    buf = io.StringIO()
    progress = ConsoleProgress(1, stream=buf)
    assert not progress.live
    a = task(0, "a.mp4")
    progress.file_started(a)
    progress.file_done(result(a, FAILED))
    progress.close()
    assert buf.getvalue().splitlines() == ["start  a.mp4", "FAILED a.mp4: broken"]


# run() ----------------------------------------------------------------------------------------------------


class Reporting(Stage):
    """Tells its progress through a file of text, one unit a character."""

    accepts = (FILE,)

    def process(self, item: Any, ctx: StageContext) -> None:
        n = len(Path(item.path).read_text())
        ctx.progress(n, n)


@pytest.fixture
def text_inputs(tmp_path: Path) -> tuple[Pipeline, Path]:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(2):
        (inputs / f"f{i}.txt").write_text("x" * (i + 1))
    pipeline = Pipeline("texts", extensions=[".txt"])
    pipeline.add(Reporting())
    return pipeline, inputs


def test_run_prints_nothing_by_default(text_inputs: tuple[Pipeline, Path], tmp_path: Path,
                                      capfd: pytest.CaptureFixture[str]) -> None:
    pipeline, inputs = text_inputs
    assert run(pipeline, inputs, tmp_path / "out", workers=1, cache=False, executor="inline").exit_code == 0
    assert capfd.readouterr() == ("", "")


def test_run_with_progress_shows_it(text_inputs: tuple[Pipeline, Path], tmp_path: Path,
                                   capfd: pytest.CaptureFixture[str]) -> None:
    pipeline, inputs = text_inputs
    assert run(pipeline, inputs, tmp_path / "out", workers=1, cache=False, executor="inline",
               progress=True).exit_code == 0
    out, err = capfd.readouterr()
    assert out == ""
    lines = err.splitlines()  # captured: no terminal, so plain lines
    assert "start  f0.txt" in lines and "start  f1.txt" in lines
    assert any(line.startswith("ok     f0.txt") for line in lines) and any(line.startswith("ok     f1.txt")
                                                                          for line in lines)


def test_run_tells_a_progress_object_given(text_inputs: tuple[Pipeline, Path], tmp_path: Path) -> None:
    pipeline, inputs = text_inputs
    told: list[tuple[str, Any]] = []

    class Told(SilentProgress):
        def file_progress(self, index: int, stage: str, done: int, total: int | None) -> None:
            told.append(("progress", (index, stage, done, total)))

        def file_done(self, result: FileResult) -> None:
            told.append(("done", result.file.relpath))

    run(pipeline, inputs, tmp_path / "out", workers=1, cache=False, executor="inline", progress=Told())
    assert ("progress", (0, "reporting", 1, 1)) in told and ("done", "f1.txt") in told
    with pytest.raises(ValueError, match="not both"):
        run(pipeline, inputs, tmp_path / "out2", progress=Told(), events=SilentProgress())
