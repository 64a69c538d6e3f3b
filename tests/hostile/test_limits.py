"""Resource limits: a run under ``ulimit -n`` or ``ulimit -v`` ends, with one line that names the limit, a
non-zero status, no traceback and no shared memory left behind. A pool that cannot be made stops the run at once
(``PoolUnavailable``: exit 2); a stage that runs out in its worker fails its file alone (exit 1).

The limits are set in the ``framepipe`` process (``preexec_fn``) and inherited by everything it starts; the
subprocess timeout is the hang detector.
"""

from __future__ import annotations

import errno
import os
import re
import resource
import subprocess
import threading
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import loky.process_executor
import pytest
from support.cli import FRAMEPIPE

from pipeline.errors import ResourceExhausted, WorkerCrashed
from pipeline.runtime import TaskPoolConfig, WorkerPool, limits

HANG_S = 300  # far past what any of these runs takes: only a hang reaches it

# A pipeline of one per-file stage over .txt files: it runs out of memory on hog.txt (asking for more than the
# address space allowed), out of descriptors on fds.txt, and copies any other file.
HOGS = '''
import resource
from pathlib import Path
from pipeline import FILE, Pipeline, Stage, write_atomic


class Hog(Stage):
    accepts = (FILE,)

    def __init__(self):
        super().__init__("hog")

    def process(self, item, ctx):
        name = Path(item.path).name
        if name == "hog.txt":
            soft, _ = resource.getrlimit(resource.RLIMIT_AS)
            if soft != resource.RLIM_INFINITY:
                bytearray(soft)
        if name == "fds.txt":
            held = []
            while len(held) < 100_000:
                held.append(open("/dev/null", "rb"))
        ctx.add_output(write_atomic(ctx.output_path("copies", name), Path(item.path).read_bytes()))


def build():
    p = Pipeline("hogs", extensions=[".txt"])
    p.add(Hog())
    return p
'''


def inputs(tmp_path: Path, *names: str) -> tuple[Path, Path]:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in names:
        (folder / name).write_text(f"{name}\n")
    (tmp_path / "hogs.py").write_text(HOGS)
    return folder, tmp_path / "hogs.py"


def limited(args: list[str], limits_: dict[int, int], env: dict[str, str] | None = None
            ) -> tuple[int, int, str, str]:
    """``framepipe *args`` with soft ``limits_`` set in it: (its pid, exit status, stdout, stderr)."""
    def apply() -> None:
        for which, value in limits_.items():
            resource.setrlimit(which, (value, resource.getrlimit(which)[1]))

    proc = subprocess.Popen([*FRAMEPIPE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=apply, env={**os.environ, **(env or {})})
    try:
        out, err = proc.communicate(timeout=HANG_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"framepipe {args} hung under {limits_}: {err}") from None
    return proc.pid, proc.returncode, out, err


def clean(pid: int, err: str) -> None:
    """No traceback was printed, nothing was left in shared memory by process ``pid``, nothing leaked."""
    assert "Traceback" not in err, err
    assert "leaked" not in err, err  # a resource tracker found segments or semaphores left
    shm = Path("/dev/shm")
    assert not [p.name for p in shm.glob(f"framepipe_{pid}_*")] + [p.name for p in shm.glob(f"sem.loky-{pid}-*")]


def framepipe_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("framepipe:")]


def test_too_few_descriptors_for_a_pool_stop_the_run_at_once_in_one_line(tmp_path: Path) -> None:
    folder, hogs = inputs(tmp_path, "a.txt", "b.txt", "c.txt")
    pid, status, out, err = limited(["run", str(folder), "-o", str(tmp_path / "out"), "-P", str(hogs), "-q",
                                      "-j", "2", "--no-cache"], {resource.RLIMIT_NOFILE: 20})
    assert status == 2, err
    header, line = framepipe_lines(err)
    assert header == f"framepipe: hogs: 3 file(s) from {folder} -> {tmp_path / 'out'}"
    assert re.fullmatch(r"framepipe: could not start (the worker pool hogs\.file\d|the workers' server|the run's "
                        r"workers): too many open files \(limit: 20, ulimit -n 20\)", line), line
    assert not [line for line in err.splitlines() if line.startswith("start ")] and out == ""  # no file began
    clean(pid, err)


