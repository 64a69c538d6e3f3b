"""The ``framepipe`` command, run as a user runs it: a real process, real exit statuses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import av
import pyarrow.parquet as pq
import pytest
from support.cli import framepipe, framepipe_interrupted
from support.clips import BROKEN, CLIPS

from stages import ClipSpec, make_clip


def test_version_and_presets_are_listed() -> None:
    assert framepipe("--version").stdout.startswith("framepipe ")
    listing = framepipe("presets").stdout
    assert "default:" in listing and "-O thumb_every=2.0" in listing and "metadata:" in listing


# `python -m pipeline ARG`, and then the modules loaded, by top-level name: those of the heavy libraries and stages
# (the display and metrics libraries, rich, prometheus_client and matplotlib, among them).
COMMAND_THEN_MODULES = """
import runpy, sys
sys.argv = ["framepipe", sys.argv[1]]
try:
    runpy.run_module("pipeline", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
print(sorted({m.split(".")[0] for m in sys.modules} & {"numpy", "av", "pyarrow", "loky", "stages", "rich", "matplotlib",
                                                    "prometheus_client"}))
"""


@pytest.mark.parametrize("flag, loaded", [("--version", "[]"), ("--help", "['stages']")])
def test_version_and_help_load_none_of_numpy_pyav_pyarrow_or_loky(flag: str, loaded: str) -> None:
    proc = subprocess.run([sys.executable, "-c", COMMAND_THEN_MODULES, flag], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    *said, modules = proc.stdout.splitlines()
    assert modules == loaded  # --help loads the commands stages add (`samples`, `bench`); --version not even those
    assert "framepipe " in said[0] if flag == "--version" else {"bench", "samples"} <= set(" ".join(said).split())


# `framepipe run ARGS` in a process of its own, then its exit status, the heavy libraries it loaded (by top-level
# name) and whether it loaded multiprocessing (what a worker server, a pool or a shared segment needs).
RUN_THEN_MODULES = """
import sys
from pipeline.cli import main
status = main(sys.argv[1:])
print(status, sorted({m.split(".")[0] for m in sys.modules} & {"numpy", "av", "pyarrow", "loky", "PIL", "rich",
                                                            "matplotlib", "prometheus_client"}),
      "multiprocessing" in sys.modules)
"""


def test_a_run_with_every_file_done_loads_no_heavy_library(clip_dir: Path, tmp_path: Path) -> None:
    """A re-run with nothing to do starts at once: it builds the preset, finds every file done in the ledger and
    keeps the report, importing none of numpy, PyAV, pyarrow, Pillow, loky or rich (nor multiprocessing)."""
    out = tmp_path / "out"
    args = ["run", str(clip_dir), "-o", str(out), "-p", "thumbnails", "-q", "--exclude", "broken*",
            "--cache-dir", str(tmp_path / "cache")]

    def run_apart() -> str:
        proc = subprocess.run([sys.executable, "-c", RUN_THEN_MODULES, *args], capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.splitlines()[-1]

    first = run_apart()  # the work: its pools (loky), its report (pyarrow)...
    assert first.startswith("0 ") and "'pyarrow'" in first and first.endswith("True")
    report = {name: (out / name).stat().st_mtime_ns for name in ("report.parquet", "report.json", "stages.parquet")}
    assert run_apart() == "0 [] False"
    assert {name: (out / name).stat().st_mtime_ns for name in report} == report  # the same rows: kept as written
    rows = pq.read_table(out / "report.parquet").to_pylist()
    assert sorted(r["relpath"] for r in rows) == sorted(CLIPS) and {r["status"] for r in rows} == {"ok"}


def test_run_makes_every_output_reports_the_broken_file_and_exits_1(clip_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = framepipe("run", clip_dir, "-o", out, "-q", "-j", "2")
    assert proc.returncode == 1, proc.stderr
    failures = [line for line in proc.stderr.splitlines() if line.startswith("FAILED")]
    assert set(failures) == {f"FAILED {BROKEN}: [metadata] not a readable media file (moov atom not found)"}
    for stage in ("metadata", "decode", "thumbnails", "proxy"):
        assert stage in proc.stdout
    assert f"{len(CLIPS)} of {len(CLIPS) + 1} files done, 1 failed" in proc.stdout
    rows = pq.read_table(out / "report.parquet").to_pylist()
    assert {r["relpath"] for r in rows if r["status"] == "ok"} == set(CLIPS)
    for rel in CLIPS:
        key = rel.rsplit(".", 1)[0]
        assert (out / "proxies" / f"{key}.mp4").is_file()
        assert (out / "thumbnails" / key / "poster.jpg").is_file()
    assert (out / "report.json").is_file()


def test_preset_options_are_typed_and_checked(clip_dir: Path, tmp_path: Path) -> None:
    proc = framepipe("run", clip_dir / "landscape_audio.mp4", "-o", tmp_path, "-q", "-p", "thumbnails",
                     "-O", "thumb_every=0.5")
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "thumbnails" / "landscape_audio").glob("t*.jpg"))) == 6
    assert not (tmp_path / "proxies").exists()
    bad = framepipe("run", clip_dir, "-o", tmp_path, "-O", "nope=1")
    assert bad.returncode == 2
    assert "preset 'default' has no option 'nope'" in bad.stderr
    wrong = framepipe("run", clip_dir, "-o", tmp_path, "-O", "thumb_width=wide")
    assert wrong.returncode == 2 and "option thumb_width=wide: must be an integer from 16 to 8192" in wrong.stderr


def test_a_missing_input_folder_is_one_clear_line_and_exit_2(tmp_path: Path) -> None:
    proc = framepipe("run", tmp_path / "nowhere", "-o", tmp_path / "out")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"framepipe: {tmp_path / 'nowhere'}: no such file or folder"]


def test_an_unknown_preset_names_the_installed_ones(tmp_path: Path) -> None:
    proc = framepipe("run", tmp_path, "-o", tmp_path / "out", "-p", "nope")
    assert proc.returncode == 2 and "no preset named 'nope' (available: default, metadata," in proc.stderr
    from pipeline.presets import available_presets
    assert all(name in proc.stderr for name in available_presets())


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_stops_the_batch_and_leaves_no_partial_file_or_segment(tmp_path: Path, signum: int,
                                                                         status: int) -> None:
    src = tmp_path / "in"
    for i in range(8):
        make_clip(src / f"clip{i}.mp4", ClipSpec("c", 640, 360, 3.0), seed=i)
    out = tmp_path / "out"
    pid, returncode, err = framepipe_interrupted(["run", str(src), "-o", str(out), "-q", "-j", "2"], signum,
                                                 when="start")  # a file has started
    assert returncode == status, err
    assert f"interrupted by {signal.Signals(signum).name}" in err
    assert not [p for p in Path("/dev/shm").glob(f"framepipe_{pid}_*")]
    leftovers = [p for p in out.rglob("*") if p.name.startswith(".")]
    assert leftovers == []
    for proxy in out.glob("proxies/*.mp4"):  # what finished is whole: every frame decodes
        with av.open(str(proxy)) as c:
            assert sum(1 for _ in c.decode(c.streams.video[0])) == 90


def test_python_dash_m_and_the_console_script_are_the_same_command() -> None:
    script = Path(sys.executable).with_name("framepipe")
    assert script.exists()
    assert subprocess.run([script, "--version"], capture_output=True, text=True).stdout == \
        framepipe("--version").stdout
    assert os.access(script, os.X_OK)


USER_PIPELINE = '''
import numpy as np
from pipeline import FRAME, Pipeline, Stage
from stages import VIDEO_EXTENSIONS, Decode


class MeanLuma(Stage):
    accepts = (FRAME,)

    def begin(self, ctx):
        ctx.state["sum"], ctx.state["n"] = 0.0, 0

    def process(self, item, ctx):
        ctx.state["sum"] += float(item.array("gray").mean())
        ctx.state["n"] += 1

    def end(self, ctx):
        ctx.record(mean_luma=ctx.state["sum"] / ctx.state["n"], frames_seen=ctx.state["n"])


def build(scale: float = 1.0):
    p = Pipeline("mine", extensions=VIDEO_EXTENSIONS)
    decode = p.add(Decode(audio=False))
    p.add(MeanLuma(), after=decode)
    return p
'''


def test_run_takes_a_users_pipeline_file_with_options(clip_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "mine.py").write_text(USER_PIPELINE)
    proc = framepipe("run", clip_dir, "-o", tmp_path / "out", "-q", "-P", tmp_path / "mine.py", "-O", "scale=0.5")
    assert proc.returncode == 1, proc.stderr  # the broken sample still fails
    assert "mean_luma" not in proc.stderr and "FAILED broken.mp4" in proc.stderr
    rows = {r["relpath"]: r for r in pq.read_table(tmp_path / "out" / "report.parquet").to_pylist()}
    for rel, spec in CLIPS.items():
        assert rows[rel]["frames_seen"] == round(spec.seconds * spec.fps)
        assert 16 <= rows[rel]["mean_luma"] <= 235
    bad = framepipe("run", clip_dir, "-o", tmp_path / "o2", "-P", tmp_path / "mine.py", "-O", "nope=1")
    assert bad.returncode == 2 and "has no option 'nope'" in bad.stderr


def test_inputs_from_a_list_and_globs_narrow_a_folder(clip_dir: Path, tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text(f"# two files\n{clip_dir / 'landscape_audio.mp4'}\n{clip_dir / 'web_vp9.webm'}\n")
    done = framepipe("run", "--files-from", listing, "-o", tmp_path / "listed", "-p", "metadata", "-q")
    assert done.returncode == 0, done.stderr
    assert "2 file(s)" in done.stderr
    done = framepipe("run", clip_dir, "--exclude", "*.webm", "--exclude", "broken*", "--no-recursive",
                     "-o", tmp_path / "globbed", "-p", "metadata", "-q")
    assert done.returncode == 0, done.stderr
    assert "2 file(s)" in done.stderr  # landscape_audio.mp4 and portrait_rot90.mp4; sub/ not walked
    assert framepipe("run", "-o", tmp_path / "none").returncode == 2


@pytest.mark.slow
def test_a_second_run_replays_from_the_cache_and_the_cache_command_manages_it(clip_dir: Path,
                                                                              tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    args = ("-p", "thumbnails", "-q", "--exclude", "broken*", "--cache-dir", cache)
    assert framepipe("run", clip_dir, "-o", tmp_path / "a", *args).returncode == 0
    warm = framepipe("run", clip_dir, "-o", tmp_path / "b", *args)
    assert warm.returncode == 0, warm.stderr
    assert "cache hit/miss" in warm.stdout and "4/0" in warm.stdout
    assert framepipe("cache", "path", "--cache-dir", cache).stdout.strip() == str(cache)
    stats = framepipe("cache", "stats", "--cache-dir", cache)
    assert stats.returncode == 0 and "stages:" in stats.stdout and " 0 entries" not in stats.stdout
    assert framepipe("cache", "prune", "--cache-dir", cache).returncode == 0
    assert framepipe("cache", "clear", "--cache-dir", cache).returncode == 0
    assert " 0 entries" in framepipe("cache", "stats", "--cache-dir", cache).stdout
    cold = framepipe("run", clip_dir, "-o", tmp_path / "c", "--no-cache", *args[:-2])
    assert cold.returncode == 0 and "cache hit/miss" not in cold.stdout
