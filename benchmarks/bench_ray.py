"""The local executor against the Ray executor on this machine: what running on Ray costs where one machine does.

  1. A batch: the default preset (metadata, audio levels, thumbnails, sprite sheet, 720p proxy), ``cache=False``,
     over four 4 s 1080p30 clips (``--quick``: 2 s). Each file is a Ray actor call; nothing but the file's
     name and its result crosses.
  2. Map stages: bench_pipeline's numpy pipeline (decode to RGB -> a ~40 ms numpy stage, frame-parallel ->
     a 640x360 x264 ultrafast proxy) on one 1080p clip of 4 s (``--quick``: 2 s): every frame goes to a Ray task
     through the object store and back.
  3. Ray itself: starting and stopping a local instance, which ``framepipe run --executor ray`` without
     ``--address`` pays once per command (a cluster that is already up costs neither).

Both executors get the same cores (``--workers``, default all). Each figure is the best of ``--rounds`` runs
(default 2, ``--quick`` 1) after a warm-up run of each; the Ray runs share one local instance started before
them, as a cluster would be, so 1 and 2 compare steady states and 3 is what one command adds on top.
Overhead = Ray seconds / local seconds.

Usage: python -m benchmarks.bench_ray [--quick] [--rounds N] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pipeline import Pipeline
from stages import ClipSpec, make_clip, presets

from ._table import machine_line, print_table
from .bench_pipeline import calibrate_passes, numpy_pipeline
from .bench_scaling import _timed_runs, make_batch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter clips, one round")
    parser.add_argument("--rounds", type=int, default=0, help="runs per figure, best kept (default 2; quick 1)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="cores for each executor")
    args = parser.parse_args(argv)
    try:
        import ray

        from pipeline.executors.ray import start_local_ray
    except ImportError:
        print("ray is not installed: pip install framepipe[ray]")
        return 0
    rounds = args.rounds or (1 if args.quick else 2)
    clip_s = 2.0 if args.quick else 4.0
    print(machine_line())
    rows: list[tuple[object, ...]] = []
    with tempfile.TemporaryDirectory(prefix="framepipe-ray-bench-") as tmp:
        work = Path(tmp)
        batch, tiny = make_batch(work, clip_s, audio=True)
        one_clip = work / "numpy"
        one_clip.mkdir()
        make_clip(one_clip / "numpy-1080p.mp4", ClipSpec("numpy-1080p.mp4", 1920, 1080, clip_s, fps=30))
        passes = calibrate_passes(tiny, 0.040)
        workloads: list[tuple[str, Callable[[], Pipeline], Path, str, float]] = [
            (f"default preset, 4 x {clip_s:g} s 1080p", lambda: presets.default(), batch, "files/s", 4),
            (f"numpy map stage, one {clip_s:g} s 1080p clip", lambda: numpy_pipeline(passes), one_clip, "frames/s",
             round(clip_s * 30)),
        ]
        t0 = time.perf_counter()
        start_local_ray(num_cpus=args.workers)
        started = time.perf_counter() - t0
        try:
            for i, (label, factory, inputs, unit, n) in enumerate(workloads):
                secs = {ex: _timed_runs(factory, inputs, tiny, work, f"w{i}-{ex}", args.workers, rounds, executor=ex)
                        for ex in ("local", "ray")}
                rows.append((label, f"{secs['local']:.2f}", f"{secs['ray']:.2f}", f"{n / secs['local']:.2f} {unit}",
                             f"{n / secs['ray']:.2f} {unit}", f"{secs['ray'] / secs['local']:.2f}x"))
        finally:
            t0 = time.perf_counter()
            ray.shutdown()
            stopped = time.perf_counter() - t0
    print_table(f"local vs Ray executor, {args.workers} CPUs each (best of {rounds}; numpy stage {passes} passes, "
                "~40 ms a 1080p frame)",
                ("workload", "local s", "ray s", "local", "ray", "overhead"), rows)
    print(f"\n  a local Ray instance: {started:.2f} s to start, {stopped:.2f} s to stop "
          f"(paid once by a `framepipe run --executor ray` without --address)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
