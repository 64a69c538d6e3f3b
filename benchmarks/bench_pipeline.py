"""The streaming executor against one process and against ``multiprocessing.Pool.imap``.

Pipeline: decode (to RGB) -> a CPU-heavy numpy stage (~40 ms a 1080p frame) ->
a cheap sink (x264 ultrafast at 640x360), on a 10 s 1080p and a 4 s 4K clip. Measured,
in frames/s:

  (a) one process: the same pipeline on the inline executor, confined to one core
      and then free to use FFmpeg's threads on every core;
  (b) framepipe: the local executor, the numpy stage frame-parallel on N workers;
  (c) the usual alternative: the parent decodes, ``multiprocessing.Pool(N).imap``
      sends pickled frames to workers and back, the parent encodes.

"bound" is what the stages' CPU cost alone allows on N cores: N / (CPU seconds of
decode + numpy + sink per frame, each measured single-threaded); efficiency is
(b) over it. Then the same for an encode-heavy pipeline (1080p -> 720p x264
veryfast, no numpy stage), where the encoder, not the engine, sets the pace.

First the fixed costs: a 3-frame run, and the start of the command (``framepipe
--version`` and ``--help``, median of 10, against ``python -c pass``).

Usage: python -m benchmarks.bench_pipeline [--quick] [--workers N] [--only startup|1080p|4K|encode]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from pipeline import FRAME, Pipeline, Stage, run
from pipeline.runtime.forkserver import stop_server
from stages import ClipSpec, Decode, Proxy, make_clip

from ._table import machine_line, print_table, verdict

HEAVY_PASSES = 9  # calibrated below so that a 1080p frame costs about 40 ms


def heavy(rgb: np.ndarray, passes: int, out: np.ndarray | None = None) -> np.ndarray:
    """A tone curve of ``passes`` nested sines, in bands of 16 rows that stay in the CPU cache.

    Compute-bound on purpose: a whole-frame float32 filter is memory-bound on
    this machine (two processes each ran 1.7x slower than one), which would
    measure the memory bus instead of the engine.
    """
    out = np.empty_like(rgb) if out is None else out
    for y in range(0, rgb.shape[0], 16):
        x = rgb[y:y + 16].astype(np.float32)
        for _ in range(passes):
            x = np.sin(x * 0.05) * 100.0 + 128.0
        out[y:y + 16] = x
    return out


class Heavy(Stage):
    """The CPU-heavy numpy stage, frame-parallel."""

    accepts = (FRAME,)
    emits = (FRAME,)
    stateful = False

    def __init__(self, passes: int) -> None:
        super().__init__("numpy_blur")
        self.passes = passes

    def process(self, item, ctx):  # noqa: ANN001, ANN201
        rgb = item.array()
        out = ctx.output_array(rgb.shape, rgb.dtype) if hasattr(ctx, "output_array") else None
        yield item.with_pixels(heavy(rgb, self.passes, out), "rgb24")  # written straight into its slot


def numpy_pipeline(passes: int) -> Pipeline:
    p = Pipeline("bench-numpy")
    decode = p.add(Decode(pixel_format="rgb24", audio=False))
    blur = p.add(Heavy(passes), after=decode)
    p.add(Proxy(max_width=640, max_height=360, preset="ultrafast", audio=False), after=blur)
    return p


def encode_pipeline() -> Pipeline:
    p = Pipeline("bench-encode")
    decode = p.add(Decode(audio=False))
    p.add(Proxy(max_width=1280, max_height=720, preset="veryfast", audio=False), after=decode)
    return p


# --- the usual alternative: multiprocessing.Pool.imap over pickled frames ---------------

_PASSES = HEAVY_PASSES


def _pool_init(passes: int) -> None:
    global _PASSES
    _PASSES = passes


def _pool_task(rgb: np.ndarray) -> np.ndarray:
    return heavy(rgb, _PASSES)


def run_mp_pool(path: Path, out: Path, workers: int, passes: int) -> int:
    """Parent decodes and encodes; the numpy stage runs in ``Pool.imap`` with pickled frames."""
    n = 0
    with av.open(str(path)) as src, av.open(str(out), "w") as dst, \
            multiprocessing.get_context("spawn").Pool(workers, _pool_init, (passes,)) as pool:
        vin = src.streams.video[0]
        vin.codec_context.thread_type = "AUTO"
        vout = dst.add_stream("libx264", rate=vin.average_rate)
        vout.width, vout.height, vout.pix_fmt = 640, 360, "yuv420p"
        vout.options = {"preset": "ultrafast", "crf": "23"}
        frames = (f.to_ndarray(format="rgb24") for f in src.decode(vin))
        for rgb in pool.imap(_pool_task, frames, chunksize=1):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(640, 360, "yuv420p")
            frame.pts = n
            for packet in vout.encode(frame):
                dst.mux(packet)
            n += 1
        for packet in vout.encode(None):
            dst.mux(packet)
    return n


# --- CPU cost of each stage, single-threaded -----------------------------------------------

def stage_costs(path: Path, passes: int, with_numpy: bool, target: tuple[int, int], preset: str) -> dict[str, float]:
    """CPU seconds per frame of decode, numpy and sink, each on one thread (process_time).

    Decoding streams (each frame converted, then dropped) so that the figure is not
    inflated by page faults on hundreds of frames held at once; numpy and the sink
    run on a sample of up to 24 frames, best of two rounds.
    """
    sample: list = []
    n = 0
    t0 = time.process_time()
    with av.open(str(path)) as src:
        v = src.streams.video[0]
        v.codec_context.thread_count = 1
        for f in src.decode(v):
            frame = f.to_ndarray(format="rgb24") if with_numpy else f
            if len(sample) < 24:
                sample.append(frame)
            n += 1
    costs = {"decode": (time.process_time() - t0) / n}
    if with_numpy:
        costs["numpy"] = _best_of(2, lambda: [heavy(f, passes) for f in sample[:8]]) / len(sample[:8])

    def sink() -> None:
        enc = av.CodecContext.create("libx264", "w")
        enc.width, enc.height, enc.pix_fmt = target[0], target[1], "yuv420p"
        enc.time_base = Fraction(1, 30)
        enc.options = {"preset": preset, "crf": "23"}
        enc.thread_count = 1
        for i, f in enumerate(sample):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24") if with_numpy else f
            vf = vf.reformat(target[0], target[1], "yuv420p")
            vf.pts = i
            vf.pict_type = 0
            enc.encode(vf)
        enc.encode(None)

    costs["sink"] = _best_of(2, sink) / len(sample)
    return costs


def _best_of(rounds: int, call) -> float:  # noqa: ANN001
    """The least CPU seconds ``call()`` took over ``rounds`` calls."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        call()
        best = min(best, time.process_time() - t0)
    return best


