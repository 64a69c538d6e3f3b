"""When things go wrong: a hung file is killed at its timeout, a cache value or an output folder that cannot be
written gives clear errors and leaves no torn file (the cases on video are in tests/test_video_reliability.py).

Real processes, real files, real signals. Nothing here sleeps to wait: tests wait on marker files that
stages write (``wait_for``), and stages that must hang hang in native code holding the GIL.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path

import pytest
from support.arrays import write_frames, write_pipeline_file
from support.cli import framepipe
from support.disks import assert_cache_reads_back, framepipe_with, hidden_files, remount, tmpfs
from support.text import text_pipeline

from pipeline import run
from pipeline.cache import DiskCache
from pipeline.cache.disk import INLINE_MAX
from pipeline.errors import DiskFull, UnsupportedRunOption
from pipeline.outputs import WRITE_FAULT_ENV


@pytest.fixture()
def arrays_in(tmp_path: Path) -> tuple[Path, Path]:
    """An input folder of two numpy-frame files, and a pipeline file for ``framepipe run -P`` over them."""
    for i in range(2):
        write_frames(tmp_path / "arrays" / f"c{i}.npy", 4, seed=i)
    return tmp_path / "arrays", write_pipeline_file(tmp_path / "arrays_pipeline.py")


# Hangs ------------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timing(reason="a.txt and z.txt must finish within the 8 s file timeout that ends stuck.txt")
def test_a_file_hung_in_native_code_holding_the_gil_is_killed_at_its_timeout_and_the_batch_goes_on(
        tmp_path: Path) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "a.txt").write_text("one\ntwo")
    (inp / "stuck.txt").write_text("first\nhang\nnever")
    (inp / "z.txt").write_text("last")
    out = tmp_path / "out"
    result = run(text_pipeline(), inp, out, workers=2, cache=False, file_timeout=8)  # ample for the others

    by_name = {r.file.relpath: r for r in result.files}
    stuck = by_name["stuck.txt"]
    assert stuck.status == "failed" and stuck.error_type == "FileTimeout"
    assert stuck.summary_line() == ("FAILED stuck.txt: timed out: not done after 8 s (the file timeout); "
                                    "its worker was killed")
    assert by_name["a.txt"].ok and by_name["z.txt"].ok
    assert (out / "shout" / "a.txt").read_text() == "ONE\nTWO"
    assert (out / "shout" / "z.txt").read_text() == "LAST"
    assert not (out / "shout" / "stuck.txt").exists() and hidden_files(out) == []


def test_a_file_timeout_is_refused_on_the_inline_executor(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one")
    with pytest.raises(UnsupportedRunOption, match="needs the local executor"):
        run(text_pipeline(), tmp_path, tmp_path / "out", executor="inline", file_timeout=1)


# Full or read-only disks ---------------------------------------------------------------------------------


def test_a_cache_value_that_cannot_be_written_leaves_the_cache_as_it_was(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    with DiskCache(tmp_path, name="stages") as cache:
        cache.set("small", b"inline value")
        cache.set("large", b"x" * (INLINE_MAX + 1))
        monkeypatch.setenv(WRITE_FAULT_ENV, "ENOSPC:*/blobs/*")
        with pytest.raises(DiskFull, match="cannot write a cache value under .*: No space left on device"):
            cache.set("new", b"y" * (INLINE_MAX + 1))
        with pytest.raises(DiskFull):
            cache.set("large", b"z" * (INLINE_MAX + 1))  # a failed replacement keeps the old value
        monkeypatch.delenv(WRITE_FAULT_ENV)
        assert cache.get("new") is None and cache.get("large") == b"x" * (INLINE_MAX + 1)
        assert cache.get("small") == b"inline value"
    assert_cache_reads_back(tmp_path)
    assert [p for p in (tmp_path / "stages").rglob("*") if p.name.endswith(".part")] == []


@pytest.mark.parametrize("how", ["read-only mount", "no permission", "injected EROFS"])
def test_an_output_folder_that_cannot_be_written_is_one_clear_error_before_any_work(arrays_in: tuple[Path, Path],
                                                                                      tmp_path: Path,
                                                                                      how: str) -> None:
    out = tmp_path / "ro" / "out"
    env: dict[str, str] = {}
    with ExitStack() as stack:
        if how == "read-only mount":
            stack.enter_context(tmpfs(tmp_path / "ro", "size=1m"))
            out.mkdir()
            remount(tmp_path / "ro", "ro")
            reason = "Read-only file system"
        elif how == "no permission":
            if os.geteuid() == 0:
                pytest.skip("root writes whatever the permissions say")
            out.mkdir(parents=True)
            out.chmod(0o555)
            stack.callback(out.chmod, 0o755)
            reason = "Permission denied"
        else:
            env = {WRITE_FAULT_ENV: "EROFS"}
            reason = "Read-only file system"
        proc = framepipe_with(env, "run", arrays_in[0], "-P", arrays_in[1], "-o", out, "--no-cache", "-q")

        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.splitlines()[-1] == f"framepipe: cannot write in output folder {out}: {reason}"
        assert "start" not in proc.stderr and list(out.iterdir()) == []


def test_an_output_folder_on_a_read_only_file_system_cannot_even_be_made(arrays_in: tuple[Path, Path],
                                                                         tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "size=1m,ro") as ro:
        proc = framepipe("run", arrays_in[0], "-P", arrays_in[1], "-o", ro / "out", "--no-cache", "-q")
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == f"framepipe: cannot create output folder {ro / 'out'}: Read-only file system"
