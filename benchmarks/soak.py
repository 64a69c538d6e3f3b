"""Soak: a long batch with bad and special files, killed workers, a killed parent and an interrupt, each
followed by a resume — nothing lost, nothing redone, nothing orphaned, nothing leaked.

What it does (issue 15's soak; not part of ``make test`` nor ``make bench``):

  1. Makes ``--files`` inputs (default 1,000) in a temporary folder: small H.264 +
     AAC clips (320x180, 2 s, each with its own picture), 5% bad ones (empty,
     random bytes, a clip cut in half with its index lost, text named ``.mp4``)
     and a few special files that must be skipped, never opened: FIFOs named
     ``.mp4`` and links to ``/dev/zero`` and ``/dev/urandom``.
  2. Run 1: ``framepipe run -p default --no-cache -j 2`` as a separate process
     in its own session. At 10% of the files in the run ledger it SIGKILLs one
     worker; at 20% it SIGKILLs the parent (as the OOM killer would) and checks
     that every process of the session is gone within 5 s.
  3. Run 2 (resumes): at 40% SIGKILLs a worker, at 55% sends SIGINT.
  4. Run 3 (resumes) to the end. Checks: every good file ok and every bad one
     failed, in the ledger and in ``report.parquet`` (one row per regular input,
     no special file among them); each good file was done exactly once (its
     outputs, once in the ledger, are never written again: same inode and
     mtime); no shared-memory segment, hidden part file or staging folder left;
     no process of any run's session left; every good file has its thumbnails,
     sprite sheet and proxy.
  5. Samples the memory of each run's process tree (USS) plus framepipe's
     shared-memory segments every 0.2 s: "flat" means the peak of the last
     run's last quarter is at most 1.25x the peak of its second quarter.

Usage: python -m benchmarks.soak [--files N] [--keep DIR]
Exit status 0 when every check holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq

from stages import ClipSpec, make_clip

from ._table import machine_line, print_table, verdict
from .bench_memory import MemorySampler

FRAMEPIPE = [sys.executable, "-m", "pipeline"]
BAD_KINDS = ("empty", "random", "truncated", "text")


def make_inputs(folder: Path, count: int, bad_share: float = 0.05) -> tuple[list[str], list[str]]:
    """``count`` inputs in ``folder``: (names of good clips, names of bad files)."""
    folder.mkdir(parents=True, exist_ok=True)
    n_bad = max(1, round(count * bad_share))
    good, bad = [], []
    spec = ClipSpec("soak", 320, 180, 2.0, audio=True)
    for i in range(count - n_bad):
        name = f"clip{i:04d}.mp4"
        make_clip(folder / name, spec, seed=i)
        good.append(name)
    rng = random.Random(9)
    for i in range(n_bad):
        kind = BAD_KINDS[i % len(BAD_KINDS)]
        path = folder / f"bad{i:02d}_{kind}.mp4"
        if kind == "empty":
            path.write_bytes(b"")
        elif kind == "random":
            path.write_bytes(rng.randbytes(64_000))
        elif kind == "truncated":
            data = (folder / good[i]).read_bytes()
            path.write_bytes(data[: len(data) // 2])  # the index (moov) is at the end: cut off
        else:
            path.write_text("this is not a video\n" * 100)
        bad.append(path.name)
    return good, bad


def make_special(folder: Path, count: int = 6) -> list[str]:
    """FIFOs and links to character devices named like videos: a run must skip them without opening them."""
    names = []
    for i in range(count):
        path = folder / f"special{i:02d}.mp4"
        if i % 3 == 0:
            os.mkfifo(path)
        else:
            path.symlink_to("/dev/zero" if i % 3 == 1 else "/dev/urandom")
        names.append(path.name)
    return names


def ledger(out: Path) -> dict[str, str]:
    """File -> last status in the run ledger (whole lines only)."""
    path = out / "ledger.jsonl"
    entries: dict[str, str] = {}
    if not path.exists():
        return entries
    for line in path.read_bytes().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        entries[entry["file"]] = entry["status"]
    return entries


def workers_of(pid: int) -> list[psutil.Process]:
    """The run's worker processes: the children of its worker server (forks of it, so its command line too)."""
    try:
        servers = [p for p in psutil.Process(pid).children() if "forkserver" in " ".join(p.cmdline())]
        return [w for server in servers for w in server.children()]
    except psutil.Error:
        return []


