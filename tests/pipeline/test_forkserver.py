"""Workers fork from a preloaded server, yet never re-run the user's main script."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from pipeline.runtime import forkserver

# A user's script with no ``if __name__ == "__main__":`` guard: the standard
# library's forkserver and spawn would run it again in every worker.
UNGUARDED_SCRIPT = textwrap.dedent("""
    import os
    from pipeline.runtime.pool import TaskPoolConfig, WorkerPool

    print("script ran in", os.getpid(), flush=True)

    def square(x):
        return x * x, os.getpid()

    with WorkerPool("unguarded", TaskPoolConfig(2)) as pool:
        results = [pool.execute(square, i) for i in range(4)]
    print("squares", [r for r, _ in results], flush=True)
    print("worker pids differ from mine", all(pid != os.getpid() for _, pid in results), flush=True)
""")


@pytest.mark.parametrize("method", ["forkserver", "loky"])
def test_a_script_without_a_main_guard_runs_once_and_its_functions_reach_the_workers(
        tmp_path: Path, method: str) -> None:
    script = tmp_path / "user_script.py"
    script.write_text(UNGUARDED_SCRIPT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, forkserver.ENV_VAR: method})
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("script ran in") == 1, done.stdout
    assert "squares [0, 1, 4, 9]" in done.stdout
    assert "worker pids differ from mine True" in done.stdout


def test_preload_takes_modules_it_can_find_and_never_main() -> None:
    before = list(forkserver._preload)
    try:
        forkserver.preload(["json", "__main__", "no_such_module_anywhere", "json"])
        added = forkserver._preload[len(before):]
        assert added == ["json"]
    finally:
        forkserver._preload[:] = before


def test_the_start_method_can_be_chosen_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(forkserver.ENV_VAR, "spawn")
    assert forkserver.worker_context().get_start_method() == "spawn"
    monkeypatch.delenv(forkserver.ENV_VAR)
    assert forkserver.worker_context().get_start_method() == "forkserver"


def test_a_stopped_server_is_replaced_by_the_next_pool() -> None:
    from pipeline.runtime.pool import TaskPoolConfig, WorkerPool
    with WorkerPool("before-stop", TaskPoolConfig(1)) as pool:
        first = pool.execute(os.getppid)
    forkserver.stop_server()
    with WorkerPool("after-stop", TaskPoolConfig(1)) as pool:
        second = pool.execute(os.getppid)
    assert first != second  # each worker's parent is the server that forked it
    assert not psutil.pid_exists(first) or psutil.Process(first).status() == psutil.STATUS_ZOMBIE
