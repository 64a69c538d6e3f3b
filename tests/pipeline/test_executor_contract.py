"""The executor contract (``pipeline.executors.base``) and the helpers every executor shares."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pytest

from pipeline import FileItem, Pipeline, SharedItem, stage
from pipeline.executors import ExecutionReport, Executor, FileTask, InlineExecutor, RunEvents
from pipeline.executors.base import credits_per_file
from pipeline.executors.failures import timed_out, worker_died, worker_failed
from pipeline.items import is_shareable, slot_of
from pipeline.observe.metrics import StageStats, percentile
from pipeline.observe.progress import SilentProgress
from pipeline.results import FileResult


def test_an_executor_must_implement_run() -> None:
    class Nothing(Executor):
        name = "nothing"

    with pytest.raises(TypeError, match="abstract"):
        Nothing()  # type: ignore[abstract]


def test_the_defaults_of_an_executor_do_nothing() -> None:
    class Empty(Executor):
        name = "empty"

        def run(self, pipeline: Pipeline, tasks: Sequence[FileTask], events: RunEvents, *,
                trace: object = None) -> ExecutionReport:
            return ExecutionReport(workers=self.workers)

    ex = Empty()
    ex.prepare(Pipeline("p"))
    ex.close()
    ex.close()
    assert ex.snapshot() is None and ex.workers == 1


def test_an_empty_report_has_no_actors_slots_or_decisions() -> None:
    report = ExecutionReport()
    assert (report.results, report.actor_count, report.peak_slots, report.decisions) == ((), 0, 0, ())
    assert dict(report.stage_stats) == {} and report.trace is None and report.snapshot is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.peak_slots = 1  # type: ignore[misc]


def test_the_inline_executor_reports_its_results_in_task_order(tmp_path: Path) -> None:
    files = []
    for i, name in enumerate(["b.txt", "a.txt"]):
        (tmp_path / name).write_text(name)
        files.append(FileItem.from_path(tmp_path / name, tmp_path, index=i))

    @stage(accepts="file")
    def size(item: FileItem, ctx) -> None:  # noqa: ANN001
        ctx.record(size=item.size)

    p = Pipeline("sizes")
    p.add(size)
    tasks = [FileTask(f, tmp_path / "out", f.relpath) for f in files]
    report = InlineExecutor().run(p, tasks, SilentProgress())
    assert isinstance(report, ExecutionReport) and report.actor_count == 0 and report.peak_slots == 0
    assert [r.file.relpath for r in report.results] == ["b.txt", "a.txt"]
    assert all(r.ok for r in report.results) and report.results[0].record["size"] == 5
    assert InlineExecutor().run(p, [], SilentProgress()).results == ()


def test_the_credits_rule_feeds_every_map_worker_and_never_gives_fewer_than_four() -> None:
    assert [credits_per_file(w) for w in (0, 1, 2, 8)] == [4, 4, 6, 18]


@pytest.mark.parametrize(("values", "q", "expected"), [
    ([], 0.95, 0.0),
    ([3.0], 0.95, 3.0),
    ([float(i) for i in range(1, 21)], 0.95, 19.0),  # nearest rank: round(0.95 * 19) = 18
    ([float(i) for i in range(1, 21)], 0.5, 11.0),
    ([1.0, 2.0], 0.0, 1.0),
])
def test_percentile_is_the_nearest_rank(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == expected


def test_stage_latencies_give_p50_and_p95() -> None:
    st = StageStats("s")
    st.record_latencies([0.4, 0.1, 0.3, 0.2])
    assert (st.p50_s, st.p95_s) == (pytest.approx(0.25), 0.4)
    st.record_latencies([])
    assert st.p95_s == 0.4  # no samples: left as it was


def _task() -> FileTask:
    return FileTask(FileItem("/in/x.mp4", "x.mp4"), Path("/out"), "x")


def test_the_failure_texts_of_a_file_are_one_per_outcome() -> None:
    late = timed_out(_task(), 8.0, attempts=2)
    assert (late.error, late.error_type, late.attempts) == (
        "timed out: not done after 8 s (the file timeout); its worker was killed", "FileTimeout", 2)
    died = worker_died(_task(), 2, "RayActorError")
    assert (died.error, died.error_type) == ("worker process died while running this file (2 attempts): "
                                             "RayActorError", "WorkerCrashed")
    failed = worker_failed(_task(), "could not start: no module named x", "ModuleNotFoundError")
    assert failed.error == "[file worker] could not start: no module named x" and not failed.ok
    assert all(isinstance(r, FileResult) for r in (late, died, failed))


def test_a_shared_item_is_recognised_by_its_slot_and_two_methods() -> None:
    class Frame:
        kind = "frame"
        ref = None

        def shared_nbytes(self) -> int:
            return 0

        def to_shared(self, slot: object) -> Frame:
            return self

    assert isinstance(Frame(), SharedItem) and is_shareable(Frame())
    assert not isinstance(FileItem("/in/x", "x"), SharedItem) and not is_shareable(FileItem("/in/x", "x"))
    assert slot_of(Frame()) is None and slot_of(FileItem("/in/x", "x")) is None
