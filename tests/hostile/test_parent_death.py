"""A run's processes never outlive it: a ``framepipe run`` killed with SIGKILL in the middle of a batch leaves no
process of its session (forkserver, resource trackers, workers, a local Ray's daemons and actors) 5 s later, and
running it again completes only what is missing, with the outputs of an uninterrupted run. A run that ends
normally has left nothing behind by the time the command returns.

Each run starts in a session of its own (``start_new_session``): its session id is its pid, and every process it
starts, and every process they start, is in that session unless it leaves it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from support.cli import FRAMEPIPE, framepipe
from support.clips import assert_same_outputs

from pipeline.bookkeeping.ledger import LEDGER_NAME
from pipeline.runtime.forkserver import ENV_VAR
from pipeline.runtime.lifecycle import ROOT_ENV
from stages import ClipSpec, make_clip

N_CLIPS = 6
FRAMES = 60
DEADLINE_S = 5.0  # the bound: every process of a killed run is gone within 5 s
START_METHODS = ["forkserver", "loky", "spawn"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("death-in")
    for i in range(N_CLIPS):
        make_clip(root / f"clip{i}.mp4", ClipSpec("c", 320, 180, FRAMES / 30, audio=True), seed=i)
    return root


def command(clips: Path, out: Path, *extra: str) -> list[str]:
    return ["run", str(clips), "-o", str(out), "-q", "-j", "2", "--no-cache", *extra]


@pytest.fixture(scope="module")
def uninterrupted(clips: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("death-whole")
    proc = framepipe(*command(clips, out))
    assert proc.returncode == 0, proc.stderr
    return out


def left_of(root: int) -> list[psutil.Process]:
    """The live processes (zombies have ended) of the session ``root`` leads, or tagged as started for it."""
    mark = f"{ROOT_ENV}={root}-".encode()
    found = []
    for p in psutil.process_iter(["status"]):
        if p.pid == root or p.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            ours = os.getsid(p.pid) == root
            if not ours:
                with open(f"/proc/{p.pid}/environ", "rb") as f:
                    ours = any(v.startswith(mark) for v in f.read().split(b"\0"))
        except OSError:  # gone, or not ours to read
            continue
        if ours:
            found.append(p)
    return found


def described(procs: list[psutil.Process]) -> list[str]:
    out = []
    for p in procs:
        try:
            out.append(f"{p.pid} {' '.join(p.cmdline())[:100]}")
        except psutil.Error:
            pass
    return out


def started(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """``framepipe *args`` in a session of its own, returned once a file has finished (a line of its stderr
    starts with ``ok``): the batch is under way, its workers up."""
    proc = subprocess.Popen([*FRAMEPIPE, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    assert proc.stderr is not None
    said = []
    for line in proc.stderr:
        said.append(line)
        if line.startswith("ok "):
            return proc
    proc.wait()
    raise AssertionError(f"framepipe {args} finished no file (exit status {proc.returncode}): {''.join(said)}")


def killed_leaves_nothing(proc: subprocess.Popen[str], tmp: Path | None = None) -> None:
    """SIGKILL ``proc`` alone (its workers are up) and check that every process of its run is gone within 5 s,
    and the temporary folder multiprocessing made in ``tmp`` (its TMPDIR: the forkserver's socket) with them."""
    helpers = left_of(proc.pid)
    assert len(helpers) >= 2, f"no workers to orphan: {described(helpers)}"  # the server or trackers, workers
    proc.kill()
    deadline = time.monotonic() + DEADLINE_S
    proc.wait()
    left = left_of(proc.pid)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = left_of(proc.pid)
    assert proc.stderr is not None
    proc.stderr.close()
    try:
        assert not left, f"left running {DEADLINE_S:g} s after the parent's SIGKILL: {described(left)}"
    finally:
        for p in left:
            p.kill()
    if tmp is None:
        return
    folders = list(tmp.glob("pymp-*"))
    while folders and time.monotonic() < deadline:
        time.sleep(0.05)
        folders = list(tmp.glob("pymp-*"))
    assert not folders


def ledger_done(out: Path) -> set[str]:
    lines = (out / LEDGER_NAME).read_text().splitlines() if (out / LEDGER_NAME).exists() else []
    return {e["file"] for e in map(json.loads, lines) if e["status"] == "ok"}


def resumed_equals_whole(clips: Path, out: Path, whole: Path, killed: int, *extra: str) -> None:
    """Run again into ``out``: only the files not done yet run, and the outputs are an uninterrupted run's."""
    done = ledger_done(out)
    assert 1 <= len(done) < N_CLIPS
    again = framepipe(*command(clips, out, *extra))
    assert again.returncode == 0, again.stderr
    assert f"{N_CLIPS} of {N_CLIPS} files done ({len(done)} skipped, done by an earlier run), 0 failed" in \
        again.stdout
    assert_same_outputs(out, whole, FRAMES)
    assert [p for p in out.rglob("*") if p.name.startswith(".")] == []  # no part file under any name
    shm = Path("/dev/shm")  # removed by the watchdog, else by the next run's sweep
    assert not [p.name for p in shm.glob(f"framepipe_{killed}_*")] + [p.name for p in shm.glob(f"sem.loky-{killed}-*")]


@pytest.mark.parametrize("method", START_METHODS)
def test_a_run_killed_with_sigkill_leaves_no_process_and_resumes(clips: Path, uninterrupted: Path, tmp_path: Path,
                                                                method: str) -> None:
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    tmp.mkdir()
    proc = started(command(clips, out), {**os.environ, ENV_VAR: method, "TMPDIR": str(tmp)})
    killed_leaves_nothing(proc, tmp)
    resumed_equals_whole(clips, out, uninterrupted, proc.pid)


@pytest.mark.slow
@pytest.mark.ray
def test_a_run_on_a_local_ray_killed_with_sigkill_leaves_no_process_and_resumes(
        clips: Path, uninterrupted: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    out = tmp_path / "out"
    proc = started(command(clips, out, "--executor", "ray"), dict(os.environ))  # Ray's sockets: a short TMPDIR
    killed_leaves_nothing(proc)  # the Ray instance started for the run: daemons, agents, actors
    resumed_equals_whole(clips, out, uninterrupted, proc.pid, "--executor", "ray")


@pytest.mark.slow
@pytest.mark.parametrize("method", START_METHODS)
def test_a_normal_exit_leaves_no_process_behind(clips: Path, tmp_path: Path, method: str) -> None:
    # Its output goes to files, not pipes: waiting for a pipe's end would wait for whoever still holds it.
    with open(tmp_path / "stderr", "w") as err:
        proc = subprocess.Popen([*FRAMEPIPE, *command(clips, tmp_path / "out")], stdout=subprocess.DEVNULL,
                                stderr=err, env={**os.environ, ENV_VAR: method}, start_new_session=True)
        returncode = proc.wait(timeout=600)
    left = left_of(proc.pid)  # at once: the command has returned
    for p in left:
        p.kill()
    assert returncode == 0, (tmp_path / "stderr").read_text()
    assert not left, f"still running when the command returned: {described(left)}"
    assert "leaked" not in (tmp_path / "stderr").read_text()  # the trackers found nothing left to clean up


@pytest.mark.parametrize("method", ["forkserver", "loky"])
def test_library_run_returns_after_its_workers_have_exited(clips: Path, tmp_path: Path, method: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """``run()`` in this process keeps the forkserver, the trackers and the watchdog for its next run (they go
    with the process), but no worker of its pools is left when it returns."""
    import multiprocessing.forkserver
    from multiprocessing import resource_tracker

    from loky.backend import resource_tracker as loky_tracker

    from pipeline import run
    from pipeline.runtime import lifecycle
    from stages import presets

    monkeypatch.setenv(ENV_VAR, method)
    result = run(presets.default(), clips, tmp_path / "out", workers=2, cache=False)
    kept = {multiprocessing.forkserver._forkserver._forkserver_pid, resource_tracker._resource_tracker._pid,
            loky_tracker._resource_tracker._pid, getattr(lifecycle._watchdog, "pid", None)}
    mark = f"{ROOT_ENV}={lifecycle.root_token()}".encode()
    left = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.pid in kept or p.status() == psutil.STATUS_ZOMBIE:
                continue
            with open(f"/proc/{p.pid}/environ", "rb") as f:
                if mark in f.read().split(b"\0"):
                    left.append(p)
        except (OSError, psutil.Error):
            continue
    assert len(result.succeeded) == N_CLIPS
    assert not left, f"workers still running when run() returned: {described(left)}"


def test_rays_processes_in_the_group_the_root_led_are_found_there_and_no_other_process_is() -> None:
    """A Ray agent started just before the root's death (after the watchdog's last look at its family), its
    parent gone with the root and its environment overwritten, is still found: by the root's process group."""
    from pipeline.runtime import lifecycle

    agent = subprocess.Popen(["bash", "-c", 'exec -a "ray::DashboardAgent" sleep 600'], start_new_session=True)
    other = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        titled = lambda: Path(f"/proc/{agent.pid}/cmdline").read_bytes().startswith(b"ray::")  # noqa: E731
        while not titled():  # bash has not exec'd yet: wait for it, not for a time
            os.sched_yield()
        assert lifecycle._group_members(agent.pid) == {agent.pid}
        assert lifecycle._group_members(other.pid) == set()  # a process of its own in a caller's group stays
        assert lifecycle._group_members(None) == set()  # a root that led no group: nothing found this way
    finally:
        for p in (agent, other):
            p.kill()
            p.wait()
