"""The Ray executor on a real local Ray (2 CPUs): the same outputs as the local executor, bad files failing
alone, killed workers retried, frames through the object store in order.

One Ray instance serves the whole module and is stopped at its end, leaving no Ray process behind.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("local_ray")]  # one Ray for the module

from support.arrays import array_pipeline, write_frames  # noqa: E402
from support.numbers import numbers_pipeline, write_input  # noqa: E402
from support.ray_stages import text_pipeline, where_pixels_are  # noqa: E402
from support.traces import check_events, spans, track_names  # noqa: E402

from pipeline import RunResult, run  # noqa: E402


def test_map_stage_frames_cross_the_object_store_in_frame_order(tmp_path: Path) -> None:
    clips = [write_frames(tmp_path / "in" / "a.npy", 30, seed=1), write_frames(tmp_path / "in" / "b.npy", 20, seed=2)]
    local = run(array_pipeline(keep_every=5), clips, tmp_path / "local", executor="inline", cache=False)
    probed = array_pipeline(keep_every=5)
    probed.add(where_pixels_are, after="read_frames")  # a second map stage on the same frames (one object for both)
    result = run(probed, clips, tmp_path / "ray", executor="ray", cache=False)

    assert [r.status for r in result.files] == ["ok", "ok"]
    for r in result.files:  # a map task reads its frame in place, in the object store's shared memory
        assert (r.record["pixels_read_only"], r.record["pixels_own_memory"]) == (True, False)
    pngs = sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*.npy"))
    assert len(pngs) == 10
    for rel in pngs:  # inverted by a Ray task, taken back in order: each saved frame is the frame it should be
        assert (tmp_path / "ray" / rel).read_bytes() == (tmp_path / "local" / rel).read_bytes(), rel
    invert = next(s for s in result.stages if s.name == "invert")
    assert invert.where == "map:default"
    assert invert.frames == next(s for s in local.stages if s.name == "read_frames").frames
    assert invert.bytes > 0 and invert.busy_s > 0


def test_a_map_stage_that_raises_fails_its_file_alone(tmp_path: Path) -> None:
    inputs = _texts(tmp_path / "in", {"good.txt": "one\ntwo\nthree", "bad.txt": "fine\nboom\nnever"})
    result = run(text_pipeline(mapped=True), inputs, tmp_path / "out", executor="ray")

    good, bad = (next(r for r in result.files if r.file.relpath == n) for n in ("good.txt", "bad.txt"))
    assert (tmp_path / "out" / "lines" / "good.txt").read_text() == "0 ONE\n1 TWO\n2 THREE"
    assert good.record == {"shouted": True, "line_count": 3}
    assert bad.failed_stage == "shout" and bad.error == "[shout] ValueError: line 1 says boom"
    assert not (tmp_path / "out" / "lines" / "bad.txt").exists()
    shout = next(s for s in result.stages if s.name == "shout")
    assert shout.failures == 1 and shout.where == "map:default"


def _texts(folder: Path, files: dict[str, str]) -> Path:
    """``folder`` holding text files of these names and contents (the text pipeline's inputs)."""
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


class _RunWithAStageOnTheLine:
    """``run(**options)`` in a thread while this test listens on the unix socket ``rendezvous``: ``accept()`` waits
    for the stage that calls it (the event), and the block ends when the run has (``result``)."""

    def __init__(self, rendezvous: Path, **options: Any) -> None:
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(rendezvous))
        self.server.listen(1)
        self.server.settimeout(300)  # a safety net: the stage connects as soon as its worker runs it
        self.box: dict[str, RunResult] = {}
        self.thread = threading.Thread(target=lambda: self.box.setdefault("result", run(**options)))
        self.connections: list[socket.socket] = []

    def __enter__(self) -> _RunWithAStageOnTheLine:
        self.thread.start()
        return self

    def accept(self) -> socket.socket:
        conn, _ = self.server.accept()
        self.connections.append(conn)
        return conn

    def __exit__(self, *exc: object) -> None:
        self.thread.join(timeout=300)  # before the line closes: a stage still on it would see it close
        for conn in [*self.connections, self.server]:
            conn.close()

    @property
    def result(self) -> RunResult:
        return self.box["result"]


