"""What deinterlacing costs: bwdif/yadif per frame, and idet's look at the start of a progressive file.

* per frame - woven 4:2:0 frames (a scene panning 6 px a field) pushed through
  ``Deinterlacer`` (one filter thread), at 720x480 (NTSC broadcast) and 1080p;
* detection - ``detect_fields`` over the frames ``FieldPolicy`` holds at the
  start of a stream no flag calls interlaced (12 frames);
* per file - ``decode_file`` of a progressive H.264 clip with
  ``deinterlace="auto"`` against ``"off"``: what a progressive file pays
  (idet once, then nothing).

Usage: python -m benchmarks.bench_deinterlace [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from stages import ClipSpec, make_clip
from stages.decode import decode_file
from stages.deinterlace import Deinterlacer, detect_fields

from ._table import machine_line, print_table, verdict

SIZES = {"720x480": (720, 480), "1080p": (1920, 1080)}
SPEED = 6  # pixels a field


def woven_frames(width: int, height: int, count: int, seed: int = 0) -> list[av.VideoFrame]:
    """``count`` interlaced 4:2:0 frames: random vertical bars panning right, fields an instant apart."""
    rng = np.random.default_rng(seed)
    bars = np.repeat(rng.integers(40, 216, size=(width + 2 * SPEED * count) // 8 + 2), 8).astype(np.uint8)
    frames = []
    for k in range(count):
        luma = np.empty((height, width), np.uint8)
        for parity, field in ((0, 2 * k), (1, 2 * k + 1)):
            offset = SPEED * (2 * count - field)
            luma[parity::2] = bars[offset:offset + width]
        chroma = np.full((height // 2, width), 128, np.uint8)
        frame = av.VideoFrame.from_ndarray(np.concatenate([luma, chroma]), format="yuv420p")
        frame.pts = k
        frames.append(frame)
    return frames


def per_frame_ms(name: str, frames: list[av.VideoFrame], rounds: int) -> float:
    """Median milliseconds a frame through ``name`` (graph built outside the timing, flushed inside)."""
    times = []
    for _ in range(rounds):
        deinterlacer = Deinterlacer(name, parity="tff", time_base=Fraction(1, 30))
        deinterlacer.feed(frames[0])  # builds the graph
        start = time.perf_counter()
        out = sum(len(deinterlacer.feed(f)) for f in frames[1:]) + len(deinterlacer.flush())
        times.append((time.perf_counter() - start) * 1000 / out)
    return statistics.median(times)


def detection_ms(frames: list[av.VideoFrame], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        detect_fields(frames[:12])
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def file_ms(path: Path, modes: tuple[str, ...], rounds: int) -> dict[str, float]:
    """Best milliseconds to decode ``path`` with each ``deinterlace`` mode, the modes taking turns."""
    best = {mode: float("inf") for mode in modes}
    for _ in range(rounds):
        for mode in modes:
            start = time.perf_counter()
            for _item in decode_file(path, audio=False, deinterlace=mode):
                pass
            best[mode] = min(best[mode], (time.perf_counter() - start) * 1000)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer frames and rounds")
    args = parser.parse_args(argv)
    count, rounds = (24, 3) if args.quick else (60, 5)
    print(machine_line())
    rows = []
    for label, (w, h) in SIZES.items():
        frames = woven_frames(w, h, count)
        rows.append([label, f"{per_frame_ms('bwdif', frames, rounds):.2f}",
                     f"{per_frame_ms('yadif', frames, rounds):.2f}", f"{detection_ms(frames, rounds):.1f}"])
    print_table("Deinterlacing, ms a frame (one filter thread); idet over the first 12 frames, ms",
                ["size", "bwdif", "yadif", "idet x12"], rows)
    with tempfile.TemporaryDirectory() as tmp:
        seconds = 2.0 if args.quick else 4.0
        clip = make_clip(Path(tmp) / "progressive_1080p.mp4", ClipSpec("p.mp4", 1920, 1080, seconds))
        best = file_ms(clip, ("off", "auto"), 2 * rounds)
    off, auto = best["off"], best["auto"]
    print_table("Decoding a progressive 1080p H.264 file (best of rounds), ms", ["deinterlace", "ms"],
                [["off", f"{off:.0f}"], ["auto", f"{auto:.0f}"], ["auto - off", f"{auto - off:.0f}"]])
    met = verdict("auto's overhead on a progressive file", (auto - off) / off * 100, 5.0, "%", at_most=True)
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