def test_threads_that_cannot_start_stop_the_run_at_once_in_one_line(tmp_path: Path) -> None:
    # Each new thread reserves its stack (ulimit -s) in the address space (ulimit -v): 2 GiB stacks in 1.5 GiB
    # leave no room for any. OpenBLAS would try to start its threads as numpy loads: one thread, none started.
    folder, hogs = inputs(tmp_path, "a.txt", "b.txt")
    pid, status, out, err = limited(["run", str(folder), "-o", str(tmp_path / "out"), "-P", str(hogs), "-q",
                                      "-j", "2", "--no-cache"],
                                     {resource.RLIMIT_STACK: 2 << 30, resource.RLIMIT_AS: 1_500_000 << 10},
                                     env={"OPENBLAS_NUM_THREADS": "1"})
    assert status == 2, err
    assert framepipe_lines(err)[1:] == [
        "framepipe: could not start the worker pool hogs.file0: could not start a thread: out of memory "
        "(limit: 1465 MiB of address space, ulimit -v 1500000; each thread reserves 2048 MiB, ulimit -s 2097152)"]
    clean(pid, err)


def test_a_stage_out_of_memory_fails_its_file_alone_naming_the_workers_limit(tmp_path: Path) -> None:
    folder, hogs = inputs(tmp_path, "hog.txt", "ok.txt")
    pid, status, out, err = limited(["run", str(folder), "-o", str(tmp_path / "out"), "-P", str(hogs), "-q",
                                      "-j", "2", "--no-cache"], {resource.RLIMIT_AS: 3_000_000 << 10})
    assert status == 1, err
    assert "FAILED hog.txt: [hog] out of memory (worker limit: 2930 MiB of address space, ulimit -v 3000000)" \
        in err.splitlines()
    assert "1 of 2 files done, 1 failed" in out, out
    assert (tmp_path / "out" / "copies" / "ok" / "ok.txt").read_text() == "ok.txt\n"
    clean(pid, err)


def test_a_stage_out_of_descriptors_fails_its_file_alone_naming_the_workers_limit(tmp_path: Path) -> None:
    folder, hogs = inputs(tmp_path, "fds.txt", "ok.txt")
    pid, status, out, err = limited(["run", str(folder), "-o", str(tmp_path / "out"), "-P", str(hogs), "-q",
                                      "-j", "2", "--no-cache"], {resource.RLIMIT_NOFILE: 64})
    assert status == 1, err
    assert "FAILED fds.txt: [hog] too many open files (worker limit: 64, ulimit -n 64)" in err.splitlines()
    assert "1 of 2 files done, 1 failed" in out, out
    assert (tmp_path / "out" / "copies" / "ok" / "ok.txt").read_text() == "ok.txt\n"
    clean(pid, err)


# In process: loky failing for want of a thread ------------------------------------------------------------


def square(x: int) -> int:
    return x * x


def test_a_task_loky_cannot_start_a_thread_for_fails_naming_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    with WorkerPool("no-threads", TaskPoolConfig(1)) as pool:
        assert pool.execute(square, 3) == 9

        def no_thread(*args: object, **kwargs: object) -> None:
            raise RuntimeError("can't start new thread")

        monkeypatch.setattr(loky.process_executor.ProcessPoolExecutor, "submit", no_thread)
        with pytest.raises(ResourceExhausted) as caught:
            pool.submit(square, 4).result(timeout=HANG_S)
        assert caught.value.reason.startswith("could not start a thread: ")
        monkeypatch.undo()
        assert pool.execute(square, 5) == 25  # a new executor takes the next task


def test_a_manager_thread_that_cannot_start_its_queue_thread_fails_its_task(monkeypatch: pytest.MonkeyPatch,
                                                                             capfd: pytest.CaptureFixture[str]
                                                                             ) -> None:
    """loky's manager thread dies putting a task in its queue (the queue's own thread cannot start): the executor
    is broken with the cause as text; the task fails once with the limit named, not retried, no traceback."""
    real = loky.process_executor._ExecutorManagerThread.add_call_item_to_queue

    def crashes(self: object) -> None:
        if getattr(threading.current_thread(), "name", "") == "ExecutorManagerThread" and crash.is_set():
            raise RuntimeError("can't start new thread")
        real(self)

    crash = threading.Event()
    monkeypatch.setattr(loky.process_executor._ExecutorManagerThread, "add_call_item_to_queue", crashes)
    with WorkerPool("no-queue-thread", TaskPoolConfig(1, retries=2)) as pool:
        assert pool.execute(square, 2) == 4
        crash.set()
        with pytest.raises(ResourceExhausted) as caught:
            pool.submit(square, 3).result(timeout=HANG_S)
        crash.clear()
        assert caught.value.reason.startswith("could not start a thread: ")
        assert pool.statistics().retried == 0
        assert pool.execute(square, 6) == 36
    assert "Exception in executor manager thread" not in capfd.readouterr().err


