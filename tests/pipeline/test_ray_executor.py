"""The Ray executor on a real local Ray (2 CPUs): the same outputs as the local executor, bad files failing
alone, killed workers retried, frames through the object store in order.

One Ray instance serves the whole module and is stopped at its end, leaving no Ray process behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import psutil
import pytest

ray = pytest.importorskip("ray")

from pipeline import RunResult, run  # noqa: E402
from pipeline.executors.ray_cluster import start_local_ray  # noqa: E402
from stages import presets  # noqa: E402

from support.clips import BROKEN, CLIPS  # noqa: E402
from support.video import video_pipeline  # noqa: E402
from support.ray_stages import text_pipeline, where_pixels_are  # noqa: E402
from support.cli import PLANTED  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    """A local Ray of 2 CPUs for the module, stopped at its end with every process it started."""
    start_local_ray(num_cpus=2)
    yield
    ours = [p for p in psutil.Process().children(recursive=True) if _is_ray(p)]
    assert ours, "no Ray process found to check"
    ray.shutdown()
    _, alive = psutil.wait_procs(ours, timeout=30)  # waits on the processes' exit, not on a clock
    assert not alive, f"Ray processes left running: {[p.cmdline()[:2] for p in alive]}"


def _is_ray(process: psutil.Process) -> bool:
    """A daemon or worker of Ray's (not a loky worker of the local executor's tests)."""
    try:
        argv = process.cmdline()[:3]
    except psutil.Error:
        return False
    home = os.path.dirname(ray.__file__)
    return bool(argv) and (argv[0].startswith("ray::") or any(a.startswith(home) for a in argv))


def _frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_the_default_preset_gives_the_local_executors_outputs(batch: RunResult, clip_dir: Path,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "ray"
    result = run(presets.default(thumb_every=1.0, thumb_width=160), clip_dir, out, executor="ray", cache=False)

    assert result.executor == "ray"
    local = {r.file.relpath: r for r in batch.files}
    for r in result.files:
        assert r.status == local[r.file.relpath].status
        assert r.record == local[r.file.relpath].record, r.file.relpath  # metadata, levels, counts
        assert sorted(r.outputs) == sorted(local[r.file.relpath].outputs)
    broken = next(r for r in result.files if r.file.relpath == BROKEN)  # fails alone, as on the local executor
    assert broken.error == local[BROKEN].error and broken.failed_stage == "metadata"
    assert len(result.succeeded) == len(CLIPS)
    for r in result.succeeded:
        for rel in r.outputs:
            if rel.startswith(("thumbnails/", "sprites/")):
                assert (out / rel).read_bytes() == (batch.out_dir / rel).read_bytes(), rel
            elif rel.startswith("proxies/"):
                assert _frames(out / rel) == _frames(batch.out_dir / rel), rel
    ours = {s.name: s for s in result.stages}  # per-stage statistics in the local executor's schema
    for s in batch.stages:
        assert (ours[s.name].where, ours[s.name].files, ours[s.name].frames) == (s.where, s.files, s.frames)
    assert ours["proxy"].busy_s > 0


def test_map_stage_frames_cross_the_object_store_in_frame_order(clip_dir: Path, tmp_path: Path) -> None:
    clips = [clip_dir / "landscape_audio.mp4", clip_dir / "portrait_rot90.mp4"]
    local = run(video_pipeline(), clips, tmp_path / "local", executor="inline", cache=False)
    probed = video_pipeline()
    probed.add(where_pixels_are, after="decode")  # a second map stage on the same frames (one object for both)
    result = run(probed, clips, tmp_path / "ray", executor="ray", cache=False)

    assert [r.status for r in result.files] == ["ok", "ok"]
    for r in result.files:  # a map task reads its frame in place, in the object store's shared memory
        assert (r.record["pixels_read_only"], r.record["pixels_own_memory"]) == (True, False)
    pngs = sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*.png"))
    assert len(pngs) == 10
    for rel in pngs:  # inverted by a Ray task, taken back in order: each thumbnail shows the frame it should
        assert (tmp_path / "ray" / rel).read_bytes() == (tmp_path / "local" / rel).read_bytes(), rel
    invert = next(s for s in result.stages if s.name == "invert")
    assert invert.where == "map:default"
    assert invert.frames == next(s for s in local.stages if s.name == "decode").frames
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

    def __enter__(self) -> "_RunWithAStageOnTheLine":
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


def test_framepipe_run_on_ray_imports_no_python_file_of_the_input_folder_run_from_inside_it(
        clip_dir: Path, tmp_path: Path) -> None:
    inp, markers = tmp_path / "footage", tmp_path / "markers"
    inp.mkdir()
    markers.mkdir()
    shutil.copy(clip_dir / "web_vp9.webm", inp)
    for module in PLANTED:  # Ray puts the driver's folder first on its workers' import path: not ours
        (inp / f"{module}.py").write_text(f"open({str(markers / module)!r}, 'w').close()\n")
    command = Path(sys.executable).parent / "framepipe"
    proc = subprocess.run([str(command), "run", ".", "-o", str(tmp_path / "out"), "-p", "metadata", "--no-cache",
                           "-q", "--executor", "ray", "-j", "1"], cwd=inp, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "1 of 1 files done" in proc.stdout
    assert sorted(p.name for p in markers.iterdir()) == []
