"""The same work on 1 and on 2 workers: how far the engine scales on this machine.

  1. A batch: the thumbnails preset (metadata, poster, a thumbnail every 2 s),
     ``cache=False`` so that every file is really decoded, over four 4 s 1080p30
     clips (``--quick``: four 2 s clips). Files per second; target: 2 workers
     >= 1.6x of 1 worker on 2 cores.
  2. One clip: bench_pipeline's numpy pipeline (decode to RGB -> a CPU-heavy
     numpy stage of ~40 ms a 1080p frame -> a 640x360 x264 ultrafast proxy)
     on one 1080p clip of 4 s (``--quick``: 2 s). Frames per second; the
     speed-up is shown, not judged (the proxy encoder is one serial stage).

The workers' server is warmed up with a tiny run before each measured one, so
the figures compare the steady state, not start-up; each figure is the best of
``--rounds`` runs (default 2, ``--quick`` 1). With 1 worker a file still gets
every core for FFmpeg's own threads (``run()`` gives each file cores / files in
flight), so the batch's 1-worker figure is not a strictly one-core figure.

Usage: python -m benchmarks.bench_scaling [--quick] [--rounds N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from pipeline import run
from stages import ClipSpec, make_clip, presets

from ._table import machine_line, print_table, verdict
from .bench_pipeline import calibrate_passes, numpy_pipeline


def _best_seconds(call, rounds: int) -> float:  # noqa: ANN001
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t0)
    return best


def make_batch(work: Path, seconds: float, *, audio: bool = False) -> tuple[Path, Path]:
    """Four 1080p30 clips of ``seconds`` in ``work/batch``, and a 0.1 s clip to warm the workers up with."""
    batch = work / "batch"
    batch.mkdir()
    for i in range(4):
        make_clip(batch / f"clip{i + 1}.mp4", ClipSpec(f"clip{i + 1}.mp4", 1920, 1080, seconds, fps=30, audio=audio),
                  seed=i)
    tiny = work / "tiny.mp4"
    make_clip(tiny, ClipSpec(tiny.name, 1920, 1080, 0.1, fps=30))
    return batch, tiny


def _timed_runs(pipe_factory, inputs, warm_input, work: Path, label: str, workers: int, rounds: int,  # noqa: ANN001
                executor: str = "local") -> float:
    """Best wall seconds of ``run(pipe, inputs, workers=workers, cache=False)`` on ``executor`` after a warm-up run."""
    run(pipe_factory(), warm_input, work / f"warm-{label}-{workers}", executor=executor, workers=workers, cache=False)
    counter = iter(range(10_000))

    def once() -> None:
        r = run(pipe_factory(), inputs, work / f"{label}-{workers}-{next(counter)}", executor=executor,
                workers=workers, cache=False)
        bad = [f for f in r.files if not f.ok]
        assert not bad, bad[0].error

    return _best_seconds(once, rounds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter clips, one round")
    parser.add_argument("--rounds", type=int, default=0, help="runs per figure, best kept (default 2; quick 1)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 2)
    batch_s = 2.0 if args.quick else 4.0
    clip_s = 2.0 if args.quick else 4.0
    print(machine_line())
    rows: list[tuple[object, ...]] = []
    with tempfile.TemporaryDirectory(prefix="framepipe-scaling-") as tmp:
        work = Path(tmp)
        batch, tiny = make_batch(work, batch_s)
        one_clip = work / "numpy-1080p.mp4"
        make_clip(one_clip, ClipSpec(one_clip.name, 1920, 1080, clip_s, fps=30))
        passes = calibrate_passes(tiny, 0.040)

        secs = {w: _timed_runs(lambda: presets.thumbnails(), batch, tiny, work, "thumbs", w, rounds) for w in (1, 2)}
        for w in (1, 2):
            rows.append((f"thumbnails preset, 4 x {batch_s:g} s 1080p", w, f"{secs[w]:.2f}",
                         f"{4 / secs[w]:.2f} files/s", f"{secs[1] / secs[w]:.2f}x"))
        batch_speedup = secs[1] / secs[2]

        n = round(clip_s * 30)
        nsecs = {w: _timed_runs(lambda: numpy_pipeline(passes), one_clip, tiny, work, "numpy", w, rounds)
                 for w in (1, 2)}
        for w in (1, 2):
            rows.append((f"numpy pipeline, one {clip_s:g} s 1080p clip", w, f"{nsecs[w]:.2f}",
                         f"{n / nsecs[w]:.1f} frames/s", f"{nsecs[1] / nsecs[w]:.2f}x"))
    print_table(f"1 worker vs 2 workers (best of {rounds}; numpy stage {passes} passes, ~40 ms a 1080p frame)",
                ("batch", "workers", "seconds", "throughput", "speed-up"), rows)
    print(f"  numpy pipeline speed-up (not a target): {nsecs[1] / nsecs[2]:.2f}x")
    ok = verdict("scaling 2 vs 1 workers, thumbnails batch", batch_speedup, 1.6)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
