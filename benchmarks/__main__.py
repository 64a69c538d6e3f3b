"""``python -m benchmarks``: run every benchmark in turn (``make bench``)."""

import sys

from . import bench_handoff, bench_runtime

if __name__ == "__main__":
    status = 0
    for bench in (bench_handoff, bench_runtime):
        status |= bench.main(sys.argv[1:])
    sys.exit(status)
