"""Frames into your own code: frames per second delivered to a consumer that touches every pixel.

framepipe's ``iter_batches`` (batches of about 200 MB of rgb24 frames at source size — 32 at 1080p, 8 at 4K
— views of the workers' slots) against
the peers in ``feed_peers``: a single-process PyAV loop as a careful user writes it, torchcodec in a
``DataLoader`` with 2 workers, and decord. Same clips (``clipsets``: realistic H.264, CABAC, B-frames, grain),
same output (rgb24, source size, every frame), same consumer: ``int(frames.sum())`` on a numpy array (a
torch batch is summed through its numpy view, no copy: torch's own uint8 sum is several times slower than
numpy's and would measure the consumer, not the loader).

Each measurement runs in a fresh process (imports and worker start-up included: what a user waits for) and
reports its time, the time to its first frame and its rate after that; the peak memory of its process tree
(PSS: shared memory counted once) comes from one more run, sampled (reading it costs CPU). Two more
framepipe rows: ``keep()`` of every batch (each held until the next arrives, then dropped) and ``copy()`` of
every batch, against the plain view.

    python -m benchmarks.bench_feed [--quick] [--rounds N] [--sets vf-gop1s,4k]

Targets (1080p, 2 cores): >= 1.2x the PyAV loop and >= 1.1x the best peer. The table ends with the ceiling:
the CPU time per frame of the work every run must do (decode, convert, copy once, sum), and the rate the
cores could give were they busy with nothing else.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from typing import Any

from . import clipsets
from ._table import machine_line, print_table, verdict

BATCH_BYTES = 200 * 2**20  # about 32 frames of 1080p rgb24, 8 of 4K: every run's batches are this big
RUNS = ["framepipe", "framepipe keep()", "framepipe copy()", "pyav", "torchcodec", "decord"]
TORCH_RUNS = ["FrameDataset", "FrameDataset 2 workers"]  # --runs: framepipe's PyTorch adapter, both ways


def _consume_numpy(frames: Any) -> int:
    array = frames.numpy() if hasattr(frames, "numpy") else frames  # a torch tensor: its numpy view
    return int(array.sum())


def _framepipe(paths: list[str], mode: str, consume: Any, rows: int) -> int:
    from pipeline import Pipeline
    from stages import Decode

    p = Pipeline("frames")
    p.add(Decode(audio=False, pixel_format="rgb24"))
    n = 0
    held = None
    for batch in p.iter_batches(paths, batch_size=rows):
        if mode == "keep":
            held = batch.keep()  # the one kept before is dropped here: its slot goes back
            consume(held["frames"])
        elif mode == "copy":
            consume(batch.copy()["frames"])
        else:
            consume(batch["frames"])
        n += batch.rows
    del held
    return n


def _frame_dataset(paths: list[str], workers: int, consume: Any, rows: int) -> int:
    from torch.utils.data import DataLoader

    from pipeline import Pipeline
    from pipeline.batches.torch import FrameDataset
    from stages import Decode

    p = Pipeline("frames")
    p.add(Decode(audio=False, pixel_format="rgb24"))
    n = 0
    for batch in DataLoader(FrameDataset(p, paths, batch_size=rows), batch_size=None, num_workers=workers):
        consume(batch["frames"])
        n += len(batch["frames"])
    return n


def batch_rows(width: int, height: int) -> int:
    """Rows of a batch of about ``BATCH_BYTES`` of rgb24 frames of this size."""
    return max(1, BATCH_BYTES // (width * height * 3))


def _one(run: str, batch: int, paths: list[str]) -> dict[str, Any]:
    """One measurement in this process: frames, seconds, seconds to the first frame, checksum."""
    from . import feed_peers

    first: list[float] = []
    first_rows = [0]
    checksum = [0]
    start = time.perf_counter()

    def consume(frames: Any) -> None:
        if not first:
            first.append(time.perf_counter() - start)
            first_rows[0] = len(frames) if frames.ndim == 4 else 1
        checksum[0] += _consume_numpy(frames)

    if run.startswith("FrameDataset"):
        n = _frame_dataset(paths, 2 if "workers" in run else 0, consume, batch)
    elif run.startswith("framepipe"):
        mode = "keep" if "keep" in run else "copy" if "copy" in run else "view"
        n = _framepipe(paths, mode, consume, batch)
    elif run == "pyav":
        n = feed_peers.pyav_loop(paths, consume)
    elif run == "torchcodec":
        n = feed_peers.torchcodec_loader(paths, consume, batch_size=batch, workers=2)
    else:
        n = feed_peers.decord_loader(paths, consume, batch_size=batch)
    return {"frames": n, "seconds": time.perf_counter() - start, "first_s": first[0] if first else None,
            "first_rows": first_rows[0], "checksum": checksum[0]}


def ceiling(path: str) -> tuple[float, float, float]:
    """CPU milliseconds per frame, in one thread, of the work every run does whatever the loader: decoding,
    converting to rgb24 and one copy (the whole of ``path``), and the consumer's sum; and the frames/s
    that the machine's cores could give at most, were all of them busy with that work alone."""
    import os

    import av
    import numpy as np
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        out: np.ndarray | None = None
        n = 0
        cpu = time.process_time()
        for frame in container.decode(stream):
            rgb = frame.reformat(format="rgb24").to_ndarray()
            out = np.empty_like(rgb) if out is None else out
            np.copyto(out, rgb)
            n += 1
        work = (time.process_time() - cpu) / n * 1000
    assert out is not None
    batch = np.stack([out] * 8)
    cpu = time.process_time()
    for _ in range(4):
        int(batch.sum())
    consume = (time.process_time() - cpu) / 32 * 1000
    return work, consume, (os.cpu_count() or 1) * 1000 / (work + consume)


