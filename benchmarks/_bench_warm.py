"""A warm re-run against a cold one: the thumbnails preset over the generated samples.

Cold: an empty cache, and the workers' server started afresh (as a new
``framepipe`` command does). Warm: the same run again over unchanged files,
in the same process, and then as a whole new command (whose Python start-up
and imports the cache cannot save).

Usage: python -m benchmarks._bench_warm [--quick]
"""

from __future__ import annotations

import argparse
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
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipeline", "run", str(samples), "-o", str(out), "-p", "thumbnails", "-q",
                    "--cache-dir", str(cache)], check=False, capture_output=True)
    return time.perf_counter() - t0


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="half-size samples")
    args = parser.parse_args(argv)
    print(machine_line())
    rows, checks = bench_warm(args.quick)
    print_table("Thumbnails preset over the samples: cold vs warm (cache of stage results)",
                ("run", "seconds", "faster"), rows)
    ok = [verdict(name, value, goal, at_most=at_most) for name, value, goal, at_most in checks]
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