def session_processes(sid: int) -> list[psutil.Process]:
    """Every live process of session ``sid`` (zombies excluded: they have ended)."""
    found = []
    for p in psutil.process_iter(["status"]):
        try:
            if os.getsid(p.pid) == sid and p.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(p)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return found


def gone_within(sid: int, seconds: float) -> tuple[bool, float]:
    """Whether every process of session ``sid`` ended within ``seconds``, and how long it took."""
    t0 = time.perf_counter()
    while session_processes(sid):
        if time.perf_counter() - t0 > seconds:
            return False, time.perf_counter() - t0
        time.sleep(0.05)
    return True, time.perf_counter() - t0


def wait_for(out: Path, count: float, proc: subprocess.Popen[str]) -> None:
    while len(ledger(out)) < count and proc.poll() is None:
        time.sleep(0.05)  # a benchmark polls; the tests wait on events


def stamps(out: Path) -> dict[str, tuple[int, int]]:
    """Inode and mtime of every output the ledger names for a finished file: changed only if it is written again."""
    found: dict[str, tuple[int, int]] = {}
    path = out / "ledger.jsonl"
    if not path.exists():
        return found
    for line in path.read_bytes().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry["status"] != "ok":
            continue
        for rel in entry["outputs"]:
            try:
                st = (out / rel).stat()
            except OSError:
                continue
            found[rel] = (st.st_ino, st.st_mtime_ns)
    return found