def _tree_pss(pid: int) -> int:
    import psutil
    total = 0
    try:
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            try:
                total += proc.memory_full_info().pss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
    except psutil.NoSuchProcess:
        pass
    return total


def measure(run: str, batch: int, paths: list[str], sample: bool) -> dict[str, Any]:
    """``run`` in a fresh process; with ``sample``, its tree's peak PSS, read every 0.2 s (reading it costs
    CPU, the more the more processes: a sampled run is not a timed one)."""
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_feed", "--one", run, str(batch), *paths],
                            stdout=subprocess.PIPE, text=True)
    peak = [0]
    done = threading.Event()

    def sampling() -> None:
        while not done.wait(0.2):
            peak[0] = max(peak[0], _tree_pss(proc.pid))

    sampler = threading.Thread(target=sampling, daemon=True)
    if sample:
        sampler.start()
    out, _ = proc.communicate()
    done.set()
    if sample:
        sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{run} exited {proc.returncode}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["peak_mb"] = peak[0] / 2**20
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_feed", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the quick clip sets")
    parser.add_argument("--rounds", type=int, default=2, help="best of N (default 2)")
    parser.add_argument("--sets", default="vf-gop1s,4k", help="clip sets (default vf-gop1s,4k)")
    parser.add_argument("--runs", default=",".join(RUNS),
                        help=f"which (default: {','.join(RUNS)}; also {','.join(TORCH_RUNS)})")
    parser.add_argument("--one", nargs="+", help=argparse.SUPPRESS)  # RUN PATH...: one measurement, as JSON
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(_one(args.one[0], int(args.one[1]), args.one[2:])))
        return 0

    from .feed_peers import available
    missing = {name: why for name, why in available().items() if why is not None}
    runs = [r for r in args.runs.split(",") if r.split()[0] not in missing]
    print(machine_line())
    for name, why in missing.items():
        print(f"  {name}: not measured ({why})")
    wanted = args.sets.split(",")
    ok = True
    for cs in [c for c in clipsets.clip_sets(args.quick) if c.name in wanted]:
        footage = clipsets.ensure(cs)
        paths = [str(p) for p in footage.clips]
        batch = batch_rows(cs.width, cs.height)
        best: dict[str, dict[str, Any]] = {}
        for _ in range(args.rounds):
            for run in runs:
                got = measure(run, batch, paths, sample=False)
                if run not in best or got["seconds"] < best[run]["seconds"]:
                    best[run] = got
        for run in runs:
            best[run]["peak_mb"] = measure(run, batch, paths, sample=True)["peak_mb"]
        sums = {r["checksum"] for r in best.values()}
        if len(sums) != 1:
            print(f"  checksums differ: { {k: v['checksum'] for k, v in best.items()} }")
            ok = False
        loop = best["pyav"]["frames"] / best["pyav"]["seconds"] if "pyav" in best else None
        rows = []
        for run, r in best.items():
            fps = r["frames"] / r["seconds"]
            steady = (r["frames"] - r["first_rows"]) / (r["seconds"] - r["first_s"]) if r["first_s"] else fps
            rows.append((run, r["frames"], f"{r['seconds']:.2f}", f"{fps:.1f}",
                         f"{fps / loop:.2f}x" if loop else "-",
                         f"{r['first_s']:.2f}" if r["first_s"] is not None else "-", f"{steady:.1f}",
                         f"{r['peak_mb']:.0f}"))
        print_table(f"{cs.name}: {cs.what}; {len(paths)} files, {cs.encoding()}; batches of {batch} frames; "
                    f"the consumer sums every pixel (best of {args.rounds}; memory from one more run)",
                    ("run", "frames", "seconds", "frames/s", "vs PyAV loop", "first frame s",
                     "frames/s after it", "peak MB (PSS)"), rows)
        work, consume, most = ceiling(paths[0])
        print(f"  CPU per frame in one thread: decode + rgb24 + one copy {work:.1f} ms, the consumer's sum "
              f"{consume:.1f} ms: at most {most:.0f} frames/s on these cores, every core busy with that alone")
        if cs.width == 1920 and "framepipe" in best and loop:
            fp = best["framepipe"]["frames"] / best["framepipe"]["seconds"]
            peers = [best[p]["frames"] / best[p]["seconds"] for p in ("pyav", "torchcodec", "decord") if p in best]
            ok &= verdict("framepipe vs the PyAV loop, 1080p", fp / loop, 1.2)
            ok &= verdict("framepipe vs the best peer, 1080p", fp / max(peers), 1.1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
