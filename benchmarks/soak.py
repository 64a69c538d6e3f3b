"""Soak: a long batch with bad files, killed workers and an interrupt, then a resume — nothing lost, nothing leaked.

What it does (issue 9's soak; not part of ``make test`` nor ``make bench``):

  1. Makes ``--files`` inputs (default 200) in a temporary folder: small H.264 +
     AAC clips (320x180, 2 s, each with its own picture) and 5% bad ones
     (empty, random bytes, a clip cut in half with its index lost, text named
     ``.mp4``).
  2. Runs ``framepipe run -p default --no-cache -j 2`` on them as a separate
     process. Once the run ledger (``OUT/ledger.jsonl``) shows 20% and then 35%
     of the files finished, SIGKILLs one worker process chosen at random; at
     50% it sends SIGINT and waits for the run to end.
  3. Runs the same command again (it resumes), and checks: the first run ended
     with status 130 and left no hidden part file and no shared-memory segment;
     every good file is ok and every bad one failed, in the ledger and in
     ``report.parquet`` (one row per input); the resumed run redid nothing the
     first finished; every good file has its thumbnails, sprite sheet and proxy.
  4. Samples the memory of the run's whole process tree (USS, private bytes)
     plus framepipe's shared-memory segments every 0.2 s in both runs: "flat"
     means the peak of the resumed run's last quarter is at most 1.25x the peak
     of its second quarter (its first quarter is start-up).

Usage: python -m benchmarks.soak [--files N] [--keep DIR]
Exit status 0 when every check holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
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
    """The run's worker processes: forked by its worker server, so grandchildren of the run (leaves of its tree)."""
    try:
        tree = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    return [p for p in tree if p.ppid() != pid]


def interrupted_run(args: list[str], out: Path, total: int, rng: random.Random) -> tuple[int, int, int, float,
                                                                                        MemorySampler]:
    """The first run: two worker kills and a SIGINT at ledger milestones. (pid, status, kills, seconds, memory)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([*FRAMEPIPE, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    kills = 0
    with MemorySampler(0.2, proc.pid) as memory:
        for share in (0.20, 0.35):
            while len(ledger(out)) < share * total and proc.poll() is None:
                time.sleep(0.05)  # a benchmark polls; the tests wait on events
            victims = workers_of(proc.pid)
            if victims:
                rng.choice(victims).kill()
                kills += 1
        while len(ledger(out)) < 0.5 * total and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
    if proc.returncode != 130:
        print(err[-3000:])
    return proc.pid, proc.returncode, kills, time.perf_counter() - t0, memory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--keep", type=Path, help="work in DIR and keep it (default: a temporary folder)")
    args = parser.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="framepipe-soak-"))
    src, out = work / "in", work / "out"
    print(machine_line())
    t0 = time.perf_counter()
    good, bad = make_inputs(src, args.files)
    print(f"{len(good)} good clips + {len(bad)} bad files made in {time.perf_counter() - t0:.0f} s in {src}")
    command = ["run", str(src), "-o", str(out), "-p", "default", "--no-cache", "-q", "-j", "2"]
    rng = random.Random(1)

    pid, status, kills, first_s, first_mem = interrupted_run(command, out, args.files, rng)
    shm_left = sorted(p.name for p in Path("/dev/shm").glob(f"framepipe_{pid}_*"))
    parts_left = sorted(str(p.relative_to(out)) for p in out.rglob(".*") if p.is_file())
    done_first = ledger(out)
    mtimes = {f: (out / "proxies" / Path(f).with_suffix(".mp4")).stat().st_mtime_ns
              for f, s in done_first.items() if s == "ok"}

    t1 = time.perf_counter()
    resumed = subprocess.Popen([*FRAMEPIPE, *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with MemorySampler(0.2, resumed.pid) as again_mem:
        stdout, stderr = resumed.communicate(timeout=1800)
    again_s = time.perf_counter() - t1

    final = ledger(out)
    report = pq.read_table(out / "report.parquet").to_pylist()
    statuses = {row["relpath"]: row["status"] for row in report}
    redone = [f for f, m in mtimes.items()
              if (out / "proxies" / Path(f).with_suffix(".mp4")).stat().st_mtime_ns != m]
    missing = [f for f in good if not (out / "proxies" / Path(f).with_suffix(".mp4")).exists()
               or not any((out / "thumbnails" / Path(f).stem).glob("*.jpg"))
               or not (out / "sprites" / Path(f).stem / "sprites.vtt").exists()]
    rows = [
        ("first run", f"{first_s:.1f}", f"exit {status}", f"{len(done_first)} in ledger, {kills} worker kill(s)",
         f"{first_mem.peak() / 2**20:.0f}"),
        ("resumed run", f"{again_s:.1f}", f"exit {resumed.returncode}",
         f"{len(final) - len(done_first)} more, {len(done_first)} skipped", f"{again_mem.peak() / 2**20:.0f}"),
    ]
    print_table(f"Soak: {args.files} files ({len(bad)} bad), framepipe default preset, 2 workers",
                ["run", "seconds", "status", "files", "peak MiB (USS + shm)"], rows)
    quarters = [again_mem.peak(q / 4, (q + 1) / 4) / 2**20 for q in range(4)]
    print("resumed run, peak memory by quarter (MiB): " + ", ".join(f"{q:.0f}" for q in quarters))
    checks = {
        "first run ended by SIGINT (exit 130)": status == 130,
        "two workers were killed": kills == 2,
        "no shared-memory segment left by the first run": not shm_left,
        "no hidden part file left by the first run": not parts_left,
        "the resumed run exits 1 (bad files) and completes": resumed.returncode == 1,
        "every good file ok in the ledger": all(final.get(f) == "ok" for f in good),
        "every bad file failed in the ledger": all(final.get(f) == "failed" for f in bad),
        "report: one row per input, statuses as the ledger": len(report) == args.files and all(
            statuses.get(f) == s for f, s in final.items()),
        "nothing the first run finished was redone": not redone,
        "every good file has thumbnails, a sprite sheet and a proxy": not missing,
        "no shared-memory segment left at the end": not list(Path("/dev/shm").glob(f"framepipe_{resumed.pid}_*")),
    }
    for name, ok in checks.items():
        print(f"  check {name}: {'OK' if ok else 'FAILED'}")
    flat = verdict("memory flat: resumed run's last-quarter peak / second-quarter peak",
                   quarters[3] / max(1e-9, quarters[1]), 1.25, at_most=True)
    if not all(checks.values()):
        print(stderr[-3000:])
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(checks.values()) and flat else 1


if __name__ == "__main__":
    sys.exit(main())
