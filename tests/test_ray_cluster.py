"""The Ray executor on a Ray cluster of several nodes (a head and 2 worker nodes on this machine, each its own
raylet with its own CPU and object store): files spread over the nodes and the report names each one's node,
outputs equal the local executor's, map stages' frames and a long file's parts cross nodes, a node lost
mid-batch costs its files one more attempt and nothing else, a node that joins takes files, and a driver
interrupted resumes.

Where a test needs files to be running at once, their stage holds on a unix socket the test listens on (``hold``
in ``support.ray_stages``): it says where it runs and waits for a go, so the test acts at a known point, never
after a sleep. One cluster serves the module (``ray_cluster``); each test starts from its shape (``reshape``).
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pyarrow.parquet as pq
import pytest

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray

from support.arrays import array_pipeline, write_frames  # noqa: E402
from support.cli import FRAMEPIPE  # noqa: E402
from support.clips import frame_hashes  # noqa: E402
from support.gop_clips import GopSpec, make_gop_clip  # noqa: E402
from support.object_store import MotoServer  # noqa: E402
from support.ray_cluster import LocalCluster, short_id  # noqa: E402
from support.ray_stages import text_pipeline  # noqa: E402
from support.runs import output_files  # noqa: E402
from support.traces import spans, track_names  # noqa: E402

from pipeline import Pipeline, RunResult, run  # noqa: E402
from pipeline.executors.ray.placement import NodeSpread  # noqa: E402
from pipeline.results import this_host  # noqa: E402

TRACK = re.compile(r"\(node ([0-9a-f]{8}), pid \d+\)$")  # the end of a trace track's name: its node and pid


def _node_of(event: dict[str, Any], names: dict[tuple[int, int], str]) -> str:
    """The node (short id) of the process on whose track a trace event lies."""
    found = TRACK.search(names[event["pid"], event["tid"]])
    assert found is not None, names[event["pid"], event["tid"]]
    return found.group(1)


@pytest.fixture
def cluster(ray_cluster: LocalCluster) -> LocalCluster:
    """The module's cluster with its head and 2 worker nodes (whatever an earlier test added or removed)."""
    ray_cluster.reshape(workers=2)
    return ray_cluster


class Holds:
    """A unix socket the ``hold`` lines of a run's files connect to: ``take()`` waits for the next file that
    holds and says where it runs (its node's id); ``go`` lets it go on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(16)
        self.server.settimeout(300)  # a safety net: a file connects as soon as its actor runs it
        self.open: list[socket.socket] = []

    def take(self) -> tuple[socket.socket, str]:
        conn, _ = self.server.accept()
        self.open.append(conn)
        _, node = conn.recv(200).decode().split()
        return conn, node

    @staticmethod
    def go(conn: socket.socket) -> None:
        conn.sendall(b"g")

    def close(self) -> None:
        for conn in [*self.open, self.server]:
            conn.close()


@pytest.fixture
def holds(tmp_path: Path) -> Iterator[Holds]:
    line = Holds(tmp_path / "h.sock")
    yield line
    line.close()


def _texts(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def _lines_out(text: str) -> str:
    """What the text pipeline writes for ``text``: each line numbered."""
    return "\n".join(f"{n} {line}" for n, line in enumerate(text.splitlines()))


class _Running:
    """``run(**options)`` in a thread; ``result`` once it has ended."""

    def __init__(self, **options: Any) -> None:
        self.box: dict[str, RunResult] = {}
        self.thread = threading.Thread(target=lambda: self.box.setdefault("result", run(**options)))
        self.thread.start()

    @property
    def result(self) -> RunResult:
        self.thread.join(timeout=300)
        return self.box["result"]


def _nodes(cluster: LocalCluster) -> dict[str, str]:
    """Each node's id by its short id (as ``FileResult.node`` ends)."""
    return {short_id(n): n.node_id for n in [cluster.head, *cluster.workers]}


# Where files run -----------------------------------------------------------------------------------------


