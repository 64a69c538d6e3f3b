"""The suite's fixtures and hooks: small clips made with PyAV, one batch run over them that many tests read,
the real-world footage, and the settings every test runs under. Helpers tests import live in ``support/``.

The video library (``stages``) is imported inside the fixtures that need it, so an engine test
(``tests/pipeline``) that asks for none of them runs without it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings
from support.paths import FOOTAGE

from pipeline import RunResult, run

if TYPE_CHECKING:
    import psutil
    from support.object_store import MotoServer
    from support.ray_cluster import LocalCluster

# Hypothesis: no per-example deadline and no too-slow health check anywhere in the suite. Both are timing
# thresholds (200 ms per example by default), which a loaded 2-core machine passes now and then: a test that
# sets neither, or gives only some of its settings, would fail on the clock, not on its property. The profile
# is loaded here, before any test module is imported, so every @settings(...) starts from it.
settings.register_profile("framepipe", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("framepipe")

# The suite's runs keep stage results in a cache folder of its own (never the user's ~/.cache, nor a folder
# FRAMEPIPE_CACHE_DIR names in the caller's environment: entries from other runs would be replayed), shared
# by the tests and the processes they start, removed at the end. A process of the suite's that imports this
# module (a test may start one with the suite's environment) keeps the suite's folder and makes none of its
# own (each used to leave an empty framepipe-test-cache-* folder in /tmp). Variables of the caller's
# that would turn caching off, inject write faults into every run or send the Ray tests to a cluster are
# dropped, by the suite's own process only (a test may set one for the processes it starts).
_SUITE_CACHE = "FRAMEPIPE_TEST_SUITE_CACHE_DIR"
_MADE_HERE = _SUITE_CACHE not in os.environ  # else a process of the suite's, whose environment is the test's to set
if _MADE_HERE:
    os.environ[_SUITE_CACHE] = os.environ["FRAMEPIPE_CACHE_DIR"] = tempfile.mkdtemp(prefix="framepipe-test-cache-")
    for _var in ("FRAMEPIPE_CACHE", "FRAMEPIPE_WRITE_FAULT", "RAY_ADDRESS"):
        os.environ.pop(_var, None)
_CACHE_DIR = os.environ[_SUITE_CACHE]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that read ../shared/footage (through the ``footage`` fixture) carry the ``footage`` marker."""
    for item in items:
        if "footage" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.footage)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _MADE_HERE:
        shutil.rmtree(_CACHE_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of small generated clips (one in a sub-folder) and one truncated MP4."""
    from support.clips import BROKEN, CLIPS

    from stages import make_clip
    from stages.samples import make_corrupt

    root = tmp_path_factory.mktemp("clips")
    for i, (rel, spec) in enumerate(CLIPS.items()):
        make_clip(root / rel, spec, seed=i)
    make_corrupt(root / BROKEN, root / "landscape_audio.mp4")
    return root


@pytest.fixture(scope="session")
def batch(clip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """The default preset run over ``clip_dir`` on the local (loky) executor."""
    from stages import presets

    out = tmp_path_factory.mktemp("out")
    return run(presets.default(thumb_every=1.0, thumb_width=160), clip_dir, out, workers=2)


@pytest.fixture(scope="session")
def footage() -> Path:
    """The real-world files in ../shared/footage (skips when that folder is absent)."""
    if not FOOTAGE.is_dir():
        pytest.skip("../shared/footage is not present")
    return FOOTAGE


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A local Ray of 2 CPUs for the module that asks for it, stopped at its end with every process it started."""
    import ray
    from support.ray_cluster import ray_processes

    from pipeline.executors.ray import start_local_ray

    start_local_ray(num_cpus=2)
    yield
    ours = ray_processes()
    assert ours, "no Ray process found to check"
    ray.shutdown()
    _all_ended(ours)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[LocalCluster]:
    """A Ray cluster on this machine for the module that asks for it: a head and 2 worker nodes of 1 CPU each, this
    process its driver; ended at the module's end with every process it started. A test that adds or removes
    nodes leaves it so: ``reshape`` puts it back."""
    import ray
    from support.ray_cluster import LocalCluster, ray_processes

    assert not ray.is_initialized(), "a Ray of another module's is still connected"
    cluster = LocalCluster(workers=2, cpus=1)
    yield cluster
    ours = ray_processes()
    assert ours, "no Ray process found to check"
    cluster.shutdown()
    _all_ended(ours)


def _all_ended(processes: list[psutil.Process]) -> None:
    import psutil

    _, alive = psutil.wait_procs(processes, timeout=30)  # waits on the processes' exit, not on a clock
    assert not alive, f"Ray processes left running: {[p.cmdline()[:2] for p in alive]}"


@pytest.fixture(scope="module")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """A local S3 server (moto's, its own process on a free loopback port) for the module that asks for it."""
    from support.object_store import MotoServer

    server = MotoServer(log=tmp_path_factory.mktemp("moto") / "server.log").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """``moto_server``, with this test's environment pointing at it as the AWS SDKs read it (keys, region,
    ``AWS_ENDPOINT_URL``)."""
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    for key, value in moto_server.env.items():
        monkeypatch.setenv(key, value)
    return moto_server