def on_one_core(call):  # noqa: ANN001, ANN201
    """Run ``call()`` with this process confined to one core (FFmpeg then starts one thread)."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        return call()
    finally:
        os.sched_setaffinity(0, before)


def calibrate_passes(clip: Path, target_s: float) -> int:
    """Passes of ``heavy`` that cost ``target_s`` on a frame of ``clip`` (the sines' cost depends on the pixels)."""
    with av.open(str(clip)) as src:
        rgb = next(src.decode(video=0)).to_ndarray(format="rgb24")
    heavy(rgb, 1)
    per_pass = _best_of(5, lambda: heavy(rgb, 2)) / 2
    return max(1, round(target_s / per_pass))


def bench_numpy(label: str, size: tuple[int, int], seconds: float, workers: int, workdir: Path,
                passes: int) -> tuple[list[tuple[object, ...]], list[tuple[str, float, float, bool]]]:
    clip = workdir / f"{label}.mp4"
    make_clip(clip, ClipSpec(clip.name, size[0], size[1], seconds, fps=30))
    n = round(seconds * 30)
    pipe = numpy_pipeline(passes)
    t0 = time.perf_counter()
    r = on_one_core(lambda: run(pipe, clip, workdir / f"a1-{label}", executor="inline"))
    one_core = n / (time.perf_counter() - t0)
    assert r.files[0].ok, r.files[0].error
    t0 = time.perf_counter()
    r = run(pipe, clip, workdir / f"a-{label}", executor="inline")
    one = n / (time.perf_counter() - t0)
    assert r.files[0].ok, r.files[0].error
    stop_server()  # (b) pays the workers' start-up, as a new framepipe command does
    t0 = time.perf_counter()
    r = run(pipe, clip, workdir / f"b-{label}", executor="local", workers=workers)
    ours = n / (time.perf_counter() - t0)
    assert r.files[0].ok, r.files[0].error
    table = r.table()
    t0 = time.perf_counter()
    done = run_mp_pool(clip, workdir / f"c-{label}.mp4", workers, passes)
    mp_fps = done / (time.perf_counter() - t0)
    costs = stage_costs(clip, passes, True, (640, 360), "ultrafast")
    bound = workers / sum(costs.values())
    numpy_only = workers / costs["numpy"]
    rows = [(label, "(a) one process, one core", f"{one_core:.1f}", f"{one_core / one:.2f}x"),
            (label, "(a) one process (FFmpeg threads on every core)", f"{one:.1f}", "1.00x"),
            (label, f"(b) framepipe, {workers} workers", f"{ours:.1f}", f"{ours / one:.2f}x"),
            (label, f"(c) Pool.imap, {workers} workers", f"{mp_fps:.1f}", f"{mp_fps / one:.2f}x"),
            (label, "bound: " + " + ".join(f"{k} {v * 1e3:.1f} ms" for k, v in costs.items()),
             f"{bound:.1f}", f"{bound / one:.2f}x"),
            (label, "ceiling if decode and sink were free", f"{numpy_only:.1f}", f"{numpy_only / one:.2f}x")]
    print(f"\nframepipe's own statistics for (b), {label}:\n{table}")
    print(f"no engine on {workers} cores can pass {numpy_only:.1f} frames/s here: (b)/(a) <= "
          f"{numpy_only / one:.2f}x and (b)/(c) <= {numpy_only / mp_fps:.2f}x whatever the engine does")
    checks = [(f"(b)/(a, one core) {label}", ours / one_core, 1.7, False),
              (f"(b)/(a) {label}", ours / one, 1.7, False),
              (f"(b)/(c) {label}", ours / mp_fps, 2.0 if label == "4K" else 1.3, False),
              (f"efficiency (b)/bound {label}", ours / bound, 0.9, False)]
    return rows, checks


def bench_encode(workers: int, workdir: Path, seconds: float) -> list[tuple[object, ...]]:
    clip = workdir / "encode-1080p.mp4"
    make_clip(clip, ClipSpec(clip.name, 1920, 1080, seconds, fps=30))
    n = round(seconds * 30)
    t0 = time.perf_counter()
    run(encode_pipeline(), clip, workdir / "enc-a", executor="inline")
    one = n / (time.perf_counter() - t0)
    stop_server()
    t0 = time.perf_counter()
    run(encode_pipeline(), clip, workdir / "enc-b", executor="local", workers=workers)
    ours = n / (time.perf_counter() - t0)
    costs = stage_costs(clip, 0, False, (1280, 720), "veryfast")
    bound = workers / sum(costs.values())
    return [("encode", "(a) one process", f"{one:.1f}", "1.00x"),
            ("encode", "(b) framepipe", f"{ours:.1f}", f"{ours / one:.2f}x"),
            ("encode", "bound: " + " + ".join(f"{k} {v * 1e3:.1f} ms" for k, v in costs.items()), f"{bound:.1f}",
             f"{bound / one:.2f}x")]


def start_up_cost(clip: Path, workdir: Path, passes: int, workers: int) -> str:
    """Seconds a 3-frame run takes: first in this interpreter (the worker server starts), then again."""
    times = []
    stop_server()
    for i in range(2):
        t0 = time.perf_counter()
        run(numpy_pipeline(passes), clip, workdir / f"tiny-{i}", executor="local", workers=workers)
        times.append(time.perf_counter() - t0)
    return (f"fixed cost of a run (3 frames): first run {times[0]:.2f} s (workers start and import "
            f"numpy, PyAV, the engine), later runs {times[1]:.2f} s")


def command_start_up(rounds: int = 10) -> tuple[str, float]:
    """The median seconds of ``framepipe --version`` and ``--help`` (``python -m pipeline``, what the console
    script runs) against ``python -c pass``, in a line; and that of ``--version``."""
    def median_s(*args: str) -> float:
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, *args], check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    bare, version, helps = median_s("-c", "pass"), median_s("-m", "pipeline", "--version"), \
        median_s("-m", "pipeline", "--help")
    return (f"start of the command (median of {rounds}): framepipe --version {version:.3f} s, --help {helps:.3f} s; "
            f"python -c pass {bare:.3f} s"), version


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter clips")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", choices=("startup", "1080p", "4K", "encode"),
                        help="one part only (startup: the fixed cost of a run, and the command's start)")
    args = parser.parse_args(argv)
    print(machine_line())
    rows: list[tuple[object, ...]] = []
    checks: list[tuple[str, float, float, bool]] = []
    with tempfile.TemporaryDirectory(prefix="framepipe-bench-") as tmp:
        work = Path(tmp)
        tiny = work / "tiny.mp4"
        make_clip(tiny, ClipSpec(tiny.name, 1920, 1080, 0.1, fps=30))
        passes = calibrate_passes(tiny, 0.040)
        print(start_up_cost(tiny, work, passes, args.workers))
        line, version_s = command_start_up()
        print(line)
        started = verdict("framepipe --version", version_s, 0.08, " s", at_most=True)
        if args.only == "startup":
            return 0 if started else 1
        if args.only in (None, "1080p"):
            r, c = bench_numpy("1080p", (1920, 1080), 3.0 if args.quick else 10.0, args.workers, work, passes)
            rows += r
            checks += c
        if args.only in (None, "4K"):
            r, c = bench_numpy("4K", (3840, 2160), 1.0 if args.quick else 4.0, args.workers, work, passes)
            rows += r
            checks += c
        if args.only in (None, "encode"):
            rows += bench_encode(args.workers, work, 4.0 if args.quick else 10.0)
    print_table(f"Frames per second (numpy stage: {passes} blur passes, ~40 ms a 1080p frame)",
                ("clip", "how", "frames/s", "vs (a)"), rows)
    ok = [started] + [verdict(name, value, goal, at_most=at_most) for name, value, goal, at_most in checks]
    print(f"\n{sum(ok)} of {len(ok)} targets met")
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