@pytest.mark.slow
def test_a_queue_thread_that_never_comes_up_fails_its_task_instead_of_hanging(monkeypatch: pytest.MonkeyPatch
                                                                             ) -> None:
    """A thread that dies as it starts, before it could say so (out of memory), leaves CPython's
    ``Thread.start()`` waiting forever: here loky's manager thread, starting its queue's thread. The pool fails the
    task, releases the wait, and takes the next task on a new executor."""
    import loky.backend.queues

    def never_comes_up(self: loky.backend.queues.Queue) -> None:
        self._buffer.clear()
        self._thread = threading.Thread(target=lambda: None, name="QueueFeederThread", daemon=True)
        self._thread._started.wait()  # what start() does after such a death: wait for a thread that is gone

    with WorkerPool("no-feeder", TaskPoolConfig(1)) as pool:
        monkeypatch.setattr(loky.backend.queues.Queue, "_start_thread", never_comes_up)
        with pytest.raises(WorkerCrashed, match="the thread that sends tasks to the pool's workers died"):
            pool.submit(square, 3).result(timeout=HANG_S)
        monkeypatch.undo()
        assert pool.execute(square, 4) == 16


def test_a_broken_executor_found_at_submission_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = loky.process_executor.ProcessPoolExecutor.submit

    def broken_once(self: object, *args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 1:
            raise BrokenProcessPool("broken as it was handed the task")
        return real(self, *args, **kwargs)

    with WorkerPool("broken-once", TaskPoolConfig(1)) as pool:
        monkeypatch.setattr(loky.process_executor.ProcessPoolExecutor, "submit", broken_once)
        assert pool.submit(square, 7).result(timeout=HANG_S) == 49


# The lines themselves --------------------------------------------------------------------------------------


@pytest.fixture
def rlimits(monkeypatch: pytest.MonkeyPatch) -> dict[int, int]:
    """``limits``' view of the process limits, set by the test (unset: unlimited)."""
    set_: dict[int, int] = {}
    monkeypatch.setattr(limits.resource, "getrlimit",
                        lambda which: (set_.get(which, resource.RLIM_INFINITY), resource.RLIM_INFINITY))
    return set_


def test_each_limit_is_named_as_ulimit_sets_it(rlimits: dict[int, int]) -> None:
    rlimits[resource.RLIMIT_NOFILE] = 20
    assert limits.limit_reason(OSError(errno.EMFILE, "Too many open files")) == \
        "too many open files (limit: 20, ulimit -n 20)"
    assert limits.limit_reason(MemoryError()) == "out of memory"
    rlimits[resource.RLIMIT_AS] = 500_000 << 10
    assert limits.limit_reason(MemoryError(), "worker limit") == \
        "out of memory (worker limit: 488 MiB of address space, ulimit -v 500000)"
    assert limits.limit_reason(RuntimeError("can't start new thread")) == \
        "could not start a thread: out of memory (limit: 488 MiB of address space, ulimit -v 500000)"
    rlimits[resource.RLIMIT_NPROC] = 50
    assert limits.limit_reason(BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")) == \
        "could not start a process: too many processes and threads (limit: 50, ulimit -u 50)"
    assert limits.limit_reason_in_text("Traceback (most recent call last):\n  ...\nMemoryError\n") == \
        "out of memory (limit: 488 MiB of address space, ulimit -v 500000)"
    assert limits.limit_reason(ValueError("not a limit")) is None
    assert limits.limit_reason(OSError(errno.ENOENT, "No such file")) is None


def test_a_full_disk_is_not_taken_for_full_shared_memory() -> None:
    """An encoder's ENOSPC names the output it could not write (outputs.as_output_error); only a segment's is
    shared memory. Seen once in six full-suite runs: '[proxy] no space left for shared memory (/dev/shm is full)'
    for a proxy that filled a 2 MB tmpfs."""
    import errno

    from pipeline.runtime.limits import limit_reason
    full_disk = OSError(errno.ENOSPC, "No space left on device", "/mnt/out/proxies/.a.42.fp-part.mp4")
    assert limit_reason(full_disk) is None
    assert limit_reason(OSError(errno.ENOSPC, "No space left on device")) is None
    full_shm = OSError(errno.ENOSPC, "No space left on device", "/framepipe_42_seg_0123456789abcdef")
    assert limit_reason(full_shm) == "no space left for shared memory (/dev/shm is full)"