def test_files_spread_over_the_nodes_and_the_report_names_the_node_each_ran_on(cluster: LocalCluster,
                                                                                holds: Holds, tmp_path: Path) -> None:
    texts = {f"f{i}.txt": f"one\nhold {holds.path}\nthree" for i in range(3)}
    running = _Running(pipeline=text_pipeline(), inputs=_texts(tmp_path / "in", texts), out=tmp_path / "out",
                       executor="ray", cache=False)
    held = [holds.take() for _ in texts]  # three files at once: one on each node's actor (1 CPU each)
    for conn, _ in held:
        holds.go(conn)
    result = running.result

    assert [r.status for r in result.files] == ["ok"] * 3
    assert {node for _, node in held} == set(_nodes(cluster).values())
    assert sorted(r.node for r in result.files) == sorted(f"{this_host()}/{short}" for short in _nodes(cluster))
    rows = pq.read_table(tmp_path / "out" / "report.parquet").to_pylist()
    assert {row["relpath"]: row["node"] for row in rows} == {r.file.relpath: r.node for r in result.files}
    ledger = [json.loads(line) for line in (tmp_path / "out" / "ledger.jsonl").read_text().splitlines()]
    assert {e["file"]: e["node"] for e in ledger} == {r.file.relpath: r.node for r in result.files}


def test_files_on_object_storage_run_on_every_node_and_each_node_puts_its_outputs(
        cluster: LocalCluster, holds: Holds, s3: MotoServer, tmp_path: Path) -> None:
    texts = {f"f{i}.txt": f"one\nhold {holds.path}\nthree" for i in range(3)}
    s3.put_folder("cluster", "in", _texts(tmp_path / "in", texts))
    running = _Running(pipeline=text_pipeline(), inputs="s3://cluster/in", out="s3://cluster/out", executor="ray",
                       cache=False)
    held = [holds.take() for _ in texts]  # each node's actor reads its object by ranges from the store
    for conn, _ in held:
        holds.go(conn)
    result = running.result

    assert [r.status for r in result.files] == ["ok"] * 3, [r.error for r in result.files]
    assert {node for _, node in held} == set(_nodes(cluster).values())
    for name, text in texts.items():  # put at its URL by the node that ran it: no folder shared between nodes
        assert s3.get("cluster", f"out/lines/{name}").decode() == _lines_out(text)
    assert s3.keys("cluster", "out/lines/") == sorted(f"out/lines/{name}" for name in texts)
    assert not [k for k in s3.keys("cluster", "out/") if "/." in k]  # nothing staged or half-put left in OUT
    rows = pq.read_table(io.BytesIO(s3.get("cluster", "out/report.parquet"))).to_pylist()
    assert {row["relpath"]: row["node"] for row in rows} == {r.file.relpath: r.node for r in result.files}
    ledger = [json.loads(line) for line in s3.get("cluster", "out/ledger.jsonl").decode().splitlines()]
    assert sorted(e["file"] for e in ledger) == sorted(texts)


def test_actors_that_hold_no_cpu_are_given_nodes_in_proportion_to_their_cpus(cluster: LocalCluster) -> None:
    spread = NodeSpread()  # (the file actors of a pipeline with map stages or parts: Ray alone packs them)
    placed = Counter(o["scheduling_strategy"].node_id for o in spread.options(6))
    assert placed == dict.fromkeys(_nodes(cluster).values(), 2)
    joined = cluster.add_node()
    assert [o["scheduling_strategy"].node_id for o in spread.options(1)] == [joined.node_id]
    assert all(o["scheduling_strategy"].soft for o in spread.options(4))  # elsewhere when its node is lost


