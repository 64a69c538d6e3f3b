"""The priority runtime against bare loky: dispatch overhead, scaling, and latency under load.

1. Dispatch overhead: one empty task at a time through ``WorkerPool`` and
   through a bare loky executor (median round trip).
2. Scaling: CPU-bound tasks on 1 and on 2 workers; efficiency = speed-up / 2.
3. Priorities: p95 latency of small HIGH-priority tasks while a LOW-priority
   pool keeps every core busy, against the better of two idle measurements
   (before and after the load).

Usage: python -m benchmarks.bench_runtime [--quick] [--workers N]
"""

from __future__ import annotations

import argparse
import sys
import time

from loky import ProcessPoolExecutor

from pipeline.observe.metrics import percentile
from pipeline.runtime.pool import Priority, TaskPoolConfig, WorkerPool
from pipeline.tuning.coordinator import RuntimeCoordinator

from ._table import machine_line, median_call_us, print_table, verdict


def noop() -> None:
    return None


def burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def _calibrate(target_s: float) -> int:
    n = 100_000
    t0 = time.perf_counter()
    burn(n)
    return max(1000, int(n * target_s / (time.perf_counter() - t0)))


def bench_dispatch(quick: bool) -> tuple[list[tuple[object, ...]], list[tuple[str, float, float, bool]]]:
    n = 300 if quick else 2000
    with ProcessPoolExecutor(max_workers=1) as ex:
        bare = median_call_us(lambda: ex.submit(noop).result(), n)
    with WorkerPool("bench", TaskPoolConfig(1)) as pool:
        ours = median_call_us(lambda: pool.execute(noop), n)
    rows = [("bare loky", f"{bare:.0f}", "1.00x"), ("WorkerPool", f"{ours:.0f}", f"{ours / bare:.2f}x")]
    return rows, [("WorkerPool / bare loky, empty task", ours / bare, 1.3, True)]


def bench_scaling(quick: bool, workers: int) -> tuple[list[tuple[object, ...]], list[tuple[str, float, float, bool]]]:
    n_iter = _calibrate(0.05)
    tasks = 8 * workers if quick else 24 * workers
    times = {}
    for w in (1, workers):
        with WorkerPool(f"scale{w}", TaskPoolConfig(w)) as pool:
            pool.execute(noop)  # workers up before the clock starts
            for f in [pool.submit(noop) for _ in range(w)]:
                f.result()
            t0 = time.perf_counter()
            for f in [pool.submit(burn, n_iter) for _ in range(tasks)]:
                f.result()
            times[w] = time.perf_counter() - t0
    efficiency = times[1] / times[workers] / workers
    rows = [(f"{w} worker(s)", f"{tasks}", f"{t:.2f}", f"{times[1] / t:.2f}x") for w, t in times.items()]
    return rows, [(f"efficiency on {workers} workers", efficiency, 0.85, False)]


def _p95_latency_ms(pool: WorkerPool, n_iter: int, samples: int) -> float:
    lat = []
    for _ in range(samples):
        t0 = time.perf_counter()
        pool.execute(burn, n_iter)
        lat.append(time.perf_counter() - t0)
    return percentile(sorted(lat), 0.95) * 1e3


def bench_priority(quick: bool, workers: int) -> tuple[list[tuple[object, ...]], list[tuple[str, float, float, bool]]]:
    small = _calibrate(0.005)
    big = _calibrate(0.2)
    samples = 30 if quick else 100
    with RuntimeCoordinator(cores=workers) as rc:
        high = rc.register_pool("high", TaskPoolConfig(1, priority=Priority.HIGH))
        low = rc.register_pool("low", TaskPoolConfig(workers, priority=Priority.LOW))
        for f in [low.submit(noop) for _ in range(workers)]:
            f.result()
        idle_before = _p95_latency_ms(high, small, samples)
        backlog = [low.submit(burn, big) for _ in range(workers * (10 + samples // 5))]
        while low.statistics().active_tasks < workers:  # wait until LOW holds every core
            time.sleep(0.01)
        busy = _p95_latency_ms(high, small, samples)
        saturated = low.statistics().queue_size > 0  # LOW still had work waiting when the probes ended
        for f in backlog:
            f.cancel()
        low.shutdown(wait=True, cancel_pending=True)
        idle_after = _p95_latency_ms(high, small, samples)
    idle = min(idle_before, idle_after)  # the better idle figure: the stricter ratio
    rows = [(f"idle machine (before {idle_before:.1f}, after {idle_after:.1f})", f"{idle:.1f}", "1.00x"),
            (f"LOW pool on all {workers} cores{'' if saturated else ' (drained early!)'}", f"{busy:.1f}",
             f"{busy / idle:.2f}x")]
    return rows, [("HIGH p95 latency under LOW load / idle", busy / idle, 2.0, True)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, default=2, help="workers for the scaling and load parts")
    args = parser.parse_args(argv)
    print(machine_line())
    checks = []
    rows, c = bench_dispatch(args.quick)
    print_table("Dispatch overhead: one empty task, round trip (median us)", ("how", "us/task", "ratio"), rows)
    checks += c
    rows, c = bench_scaling(args.quick, args.workers)
    print_table("CPU-bound tasks (~50 ms each)", ("workers", "tasks", "seconds", "speed-up"), rows)
    checks += c
    rows, c = bench_priority(args.quick, args.workers)
    print_table("Latency of 5 ms HIGH-priority tasks (p95 ms)", ("while", "p95 ms", "ratio"), rows)
    checks += c
    ok = [verdict(name, value, goal, at_most=at_most) for name, value, goal, at_most in checks]
    print(f"\n{sum(ok)} of {len(ok)} targets met")
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
