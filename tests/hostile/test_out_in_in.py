"""Outputs are never inputs: with ``-o`` inside the input folder, a run (the first or the tenth) walks only the
footage, never its own proxies and thumbnails, nor any other framepipe output folder it meets."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from support.cli import FRAMEPIPE

from pipeline.bookkeeping.ledger import LEDGER_NAME
from pipeline.run import LOCK_NAME, collect_inputs
from pipeline.sources import SkippedInput, find_files, is_output_folder
from stages import ClipSpec, make_clip

CLIP = ClipSpec("c.mp4", 160, 90, 1.0, fps=10)


@pytest.fixture
def media(tmp_path: Path) -> Path:
    """``tmp_path/media`` with two clips."""
    for i, name in enumerate(("a.mp4", "b.mp4")):
        make_clip(tmp_path / "media" / name, CLIP, seed=i)
    return tmp_path / "media"


def framepipe_in(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FRAMEPIPE, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def relpaths(out: Path) -> list[str]:
    return sorted(r["relpath"] for r in pq.read_table(out / "report.parquet").to_pylist())


def test_out_inside_the_input_folder_runs_the_same_files_every_time(media: Path) -> None:
    out = media / "out"
    out.mkdir()
    make_clip(out / "put_there_before.mp4", CLIP)  # OUT is never walked, even before it holds any marker
    os.symlink("out", media / "link_to_out")  # nor reached through a link
    runs = []
    for _ in range(3):
        proc = framepipe_in(media.parent, "run", "media", "-o", "media/out", "-q")
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr.splitlines()[0] == "framepipe: default: 2 file(s) from media -> media/out"
        assert "2 of 2 files done" in proc.stdout
        assert relpaths(out) == ["a.mp4", "b.mp4"]
        runs.append(files_under(out))
    assert runs[0] == runs[1] == runs[2]
    assert {"proxies/a.mp4", "proxies/b.mp4"} <= runs[0]
    assert not [name for name in runs[0] if name.startswith(("proxies/put_there", "proxies/proxies", "proxies/link"))]


def test_another_runs_output_folder_in_the_input_folder_is_not_walked(media: Path, tmp_path: Path) -> None:
    assert framepipe_in(tmp_path, "run", "media", "-o", "media/first", "-q").returncode == 0
    proc = framepipe_in(tmp_path, "run", "media", "-o", "elsewhere", "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines()[0] == "framepipe: default: 2 file(s) from media -> elsewhere"
    assert relpaths(tmp_path / "elsewhere") == ["a.mp4", "b.mp4"]
    assert find_files(media, [".mp4"]) == [media / "a.mp4", media / "b.mp4"]


def test_out_equal_to_the_input_folder_takes_nothing_and_says_why(media: Path) -> None:
    proc = framepipe_in(media.parent, "run", "media", "-o", "media", "-q")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == ["framepipe: skipped media: the output folder (outputs are never inputs)",
                                        "framepipe: no input files found in media"]


def test_a_file_in_out_given_by_name_is_skipped(media: Path) -> None:
    assert framepipe_in(media.parent, "run", "media", "-o", "media/out", "-q").returncode == 0
    proc = framepipe_in(media.parent, "run", "media/a.mp4", "media/out/proxies/a.mp4", "-o", "media/out", "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines()[:2] == [
        "framepipe: skipped media/out/proxies/a.mp4: in the output folder (outputs are never inputs)",
        "framepipe: default: 1 file(s) from 2 inputs -> media/out"]
    skipped: list[SkippedInput] = []
    items = collect_inputs([media / "out" / "proxies"], [".mp4"], out=media / "out", skipped=skipped)
    assert items == [] and [str(s) for s in skipped] == \
        [f"skipped {media / 'out' / 'proxies'}: in the output folder (outputs are never inputs)"]


def test_what_marks_an_output_folder(tmp_path: Path) -> None:
    from pipeline import sources
    assert (sources._LOCK_NAME, sources.LEDGER_NAME) == (LOCK_NAME, LEDGER_NAME)
    folders = {name: tmp_path / name for name in ("lock", "ledger", "ledger_report", "users_ledger", "plain")}
    for folder in folders.values():
        folder.mkdir()
    (folders["lock"] / LOCK_NAME).write_bytes(b"")
    (folders["ledger"] / LEDGER_NAME).write_bytes(b'{"v": 2, "file": "a.mp4"')  # even a torn first line
    (folders["ledger_report"] / LEDGER_NAME).write_bytes(b"")
    (folders["ledger_report"] / "report.parquet").write_bytes(b"")
    (folders["users_ledger"] / LEDGER_NAME).write_bytes(b'{"date": "2024-01-01", "amount": 3}\n')
    os.mkfifo(folders["plain"] / LEDGER_NAME)  # a FIFO by that name is looked at, never opened
    assert {name for name, folder in folders.items() if is_output_folder(folder)} == \
        {"lock", "ledger", "ledger_report"}
