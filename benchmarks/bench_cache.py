"""The in-memory cache against cachetools: speed per operation, and hit rate of each policy.

1. Speed: ``get`` and ``insert`` operations per second of ``Cache`` (LRU,
   metrics on, as by default) and of ``cachetools.LRUCache`` on the same key
   stream (a Zipf trace; best of 5 interleaved passes).
2. Hit rates: every policy on a Zipf(0.9) trace of 1M requests over 100k keys
   (fixed seed), at cache sizes of 1% and 10% of the keys; then the same trace
   with the hot set reshuffled every 250k requests. cachetools' LRU is the
   peer; the issue's reference figures (measured elsewhere with reference
   implementations) are printed beside ours.

Usage: python -m benchmarks.bench_cache [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence

import cachetools
import numpy as np

from pipeline.cache.config import CacheConfig, EvictionPolicy, HybridPolicy
from pipeline.cache.memory import Cache
from pipeline.cache.policies import PolicyTuning

from ._bench_disk import VALUE_SIZE, bench_disk
from ._bench_warm import bench_warm
from ._table import machine_line, print_table, verdict

Rows = list[tuple[object, ...]]
Checks = list[tuple[str, float, float, bool]]

SEED = 20240607
ZIPF_S = 0.9
REFERENCE = {  # the figures, static trace, hit % at 1% / 10% of the keys
    "LRU": (34.2, 60.3),
    "W-TinyLFU": (45.0, 67.4),
}


def zipf_trace(keys: int, requests: int, *, reshuffle_every: int | None = None, seed: int = SEED) -> list[int]:
    """Keys drawn with P(rank r) ~ 1/r^0.9; the rank-to-key mapping is redrawn every ``reshuffle_every``."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, keys + 1) ** ZIPF_S
    ranks = rng.choice(keys, size=requests, p=weights / weights.sum())
    block = reshuffle_every or requests
    out = np.empty(requests, dtype=np.int64)
    for start in range(0, requests, block):
        out[start:start + block] = rng.permutation(keys)[ranks[start:start + block]]
    return out.tolist()


def _best_ops_per_s(runs: Sequence[Callable[[], None]], n: int, repeats: int = 5) -> list[float]:
    """Operations per second of each run, best of ``repeats``, the runs interleaved (fairer under noise)."""
    best = [float("inf")] * len(runs)
    for _ in range(repeats):
        for i, run in enumerate(runs):
            t0 = time.perf_counter()
            run()
            best[i] = min(best[i], time.perf_counter() - t0)
    return [n / b for b in best]


def bench_memory(quick: bool = False) -> tuple[Rows, Checks]:
    """Operations per second of our LRU ``Cache`` against ``cachetools.LRUCache``, same keys."""
    capacity = 10_000
    stream = zipf_trace(100_000, 100_000 if quick else 400_000, seed=SEED + 1)

    def ours_insert() -> None:
        cache = Cache(CacheConfig(max_entries=capacity))
        insert = cache.insert
        for k in stream:
            insert(k, k)

    def peer_insert() -> None:
        cache = cachetools.LRUCache(maxsize=capacity)
        for k in stream:
            cache[k] = k

    ours = Cache(CacheConfig(max_entries=capacity))
    peer = cachetools.LRUCache(maxsize=capacity)
    for k in stream[-capacity * 3:]:
        ours.insert(k, k)
        peer[k] = k

    def ours_get() -> None:
        get = ours.get
        for k in stream:
            get(k)

    def peer_get() -> None:
        get = peer.get
        for k in stream:
            get(k)

    rows: Rows = []
    checks: Checks = []
    for op, mine, theirs in (("get", ours_get, peer_get), ("insert", ours_insert, peer_insert)):
        a, b = _best_ops_per_s((mine, theirs), len(stream))
        rows.append((op, f"{a / 1e6:.2f}", f"{b / 1e6:.2f}", f"{a / b:.2f}x"))
        checks.append((f"{op} ops/s, ours / cachetools", a / b, 0.5, False))
    metrics = ours.statistics()
    rows.append(("(ours, sampled avg access)", f"{metrics.avg_access_us:.2f} us", "", ""))
    return rows, checks


def _replay(get: Callable[[int], object], insert: Callable[[int, int], object], trace: Sequence[int]) -> int:
    hits = 0
    for k in trace:
        if get(k) is None:
            insert(k, 1)
        else:
            hits += 1
    return hits


def _ours(policy: EvictionPolicy, tuning: PolicyTuning = PolicyTuning()) -> Callable[[int, Sequence[int]], float]:
    def run(capacity: int, trace: Sequence[int]) -> float:
        cache = Cache(CacheConfig(max_entries=capacity, eviction_policy=policy,
                                  hybrid=HybridPolicy(EvictionPolicy.LRU, EvictionPolicy.LFU, 0.8)),
                      tuning=tuning)
        _replay(cache.get, cache.insert, trace)
        return cache.hit_rate()
    return run


