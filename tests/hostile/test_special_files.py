"""Only regular files are opened: a FIFO, a socket or a link to a device, met in a folder walk or given by name,
is listed as skipped with one line and never opened; the other files run and the batch completes.

A hang is what a regression looks like here (opening a FIFO waits for a writer), so every command runs with a
subprocess timeout, and in-process calls run in a thread that is released and failed if it blocks.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from support.cli import FRAMEPIPE

from pipeline import FileItem, fingerprint
from pipeline.dataplane.zerocopy import MappedFile, transfer
from pipeline.errors import UnreadableFile
from pipeline.run import collect_inputs
from pipeline.sources import SkippedInput, find_files
from stages import ClipSpec, make_clip

GOOD = ClipSpec("good.mp4", 160, 90, 1.0, fps=10)
SPECIALS = {"fifo.mp4": "FIFO", "sock.mp4": "socket", "zero.mp4": "character device",
            "random.mp4": "character device"}
HANG_S = 180  # far past what any of these runs takes; reaching it means something blocked


def make_special(folder: Path, name: str) -> None:
    """``name`` in ``folder`` as the special file ``SPECIALS`` says."""
    if name == "fifo.mp4":
        os.mkfifo(folder / name)
    elif name == "sock.mp4":
        with contextlib.chdir(folder), socket.socket(socket.AF_UNIX) as sock:  # a short name: sun_path is small
            sock.bind(name)  # the socket file stays when the socket closes
    else:
        os.symlink("/dev/zero" if name == "zero.mp4" else "/dev/urandom", folder / name)


@pytest.fixture
def media(tmp_path: Path) -> Path:
    """``tmp_path/media``: one good clip beside a FIFO, a unix socket and links to /dev/zero and /dev/urandom."""
    src = tmp_path / "media"
    make_clip(src / "good.mp4", GOOD)
    for name in SPECIALS:
        make_special(src, name)
    return src


def framepipe_in(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``framepipe *args`` run in ``cwd`` (so that paths, and the lines naming them, are short and relative)."""
    return subprocess.run([*FRAMEPIPE, *args], cwd=cwd, capture_output=True, text=True, timeout=HANG_S)


def skipped_line(rel: str) -> str:
    return f"framepipe: skipped {rel}: not a regular file ({SPECIALS[Path(rel).name]})"


def assert_good_done(out: Path) -> None:
    assert (out / "proxies" / "good.mp4").is_file()
    assert (out / "thumbnails" / "good" / "poster.jpg").is_file()
    rows = pq.read_table(out / "report.parquet").to_pylist()
    assert [(r["relpath"], r["status"]) for r in rows] == [("good.mp4", "ok")]


def test_a_folder_walk_lists_each_special_file_as_skipped_and_runs_the_rest(media: Path) -> None:
    proc = framepipe_in(media.parent, "run", "media", "-o", "out", "-q", "-j", "2")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[:5] == [skipped_line(f"media/{name}") for name in sorted(SPECIALS)] + \
        ["framepipe: default: 1 file(s) from media -> out"]
    assert "1 of 1 files done, 0 failed" in proc.stdout
    assert_good_done(media.parent / "out")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SPECIALS))
def test_a_special_file_given_by_name_is_skipped_the_same_way(media: Path, name: str) -> None:
    proc = framepipe_in(media.parent, "run", "media/good.mp4", f"media/{name}", "-o", "out", "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines()[:2] == [skipped_line(f"media/{name}"),
                                            "framepipe: default: 1 file(s) from 2 inputs -> out"]
    assert "1 of 1 files done, 0 failed" in proc.stdout
    assert_good_done(media.parent / "out")
    alone = framepipe_in(media.parent, "run", f"media/{name}", "-o", "out2", "-q")
    assert alone.returncode == 2, alone.stderr
    assert alone.stderr.splitlines() == [skipped_line(f"media/{name}"),
                                         f"framepipe: no input files found in media/{name}"]


def test_a_list_of_files_applies_the_same_rule(media: Path) -> None:
    (media.parent / "list.txt").write_text("media/fifo.mp4\nmedia/good.mp4\nmedia/zero.mp4\n")
    proc = framepipe_in(media.parent, "run", "--files-from", "list.txt", "-o", "out", "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines()[:2] == [skipped_line("media/fifo.mp4"), skipped_line("media/zero.mp4")]
    assert_good_done(media.parent / "out")


def test_collect_inputs_and_find_files_hand_back_what_they_skipped(media: Path) -> None:
    skipped: list[SkippedInput] = []
    items = collect_inputs(media, [".mp4"], skipped=skipped)
    assert [i.relpath for i in items] == ["good.mp4"]
    assert [str(s) for s in skipped] == [f"skipped {media / name}: not a regular file ({SPECIALS[name]})"
                                         for name in sorted(SPECIALS)]
    again: list[SkippedInput] = []
    assert find_files(media, [".mp4"], skipped=again) == [media / "good.mp4"]
    assert again == skipped


def released_if_blocked(fifo: Path, call: Callable[[], object]) -> BaseException | None:
    """Run ``call`` in a thread; if it is still blocked on ``fifo`` after a while, give the FIFO a writer (which
    releases it) and fail. Returns what ``call`` raised (None when it returned)."""
    raised: list[BaseException | None] = [None]

    def target() -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            raised[0] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(HANG_S)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # the blocked reader's open returns, then EOF
        thread.join(HANG_S)
        pytest.fail(f"{call} blocked on the FIFO {fifo}")
    return raised[0]


@pytest.mark.parametrize("name", sorted(SPECIALS))
def test_library_calls_on_a_special_file_raise_a_clear_error_without_opening_it(media: Path, tmp_path: Path,
                                                                                name: str) -> None:
    path = media / name
    expected = f"{path}: not a regular file ({SPECIALS[name]})"
    calls = {"FileItem.from_path": lambda: FileItem.from_path(path, media),
             "fingerprint": lambda: fingerprint(path, 0, 0),
             "MappedFile": lambda: MappedFile(path),
             "transfer": lambda: transfer(path, tmp_path / "copy")}
    for what, call in calls.items():
        exc = released_if_blocked(media / "fifo.mp4", call)
        assert isinstance(exc, UnreadableFile), (what, exc)
        assert str(exc) == expected, what


def test_sigterm_while_blocked_reading_a_list_names_the_signal(tmp_path: Path) -> None:
    """A list read from a FIFO (``--files-from <(find ...)``) blocks until its writer writes: SIGTERM then ends
    the command with the usual line and 128 + 15, not an empty reason and 130."""
    fifo = tmp_path / "list.fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen([*FRAMEPIPE, "run", "--files-from", str(fifo), "-o", str(tmp_path / "out")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    writer = None
    deadline = time.monotonic() + HANG_S
    while writer is None:  # a non-blocking open for writing succeeds once the command has the FIFO open
        try:
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO or time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.05)
    try:
        proc.send_signal(signal.SIGTERM)  # the command now waits in read() for lines or the end of the list
        _, err = proc.communicate(timeout=HANG_S)
    finally:
        os.close(writer)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1] == \
        "framepipe: interrupted by SIGTERM; finished outputs are kept, partial ones removed"
