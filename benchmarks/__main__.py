"""``python -m benchmarks``: run every benchmark in turn (``make bench``; ``--quick`` for shorter runs)."""

import sys

from . import bench_cache, bench_handoff, bench_pipeline, bench_runtime

if __name__ == "__main__":
    status = 0
    for bench in (bench_handoff, bench_runtime, bench_pipeline, bench_cache):
        status |= bench.main(sys.argv[1:])
    sys.exit(status)