def _cachetools_lru(capacity: int, trace: Sequence[int]) -> float:
    cache = cachetools.LRUCache(maxsize=capacity)
    return _replay(cache.get, cache.__setitem__, trace) / len(trace)


CONTENDERS: dict[str, Callable[[int, Sequence[int]], float]] = {
    "LRU": _ours(EvictionPolicy.LRU),
    "FIFO (= TTL without ttl)": _ours(EvictionPolicy.FIFO),
    "LFU, aging (halve every 10x cap)": _ours(EvictionPolicy.LFU),
    "LFU, plain (no aging)": _ours(EvictionPolicy.LFU, PolicyTuning(lfu_aging_factor=None)),
    "Hybrid LRU->LFU at 80% (= LFU when full)": _ours(EvictionPolicy.HYBRID),
    "W-TinyLFU": _ours(EvictionPolicy.TINYLFU),
    "cachetools.LRUCache (peer)": _cachetools_lru,
}


def bench_hit_rates(quick: bool = False) -> tuple[Rows, Checks]:
    """Hit % of every policy on a static and a reshuffled Zipf(0.9) trace, at 1% and 10% of the keys."""
    keys, requests = (20_000, 200_000) if quick else (100_000, 1_000_000)
    traces = {"static": zipf_trace(keys, requests),
              "reshuffled": zipf_trace(keys, requests, reshuffle_every=requests // 4)}
    sizes = (keys // 100, keys // 10)
    rate: dict[tuple[str, str], tuple[float, float]] = {}
    rows: Rows = []
    for trace_name, trace in traces.items():
        for name, run in CONTENDERS.items():
            rate[trace_name, name] = tuple(100 * run(size, trace) for size in sizes)  # type: ignore[assignment]
            ref = REFERENCE.get(name) if trace_name == "static" and not quick else None
            rows.append((trace_name, name, *(f"{r:.1f}" for r in rate[trace_name, name]),
                         f"{ref[0]} / {ref[1]}" if ref else ""))
    tiny, lru = rate["static", "W-TinyLFU"], rate["static", "LRU"]
    checks: Checks = [("W-TinyLFU - LRU at 1%, static (points)", tiny[0] - lru[0], 5.0, False)]
    if not quick:
        for i, pct in enumerate(("1%", "10%")):
            gap = abs(tiny[i] - REFERENCE["W-TinyLFU"][i])
            checks.append((f"|W-TinyLFU - reference| at {pct} (points)", gap, 1.0, True))
    for i, pct in enumerate(("1%", "10%")):
        aged = rate["reshuffled", "LFU, aging (halve every 10x cap)"][i]
        plain = rate["reshuffled", "LFU, plain (no aging)"][i]
        moved_lru = rate["reshuffled", "LRU"][i]
        rows.append(("reshuffled",
                     f"  LFU - LRU at {pct}: plain {plain - moved_lru:+.1f}, aging {aged - moved_lru:+.1f}",
                     "", "", ""))
        checks.append((f"aged LFU - LRU, reshuffled, {pct} (points)", aged - moved_lru, 0.0, False))
    return rows, checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller traces (20k keys, 200k requests)")
    args = parser.parse_args(argv)
    print(machine_line())
    checks: Checks = []
    rows, c = bench_memory(args.quick)
    print_table("In-memory cache, 10k entries, LRU, metrics on (million ops/s, best of 5)",
                ("operation", "ours", "cachetools", "ratio"), rows)
    checks += c
    rows, c = bench_hit_rates(args.quick)
    print_table(f"Hit rate % on a Zipf({ZIPF_S}) trace{' (quick: 20k keys, 200k requests)' if args.quick else ''}",
                ("trace", "policy", "1% of keys", "10% of keys", "issue's reference"), rows)
    checks += c
    rows, c = bench_disk(args.quick)
    print_table(f"Persistent cache, {VALUE_SIZE // 1000} KB values, one process (ops/s)",
                ("cache", "set ops/s", "first get ops/s", "repeat get ops/s", "repeat get us"), rows)
    checks += c
    rows, c = bench_warm(args.quick)
    print_table("Thumbnails preset over the samples: cold vs warm (cache of stage results)",
                ("run", "seconds", "faster"), rows)
    checks += c
    ok = [verdict(name, value, goal, "" if "points" in name else "x", at_most=at_most)
          for name, value, goal, at_most in checks]
    print(f"\n{sum(ok)} of {len(ok)} targets met")
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
