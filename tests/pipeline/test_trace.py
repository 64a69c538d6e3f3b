"""Run timelines: a ``RunTrace`` of every worker's calls (Chrome trace JSON) and the chart drawn from it."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import pytest
from PIL import Image
from support.arrays import array_pipeline, write_frames, write_pipeline_file
from support.numbers import numbers_pipeline, write_input
from support.traces import check_events, spans, track_names

from pipeline import FILE, PerformanceConfig, Pipeline, Stage, StageContext, run
from pipeline.observe.chart import draw_timeline, throughput_series, timeline, utilization_series, write_chart
from pipeline.observe.stage_timeline import WINDOW_S
from pipeline.observe.trace import RunTrace

COUNTERS = {"slots in use", "files in flight", "map tasks running"}
CALLS = re.compile(r"(start|step|finish|part) ?")  # the names of actor calls' spans


def stage_spans(trace: dict[str, Any]) -> list[dict[str, Any]]:
    """The spans of stages' work inside actor calls."""
    return [e for e in spans(trace) if "stage" in e.get("args", {}) and "file" in e["args"]]


def call_spans(trace: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in spans(trace) if CALLS.match(e["name"]) and "stage" not in e.get("args", {})]


def inside(inner: dict[str, Any], outer: dict[str, Any]) -> bool:
    """``inner`` lies within ``outer`` on the same track (to a microsecond of rounding)."""
    return (inner["pid"], inner["tid"]) == (outer["pid"], outer["tid"]) and outer["ts"] - 1 <= inner["ts"] \
        and inner["ts"] + inner["dur"] <= outer["ts"] + outer["dur"] + 1


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two inputs of 30 numpy frames each (engine-only stand-ins for clips)."""
    root = tmp_path_factory.mktemp("trace_clips")
    for i in range(2):
        write_frames(root / f"c{i}.npy", 30, seed=i)
    return root


@pytest.fixture(scope="module")
def local_run(clips: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any], Path]:
    """The array pipeline on the local executor with a trace and a chart: (result, trace JSON, chart path)."""
    out = tmp_path_factory.mktemp("trace_out")
    result = run(array_pipeline(keep_every=15), clips, out / "o", workers=2, cache=False, trace=out / "t.json",
                 chart=out / "c.png")
    return result, json.loads((out / "t.json").read_text()), out / "c.png"


# The recorder -------------------------------------------------------------------------------------


def test_a_trace_is_chrome_trace_json_with_a_named_process_per_group_and_thread_per_track() -> None:
    t = RunTrace(origin=0.0)
    t.span("actor 0 (pid 11)", "start a.mp4", 0.5, 0.75, {"file": "a.mp4"}, group="actors")
    t.span("w (pid 12)", "map invert x2", 0.6, 0.7, {"stage": "invert", "frames": 2}, group="map:default")
    t.span("w (pid 13)", "map invert x1", 0.8, 0.9, group="map:default")
    t.counter("files in flight", 0.5, {"files": 1})
    doc = json.loads(json.dumps(t.to_chrome_json()))
    events = doc["traceEvents"]
    processes = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert set(processes.values()) == {"scheduler", "actors", "map:default"}
    assert sorted(track_names(doc).values()) == ["actor 0 (pid 11)", "w (pid 12)", "w (pid 13)"]
    start = next(e for e in spans(doc) if e["name"] == "start a.mp4")
    assert (start["ts"], start["dur"], start["args"]) == (500000.0, 250000.0, {"file": "a.mp4"})
    assert processes[start["pid"]] == "actors"
    maps = [e for e in spans(doc) if e["name"].startswith("map")]
    assert len({e["pid"] for e in maps}) == 1 and len({e["tid"] for e in maps}) == 2
    (counter,) = [e for e in events if e["ph"] == "C"]
    assert (counter["name"], counter["ts"], counter["args"]) == ("files in flight", 500000.0, {"files": 1})


def test_a_span_never_ends_before_it_starts_and_writing_is_atomic(tmp_path: Path) -> None:
    t = RunTrace(origin=0.0)
    t.span("a", "x", 1.0, 0.9)
    assert t.spans[0].duration_s == 0
    path = t.write(tmp_path / "sub" / "t.json")
    assert json.loads(path.read_text())["traceEvents"]
    assert [p.name for p in path.parent.iterdir()] == ["t.json"]


def test_throughput_and_utilization_come_from_the_spans_binned() -> None:
    t = RunTrace(origin=0.0)
    t.span("a", "map s x10", 0.0, 0.5, {"stage": "s", "frames": 10}, group="g")
    t.span("b", "step", 0.0, 0.25, {"frames": {"d": 5}}, group="g")
    width, throughput = throughput_series(t, 0.25)
    assert throughput["s"] == pytest.approx([20.0, 20.0])  # 10 frames over 0.5 s
    assert throughput["d"] == pytest.approx([20.0, 0.0])
    _, busy = utilization_series(t, width)
    assert busy["g"] == pytest.approx([1.0, 0.5])  # two tracks: both busy, then one


def test_stage_spans_inside_a_call_count_frames_but_not_busy_time_again() -> None:
    t = RunTrace(origin=0.0)
    t.span("a", "step", 0.0, 0.25, {"file": "f"}, group="actors")
    t.span("a", "decode", 0.0, 0.2, {"file": "f", "stage": "decode", "frames": 5}, group="actors", busy=False)
    t.span("a", "wait for slots", 0.25, 0.5, {"file": "f"}, group="actors", busy=False)
    t.span("b", "step", 0.0, 0.5, group="actors")
    width, throughput = throughput_series(t, 0.25)
    assert throughput == {"decode": pytest.approx([20.0, 0.0])}
    _, busy = utilization_series(t, width)
    assert busy["actors"] == pytest.approx([1.0, 0.5])  # a's call once (not its stage's span), b all along


def test_a_ray_reply_from_another_machine_is_placed_through_the_wall_clock_and_clipped_into_its_call() -> None:
    tracing = pytest.importorskip("pipeline.executors.ray.tracing")
    from pipeline.observe.stage_timeline import StageSpan

    trace = RunTrace(origin=100.0)
    here = time.perf_counter() - time.time()  # the driver's clocks, as record_file reads them
    # Another machine whose perf_counter reads 5000 when its wall clock (agreeing with ours) reads 1e9.
    there = tracing.Clock("abcd1234", 42, "another boot", 1e9, 5000.0)
    on_ours = 1e9 + here  # our perf_counter at the reply's wall time
    reply = tracing.FileTrace(4998.0, 4999.5, [StageSpan("decode", 4998.0, 4998.5, 7, 0),
                                               StageSpan("encode", 4999.4, 4999.9, 7, 0)], [
        tracing.TaskSpan(there, "default worker", "map:default", "map invert x1", 4998.2, 4998.3,
                         {"stage": "invert", "frames": 1, "files": ["a.mp4"]})], there)
    tracing.record_file(trace, 3, "a.mp4", on_ours - 3.0, on_ours - 1.0, "ok", reply)
    by_name = {s.name: s for s in trace.spans}
    call = by_name["file a.mp4"]
    assert call.track == "actor 3 (node abcd1234, pid 42)" and trace.groups[call.track] == "actors"
    # 4998 there is 2 s before the reply: its wall clock put it 1 s after the call was sent, and it ends at done.
    assert call.start_s == pytest.approx(on_ours - 2.0 - 100.0, abs=1e-3)
    assert call.end_s == pytest.approx(on_ours - 1.0 - 100.0, abs=1e-3)
    assert by_name["decode"].duration_s == pytest.approx(0.5, abs=1e-3) and not by_name["decode"].busy
    assert by_name["encode"].end_s == call.end_s  # clipped into its call
    task = by_name["map invert x1"]
    assert task.track == "default worker (node abcd1234, pid 42)" and trace.groups[task.track] == "map:default"
    assert call.start_s <= task.start_s <= task.end_s <= call.end_s

    import ray
    connected = ray.is_initialized()
    boot = tracing.clock().boot
    assert ray.is_initialized() == connected  # reading a clock outside Ray starts no Ray
    if boot:  # Linux: a process of our kernel's boot reads our perf_counter, used as it is
        assert tracing.Clock("abcd1234", 42, boot, 1e9, 5000.0).shift(boot, here) == 0.0


# Recording in the executors ---------------------------------------------------------------------


def test_the_local_executor_records_each_actor_call_and_map_task_on_its_worker_track(local_run) -> None:  # noqa: ANN001
    result, trace, _chart = local_run
    assert all(f.ok for f in result.files), [f.error for f in result.files]
    check_events(trace, result.wall_s)
    names = track_names(trace)
    used = {(e["pid"], e["tid"]) for e in spans(trace)}
    assert used == set(names)  # no track without spans, no span without a named track
    actors = {n for n in names.values() if n.startswith("actor")}
    workers = {n for n in names.values() if n.startswith("default worker")}
    assert actors and workers and len(actors) + len(workers) == len(names)
    assert all(re.fullmatch(r"actor \d+ \(pid \d+\)", n) for n in actors)
    assert all(re.fullmatch(r"default worker \(pid \d+\)", n) for n in workers)
    worker_pids = [re.search(r"pid (\d+)", n).group(1) for n in names.values()]
    assert len(set(worker_pids)) == len(worker_pids)  # one track per worker process
    by_name = Counter(re.sub(r" .*", "", e["name"]) for e in spans(trace))
    assert by_name["start"] == by_name["finish"] == 2 and by_name["step"] >= 2
    maps = [e for e in spans(trace) if e["name"].startswith("map invert x")]
    assert sum(e["args"]["frames"] for e in maps) == 2 * 30  # every frame of both clips crossed
    assert all(e["args"]["stage"] == "invert" and e["args"]["files"] for e in maps)
    assert {e["args"]["file"] for e in spans(trace) if e["name"].startswith("start")} == {"c0.npy", "c1.npy"}
    stage_frames: Counter[str] = Counter()
    for e in spans(trace):
        if "stage" in e.get("args", {}) and "file" in e["args"]:
            stage_frames[e["args"]["stage"]] += e["args"]["frames"]
    assert stage_frames == {"read_frames": 60, "save_frames": 60}  # each stage's own spans, in the actors
    assert not [e for e in spans(trace) if isinstance(e.get("args", {}).get("frames"), dict)]  # none counted twice


def test_each_stages_work_is_a_span_inside_its_actor_call_on_the_actors_track(local_run) -> None:  # noqa: ANN001
    result, trace, _chart = local_run
    calls, work = call_spans(trace), stage_spans(trace)
    assert {e["name"] for e in work} == {"read_frames", "save_frames"}  # the map stage's spans are its tasks'
    for e in work:
        assert e["name"] == e["args"]["stage"] and e["args"]["file"] in {"c0.npy", "c1.npy"}
        assert any(inside(e, c) and c["args"]["file"] == e["args"]["file"] for c in calls), e
        if e["args"]["frames"]:
            assert e["args"]["last"] - e["args"]["first"] + 1 == e["args"]["frames"]
    for file in ("c0.npy", "c1.npy"):  # each stage's frames of a file: in order, every one once
        for stage in ("read_frames", "save_frames"):
            ranges = sorted((e["args"]["first"], e["args"]["last"]) for e in work
                            if e["args"]["file"] == file and e["args"]["stage"] == stage and e["args"]["frames"])
            assert [r for pair in ranges for r in pair][0] == 0 and ranges[-1][1] == 29
            assert all(b[0] == a[1] + 1 for a, b in zip(ranges, ranges[1:], strict=False))
    for track in {(e["pid"], e["tid"]) for e in work}:  # laid end to end: Perfetto nests them in their call
        mine = sorted((e["ts"], e["ts"] + e["dur"]) for e in work if (e["pid"], e["tid"]) == track)
        assert all(b[0] >= a[1] - 1 for a, b in zip(mine, mine[1:], strict=False))
    frames = {s.name: s.frames for s in result.stages}
    assert sum(e["args"]["frames"] for e in work if e["name"] == "read_frames") == frames["read_frames"] == 60


def test_a_file_that_waits_for_slots_shows_each_wait_between_its_calls(clips: Path, tmp_path: Path) -> None:
    # One slot a file: its session pauses after every frame it sends to the map stage, until the next credit.
    result = run(array_pipeline(keep_every=15), clips, tmp_path / "o", workers=2, cache=False,
                 trace=tmp_path / "t.json", performance=PerformanceConfig(credits_per_file=1))
    assert all(f.ok for f in result.files)
    trace = json.loads((tmp_path / "t.json").read_text())
    check_events(trace, result.wall_s)
    waits = [e for e in spans(trace) if e["name"] == "wait for slots"]
    calls = call_spans(trace)
    for file in ("c0.npy", "c1.npy"):
        assert len([w for w in waits if w["args"]["file"] == file]) >= 30 - 1  # every frame's but the last's
    for w in waits:  # between two calls of its file's actor, never during one
        mine = [c for c in calls if (c["pid"], c["tid"]) == (w["pid"], w["tid"])]
        assert not any(c["ts"] + 1 < w["ts"] + w["dur"] and w["ts"] < c["ts"] + c["dur"] - 1 for c in mine), w
        assert any(abs(c["ts"] - (w["ts"] + w["dur"])) <= 1 for c in mine)  # it ends as the next call starts


def test_a_long_file_makes_spans_by_time_not_by_frames(tmp_path: Path) -> None:
    frames = 18_000  # ten minutes at 30 fps, in tiny frames
    write_frames(tmp_path / "in" / "long.npy", frames, height=4, width=16)
    result = run(array_pipeline(keep_every=frames, mapped=False), tmp_path / "in", tmp_path / "o", workers=1,
                 cache=False, trace=tmp_path / "t.json")
    assert result.files[0].ok, result.files[0].error
    assert (tmp_path / "t.json").stat().st_size < 3 << 20
    trace = json.loads((tmp_path / "t.json").read_text())
    work, calls = stage_spans(trace), call_spans(trace)
    for stage in ("read_frames", "save_frames"):
        mine = [e for e in work if e["name"] == stage]
        assert sum(e["args"]["frames"] for e in mine) == frames
        # The rule: a span per stage per window of work (WINDOW_S of wall time) and per actor call.
        assert len(mine) <= len(calls) + result.wall_s / WINDOW_S + 1
    assert len(work) < frames / 20


def test_a_file_in_parts_shows_each_parts_stages_on_the_track_of_the_actor_that_ran_it(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    write_input(tmp_path / "in", "long.txt", 37)
    result = run(numbers_pipeline(), tmp_path / "in", tmp_path / "o", workers=2, cache=False,
                 trace=tmp_path / "t.json")
    assert result.files[0].ok and result.files[0].record["collected_parts"] == 4
    trace = json.loads((tmp_path / "t.json").read_text())
    work = stage_spans(trace)
    parts = [e for e in call_spans(trace) if e["name"].startswith("part ")]
    assert sorted(e["name"] for e in parts) == [f"part {i}/4" for i in range(1, 5)]
    for part in parts:
        mine = [e for e in work if e["args"].get("part") == part["name"].removeprefix("part ")]
        assert {e["name"] for e in mine} >= {"numbers", "collect"}
        assert all(inside(e, part) for e in mine)
    joined = [e for e in work if "part" not in e["args"]]  # the file's own session: its tally, and collect's join
    assert {e["name"] for e in joined} >= {"numbers", "tally", "collect"}


def test_the_scheduler_samples_its_counters(local_run) -> None:  # noqa: ANN001
    result, trace, _chart = local_run
    counters = [e for e in trace["traceEvents"] if e["ph"] == "C"]
    assert {e["name"] for e in counters} == COUNTERS
    assert all(e["pid"] == 0 and 0 <= e["ts"] <= result.wall_s * 1e6 for e in counters)
    assert max(e["args"]["tasks"] for e in counters if e["name"] == "map tasks running") >= 1
    assert max(e["args"]["files"] for e in counters if e["name"] == "files in flight") >= 1


def test_the_chart_is_a_png(local_run) -> None:  # noqa: ANN001
    _result, _trace, chart = local_run
    with Image.open(chart) as img:
        assert img.format == "PNG" and img.size[0] >= 400 and img.size[1] >= 300


LINE = "line"


class Line:
    kind: ClassVar[str] = LINE

    def __init__(self, text: str) -> None:
        self.text = text


class SplitLines(Stage):
    accepts = (FILE,)
    emits = (LINE,)

    def process(self, item, ctx: StageContext):  # noqa: ANN001, ANN201
        yield from (Line(t) for t in Path(item.path).read_text().splitlines())


class Count(Stage):
    accepts = (LINE,)

    def process(self, item: Line, ctx: StageContext) -> None:
        ctx.state["n"] = ctx.state.get("n", 0) + 1


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_a_pure_python_pipeline_is_traced_on_either_executor(executor: str, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    for name in ("a", "b", "c"):
        (tmp_path / "in" / f"{name}.txt").write_text("one\ntwo")
    p = Pipeline("lines", extensions=[".txt"])
    p.add(Count(), after=p.add(SplitLines()))
    result = run(p, tmp_path / "in", tmp_path / "out", executor=executor, workers=2, cache=False,
                 trace=tmp_path / "t.json")
    trace = json.loads((tmp_path / "t.json").read_text())
    check_events(trace, result.wall_s)
    if executor == "inline":
        files = [e for e in spans(trace) if "stage" not in e.get("args", {})]
        assert sorted(e["name"] for e in files) == ["file a.txt", "file b.txt", "file c.txt"]
        work = stage_spans(trace)
        assert {(e["args"]["file"], e["name"]) for e in work} == {(f"{n}.txt", s) for n in "abc"
                                                                  for s in ("split_lines", "count")}
        assert all(any(inside(e, f) for f in files) for e in work)
        assert list(track_names(trace).values()) == [f"inline (pid {os.getpid()})"]
    else:
        starts = [e for e in spans(trace) if e["name"].startswith("start ")]
        assert len(starts) == 3 and not [e for e in spans(trace) if e["name"].startswith("map")]
        assert all(n.startswith("actor ") for n in track_names(trace).values())
    assert any(e["ph"] == "C" and e["name"] == "files in flight" for e in trace["traceEvents"])
    assert not (tmp_path / "c.png").exists()


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_without_trace_chart_or_report_no_recorder_is_made(executor: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    run_module = importlib.import_module("pipeline.run")  # the module, not the function of that name

    def no_recorder(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a RunTrace was made for a run that asked for none")

    monkeypatch.setattr(run_module, "RunTrace", no_recorder)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("x")
    p = Pipeline("lines", extensions=[".txt"])
    p.add(Count(), after=p.add(SplitLines()))
    assert run(p, tmp_path / "in", tmp_path / "out", executor=executor, workers=1, cache=False,
               write_reports=False).files[0].ok


def test_the_chart_names_its_axes_gives_each_stage_a_panel_and_marks_the_bottleneck() -> None:
    t = RunTrace(origin=0.0)
    for i in range(8):  # two stages with the same frames: one panel each, neither hides the other
        t.span("a", "file", i * 0.1, i * 0.1 + 0.05, {"frames": {"decode": 2, "thumbs": 2}}, group="actors")
    series = timeline(t, ["decode", "thumbs"])
    assert list(series["throughput"]) == ["decode", "thumbs"] and list(series["utilization"]) == ["actors"]
    svg = draw_timeline(series, "svg", bottleneck="thumbs").decode()
    for text in ("frames/s", "busy %", "seconds since the run began", "decode: throughput",
                 "thumbs: throughput  (the bottleneck)", "utilization per worker group", "actors"):
        assert text in svg, text
    assert svg.count("frames/s") == 2


def test_an_empty_trace_still_makes_a_chart(tmp_path: Path) -> None:
    with Image.open(write_chart(RunTrace(), [], tmp_path / "empty.png")) as img:
        assert img.format == "PNG"


# The command ----------------------------------------------------------------------------------------


def test_framepipe_run_writes_the_trace_and_the_chart(clips: Path, tmp_path: Path) -> None:
    pipeline_file = write_pipeline_file(tmp_path / "arrays.py", keep_every=15)
    proc = subprocess.run([sys.executable, "-m", "pipeline", "run", str(clips / "c0.npy"), "-o", str(tmp_path / "o"),
                           "-P", str(pipeline_file), "-q", "-j", "2", "--no-cache", "--trace", str(tmp_path / "t.json"),
                           "--chart", str(tmp_path / "c.png")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    trace = json.loads((tmp_path / "t.json").read_text())
    assert any(e["name"] == "start c0.npy" for e in spans(trace))
    with Image.open(tmp_path / "c.png") as img:
        assert img.format == "PNG"
