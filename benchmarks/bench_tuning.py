"""The ``auto`` performance profile against hand-tuned splits of the cores.

Pipeline: the numpy pipeline of ``bench_pipeline`` (decode -> a CPU-heavy numpy
map stage -> x264 ultrafast 640x360) over a few 1080p clips. Hand-tuned: every
split of map-pool size and files in flight (actors) that makes sense on this
machine's cores. ``auto``: the ``auto`` profile started from a deliberately poor
split (a map pool of one worker, one file in flight); the optimizer has to find
the bottleneck itself. Printed: frames/s of each, the optimizer's decisions, and
auto / best hand-tuned (target >= 0.9).

Usage: python -m benchmarks.bench_tuning [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from pipeline import run
from pipeline.tuning.performance import PerformanceConfig
from stages import ClipSpec, make_clip

from .bench_pipeline import calibrate_passes, numpy_pipeline

_TARGET = 0.9


def splits(cores: int) -> list[tuple[int, int]]:
    """(map workers, files in flight) pairs worth trying on ``cores`` cores."""
    out = {(m, a) for m in range(1, cores + 1) for a in (1, max(1, cores // 2), cores) if m + a <= cores + 1}
    return sorted(out)


def timed(label: str, clips: Path, out: Path, frames: int, passes: int,
          config: PerformanceConfig) -> tuple[str, float, list]:
    t0 = time.perf_counter()
    r = run(numpy_pipeline(passes), clips, out, performance=config, write_reports=False)
    fps = frames / (time.perf_counter() - t0)
    assert all(f.ok for f in r.files), [f.error for f in r.files if not f.ok]
    return label, fps, r.decisions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter clips (about 30 s in all)")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    seconds, n_clips = (2.0, 2) if args.quick else (4.0, 3)
    with tempfile.TemporaryDirectory(prefix="bench-tuning-") as tmp:
        work = Path(tmp)
        clips = work / "clips"
        clips.mkdir()
        for i in range(n_clips):
            make_clip(clips / f"c{i}.mp4", ClipSpec(f"c{i}.mp4", 1920, 1080, seconds, fps=30), seed=i)
        frames = n_clips * round(seconds * 30)
        passes = calibrate_passes(clips / "c0.mp4", 0.040)
        base = PerformanceConfig.video_processing()
        run(numpy_pipeline(passes), clips / "c0.mp4", work / "warm", performance=base, write_reports=False)
        rows = []
        for m, a in splits(cores):
            cfg = base.replace(workers=cores, map_workers=m, files_in_flight=a)
            rows.append(timed(f"hand-tuned: map pool {m}, {a} file(s) in flight", clips, work / f"h{m}{a}",
                              frames, passes, cfg))
        poor = PerformanceConfig.auto().replace(workers=cores, map_workers=1, files_in_flight=1)
        auto = timed("auto, from map pool 1, 1 file in flight", clips, work / "auto", frames, passes, poor)
    best = max(rows, key=lambda r: r[1])
    print(f"\nbench_tuning: {n_clips} x {seconds:.0f} s 1080p clips ({frames} frames), numpy stage ~40 ms a frame, "
          f"{cores} cores")
    print(f"{'configuration':<48} {'frames/s':>9}")
    for label, fps, _ in [*rows, auto]:
        print(f"{label:<48} {fps:9.1f}")
    print("auto's decisions:")
    for d in auto[2] or []:
        print("  " + d.line())
    if not auto[2]:
        print("  (none)")
    ratio = auto[1] / best[1]
    print(f"auto / best hand-tuned ({best[0]}): {ratio:.2f} (target >= {_TARGET}) "
          f"{'ok' if ratio >= _TARGET else 'BELOW TARGET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