class Phase:
    """One run of the soak: started in its own session, stopped by what the plan says, its memory sampled."""

    def __init__(self, name: str, args: list[str]) -> None:
        self.name = name
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen([*FRAMEPIPE, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)
        self.sid = self.proc.pid
        self.memory = MemorySampler(0.2, self.proc.pid).__enter__()
        self.kills = 0
        self.err = ""
        self.orphans_gone: tuple[bool, float] | None = None

    def kill_a_worker(self, rng: random.Random) -> None:
        victims = workers_of(self.proc.pid)
        if victims:
            rng.choice(victims).kill()
            self.kills += 1

    def kill_parent(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.orphans_gone = gone_within(self.sid, 5.0)
        self.end(timeout=30)

    def end(self, timeout: float = 3600) -> None:
        try:
            _, self.err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:  # its stderr held open by a process that outlived it
            for p in session_processes(self.sid):
                p.kill()
            _, self.err = self.proc.communicate()
        self.memory.__exit__(None, None, None)
        self.seconds = time.perf_counter() - self.t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--keep", type=Path, help="work in DIR and keep it (default: a temporary folder)")
    args = parser.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="framepipe-soak-"))
    src, out = work / "in", work / "out"
    print(machine_line())
    t0 = time.perf_counter()
    good, bad = make_inputs(src, args.files)
    special = make_special(src)
    print(f"{len(good)} good clips + {len(bad)} bad files + {len(special)} special files made in "
          f"{time.perf_counter() - t0:.0f} s in {src}")
    command = ["run", str(src), "-o", str(out), "-p", "default", "--no-cache", "-q", "-j", "2"]
    total = args.files
    rng = random.Random(1)
    seen: dict[str, tuple[int, int]] = {}  # outputs of finished files as first seen: never to change
    rewritten: set[str] = set()

    def note_stamps() -> None:
        for rel, stamp in stamps(out).items():
            if seen.setdefault(rel, stamp) != stamp:
                rewritten.add(rel)

    first = Phase("run 1: worker kill, parent SIGKILL", command)
    wait_for(out, 0.10 * total, first.proc)
    first.kill_a_worker(rng)
    wait_for(out, 0.20 * total, first.proc)
    first.kill_parent()
    after_first = len(ledger(out))
    parts_after_kill = sorted(str(p.relative_to(out)) for p in out.rglob(".*.fp-part*"))
    note_stamps()

    second = Phase("run 2: worker kill, SIGINT", command)
    wait_for(out, 0.40 * total, second.proc)
    second.kill_a_worker(rng)
    wait_for(out, 0.55 * total, second.proc)
    second.proc.send_signal(signal.SIGINT)
    second.end(timeout=300)
    after_second = len(ledger(out))
    second_left = session_processes(second.sid)
    note_stamps()

    third = Phase("run 3: to the end", command)
    third.end()
    note_stamps()

    final = ledger(out)
    report = pq.read_table(out / "report.parquet").to_pylist()
    statuses = {row["relpath"]: row["status"] for row in report}
    missing = [f for f in good if not (out / "proxies" / Path(f).with_suffix(".mp4")).exists()
               or not any((out / "thumbnails" / Path(f).stem).glob("*.jpg"))
               or not (out / "sprites" / Path(f).stem / "sprites.vtt").exists()]
    phases = [first, second, third]
    rows = [
        (first.name, f"{first.seconds:.1f}", "SIGKILL", f"{after_first} in ledger, {first.kills} worker kill(s)",
         f"{first.memory.peak() / 2**20:.0f}"),
        (second.name, f"{second.seconds:.1f}", f"exit {second.proc.returncode}",
         f"{after_second - after_first} more, {second.kills} worker kill(s)", f"{second.memory.peak() / 2**20:.0f}"),
        (third.name, f"{third.seconds:.1f}", f"exit {third.proc.returncode}", f"{len(final) - after_second} more",
         f"{third.memory.peak() / 2**20:.0f}"),
    ]
    print_table(f"Soak: {total} files ({len(bad)} bad) + {len(special)} special, framepipe default preset, 2 workers",
                ["run", "seconds", "status", "files", "peak MiB (USS + shm)"], rows)
    gone, took = first.orphans_gone or (False, 0.0)
    print(f"after the parent's SIGKILL every process of its session ended in {took:.2f} s")
    quarters = [third.memory.peak(q / 4, (q + 1) / 4) / 2**20 for q in range(4)]
    print("last run, peak memory by quarter (MiB): " + ", ".join(f"{q:.0f}" for q in quarters))
    skipped_lines = [line for line in third.err.splitlines() if "not a regular file" in line]
    checks = {
        "two workers were killed": first.kills + second.kills == 2,
        "no process of the killed run's session 5 s after its SIGKILL": gone,
        "run 2 ended by SIGINT (exit 130), nothing of its session left": second.proc.returncode == 130
            and not second_left,
        "no hidden part file left": not sorted(
            str(p.relative_to(out)) for p in out.rglob(".*.fp-part*")),
        "the last run exits 1 (bad files) and completes": third.proc.returncode == 1,
        "every good file ok in the ledger": all(final.get(f) == "ok" for f in good),
        "every bad file failed in the ledger": all(final.get(f) == "failed" for f in bad),
        "special files skipped with one line each, never in the ledger or report": len(skipped_lines) == len(
            special) and not any(f in final or f in statuses for f in special),
        "report: one row per regular input, statuses as the ledger": len(report) == total and all(
            statuses.get(f) == s for f, s in final.items()),
        "each good file done exactly once (no finished output written again)": not rewritten,
        "every good file has thumbnails, a sprite sheet and a proxy": not missing,
        "no staging folder left": not (out / ".framepipe-staging").exists(),
        "no shared-memory segment left by any run": not [p for ph in phases
                                                         for p in Path("/dev/shm").glob(f"framepipe_{ph.proc.pid}_*")],
        "no process of any run left": not [p for ph in phases for p in session_processes(ph.sid)],
    }
    for name, ok in checks.items():
        print(f"  check {name}: {'OK' if ok else 'FAILED'}")
    if parts_after_kill:
        print(f"  (the SIGKILLed run left {len(parts_after_kill)} part file(s); the next run swept them)")
    flat = verdict("memory flat: last run's last-quarter peak / second-quarter peak",
                   quarters[3] / max(1e-9, quarters[1]), 1.25, at_most=True)
    if not all(checks.values()):
        print(third.err[-3000:])
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(checks.values()) and flat else 1


if __name__ == "__main__":
    sys.exit(main())