def test_the_default_preset_on_the_cluster_gives_the_local_executors_outputs(ray_cluster: LocalCluster,
                                                                              batch: RunResult, clip_dir: Path,
                                                                              tmp_path: Path) -> None:
    from stages import presets

    out = tmp_path / "ray"
    result = run(presets.default(thumb_every=1.0, thumb_width=160), clip_dir, out, executor="ray", cache=False)

    local = {r.file.relpath: r for r in batch.files}
    assert [(r.status, r.record, sorted(r.outputs)) for r in result.files] == \
        [(local[r.file.relpath].status, local[r.file.relpath].record, sorted(local[r.file.relpath].outputs))
         for r in result.files]
    assert all(r.node.startswith(f"{this_host()}/") for r in result.succeeded)
    mine, theirs = output_files(out), output_files(batch.out_dir)
    assert set(mine) == set(theirs)
    for rel, path in mine.items():
        if rel.startswith("proxies/"):  # the same pictures at the same times
            assert frame_hashes(path) == frame_hashes(theirs[rel]), rel
        else:  # thumbnails, sprite sheets, their WebVTT: byte for byte
            assert path.read_bytes() == theirs[rel].read_bytes(), rel


def test_map_stages_frames_travel_to_other_nodes_through_the_object_store(cluster: LocalCluster,
                                                                          tmp_path: Path) -> None:
    clips = [write_frames(tmp_path / "in" / f"c{i}.npy", 40, seed=i) for i in range(2)]
    local = run(array_pipeline(keep_every=4), clips, tmp_path / "local", executor="inline", cache=False)
    result = run(array_pipeline(keep_every=4), clips, tmp_path / "ray", executor="ray", cache=False,
                 trace=tmp_path / "t.json")

    assert [r.status for r in result.files] == ["ok", "ok"]
    saved = output_files(tmp_path / "local")
    assert len(saved) == 20 and set(output_files(tmp_path / "ray")) == set(saved)
    for rel, path in saved.items():  # each frame inverted on some node and taken back in order
        assert (tmp_path / "ray" / rel).read_bytes() == path.read_bytes(), rel
    trace = json.loads((tmp_path / "t.json").read_text())
    names = track_names(trace)
    where = {r.file.relpath: r.node.rpartition("/")[2] for r in result.files}  # each file's actor's node
    maps = [(e["args"]["files"], _node_of(e, names), e["args"]["frames"]) for e in spans(trace)
            if e["name"].startswith("map invert x")]  # a span per worker, stage and 100 ms window
    assert sum(frames for *_, frames in maps) == sum(s.frames for s in local.stages if s.name == "read_frames") == 80
    assert any(node != where[file] for files, node, _ in maps for file in files), "no frame left its file's node"
    assert {node for _, node, _ in maps} <= set(_nodes(cluster))


def test_the_parts_of_a_long_file_are_encoded_on_several_nodes_and_join_to_one_workers_encode(
        cluster: LocalCluster, tmp_path: Path) -> None:
    from stages import Decode, Encode

    src = tmp_path / "in"
    src.mkdir()
    make_gop_clip(src, GopSpec("long.mp4", 4.0, x264="keyint=25:min-keyint=25:bframes=3:scenecut=0"))
    p = Pipeline("encode")
    p.add(Encode(preset="veryfast"), after=p.add(Decode(split_s=1.0)))
    ours = run(p, src, tmp_path / "ray", executor="ray", cache=False, trace=tmp_path / "t.json")
    whole = run(p, src, tmp_path / "whole", workers=1, cache=False)  # one worker never cuts a file

    (r,), (w,) = ours.files, whole.files
    assert r.ok, r.error
    assert r.record["decode_plan"].startswith("parts (") and w.record["decode_plan"] == "straight"
    assert _pictures(tmp_path / "ray" / r.outputs[0]) == _pictures(tmp_path / "whole" / w.outputs[0])
    trace = json.loads((tmp_path / "t.json").read_text())
    names = track_names(trace)
    parts = [_node_of(e, names) for e in spans(trace) if e["name"].startswith("part ")]
    assert len(parts) == int(r.record["decode_plan"].removeprefix("parts (").rstrip(")"))
    assert len(set(parts)) > 1, f"every part ran on node {parts[0]}"
    assert not [q for q in (tmp_path / "ray").rglob(".*")]  # no scratch part is left


