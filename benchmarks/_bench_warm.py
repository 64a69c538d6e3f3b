"""A warm re-run against a cold one: the thumbnails preset over the generated samples, then over clips.

Cold: an empty cache, and the workers' server started afresh (as a new
``framepipe`` command does). Warm: the same run again over unchanged files,
in the same process, and then as a whole new command (whose Python start-up
and imports the cache cannot save).

Then, as commands over six 10 s 1080p camera-like clips (``clipsets``' vf-gop1s
set with six files; ``--quick``: its quick set), the issue's "instant start":
``framepipe run CLIPS -o OUT -p thumbnails`` run twice, the second time with
every file done by the first (resumed from OUT's ledger: no worker, no numpy,
PyAV, pyarrow or Pillow), and once more into another folder with every file
remembered by the cache. Commands run with Python's bytecode cache on (as an
installed package has its ``.pyc`` files), whatever ``PYTHONDONTWRITEBYTECODE``
says here: else every start would compile the engine's modules again.

Usage: python -m benchmarks._bench_warm [--quick] [--only samples|clips]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline import run
from pipeline.runtime.forkserver import stop_server
from stages import generate_samples, presets

from ._table import machine_line, print_table, verdict


def _cli(samples: Path, out: Path, cache: Path) -> float:
    """Seconds of ``framepipe run SAMPLES -o OUT -p thumbnails`` as a new command (bytecode cache on)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pipeline", "run", str(samples), "-o", str(out), "-p", "thumbnails",
                           "-q", "--cache-dir", str(cache)], check=False, capture_output=True, env=env)
    took = time.perf_counter() - t0
    if done.returncode not in (0, 1):  # 1: a file failed (the samples hold a broken one on purpose)
        raise RuntimeError(f"framepipe run failed ({done.returncode}): {done.stderr.decode(errors='replace')}")
    return took


def bench_warm(quick: bool = False) -> tuple[list[tuple[object, ...]], list[tuple[str, float, float, bool]]]:
    """Rows of (run, seconds, ratio) and the target check (warm in-process >= 20x faster than cold)."""
    with tempfile.TemporaryDirectory(prefix="framepipe-warm-") as tmp:
        work = Path(tmp)
        samples = work / "samples"
        generate_samples(samples, scale=0.5 if quick else 1.0)
        cache = work / "cache"
        stop_server()
        t0 = time.perf_counter()
        cold_result = run(presets.thumbnails(), samples, work / "cold", cache=cache, workers=2)
        cold = time.perf_counter() - t0
        warm_runs = []
        for i in range(3):
            t0 = time.perf_counter()
            warm_result = run(presets.thumbnails(), samples, work / f"warm{i}", cache=cache, workers=2)
            warm_runs.append(time.perf_counter() - t0)
        warm = min(warm_runs)
        assert [r.record for r in warm_result.files] == [r.record for r in cold_result.files]
        cli_cold = _cli(samples, work / "cli-cold", work / "cli-cache")
        cli_warm = _cli(samples, work / "cli-warm", work / "cli-cache")
    n = len(cold_result.files)
    rows = [(f"cold: {n} files, empty cache", f"{cold:.3f}", "1.0x"),
            ("warm, same process (best of 3)", f"{warm:.3f}", f"{cold / warm:.1f}x"),
            ("framepipe command, cold", f"{cli_cold:.3f}", "1.0x"),
            ("framepipe command, warm", f"{cli_warm:.3f}", f"{cli_cold / cli_warm:.1f}x")]
    return rows, [("warm re-run vs cold, thumbnails preset", cold / warm, 20.0, False)]


def bench_resume(quick: bool = False, repeats: int = 7) -> tuple[str, list[tuple[object, ...]],
                                                                 list[tuple[str, float, float, bool]]]:
    """The issue's instant start, as commands over six 10 s 1080p clips: the set's name, rows of (run, seconds,
    ratio) and the target check (a re-run with every file done >= 50x faster than the cold first run)."""
    from .clipsets import clip_sets, ensure
    base = next(c for c in clip_sets(quick) if c.name == "vf-gop1s")
    footage = ensure(base if quick else dataclasses.replace(base, files=6))
    clips = footage.folder
    what = f"{len(footage.clips)} x {footage.clip_set.seconds:g} s {footage.clip_set.height}p ({base.name})"
    with tempfile.TemporaryDirectory(prefix="framepipe-resume-") as tmp:
        work = Path(tmp)
        out, cache = work / "out", work / "cache"
        cold = _cli(clips, out, cache)
        warm = [_cli(clips, out, cache) for _ in range(repeats)]  # every file done: resumed from OUT's ledger
        remembered = [_cli(clips, work / f"again{i}", cache) for i in range(3)]  # a new OUT, every file cached
    best, median = min(warm), sorted(warm)[repeats // 2]
    rows = [(f"cold: first run, {what}, empty cache", f"{cold:.3f}", "1.0x"),
            (f"warm: the same command again, every file done (best of {repeats})", f"{best:.3f}",
             f"{cold / best:.1f}x"),
            (f"  median of {repeats}", f"{median:.3f}", f"{cold / median:.1f}x"),
            ("remembered: into a new folder, every file cached (best of 3)", f"{min(remembered):.3f}",
             f"{cold / min(remembered):.1f}x")]
    return what, rows, [("re-run with every file done vs cold, as a command", cold / best, 50.0, False)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="half-size samples, the quick clip set")
    parser.add_argument("--only", choices=("samples", "clips"), help="one of the two benchmarks")
    args = parser.parse_args(argv)
    print(machine_line())
    checks = []
    if args.only in (None, "samples"):
        rows, c = bench_warm(args.quick)
        print_table("Thumbnails preset over the samples: cold vs warm (cache of stage results)",
                    ("run", "seconds", "faster"), rows)
        checks += c
    if args.only in (None, "clips"):
        what, rows, c = bench_resume(args.quick)
        print_table(f"framepipe run CLIPS -o OUT -p thumbnails, as a command over {what}: cold vs warm",
                    ("run", "seconds", "faster"), rows)
        checks += c
    ok = [verdict(name, value, goal, at_most=at_most) for name, value, goal, at_most in checks]
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
