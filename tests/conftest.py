"""Shared fixtures: small clips made with PyAV, and one batch run over them that many tests read."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from pipeline import Pipeline, RunResult, run
from stages import ClipSpec, Decode, Thumbnails, make_clip
from stages.transforms import numpy_stage
from stages import presets
from stages.samples import make_corrupt

# Hypothesis: no per-example deadline and no too-slow health check anywhere in the suite. Both are timing
# thresholds (200 ms per example by default), which a loaded 2-core machine passes now and then: a test that
# sets neither, or gives only some of its settings, would fail on the clock, not on its property. The profile
# is loaded here, before any test module is imported, so every @settings(...) starts from it.
settings.register_profile("framepipe", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("framepipe")

# The suite's runs keep stage results in a cache folder of its own (never the user's ~/.cache, nor a folder
# FRAMEPIPE_CACHE_DIR names in the caller's environment: entries from other runs would be replayed), shared
# by the tests and the processes they start, removed at the end. Worker processes import this module too (a
# stage defined here, such as invert, is pickled by reference): they keep the suite's folder and make none
# of their own (each used to leave an empty framepipe-test-cache-* folder in /tmp). Variables of the caller's
# that would turn caching off, inject write faults into every run or send the Ray tests to a cluster are
# dropped, by the suite's own process only (a test may set one for the processes it starts).
_SUITE_CACHE = "FRAMEPIPE_TEST_SUITE_CACHE_DIR"
_MADE_HERE = _SUITE_CACHE not in os.environ  # else a process of the suite's, whose environment is the test's to set
if _MADE_HERE:
    os.environ[_SUITE_CACHE] = os.environ["FRAMEPIPE_CACHE_DIR"] = tempfile.mkdtemp(prefix="framepipe-test-cache-")
    for _var in ("FRAMEPIPE_CACHE", "FRAMEPIPE_WRITE_FAULT", "RAY_ADDRESS"):
        os.environ.pop(_var, None)
_CACHE_DIR = os.environ[_SUITE_CACHE]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "timing(reason): passes only if work finishes within a wall-clock limit (a file timeout the "
        "other files must beat); slow, and the first to fail on an overloaded machine: -m 'not timing' leaves it out")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _MADE_HERE:
        shutil.rmtree(_CACHE_DIR, ignore_errors=True)


REPO = Path(__file__).resolve().parents[1]
FOOTAGE = REPO.parent / "shared" / "footage"

# Small versions of the sample set: what each clip was made with is what the tests expect back.
CLIPS: dict[str, ClipSpec] = {
    "landscape_audio.mp4": ClipSpec("landscape_audio.mp4", 320, 180, 3.0, fps=30, audio=True),
    "portrait_rot90.mp4": ClipSpec("portrait_rot90.mp4", 256, 144, 2.0, fps=25, audio=True, rotation=-90,
                                   black_frames=5),
    "web_vp9.webm": ClipSpec("web_vp9.webm", 256, 144, 2.0, fps=24, codec="libvpx-vp9"),
    "sub/odd_854x480.mp4": ClipSpec("odd_854x480.mp4", 854, 480, 1.0, fps=30),
}
BROKEN = "broken.mp4"


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of small generated clips (one in a sub-folder) and one truncated MP4."""
    root = tmp_path_factory.mktemp("clips")
    for i, (rel, spec) in enumerate(CLIPS.items()):
        make_clip(root / rel, spec, seed=i)
    make_corrupt(root / BROKEN, root / "landscape_audio.mp4")
    return root


@pytest.fixture(scope="session")
def batch(clip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """The default preset run over ``clip_dir`` on the local (loky) executor."""
    out = tmp_path_factory.mktemp("out")
    return run(presets.default(thumb_every=1.0, thumb_width=160), clip_dir, out, workers=2)


@pytest.fixture(scope="session")
def footage() -> Path:
    """The real-world files in ../shared/footage (skips when that folder is absent)."""
    if not FOOTAGE.is_dir():
        pytest.skip("../shared/footage is not present")
    return FOOTAGE


def result_for(batch: RunResult, relpath: str):  # noqa: ANN201 - test helper
    """The FileResult of ``relpath`` in ``batch``."""
    for r in batch.files:
        if r.file.relpath == relpath:
            return r
    raise AssertionError(f"{relpath} not in batch: {[r.file.relpath for r in batch.files]}")


FRAMEPIPE = [sys.executable, "-m", "pipeline"]


def framepipe(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the ``framepipe`` command (as ``python -m pipeline``) and capture what it says."""
    return subprocess.run([*FRAMEPIPE, *map(str, args)], capture_output=True, text=True, timeout=600)


BOOKKEEPING = {"report.parquet", "report.json", "stages.parquet", "ledger.jsonl"}
"""What a run writes about itself in OUT, beside the outputs of its files."""


def output_files(out: Path) -> dict[str, Path]:
    """Every output of a run in ``out`` by its path relative to ``out`` (bookkeeping files left out)."""
    return {p.relative_to(out).as_posix(): p for p in sorted(out.rglob("*"))
            if p.is_file() and p.name not in BOOKKEEPING}


def frame_count(path: Path) -> int:
    import av
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(c.streams.video[0]))


def assert_same_outputs(out: Path, reference: Path, frames: int) -> None:
    """``out`` holds the outputs ``reference`` does: images byte for byte, videos with ``frames`` frames each."""
    mine, whole = output_files(out), output_files(reference)
    assert set(mine) == set(whole)
    for rel, path in mine.items():
        if rel.endswith(".mp4"):
            assert frame_count(path) == frame_count(whole[rel]) == frames, rel
        else:
            assert path.read_bytes() == whole[rel].read_bytes(), rel


def framepipe_interrupted(args: list[str], signum: int, when: str) -> tuple[int, int, str]:
    """Start ``framepipe *args``, send ``signum`` once a line of its stderr starts with ``when`` (an event, not a
    time) and wait for it to end: (its pid, its exit status, the rest of its stderr)."""
    proc = subprocess.Popen([*FRAMEPIPE, *args], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith(when):
            break
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    return proc.pid, proc.returncode, err


@numpy_stage
def invert(rgb: np.ndarray) -> np.ndarray:
    """A map stage for tests: the negative of an RGB frame."""
    return 255 - rgb


def video_pipeline(name: str = "video") -> Pipeline:
    """Decode (in each file's actor) -> invert (a map stage, frame-parallel) -> thumbnails every 0.5 s (PNG)."""
    p = Pipeline(name)
    d = p.add(Decode(audio=False, pixel_format="rgb24"))
    n = p.add(invert, after=d)
    p.add(Thumbnails(every=0.5, width=None, fmt="png", poster=False), after=n)
    return p