@pytest.mark.slow
def test_a_killed_ray_worker_is_retried_and_its_outputs_equal_a_clean_run(tmp_path: Path) -> None:
    rendezvous = tmp_path / "pid.sock"
    inputs = _texts(tmp_path / "in", {"victim.txt": f"before\nkill-me {rendezvous}\nafter",
                                      "bystander.txt": "alpha\nbeta"})
    marker = Path(f"{rendezvous}.attempted")
    marker.touch()  # the clean run is a retry already: it goes straight on
    clean = run(text_pipeline(), inputs, tmp_path / "clean", executor="inline")
    marker.unlink()

    with _RunWithAStageOnTheLine(rendezvous, pipeline=text_pipeline(), inputs=inputs, out=tmp_path / "out",
                                 executor="ray") as line:
        pid = int(line.accept().recv(32))  # the stage is running, in the worker it names
        os.kill(pid, signal.SIGKILL)
    result = line.result

    victim = next(r for r in result.files if r.file.relpath == "victim.txt")
    assert victim.ok and victim.attempts == 2
    assert [(r.status, r.record, r.outputs) for r in result.files] == \
        [(r.status, r.record, r.outputs) for r in clean.files]
    for name in ("victim.txt", "bystander.txt"):
        assert (tmp_path / "out" / "lines" / name).read_bytes() == (tmp_path / "clean" / "lines" / name).read_bytes()


@pytest.mark.slow
@pytest.mark.timing(reason="fine.txt must finish within the 5 s file timeout that ends stuck.txt")
def test_a_file_past_its_timeout_fails_alone_and_its_worker_is_killed(tmp_path: Path) -> None:
    rendezvous = tmp_path / "hang.sock"
    inputs = _texts(tmp_path / "in", {"stuck.txt": f"hang {rendezvous}", "fine.txt": "fine"})
    with _RunWithAStageOnTheLine(rendezvous, pipeline=text_pipeline(), inputs=inputs, out=tmp_path / "out",
                                 executor="ray", file_timeout=5.0) as line:
        line.accept()  # the stage is stuck now, and only the file timeout can end it
    result = line.result

    stuck, fine = (next(r for r in result.files if r.file.relpath == n) for n in ("stuck.txt", "fine.txt"))
    assert stuck.error_type == "FileTimeout" and "5 s" in (stuck.error or "")
    assert fine.ok and (tmp_path / "out" / "lines" / "fine.txt").read_text() == "0 fine"


# The trace ----------------------------------------------------------------------------------------

ACTOR = re.compile(r"actor \d+ \(node [0-9a-f]{8}, pid \d+\)")  # a track's name: its actor, node and pid


def _groups(trace: dict[str, Any]) -> dict[int, str]:
    """Each span's group (its process row) by the row's id."""
    return {e["pid"]: e["args"]["name"] for e in trace["traceEvents"] if e["ph"] == "M" and e["name"] == "process_name"}


def _inside(inner: dict[str, Any], outer: dict[str, Any]) -> bool:
    """``inner`` lies within ``outer`` on the same track (to a microsecond of rounding)."""
    return (inner["pid"], inner["tid"]) == (outer["pid"], outer["tid"]) and outer["ts"] - 1 <= inner["ts"] \
        and inner["ts"] + inner["dur"] <= outer["ts"] + outer["dur"] + 1