def test_with_out_on_object_storage_parts_on_other_nodes_send_their_pieces_to_the_files_node(
        cluster: LocalCluster, s3: MotoServer, tmp_path: Path) -> None:
    from stages import Decode, Encode

    src = tmp_path / "in"
    src.mkdir()
    make_gop_clip(src, GopSpec("long.mp4", 4.0, x264="keyint=25:min-keyint=25:bframes=3:scenecut=0"))
    s3.put_folder("parts", "in", src)
    p = Pipeline("encode")
    p.add(Encode(preset="veryfast"), after=p.add(Decode(split_s=1.0)))
    ours = run(p, "s3://parts/in", "s3://parts/out", executor="ray", cache=False, trace=tmp_path / "t.json")
    whole = run(p, src, tmp_path / "whole", workers=1, cache=False)

    (r,), (w,) = ours.files, whole.files
    assert r.ok, r.error
    assert r.record["decode_plan"].startswith("parts (")
    joined = tmp_path / "joined.mp4"
    joined.write_bytes(s3.get("parts", f"out/{r.outputs[0]}"))
    assert _pictures(joined) == _pictures(tmp_path / "whole" / w.outputs[0])  # every picture, at its time
    trace = json.loads((tmp_path / "t.json").read_text())
    names = track_names(trace)
    home = r.node.rpartition("/")[2]  # the node of the file's actor, which joins
    parts = [(_node_of(e, names), e["args"].get("carried_bytes", 0)) for e in spans(trace)
             if e["name"].startswith("part ")]
    # The nodes here share one disk: a part elsewhere removed its pieces once it had read them back, so the join
    # read the copies its bytes made on the file's node, as on nodes that share no folder.
    assert any(node != home for node, _ in parts), f"every part ran on the file's node {home}"
    assert all((carried > 0) == (node != home) for node, carried in parts), (home, parts)
    assert not [k for k in s3.keys("parts", "out/") if "/." in k]  # nothing staged or half-put left in OUT


def _pictures(path: Path) -> list[tuple[int, float]]:
    """Each picture of a video as its marker (the source frame it shows) and its time."""
    from stages import read_frame_marker

    with av.open(str(path)) as c:
        return [(read_frame_marker(f.to_ndarray(format="gray")), round(float(f.time), 4)) for f in c.decode(video=0)]


# Nodes lost and added --------------------------------------------------------------------------------------


def test_a_node_lost_mid_batch_costs_its_file_one_more_attempt_on_another_node_and_nothing_else(
        cluster: LocalCluster, holds: Holds, tmp_path: Path) -> None:
    texts = {f"f{i}.txt": f"one\nhold {holds.path}\nthree" for i in range(4)}
    out = tmp_path / "out"
    running = _Running(pipeline=text_pipeline(), inputs=_texts(tmp_path / "in", texts), out=out, executor="ray",
                       cache=False)
    victim = cluster.workers[0]
    held = [holds.take() for _ in range(3)]  # a file running on each node, the victim's among them
    assert victim.node_id in {node for _, node in held}
    cluster.remove_node(victim)  # its raylet, actor and the file's worker die at once
    for conn, node in held:
        if node != victim.node_id:
            holds.go(conn)
    for _ in range(2):  # the fourth file, and the lost one again: on the nodes left
        conn, node = holds.take()
        assert node != victim.node_id
        holds.go(conn)
    result = running.result

    assert [r.status for r in result.files] == ["ok"] * 4, [r.error for r in result.files]
    lost = [r for r in result.files if r.attempts == 2]
    assert len(lost) == 1 and [r.attempts for r in result.files].count(1) == 3
    assert short_id(victim) not in {r.node.rpartition("/")[2] for r in result.files}
    for name, text in texts.items():
        assert (out / "lines" / name).read_text() == _lines_out(text)
    assert sorted(output_files(out)) == sorted(f"lines/{name}" for name in texts)
    assert not [p for p in out.rglob(".*") if p.name != ".framepipe.lock"]  # no staged or scratch file left
    ledger = [json.loads(line) for line in (out / "ledger.jsonl").read_text().splitlines()]
    assert sorted(e["file"] for e in ledger) == sorted(texts)  # one line per file
    assert {e["file"]: e["attempts"] for e in ledger} == {r.file.relpath: r.attempts for r in result.files}


