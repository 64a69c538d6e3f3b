"""Nothing follows a link it did not expect: a symbolic link planted in OUT at a name framepipe writes (its lock,
a part file, its write probe, its ledger, a final output) is refused or replaced, never written through. Its
target keeps its bytes; a dangling link's target is never created."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest
from support.cli import FRAMEPIPE

from pipeline import run
from pipeline.cache.locks import FileLock
from pipeline.errors import OutputIsLink
from pipeline.outputs import PartialOutput, _part_path, check_writable, write_atomic
from pipeline.run import LOCK_NAME
from stages import ClipSpec, make_clip, presets

GOOD = ClipSpec("good.mp4", 160, 90, 1.0, fps=10)
PRECIOUS = b"precious bytes that are not framepipe's\n"
REFUSED = "is a symbolic link (refusing to follow it)"


@pytest.fixture
def media(tmp_path: Path) -> Path:
    make_clip(tmp_path / "media" / "good.mp4", GOOD)
    return tmp_path / "media"


def framepipe_in(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FRAMEPIPE, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def plant(link: Path, target: Path, existing: bool) -> None:
    """A symbolic link at ``link`` to ``target``, which holds ``PRECIOUS`` when ``existing``, else is absent."""
    if existing:
        target.write_bytes(PRECIOUS)
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, link)


def assert_untouched(target: Path, existing: bool) -> None:
    if existing:
        assert target.read_bytes() == PRECIOUS
    else:
        assert not os.path.lexists(target), f"{target} was created through a planted link"


@pytest.mark.parametrize("existing", [True, False], ids=["to-a-file", "dangling"])
def test_a_link_planted_at_the_lock_is_refused_and_its_target_left_alone(media: Path, tmp_path: Path,
                                                                         existing: bool) -> None:
    out, target = tmp_path / "out", tmp_path / "outside.txt"
    plant(out / LOCK_NAME, target, existing)
    proc = framepipe_in(tmp_path, "run", "media", "-o", "out", "-q")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[-1] == \
        f"framepipe: cannot lock output folder out: out/{LOCK_NAME} is a symbolic link (refusing to follow it)"
    assert_untouched(target, existing)
    assert os.listdir(out) == [LOCK_NAME] and (out / LOCK_NAME).is_symlink()  # nothing else changed in OUT
    with pytest.raises(OutputIsLink) as refused:  # the library's error
        run(presets.metadata(), media, out)
    assert str(refused.value) == f"cannot lock output folder {out}: {out / LOCK_NAME} {REFUSED}"
    assert_untouched(target, existing)


@pytest.mark.parametrize("existing", [True, False], ids=["to-a-file", "dangling"])
def test_file_lock_refuses_a_link_at_its_name(tmp_path: Path, existing: bool) -> None:
    target = tmp_path / "outside.lock"
    plant(tmp_path / "x.lock", target, existing)
    with pytest.raises(OSError) as refused:
        FileLock(tmp_path / "x.lock").acquire(timeout=0)
    assert refused.value.errno == errno.ELOOP
    assert_untouched(target, existing)


@pytest.mark.parametrize("existing", [True, False], ids=["to-a-file", "dangling"])
def test_a_link_at_a_part_name_is_refused_naming_it(tmp_path: Path, existing: bool) -> None:
    final = tmp_path / "out" / "proxies" / "good.mp4"
    part = _part_path(final)  # this process's part name for it: what a run's worker would use
    target = tmp_path / "outside.mp4"
    plant(part, target, existing)
    with pytest.raises(OutputIsLink) as refused:
        PartialOutput(final)
    assert str(refused.value) == f"cannot write {final}: {part} {REFUSED}"
    with pytest.raises(OutputIsLink):
        write_atomic(final, b"data")
    assert_untouched(target, existing)
    assert not final.exists()


def test_a_regular_file_left_at_a_part_name_is_replaced_not_written_into(tmp_path: Path) -> None:
    """A part file of a dead process that had our pid, or a hard link planted there: unlinked, never opened."""
    final = tmp_path / "report.json"
    other = tmp_path / "other.bin"
    other.write_bytes(PRECIOUS)
    os.link(other, _part_path(final))
    assert write_atomic(final, b"{}") == final
    assert final.read_bytes() == b"{}" and other.read_bytes() == PRECIOUS


@pytest.mark.parametrize("existing", [True, False], ids=["to-a-file", "dangling"])
def test_a_link_at_the_write_probe_is_refused_naming_it(tmp_path: Path, existing: bool) -> None:
    out = tmp_path / "out"
    probe = out / f".framepipe-probe.{os.getpid()}.fp-part"
    target = tmp_path / "outside"
    plant(probe, target, existing)
    with pytest.raises(OutputIsLink) as refused:
        check_writable(out)
    assert str(refused.value) == f"cannot write in output folder {out}: {probe} {REFUSED}"
    assert_untouched(target, existing)


@pytest.mark.parametrize("existing", [True, False], ids=["to-a-file", "dangling"])
def test_a_link_at_the_ledger_is_never_appended_through(media: Path, tmp_path: Path, existing: bool) -> None:
    out, target = tmp_path / "out", tmp_path / "outside.jsonl"
    plant(out / "ledger.jsonl", target, existing)
    proc = framepipe_in(tmp_path, "run", "media", "-o", "out")
    assert proc.returncode == 0, proc.stderr
    assert "1 of 1 files done, 0 failed" in proc.stdout
    assert (out / "proxies" / "good.mp4").is_file()
    assert_untouched(target, existing)
    if not existing:  # nothing to read back, so the link stays: each append is refused, with a warning
        assert (out / "ledger.jsonl").is_symlink()
        assert f"run ledger out/ledger.jsonl not written (out/ledger.jsonl {REFUSED}); good.mp4 will run again" \
            in proc.stderr


@pytest.mark.parametrize("existing", [True, False], ids=["to-a-file", "dangling"])
def test_a_link_at_a_final_name_is_replaced_never_written_through(media: Path, tmp_path: Path,
                                                                  existing: bool) -> None:
    out, target = tmp_path / "out", tmp_path / "outside.mp4"
    plant(out / "proxies" / "good.mp4", target, existing)
    proc = framepipe_in(tmp_path, "run", "media", "-o", "out", "-q")
    assert proc.returncode == 0, proc.stderr
    assert "1 of 1 files done, 0 failed" in proc.stdout
    proxy = out / "proxies" / "good.mp4"
    assert not proxy.is_symlink() and proxy.stat().st_size > 0  # the rename replaced the link
    assert_untouched(target, existing)
