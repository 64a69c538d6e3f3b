"""Memory of a 4K batch: framepipe's bounded frame buffer against ``multiprocessing.Pool.imap``.

Footage: two 4K (3840x2160) 30 fps clips of 10 s (``--quick``: 3 s), 600 frames
in all; a 4K RGB frame is 24.9 MB, so the local executor's frame buffer
(512 MB, its default) holds about 20 of them: far fewer than the batch.

  framepipe: Decode(pixel_format="rgb24") -> bench_pipeline's numpy stage (2
     passes, frame-parallel: frames travel through shared memory) ->
     Thumbnails (one every 2 s), ``cache=False``, 2 workers, the workers'
     server started afresh so that its processes are part of the run.
  peer: the parent decodes the same frames to RGB, ``Pool(2).imap`` sends them
     pickled to the workers running the same numpy function and back, the
     parent makes the same thumbnails. Nothing bounds the frames in flight.

Measured the same way for both, every 50 ms from a thread: the private memory
(USS, ``memory_full_info().uss``) of this process and all its descendants
(framepipe's workers are children of its forkserver, a child of this process;
the Pool's workers and the resource tracker are children too) plus the bytes
of framepipe's segments in /dev/shm (``framepipe_*``, their full size: an upper
bound on the pages they hold). USS, not RSS: RSS counts every shared page in
every process that maps it (the same frame slot mapped by the parent and two
workers would count three times, and so would the shared libraries), while USS
counts only a process's own pages, and the shared segments are then added once.
Target: framepipe's peak of (private + shared) stays under 1.5 GB, the budget
this benchmark sets (512 MB of frames plus the processes themselves).

Usage: python -m benchmarks.bench_memory [--quick] [--clips N] [--seconds S]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import av
import psutil
from PIL import Image

from pipeline import Pipeline, run
from pipeline.dataplane.segments import SEGMENT_PREFIX
from pipeline.runtime.forkserver import stop_server
from stages import ClipSpec, Decode, Thumbnails, make_clip

from ._table import machine_line, print_table, verdict
from .bench_pipeline import Heavy, _pool_init, _pool_task

BUDGET = 1.5e9  # bytes: the target for framepipe's peak (private + shared)
FRAME_BUFFER = 512 << 20  # the local executor's default frame buffer
PASSES = 2
SHM = Path("/dev/shm")
MB = 1e6


class MemorySampler:
    """Samples, every ``period`` s, USS of a process (default: this one) and its descendants plus framepipe's
    /dev/shm bytes; keeps the peak and the series of totals."""

    def __init__(self, period: float = 0.05, pid: int | None = None) -> None:
        self.period = period
        self.pid = pid
        self.peak_total = 0
        self.peak_parts = (0, 0, 0)  # (private, shared, processes) at the peak
        self.peak_shared = 0
        self.samples = 0
        self.totals: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self) -> tuple[int, int, int]:
        try:
            root = psutil.Process(self.pid)
            procs = [root] + root.children(recursive=True)
        except psutil.Error:
            return 0, 0, 0
        private = 0
        counted = 0
        for p in procs:
            try:
                private += p.memory_full_info().uss
                counted += 1
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass
        shared = 0
        try:
            for entry in os.scandir(SHM):
                if entry.name.startswith(SEGMENT_PREFIX):
                    try:
                        shared += entry.stat().st_size
                    except FileNotFoundError:
                        pass
        except FileNotFoundError:
            pass
        return private, shared, counted

    def _loop(self) -> None:
        while not self._stop.is_set():
            private, shared, counted = self.sample()
            self.samples += 1
            self.totals.append(private + shared)
            self.peak_shared = max(self.peak_shared, shared)
            if private + shared > self.peak_total:
                self.peak_total = private + shared
                self.peak_parts = (private, shared, counted)
            self._stop.wait(self.period)

    def peak(self, start: float = 0.0, end: float = 1.0) -> int:
        """Peak total bytes between fractions ``start`` and ``end`` of the samples taken."""
        n = len(self.totals)
        return max(self.totals[int(n * start): max(int(n * start) + 1, int(n * end))], default=0)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def framepipe_pipeline() -> Pipeline:
    p = Pipeline("bench-memory")
    decode = p.add(Decode(pixel_format="rgb24", audio=False))
    mapped = p.add(Heavy(PASSES), after=decode)
    p.add(Thumbnails(every=2.0, width=320), after=mapped)
    return p


def run_framepipe(clips: list[Path], out: Path) -> tuple[int, float]:
    """(frames through the numpy stage, seconds)."""
    t0 = time.perf_counter()
    r = run(framepipe_pipeline(), clips, out, workers=2, cache=False)
    seconds = time.perf_counter() - t0
    bad = [f for f in r.files if not f.ok]
    assert not bad, bad[0].error
    frames = next((s.items_in for s in r.stages if s.name == "numpy_blur"), 0)
    print(f"framepipe: at most {r.peak_slots} frame slots leased at once")
    return frames, seconds


def run_pool(clips: list[Path], out: Path) -> tuple[int, float]:
    """The peer: parent decodes, Pool.imap over pickled frames, parent writes a thumbnail every 2 s."""
    n = 0
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    with multiprocessing.get_context("spawn").Pool(2, _pool_init, (PASSES,)) as pool:
        for c, clip in enumerate(clips):
            with av.open(str(clip)) as src:
                v = src.streams.video[0]
                v.codec_context.thread_type = "AUTO"
                rate = float(v.average_rate)
                frames = (f.to_ndarray(format="rgb24") for f in src.decode(v))
                next_t = 0.0
                for i, rgb in enumerate(pool.imap(_pool_task, frames, chunksize=1)):
                    if i / rate >= next_t:
                        img = Image.fromarray(rgb)
                        img.thumbnail((320, 320 * rgb.shape[0] // rgb.shape[1] + 1))
                        img.save(out / f"c{c}-t{i:05d}.jpg", quality=85)
                        next_t += 2.0
                    n += 1
    return n, time.perf_counter() - t0


def _frames_of(result_frames: int, expected: int) -> int:
    return result_frames or expected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 s clips")
    parser.add_argument("--clips", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=0.0, help="seconds a clip (default 10; quick 3)")
    args = parser.parse_args(argv)
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    print(machine_line())
    expected = args.clips * round(seconds * 30)
    frame_bytes = 3840 * 2160 * 3
    print(f"{args.clips} x {seconds:g} s 4K clips: {expected} frames of {frame_bytes / MB:.1f} MB "
          f"({expected * frame_bytes / 1e9:.1f} GB of RGB); frame buffer {FRAME_BUFFER >> 20} MiB "
          f"~ {FRAME_BUFFER // frame_bytes} frames")
    with tempfile.TemporaryDirectory(prefix="framepipe-memory-") as tmp:
        work = Path(tmp)
        clips = []
        for i in range(args.clips):
            clip = work / f"4k-{i + 1}.mp4"
            make_clip(clip, ClipSpec(clip.name, 3840, 2160, seconds, fps=30), seed=i)
            clips.append(clip)
        stop_server()  # the workers' server starts inside the measured run
        base_private, base_shared, _ = MemorySampler().sample()
        with MemorySampler() as fp:
            fp_frames, fp_s = run_framepipe(clips, work / "fp")
        stop_server()
        with MemorySampler() as mp:
            mp_frames, mp_s = run_pool(clips, work / "pool")
    fp_frames = _frames_of(fp_frames, expected)
    rows = []
    for label, s, frames, secs in (("framepipe, 2 workers", fp, fp_frames, fp_s),
                                   ("Pool(2).imap, pickled frames", mp, mp_frames, mp_s)):
        private, shared, procs = s.peak_parts
        rows.append((label, frames, f"{secs:.1f}", f"{frames / secs:.1f}", procs, f"{private / MB:.0f}",
                     f"{shared / MB:.0f}", f"{s.peak_total / MB:.0f}", s.samples))
    print(f"\nbefore the runs: this process {base_private / MB:.0f} MB private, {base_shared / MB:.0f} MB "
          f"in framepipe segments")
    print_table("Peak memory, sampled every 50 ms (private = USS of this process and its descendants; "
                "shared = framepipe_* in /dev/shm)",
                ("how", "frames", "seconds", "frames/s", "procs", "private MB", "shared MB", "peak MB", "samples"),
                rows)
    print(f"  framepipe's largest shared-memory figure: {fp.peak_shared / MB:.0f} MB "
          f"(frame buffer {FRAME_BUFFER / MB:.0f} MB = {FRAME_BUFFER >> 20} MiB)")
    print(f"  Pool.imap peak / framepipe peak: {mp.peak_total / max(1, fp.peak_total):.2f}x")
    ok = [verdict("memory peak framepipe 4K batch (private + shared)", fp.peak_total / 1e9, BUDGET / 1e9, " GB",
                  at_most=True),
          verdict("frames processed framepipe 4K batch", fp_frames, expected, " frames")]
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