def test_a_node_that_joins_mid_batch_takes_files(cluster: LocalCluster, holds: Holds, tmp_path: Path) -> None:
    texts = {f"f{i}.txt": f"one\nhold {holds.path}" for i in range(4)}
    running = _Running(pipeline=text_pipeline(), inputs=_texts(tmp_path / "in", texts), out=tmp_path / "out",
                       executor="ray", cache=False)
    held = [holds.take() for _ in range(3)]  # every CPU of the cluster busy, the fourth file waiting
    joined = cluster.add_node()
    conn, node = holds.take()  # the fourth file: on the only free CPU, the new node's
    assert node == joined.node_id
    for c, _ in [*held, (conn, node)]:
        holds.go(c)
    result = running.result

    assert [r.status for r in result.files] == ["ok"] * 4
    assert [r.node.rpartition("/")[2] for r in result.files].count(short_id(joined)) == 1


# The driver interrupted --------------------------------------------------------------------------------------


def test_a_driver_interrupted_on_the_cluster_resumes_where_it_stopped(cluster: LocalCluster, holds: Holds,
                                                                      tmp_path: Path) -> None:
    texts = {"a_quick.txt": "one\ntwo", **{f"held{i}.txt": f"one\nhold {holds.path}" for i in range(3)}}
    inputs, out = _texts(tmp_path / "in", texts), tmp_path / "out"
    (tmp_path / "lines_pipeline.py").write_text("from support.ray_stages import text_pipeline\n\n"
                                                "pipeline = text_pipeline()\n")
    command = [*FRAMEPIPE, "run", str(inputs), "-o", str(out), "-P", str(tmp_path / "lines_pipeline.py"),
               "--no-cache", "-q", "--executor", "ray", "--address", cluster.address]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for _ in range(3):  # the other files hold on the three actors (never let go)
            holds.take()
        assert proc.stderr is not None
        for line in proc.stderr:  # a_quick.txt has finished: its ledger line is written before this line
            if line.startswith("ok "):
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert [line for line in err.splitlines() if "interrupted" in line] == \
        ["framepipe: interrupted by SIGINT; finished outputs are kept, partial ones removed"]
    assert "Traceback" not in err, err
    assert [json.loads(line)["file"] for line in (out / "ledger.jsonl").read_text().splitlines()] == ["a_quick.txt"]
    assert sorted(output_files(out)) == ["lines/a_quick.txt"]

    go = threading.Thread(target=lambda: [holds.go(holds.take()[0]) for _ in range(3)])
    go.start()
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    go.join(timeout=300)
    assert again.returncode == 0, again.stderr
    assert "4 of 4 files done (1 skipped, done by an earlier run), 0 failed" in again.stdout
    for name, text in texts.items():
        assert (out / "lines" / name).read_text() == _lines_out(text)
    ledger = [json.loads(line)["file"] for line in (out / "ledger.jsonl").read_text().splitlines()]
    assert sorted(ledger) == sorted(texts)


# The cluster itself --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_clusters_processes_die_with_a_test_process_killed_with_sigkill() -> None:
    import psutil

    code = ("import sys\nfrom support.ray_cluster import LocalCluster\nLocalCluster(workers=1)\n"
            "print('up', flush=True)\nsys.stdin.read()\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))}
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=env)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "up\n"  # its head and node are up
        family = psutil.Process(proc.pid).children(recursive=True)
        assert len([p for p in family if "raylet" in " ".join(p.cmdline())]) == 2
        proc.kill()
        proc.wait()
    finally:
        proc.kill()
    _, alive = psutil.wait_procs(family, timeout=60)  # waits on their exits (the watchdog's work), not a clock
    assert not alive, [p.cmdline()[:2] for p in alive]