def test_a_traced_run_shows_each_files_actor_call_its_stages_work_and_its_map_tasks(tmp_path: Path) -> None:
    clips = [write_frames(tmp_path / "in" / f"c{i}.npy", 30, seed=i) for i in range(2)]
    result = run(array_pipeline(keep_every=15), clips, tmp_path / "o", executor="ray", cache=False,
                 trace=tmp_path / "t.json")
    assert all(f.ok for f in result.files), [f.error for f in result.files]
    trace = json.loads((tmp_path / "t.json").read_text())
    check_events(trace, result.wall_s)
    names, groups = track_names(trace), _groups(trace)

    calls = [e for e in spans(trace) if e["name"].startswith("file ")]
    assert sorted(e["args"]["file"] for e in calls) == ["c0.npy", "c1.npy"]
    assert all(ACTOR.fullmatch(names[e["pid"], e["tid"]]) and groups[e["pid"]] == "actors" for e in calls)
    work = [e for e in spans(trace) if "stage" in e.get("args", {}) and "file" in e["args"]]
    assert {e["name"] for e in work} == {"read_frames", "save_frames"}  # the map stage's spans are its tasks'
    for e in work:  # inside its file's call, on its actor's track
        assert any(_inside(e, c) and c["args"]["file"] == e["args"]["file"] for c in calls), e
    frames = {s.name: s.frames for s in result.stages}
    for stage in ("read_frames", "save_frames"):
        assert sum(e["args"]["frames"] for e in work if e["name"] == stage) == frames[stage] == 60

    maps = [e for e in spans(trace) if e["name"].startswith("map ")]  # a span per worker and 100 ms window,
    assert all(re.fullmatch(r"map invert x\d+", e["name"]) for e in maps)  # named as the local map task spans
    assert sum(e["args"]["frames"] for e in maps) == frames["invert"] == 60
    assert sum(int(e["name"].rpartition("x")[2]) for e in maps) == 60
    assert {tuple(e["args"]["files"]) for e in maps} == {("c0.npy",), ("c1.npy",)}
    for e in maps:
        assert e["args"].keys() == {"stage", "frames", "files"}
        assert re.fullmatch(r"default worker \(node [0-9a-f]{8}, pid \d+\)", names[e["pid"], e["tid"]])
        assert groups[e["pid"]] == "map:default" and e["args"]["stage"] == "invert"
        assert any(c["ts"] - 1 <= e["ts"] and e["ts"] + e["dur"] <= c["ts"] + c["dur"] + 1 and
                   c["args"]["file"] == e["args"]["files"][0] for c in calls), e  # within its file's call
    assert any(e["ph"] == "C" and e["name"] == "files in flight" for e in trace["traceEvents"])


def test_a_traced_file_in_parts_shows_each_part_and_its_stages_on_the_track_of_the_process_that_ran_it(
        tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    write_input(tmp_path / "in", "long.txt", 37)
    result = run(numbers_pipeline(), tmp_path / "in", tmp_path / "o", executor="ray", cache=False,
                 trace=tmp_path / "t.json")
    assert result.files[0].ok, result.files[0].error
    parts_made = result.files[0].record["collected_parts"]
    assert parts_made >= 2
    trace = json.loads((tmp_path / "t.json").read_text())
    check_events(trace, result.wall_s)
    names, groups = track_names(trace), _groups(trace)
    parts = [e for e in spans(trace) if e["name"].startswith("part ")]
    assert sorted(e["name"] for e in parts) == sorted(f"part {i}/{parts_made}" for i in range(1, parts_made + 1))
    work = [e for e in spans(trace) if "stage" in e.get("args", {})]
    for part in parts:
        assert re.fullmatch(r"part worker \(node [0-9a-f]{8}, pid \d+\)", names[part["pid"], part["tid"]])
        assert groups[part["pid"]] == "parts" and part["args"]["file"] == "long.txt"
        mine = [e for e in work if e["args"].get("part") == part["name"].removeprefix("part ")]
        assert {e["name"] for e in mine} >= {"numbers", "collect"} and all(_inside(e, part) for e in mine)
    numbers = sum(e["args"]["frames"] for e in work if e["name"] == "numbers")
    assert numbers == next(s.frames for s in result.stages if s.name == "numbers")
    (call,) = [e for e in spans(trace) if e["name"] == "file long.txt"]
    joined = [e for e in work if "part" not in e["args"]]  # the file's own session, in its actor's call
    assert {e["name"] for e in joined} >= {"tally", "collect"} and all(_inside(e, call) for e in joined)
