"""Interrupt and resume, as a user meets them: a real ``framepipe run`` stopped by a signal, then run again; and
a second run into the same folder while the first is going, refused."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
from support.cli import FRAMEPIPE, framepipe, framepipe_interrupted
from support.clips import assert_same_outputs
from support.runs import output_files

from pipeline.bookkeeping.ledger import LEDGER_NAME
from pipeline.run import LOCK_NAME
from stages import ClipSpec, make_clip

N_CLIPS = 8
FRAMES = 60


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("resume-in")
    for i in range(N_CLIPS):
        make_clip(root / f"clip{i}.mp4", ClipSpec("c", 320, 180, FRAMES / 30, audio=True), seed=i)
    return root


def command(clips: Path, out: Path) -> list[str]:
    return ["run", str(clips), "-o", str(out), "-q", "-j", "2", "--no-cache"]


@pytest.fixture(scope="module")
def uninterrupted(clips: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("resume-whole")
    proc = framepipe(*command(clips, out))
    assert proc.returncode == 0, proc.stderr
    return out


def ledger_done(out: Path) -> dict[str, list[str]]:
    """Finished files in the ledger and their outputs."""
    entries = [json.loads(line) for line in (out / LEDGER_NAME).read_text().splitlines()]
    return {e["file"]: list(e["outputs"]) for e in entries if e["status"] == "ok"}


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_resumes_doing_only_what_is_missing(clips: Path, uninterrupted: Path, tmp_path: Path,
                                                               signum: int) -> None:
    out = tmp_path / "out"
    pid, returncode, err = framepipe_interrupted(command(clips, out), signum, when="ok ")  # a file has finished
    assert returncode == 128 + signum, err
    assert not list(Path("/dev/shm").glob(f"framepipe_{pid}_*"))
    assert [p for p in out.rglob("*") if p.name.startswith(".")] == []  # no part file under any name
    done = ledger_done(out)
    assert 1 <= len(done) < N_CLIPS, err
    # Files in flight left nothing under a final name: every output in OUT is one a ledger line names.
    assert set(output_files(out)) == {rel for outs in done.values() for rel in outs}
    stamps = {rel: ((out / rel).stat().st_ino, (out / rel).stat().st_mtime_ns) for outs in done.values()
              for rel in outs}

    again = framepipe(*command(clips, out))
    assert again.returncode == 0, again.stderr
    assert f"{N_CLIPS} of {N_CLIPS} files done ({len(done)} skipped, done by an earlier run), 0 failed" in again.stdout
    for rel in done:
        assert f"ok     {rel}  (done by an earlier run" in again.stderr
    assert {rel: ((out / rel).stat().st_ino, (out / rel).stat().st_mtime_ns) for rel in stamps} == stamps

    assert_same_outputs(out, uninterrupted, FRAMES)
    rows = pq.read_table(out / "report.parquet").to_pylist()
    expected = pq.read_table(uninterrupted / "report.parquet").to_pylist()
    how = ("wall_s", "resumed", "replayed")  # how long each took and whether this run or the first did it
    assert [{k: v for k, v in r.items() if k not in how} for r in rows] == \
        [{k: v for k, v in r.items() if k not in how} for r in expected]  # every file reported, as if never stopped
    assert {r["relpath"] for r in rows if r["resumed"]} == set(done)  # those the first run finished


# Two runs into one folder ----------------------------------------------------------------------------------


def started(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``framepipe *args`` started, returned once it has started a file (a line of its stderr starts with
    ``start``): an event, not a time. By then it holds its output folder."""
    proc = subprocess.Popen([*FRAMEPIPE, *args], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("start"):
            return proc
    proc.wait()
    raise AssertionError(f"framepipe {args} started no file (exit status {proc.returncode})")


def test_a_second_run_into_the_same_folder_is_refused_at_once_and_the_first_completes(
        clips: Path, uninterrupted: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = started(command(clips, out))
    try:
        os.kill(first.pid, signal.SIGSTOP)  # frozen holding the folder: it cannot end, and let go, meanwhile
        try:
            held = (out / LOCK_NAME).read_text()
            second = framepipe(*command(clips, out))
        finally:
            os.kill(first.pid, signal.SIGCONT)
        stdout, stderr = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()

    assert held == f"{first.pid}\n"
    assert second.returncode == 2, second.stderr
    assert second.stderr.splitlines()[-1] == f"framepipe: {out} is in use by another framepipe run (pid {first.pid})"
    assert "start" not in second.stderr and second.stdout == ""
    assert first.returncode == 0, stderr
    assert f"{N_CLIPS} of {N_CLIPS} files done, 0 failed" in stdout
    assert set(output_files(out)) == set(output_files(uninterrupted))
    files = [json.loads(line)["file"] for line in (out / LEDGER_NAME).read_text().splitlines()]
    assert sorted(files) == [f"clip{i}.mp4" for i in range(N_CLIPS)]  # every line kept, none twice
    rows = pq.read_table(out / "report.parquet").to_pylist()
    assert not any(LOCK_NAME in rel for r in rows for rel in r["outputs"])
    assert [p for p in out.rglob("*") if p.name.startswith(".")] == []  # the lock file goes with the run


def kill_tree(pid: int) -> None:
    """SIGKILL process ``pid`` and every process it started, each frozen first so that none starts another.

    The workers too: a worker of a main process killed alone lingers (it holds its forkserver's alive pipe
    and waits for tasks that never come) and keeps the test's pipes open."""
    frozen = [psutil.Process(pid)]
    for proc in frozen:  # grows as it goes: the children of each frozen process, frozen in turn
        proc.suspend()
        frozen += proc.children()
    for proc in frozen:
        proc.kill()


@pytest.fixture
def scratch_tmpdir() -> Iterator[str]:
    """A TMPDIR for a framepipe that is to be SIGKILLed: it cannot remove its multiprocessing folder (pymp-*, with
    the forkserver's socket), which stayed in /tmp after every run of the suite. Short, as a socket's path must
    be; removed after the test."""
    folder = tempfile.mkdtemp(prefix="fp-")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_the_lock_of_a_run_killed_with_sigkill_does_not_block_the_next(clips: Path, tmp_path: Path,
                                                                        scratch_tmpdir: str) -> None:
    out = tmp_path / "out"
    first = started(command(clips, out), env={**os.environ, "TMPDIR": scratch_tmpdir})
    kill_tree(first.pid)  # nothing of it runs again; its lock file stays
    first.communicate(timeout=60)  # its pipes close when the last of its processes is gone
    assert first.returncode == -signal.SIGKILL
    assert (out / LOCK_NAME).read_text() == f"{first.pid}\n"

    again = framepipe(*command(clips, out))
    assert again.returncode == 0, again.stderr
    assert f"{N_CLIPS} of {N_CLIPS} files done" in again.stdout
    assert not (out / LOCK_NAME).exists()
