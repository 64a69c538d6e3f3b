"""The persistent cache tier: DiskCache against diskcache.Cache, 20 KB values, one process.

* set ops/s - distinct keys into the cache, one ``set`` per call;
* first get ops/s - a newly opened handle reads every key once, shuffled
  (DiskCache checks each value's crc32 on a handle's first read of it);
* repeat get ops/s - more shuffled rounds over the same keys.

Peers, same run, same machine, temp folders under /tmp: ``diskcache.Cache``
with default settings (evicts least-recently-stored: reads do not write) and
with ``eviction_policy='least-recently-used'`` (every read writes its access
time: the cost DiskCache avoids by batching access updates in memory).
Usage: python -m benchmarks._bench_disk [--quick]
"""

from __future__ import annotations

import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from pipeline.cache.config import CacheConfig, EvictionPolicy
from pipeline.cache.disk import DiskCache

from ._table import machine_line, print_table, verdict

VALUE_SIZE = 20_000


def _measure(make: Callable[[str], Any], keys: list[str], values: list[bytes],
             rounds: int) -> tuple[float, float, float]:
    """(set, first get, repeat get) ops/s of the cache ``make(folder)`` returns.

    Sets: best of two passes over fresh keys. First get: a newly opened handle
    reads every key once (DiskCache checks each value's crc32 on its first
    read by a handle). Repeat get: ``rounds`` more shuffled rounds, best of two.
    """
    folder = tempfile.mkdtemp(prefix="bench-disk-", dir="/tmp")
    try:
        cache = make(folder)
        set_rates = []
        for attempt in range(2):
            t0 = time.perf_counter()
            for i, key in enumerate(keys):
                cache.set(f"{attempt}:{key}", values[i % len(values)])
            set_rates.append(len(keys) / (time.perf_counter() - t0))
        cache.close()
        cache = make(folder)
        order = [f"1:{k}" for k in keys]
        random.Random(1).shuffle(order)

        def read_all(times: int) -> float:
            t0 = time.perf_counter()
            for _ in range(times):
                for key in order:
                    if cache.get(key) is None:
                        raise AssertionError(f"lost {key}")
            return times * len(order) / (time.perf_counter() - t0)

        first = read_all(1)
        repeat = max(read_all(rounds) for _ in range(2))
        cache.close()
        return max(set_rates), first, repeat
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _row(label: str, rates: tuple[float, float, float]) -> tuple:
    return (label, *(f"{r:,.0f}" for r in rates), f"{1e6 / rates[2]:.1f}")


def bench_disk(quick: bool) -> tuple[list[tuple], list[tuple[str, float, float, bool]]]:
    """Table rows and ``(name, measured, goal, at_most)`` checks of DiskCache against diskcache.

    Every cache is measured twice, the caches taking turns, and keeps its best
    figures: a burst of load from elsewhere on the machine then hurts one
    turn, not one cache.
    """
    n = 1000 if quick else 4000
    rounds = 2 if quick else 4
    rng = random.Random(0)
    values = [rng.randbytes(VALUE_SIZE) for _ in range(16)]
    keys = [f"frame/{i:06d}" for i in range(n)]
    fifo = CacheConfig(max_entries=None, max_size_bytes=2 << 30, eviction_policy=EvictionPolicy.FIFO)
    makers: dict[str, Callable[[str], Any]] = {
        "DiskCache (LRU, default)": lambda d: DiskCache(d),
        "DiskCache (FIFO)": lambda d: DiskCache(d, fifo),
    }
    try:
        import diskcache
    except ImportError:
        diskcache = None
    else:
        makers["diskcache.Cache (default)"] = lambda d: diskcache.Cache(d)
        makers["diskcache.Cache (LRU: reads write)"] = \
            lambda d: diskcache.Cache(d, eviction_policy="least-recently-used")
    best: dict[str, tuple[float, float, float]] = {}
    for _ in range(2):
        for label, make in makers.items():
            rates = _measure(make, keys, values, rounds)
            old = best.get(label, (0.0, 0.0, 0.0))
            best[label] = (max(old[0], rates[0]), max(old[1], rates[1]), max(old[2], rates[2]))
    rows: list[tuple] = [_row(label, rates) for label, rates in best.items()]
    checks: list[tuple[str, float, float, bool]] = []
    if diskcache is None:
        rows.append(("diskcache not installed: peer skipped (pip install diskcache)", "-", "-", "-", "-"))
        return rows, checks
    ours, peer = best["DiskCache (LRU, default)"], best["diskcache.Cache (default)"]
    checks.append(("set ops/s, DiskCache / diskcache default", ours[0] / peer[0], 1.0, False))
    checks.append(("repeat get ops/s, DiskCache / diskcache default", ours[2] / peer[2], 1.0, False))
    checks.append(("first get ops/s (crc32 checked), DiskCache / diskcache default", ours[1] / peer[1], 0.6, False))
    return rows, checks


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    print(machine_line())
    rows, checks = bench_disk(quick)
    print_table(f"persistent cache, {VALUE_SIZE // 1000} KB values, one process",
                ["cache", "set ops/s", "first get ops/s", "repeat get ops/s", "repeat get us"], rows)
    ok = all([verdict(name, measured, goal, at_most=at_most) for name, measured, goal, at_most in checks])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
