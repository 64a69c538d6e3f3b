"""Reliability of runs over video: a map stage hung in native code past --timeout, workers killed in the middle
of a clip, a full disk and injected write faults under the default preset (the engine's own cases, on text
files, are in tests/pipeline/test_reliability.py)."""

from __future__ import annotations

import os
import shutil
import signal
import threading
from pathlib import Path

import av
import psutil
import pyarrow.parquet as pq
import pytest
from PIL import Image
from support.cli import framepipe
from support.disks import assert_cache_reads_back, framepipe_with, hidden_files, remount, tmpfs
from support.runtime_tasks import wait_for

from pipeline import FRAME, Pipeline, Stage, run
from pipeline.cache import DiskCache
from pipeline.outputs import WRITE_FAULT_ENV
from stages import presets

PIPELINE_WITH_A_HANGING_MAP_STAGE = '''
import ctypes
from pipeline import FRAME, Pipeline, Stage
from stages import Decode, Thumbnails


class HangOnFrame(Stage):
    """A map stage (frame-parallel) that hangs in native code holding the GIL on frame 3 of files named stuck*."""

    accepts = (FRAME,)
    emits = (FRAME,)
    stateful = False

    def process(self, item, ctx):
        if ctx.file.name.startswith("stuck") and item.index == 3:
            ctypes.PyDLL(None).sleep(3600)
        yield item


def build():
    p = Pipeline("hang-in-map", extensions=[".mp4"])
    frames = p.add(HangOnFrame(), after=p.add(Decode(audio=False)))
    p.add(Thumbnails(every=0.5, width=64), after=frames)
    return p
'''


@pytest.mark.slow
@pytest.mark.timing(reason="fine.mp4 must finish within the 8 s timeout (--timeout 8) that ends stuck.mp4")
def test_framepipe_run_timeout_kills_a_map_task_hung_in_native_code_and_fails_only_its_file(
        clip_dir: Path, tmp_path: Path) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(clip_dir / "landscape_audio.mp4", inp / "fine.mp4")
    shutil.copy(clip_dir / "landscape_audio.mp4", inp / "stuck.mp4")
    (tmp_path / "hang.py").write_text(PIPELINE_WITH_A_HANGING_MAP_STAGE)
    out = tmp_path / "out"
    proc = framepipe("run", inp, "-o", out, "-P", tmp_path / "hang.py", "--timeout", "8", "--no-cache", "-q", "-j", "2")

    assert proc.returncode == 1, proc.stderr
    failed = {line for line in proc.stderr.splitlines() if line.startswith("FAILED")}  # as it ends, and at the end
    assert len(failed) == 1, proc.stderr
    line = failed.pop()
    assert line.startswith("FAILED stuck.mp4: ") and "timed out" in line and "8 s" in line, line
    assert (out / "thumbnails" / "fine" / "poster.jpg").is_file()
    assert hidden_files(out) == []


class HoldOnce(Stage):
    """Passes frames on; on the first attempt at file ``hold``, posts its pid at frame 5 and waits to be killed.

    ``marker`` is the event the test waits on; a later attempt finds it and goes straight on.
    """

    accepts = (FRAME,)
    emits = (FRAME,)

    def __init__(self, hold: str | None, marker: str, *, stateful: bool) -> None:
        super().__init__(f"hold_{'actor' if stateful else 'map'}", stateful=stateful)
        self.hold, self.marker = hold, marker

    def process(self, item, ctx):  # noqa: ANN001, ANN201
        if ctx.file.name == self.hold and item.index == 5 and not os.path.exists(self.marker):
            Path(self.marker + ".tmp").write_text(str(os.getpid()))
            os.replace(self.marker + ".tmp", self.marker)
            wait_for(self.marker + ".never", limit_s=600)  # only the test's SIGKILL ends this
        yield item


def kill_when_held(marker: Path, killed: list[int]) -> threading.Thread:
    """In a thread: wait for ``marker`` and SIGKILL the worker whose pid it holds, if it is one of ours."""
    def kill() -> None:
        wait_for(str(marker), limit_s=300)
        pid = int(marker.read_text())
        if pid in {p.pid for p in psutil.Process().children(recursive=True)}:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


def default_with_hold(hold: str | None, marker: Path, stateful: bool) -> Pipeline:
    p = presets.default(thumb_every=0.5, thumb_width=160, sprite_every=0.5)
    p.add(HoldOnce(hold, str(marker), stateful=stateful), after="decode")
    return p


def frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def outputs_by_name(out: Path) -> dict[str, Path]:
    return {p.relative_to(out).as_posix(): p for p in out.rglob("*")  # the reports hold timings: compared by row below
            if p.is_file() and p.parent != out and p.relative_to(out).parts[0] != "index_files"}


@pytest.mark.parametrize("where", ["actor", "map"])
def test_a_worker_killed_mid_file_has_its_work_redone_and_the_outputs_equal_an_uninterrupted_run(
        clip_dir: Path, tmp_path: Path, where: str) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    for name in ("landscape_audio.mp4", "web_vp9.webm"):
        shutil.copy(clip_dir / name, inp / name)
    stateful = where == "actor"
    marker = tmp_path / "held"
    clean = run(default_with_hold(None, marker, stateful), inp, tmp_path / "clean", workers=2, cache=False)
    pids: list[int] = []
    killer = kill_when_held(marker, pids)
    killed = run(default_with_hold("landscape_audio.mp4", marker, stateful), inp, tmp_path / "killed",
                 workers=2, cache=False)
    killer.join()

    assert len(pids) == 1  # a worker of this run was killed in the middle of the file
    assert all(r.ok for r in clean.files) and all(r.ok for r in killed.files), [r.error for r in killed.files]
    if stateful:  # the file started over on a new actor
        assert [r.attempts for r in killed.files] == [2, 1]
    assert [r.record for r in killed.files] == [r.record for r in clean.files]
    a, b = outputs_by_name(tmp_path / "clean"), outputs_by_name(tmp_path / "killed")
    assert sorted(a) == sorted(b) and any(name.startswith("proxies/") for name in a)
    for name in a:
        if name.endswith(".mp4"):
            assert frame_count(a[name]) == frame_count(b[name]) > 0, name
        else:
            assert a[name].read_bytes() == b[name].read_bytes(), name
    assert hidden_files(tmp_path / "killed") == []


