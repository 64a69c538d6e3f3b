"""Handing frames to a loky worker: pickled numpy arrays against FrameRefs into shared memory.

For 1080p and 4K RGB24 frames, one worker, round trips one at a time:

* pickled  - the frame goes to the worker as a numpy array and a processed
             frame comes back as one (what a hand-rolled Pool does);
* FrameRef - the frame sits in a pool slot; the worker gets a FrameRef, writes
             its result into a second granted slot and returns that slot's ref;
* read-only FrameRef - the worker reads the frame and returns a number,
             against an empty loky task (the floor of any hand-off).

Then ``transfer()`` against ``shutil.copyfileobj`` on a 1 GB file in ``--dir``.
On ext4 both are bound by the page cache; on XFS or Btrfs ``copy_file_range``
shares the blocks (a reflink) and copies nothing.
Usage: python -m benchmarks.bench_handoff [--quick] [--dir DIR]
"""

from __future__ import annotations

import argparse
import pickle
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from loky import ProcessPoolExecutor

from pipeline.dataplane.buffers import BufferPool, FrameRef
from pipeline.dataplane.zerocopy import transfer

from ._table import machine_line, median_call_us, print_table, verdict

SIZES = {"1080p": (1080, 1920, 3), "4K": (2160, 3840, 3)}


# --- what the worker does (the same light touch in every case, so only the hand-off differs) ---

def noop() -> int:
    return 0


def process_array(frame: np.ndarray) -> np.ndarray:
    frame[0, 0, 0] ^= 1
    return frame


def process_ref(src: FrameRef, dst: FrameRef) -> FrameRef:
    out = dst.array()
    out[0, 0, 0] = src.array()[0, 0, 0] ^ 1
    return dst.replace(seq=src.seq + 1)


def read_ref(src: FrameRef) -> int:
    return int(src.array()[0, 0, 0])


def bench_frames(quick: bool) -> list[bool]:
    checks: list[tuple[str, float, float, bool]] = []
    rows = []
    with ProcessPoolExecutor(max_workers=1) as ex:
        empty_us = median_call_us(lambda: ex.submit(noop).result(), 300 if quick else 1000)
        for label, shape in SIZES.items():
            frame = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
            pickled_us = median_call_us(lambda frame=frame: ex.submit(process_array, frame).result(),
                                        8 if quick else 30)
            with BufferPool(frame.nbytes, 2, name=f"bench_{label}") as pool:
                src_lease, dst_lease = pool.acquire(), pool.acquire()
                src_lease.array(shape)[...] = frame
                src = src_lease.ref(shape, np.uint8, pixel_format="rgb24")
                dst = dst_lease.ref(shape, np.uint8, pixel_format="rgb24")
                ref_us = median_call_us(lambda src=src, dst=dst: ex.submit(process_ref, src, dst).result(),
                                        300 if quick else 1000)
                read_us = median_call_us(lambda src=src: ex.submit(read_ref, src).result(), 300 if quick else 1000)
                bytes_ref = len(pickle.dumps((src, dst))) + len(pickle.dumps(dst))
            bytes_arr = 2 * len(pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL))
            rows += [
                (label, "pickled array", f"{pickled_us:,.0f}", f"{bytes_arr:,}", "1.0x"),
                (label, "FrameRef", f"{ref_us:,.0f}", f"{bytes_ref:,}", f"{pickled_us / ref_us:,.0f}x"),
                (label, "FrameRef read-only", f"{read_us:,.0f}", f"{len(pickle.dumps(src)):,}",
                 f"{read_us / empty_us:.2f}x of empty task"),
            ]
            checks.append((f"FrameRef vs pickled, {label}", pickled_us / ref_us, 100 if label == "4K" else 40,
                           False))
            checks.append((f"read-only FrameRef hand-off / empty task, {label}", read_us / empty_us, 1.5, True))
    rows.append(("-", "empty loky task", f"{empty_us:,.0f}", "-", "floor"))
    print_table("Hand-off of one frame to a loky worker and back (median us per frame, 1 worker)",
                ("frame", "how", "us/frame", "bytes pickled", "ratio"), rows)
    return [verdict(name, value, goal, at_most=at_most) for name, value, goal, at_most in checks]


def _fs_type(path: Path) -> str:
    """The file system type of ``path`` (from /proc/mounts; the longest mount point that contains it)."""
    best, kind = "", "unknown fs"
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                _dev, point, fstype = line.split()[:3]
                if str(path.resolve()).startswith(point) and len(point) > len(best):
                    best, kind = point, fstype
    except OSError:
        pass
    return kind


def bench_transfer(directory: Path, size: int, rounds: int) -> list[bool]:
    src = directory / "framepipe-bench-src.bin"
    block = np.random.default_rng(1).integers(0, 256, 64 << 20, dtype=np.uint8).tobytes()
    with open(src, "wb") as f:
        for _ in range(size // len(block)):
            f.write(block)
    times: dict[str, list[float]] = {"transfer()": [], "shutil.copyfileobj": []}
    try:
        for _ in range(rounds):  # alternate, so both see the same page-cache state
            for name in times:
                dst = directory / "framepipe-bench-dst.bin"
                t0 = time.perf_counter()
                if name == "transfer()":
                    moved = transfer(src, dst)
                else:
                    with open(src, "rb") as fs, open(dst, "wb") as fd:
                        shutil.copyfileobj(fs, fd)
                    moved = dst.stat().st_size
                times[name].append(time.perf_counter() - t0)
                assert moved == src.stat().st_size
                dst.unlink()
    finally:
        src.unlink(missing_ok=True)
    best = {k: min(v) for k, v in times.items()}
    gb = size / 1e9
    print_table(f"Copying a {gb:.1f} GB file in {directory} ({_fs_type(directory)}; best of {rounds}, "
                "page cache warm)", ("how", "best s", "median s", "GB/s", "ratio"),
                [(k, f"{v:.4f}", f"{statistics.median(times[k]):.4f}", f"{gb / v:.2f}",
                  f"{best['shutil.copyfileobj'] / v:.2f}x") for k, v in best.items()])
    return [verdict("transfer() vs shutil.copyfileobj", best["shutil.copyfileobj"] / best["transfer()"], 1.5)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and a 256 MB file")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="where the copy test writes")
    parser.add_argument("--only", choices=("frames", "transfer"), help="run one half only")
    args = parser.parse_args(argv)
    print(machine_line())
    ok: list[bool] = []
    if args.only != "transfer":
        ok += bench_frames(args.quick)
    if args.only != "frames":
        ok += bench_transfer(args.dir, (256 if args.quick else 1024) << 20, 3 if args.quick else 5)
    print(f"\n{sum(ok)} of {len(ok)} targets met")
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
