"""The Ray executor at the local executor's parity: map stages' ``batch_size`` and ``priority``, live per-stage
progress of the files in flight, and map task spans gathered per 100 ms window.

The batching and priority decisions are plain Python (``feeding``), tested here as they are; the rest runs on one
local Ray (2 CPUs) for the module, stopped at its end.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("local_ray")]  # one Ray for the module

from support.arrays import ArrayFrame, array_pipeline, frame_pixels, write_frames  # noqa: E402
from support.ray_parity import chained_pipeline, probed_pipeline, told_pipeline  # noqa: E402
from support.traces import check_events, spans  # noqa: E402

from pipeline import FRAME, RunResult, run  # noqa: E402
from pipeline.executors.ray.actor import ArrayRef, as_remote, map_batch  # noqa: E402
from pipeline.executors.ray.feeding import MapBatches, pool_nice, run_niced  # noqa: E402
from pipeline.executors.ray.tracing import Clock, TaskSpan, merge_map_spans  # noqa: E402
from pipeline.items import FileItem  # noqa: E402
from pipeline.runtime.pool import TaskPoolConfig  # noqa: E402
from pipeline.stage import FunctionStage  # noqa: E402

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux nices one thread alone")


def _map(name: str, priority: int = 1, batch_size: int = 1, concurrency: int | None = None,
         pool: str = "default") -> FunctionStage:
    return FunctionStage(lambda item, ctx: [item], name=name, accepts=FRAME, emits=FRAME, stateful=False,
                         priority=priority, batch_size=batch_size, concurrency=concurrency, pool=pool)


# Batches and their order (no Ray) ------------------------------------------------------------------

def test_frames_go_batch_size_to_a_task_the_higher_priority_stages_first() -> None:
    batches = MapBatches[int]([_map("low", priority=0, batch_size=2), _map("high", priority=2, batch_size=3)])
    for frame in range(7):
        batches.add("low", frame)
        batches.add("high", frame)

    assert list(batches.batches()) == [("high", [0, 1, 2]), ("high", [3, 4, 5]),
                                       ("low", [0, 1]), ("low", [2, 3]), ("low", [4, 5])]
    assert batches.waiting == 2  # each stage's last frame waits for its batch to fill
    assert list(batches.batches(flush=True)) == [("high", [6]), ("low", [6])]  # the file drained: partial ones go
    assert batches.waiting == 0


def test_stages_of_one_priority_go_in_pipeline_order_and_concurrency_bounds_a_stages_tasks() -> None:
    batches = MapBatches[int]([_map("first", concurrency=1), _map("second")])
    for frame in range(3):
        batches.add("second", frame)
        batches.add("first", frame)

    assert list(batches.batches()) == [("first", [0]), ("second", [0]), ("second", [1]), ("second", [2])]
    assert batches.running("first") == 1
    batches.returned("first")
    assert list(batches.batches()) == [("first", [1])]


def test_map_pools_below_the_runs_top_priority_are_niced_by_the_local_gap() -> None:
    same = [_map("a"), _map("b", pool="gpu")]
    assert pool_nice({}, same) == {"default": 0, "gpu": 0}  # one priority (the default): nothing niced
    spread = [_map("low", priority=0, pool="bulk"), _map("medium", priority=1), _map("high", priority=2, pool="fast")]
    assert pool_nice({}, spread) == {"bulk": 18, "default": 5, "fast": 0}  # NICE_INCREMENT: 19, 6, 1
    assert pool_nice({"bulk": TaskPoolConfig(2, priority=2)}, spread)["bulk"] == 0  # the pool's own priority


@linux_only
def test_niced_work_runs_on_a_thread_niced_alone_and_kept_for_that_niceness() -> None:
    def where() -> tuple[int, int]:
        tid = threading.get_native_id()
        return tid, os.getpriority(os.PRIO_PROCESS, tid)

    mine, before = where()
    tid, nice = run_niced(3, where)
    assert tid != mine and nice == min(19, before + 3)
    assert run_niced(3, where) == (tid, nice)  # the same thread, not niced again
    assert where() == (mine, before)  # the caller's thread keeps its niceness
    assert run_niced(0, where) == (mine, before)  # not niced: on the caller's thread


# Trace spans per window (no Ray) --------------------------------------------------------------------

def test_map_task_spans_merge_per_worker_and_window_into_the_local_executors_shape() -> None:
    here, there = Clock("aaaa0000", 11, "boot", 0.0, 0.0), Clock("aaaa0000", 12, "boot", 0.0, 0.0)

    def task(c: Clock, stage: str, start: float, frames: int) -> TaskSpan:
        return TaskSpan(c, "default worker", "map:default", f"map {stage} x{frames}", start, start + 0.01,
                        {"stage": stage, "frames": frames, "files": ["a.npy"]}, items=frames)

    tasks = [task(here, "invert", 0.02 * i, 2) for i in range(10)]  # 0.00 .. 0.19: two windows of 0.1 s
    tasks += [task(here, "probe", 0.005, 1), task(there, "invert", 0.0, 4)]
    merged = merge_map_spans(tasks)

    ours = sorted((s.clock.pid, s.name, round(s.start, 3), round(s.end - s.start, 3)) for s in merged)
    assert ours == [(11, "map invert x12", 0.0, 0.06), (11, "map invert x8", 0.12, 0.04),
                    (11, "map probe x1", 0.06, 0.01), (12, "map invert x4", 0.0, 0.01)]
    assert sum(s.args["frames"] for s in merged if s.args["stage"] == "invert") == 24
    assert all(s.args.keys() == {"stage", "frames", "files"} for s in merged)


# On Ray ---------------------------------------------------------------------------------------------

def test_batched_map_frames_come_back_in_order_the_last_partial_batch_flushed(tmp_path: Path) -> None:
    clips = [write_frames(tmp_path / "in" / "a.npy", 30, seed=1), write_frames(tmp_path / "in" / "b.npy", 17, seed=2)]
    run(array_pipeline(), clips, tmp_path / "local", executor="inline", cache=False)
    batched = array_pipeline()
    batched.stages["invert"].batch_size = 4  # 30 = 7 x 4 + 2, 17 = 4 x 4 + 1
    result = run(batched, clips, tmp_path / "ray", executor="ray", cache=False, trace=tmp_path / "t.json")

    assert [r.status for r in result.files] == ["ok", "ok"]
    saved = sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*.npy"))
    assert len(saved) == 47
    for rel in saved:  # each frame inverted and saved in order, the partial batches' included
        assert (tmp_path / "ray" / rel).read_bytes() == (tmp_path / "local" / rel).read_bytes(), rel
    invert = next(s for s in result.stages if s.name == "invert")
    assert (invert.frames, invert.items_out) == (47, 47)
    trace = json.loads((tmp_path / "t.json").read_text())
    check_events(trace, result.wall_s)
    maps = [e for e in spans(trace) if e["name"].startswith("map invert x")]
    assert sum(e["args"]["frames"] for e in maps) == 47


def test_frames_a_local_stage_sends_on_to_a_second_map_stage_all_come_back_in_order(tmp_path: Path) -> None:
    clip = write_frames(tmp_path / "in" / "a.npy", 11)
    run(chained_pipeline(), [clip], tmp_path / "local", executor="inline", cache=False)
    result = run(chained_pipeline(), [clip], tmp_path / "ray", executor="ray", cache=False)

    assert result.files[0].ok, result.files[0].error
    saved = sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*.npy"))
    assert len(saved) == 11
    for rel in saved:
        assert (tmp_path / "ray" / rel).read_bytes() == (tmp_path / "local" / rel).read_bytes(), rel
    assert {s.name: s.frames for s in result.stages}["again"] == 11


def test_a_batch_task_takes_a_ref_to_each_frame_and_returns_their_outcomes_in_order() -> None:
    pipeline = array_pipeline()
    box = [ray.put(cloudpickle.dumps(pipeline))]
    frames = [ArrayFrame(i, frame_pixels(i)).to_shared(ArrayRef.empty(frame_pixels(i).nbytes)) for i in range(3)]
    refs = [ray.put(f) for f in frames]
    task = as_remote(map_batch).remote("batch-test", box, "invert", FileItem("/x/a.npy", "a.npy"), True, 0, *refs)
    outcomes, span = ray.get(task)

    assert [o.seq for o in outcomes] == [0, 1, 2] and all(o.error is None for o in outcomes)
    for i, o in enumerate(outcomes):  # each frame inverted, in its own slot, in the batch's order
        assert o.output.index == i and (o.output.array() == 255 - frame_pixels(i)).all()
    assert (span.name, span.items, span.args) == ("map invert x3", 3, {"stage": "invert", "frames": 3,
                                                                        "files": ["a.npy"]})


@linux_only
def test_a_lower_priority_pools_map_work_runs_niced_on_its_ray_worker_and_the_top_pools_does_not(
        tmp_path: Path) -> None:
    clip = write_frames(tmp_path / "in" / "a.npy", 6)
    result = run(probed_pipeline(batch_size=2), [clip], tmp_path / "o", executor="ray", cache=False)

    (r,) = result.files
    assert r.ok, r.error
    # LOW beside MEDIUM: the local gap, 19 - 6 = 13, on a thread of its own (capped at 19, where Ray's workers,
    # niced by Ray already, may be); the MEDIUM pool, the top one, on the task's own thread at Ray's niceness.
    assert r.record["low_thread"].startswith("framepipe-nice+13")
    assert r.record["low_nice"] == min(19, r.record["low_main_nice"] + 13)
    assert r.record["medium_thread"] == "MainThread"
    assert r.record["medium_nice"] == r.record["medium_main_nice"]


class _Told:
    """The run's events: what was told, in order; ``progressed`` is set at the first progress of a stage."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.progressed = threading.Event()

    def file_started(self, task: Any) -> None:
        self.events.append(("started", task.file.index))

    def file_progress(self, index: int, stage: str, done: int, total: int | None) -> None:
        self.events.append(("progress", index, stage, done, total))
        self.progressed.set()

    def file_done(self, result: Any) -> None:
        self.events.append(("done", result.file.index))


def test_a_files_stage_progress_reaches_the_callers_events_while_the_file_runs(tmp_path: Path) -> None:
    rendezvous = tmp_path / "told.sock"
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text(f"{rendezvous}\ntwo\nthree\nfour")
    told = _Told()
    box: dict[str, RunResult] = {}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(rendezvous))
        server.listen(1)
        server.settimeout(300)  # a safety net: the stage connects as soon as its actor runs it
        runner = threading.Thread(target=lambda: box.setdefault("result", run(
            told_pipeline(), tmp_path / "in", tmp_path / "o", executor="ray", cache=False, events=told)))
        runner.start()
        conn, _ = server.accept()  # the stage told 1 of 4, and waits on this line
        with conn:
            seen = told.progressed.wait(timeout=300)  # the event; the timeout is only a safety net
            conn.sendall(b"go")
        runner.join(timeout=300)

    assert seen and box["result"].files[0].ok
    assert told.events[0] == ("started", 0) and told.events[-1] == ("done", 0)
    assert told.events[1] == ("progress", 0, "tell_then_wait", 1, 4)  # while the file was in flight
    assert all(e[0] == "progress" and e[2] == "tell_then_wait" for e in told.events[1:-1])

