"""Interrupt and resume, as a user meets them: a real ``framepipe run`` stopped by a signal, then run again."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import av
import pyarrow.parquet as pq
import pytest

from conftest import framepipe, framepipe_interrupted
from pipeline.ledger import LEDGER_NAME
from stages import ClipSpec, make_clip

N_CLIPS = 8
FRAMES = 60
BOOKKEEPING = {"report.parquet", "report.json", "stages.parquet", LEDGER_NAME}


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


def outputs(out: Path) -> dict[str, Path]:
    return {p.relative_to(out).as_posix(): p for p in sorted(out.rglob("*"))
            if p.is_file() and p.name not in BOOKKEEPING}


def frame_count(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(c.streams.video[0]))


def ledger_done(out: Path) -> dict[str, list[str]]:
    """Finished files in the ledger and their outputs."""
    entries = [json.loads(line) for line in (out / LEDGER_NAME).read_text().splitlines()]
    return {e["file"]: list(e["outputs"]) for e in entries if e["status"] == "ok"}


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
    stamps = {rel: ((out / rel).stat().st_ino, (out / rel).stat().st_mtime_ns) for outs in done.values()
              for rel in outs}

    again = framepipe(*command(clips, out))
    assert again.returncode == 0, again.stderr
    assert f"{N_CLIPS} of {N_CLIPS} files done ({len(done)} skipped, done by an earlier run), 0 failed" in again.stdout
    for rel in done:
        assert f"ok     {rel}  (done by an earlier run" in again.stderr
    assert {rel: ((out / rel).stat().st_ino, (out / rel).stat().st_mtime_ns) for rel in stamps} == stamps

    mine, whole = outputs(out), outputs(uninterrupted)
    assert set(mine) == set(whole)
    for rel, path in mine.items():
        if rel.endswith(".mp4"):
            assert frame_count(path) == frame_count(whole[rel]) == FRAMES
        else:
            assert path.read_bytes() == whole[rel].read_bytes(), rel
    rows = pq.read_table(out / "report.parquet").to_pylist()
    expected = pq.read_table(uninterrupted / "report.parquet").to_pylist()
    assert [{k: v for k, v in r.items() if k != "wall_s"} for r in rows] == \
        [{k: v for k, v in r.items() if k != "wall_s"} for r in expected]  # every file reported, as if never stopped