def fill(folder: Path, leave: int) -> None:
    """Take all the free space of ``folder``'s file system but ``leave`` bytes."""
    st = os.statvfs(folder)
    (folder / "filler").write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))


def failed_lines(stderr: str) -> dict[str, str]:
    """FAILED lines by file name (a -q run prints each as the file ends and again at the end)."""
    return {line.split(":", 1)[0].removeprefix("FAILED "): line for line in stderr.splitlines()
            if line.startswith("FAILED ")}


def assert_complete(path: Path) -> None:
    """``path`` is a whole file of its kind: a picture that decodes, a video whose frames decode, a report."""
    if path.suffix in (".jpg", ".png", ".webp"):
        with Image.open(path) as image:
            image.load()
    elif path.suffix in (".mp4", ".webm", ".mov"):
        assert frame_count(path) > 0, path
    elif path.suffix == ".vtt":
        assert path.read_text().startswith("WEBVTT\n"), path
    elif path.suffix == ".parquet":
        pq.read_table(path)


def assert_no_torn_or_hidden_files(out: Path) -> None:
    assert hidden_files(out) == []
    for path in out.rglob("*"):
        if path.is_file() and path.name != "filler":
            assert_complete(path)


def same_outputs(a: Path, b: Path) -> None:
    """Every output of a clean run in ``a`` is in ``b`` and the same: bytes, or decoded frames for video."""
    first, second = outputs_by_name(a), outputs_by_name(b)
    assert sorted(first) == sorted(second), (sorted(set(first) ^ set(second)), (b / "ledger.jsonl").read_text())
    for name, path in first.items():
        if path.suffix == ".mp4":
            assert frame_count(path) == frame_count(second[name]), name
        else:
            assert path.read_bytes() == second[name].read_bytes(), name


@pytest.mark.slow
def test_a_full_disk_fails_each_file_it_stops_with_one_clear_line_and_leaves_no_torn_file_or_cache(
        clip_dir: Path, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "size=2m") as disk:
        out, cache = disk / "out", disk / "cache"
        with DiskCache(cache, name="stages") as warm:  # the cache exists before the disk fills
            warm.set("earlier/entry", {"kept": True})
        fill(disk, leave=400 << 10)
        proc = framepipe("run", clip_dir, "-o", out, "--cache-dir", cache, "-q", "-O", "thumb_every=1")

        assert proc.returncode in (1, 2), proc.stderr  # 2: not even the report fitted (said in one line)
        failed = failed_lines(proc.stderr)
        assert failed.pop("broken.mp4").endswith("not a readable media file (moov atom not found)")
        assert failed, proc.stderr  # the disk filled up
        for _name, line in failed.items():
            assert "No space left on device" in line and f"{out}/" in line, line
            assert "fp-part" not in line and "\n" not in line
        if proc.returncode == 2:
            assert f"framepipe: cannot write {out}/" in proc.stderr and "No space left on device" in proc.stderr
        assert_no_torn_or_hidden_files(out)
        assert_cache_reads_back(cache)

        (disk / "filler").unlink()
        remount(disk, "size=64m")  # room again: the same command finishes what failed, as a clean run would
        again = framepipe("run", clip_dir, "-o", out, "--cache-dir", cache, "-q", "-O", "thumb_every=1")
        assert again.returncode == 1 and list(failed_lines(again.stderr)) == ["broken.mp4"], again.stderr
        clean = framepipe("run", clip_dir, "-o", tmp_path / "clean", "--no-cache", "-q", "-O", "thumb_every=1")
        assert clean.returncode == 1
        same_outputs(tmp_path / "clean", out)
        assert_cache_reads_back(cache)


@pytest.mark.slow
def test_an_injected_write_fault_fails_its_file_alone_and_a_rerun_completes_it(clip_dir: Path,
                                                                                 tmp_path: Path) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    fault = {WRITE_FAULT_ENV: "ENOSPC:*/thumbnails/landscape_audio/t0001.000.jpg"}
    proc = framepipe_with(fault, "run", clip_dir, "-o", out, "--cache-dir", cache, "-q", "-O", "thumb_every=1")

    assert proc.returncode == 1, proc.stderr
    failed = failed_lines(proc.stderr)
    assert sorted(failed) == ["broken.mp4", "landscape_audio.mp4"]
    assert failed["landscape_audio.mp4"] == (f"FAILED landscape_audio.mp4: [thumbnails] cannot write "
                                             f"{out}/thumbnails/landscape_audio/t0001.000.jpg: No space left on device")
    assert not (out / "thumbnails" / "landscape_audio" / "t0001.000.jpg").exists()
    assert_no_torn_or_hidden_files(out)
    assert_cache_reads_back(cache)

    again = framepipe("run", clip_dir, "-o", out, "--cache-dir", cache, "-q", "-O", "thumb_every=1")
    assert again.returncode == 1 and list(failed_lines(again.stderr)) == ["broken.mp4"], again.stderr
    clean = framepipe("run", clip_dir, "-o", tmp_path / "clean", "--no-cache", "-q", "-O", "thumb_every=1")
    assert clean.returncode == 1, clean.stderr
    same_outputs(tmp_path / "clean", out)
