"""The Ray executor on a multi-node cluster: one to three nodes, against the local executor on the same CPUs.

The cluster is Ray's own test cluster (``ray.cluster_utils.Cluster``): a head and worker nodes, each its own
raylet with one CPU and its own object store, all on this machine. Each node's processes are pinned to one core
(node k to core k mod the machine's cores, ``sched_setaffinity`` before it starts; its workers inherit it), as a
one-core machine would hold them: unpinned, one file's decoder and encoder threads spread over every core and
one node already uses the whole machine. **Nodes on one machine share its cores**: on a 2-core machine a third
node shares core 0 with the head, so the figure past two nodes shows what the extra node costs, not what a real
third machine would add. A real cluster's nodes bring their own cores. The local executor's runs are pinned the
same way (one worker: core 0; two: both), each in a fresh process so that no pinned helper outlives its row.

The job: the default preset (metadata, audio levels, thumbnails, a sprite sheet, a 720p proxy; ``cache=False``)
over 8 files of the realistic ``small-files`` set (720p30 phone-like H.264, CABAC, B-frames, grain; made once
by ``benchmarks.clipsets`` under ~/.cache/framepipe-bench), and, beside it, the same on the ``ultrafast`` test
patterns' first 2 files. Each figure is the best of ``--rounds`` (default 2, ``--quick`` 1) after a warm-up
run on the same cluster. Rows:

* local executor, 1 and 2 workers (1 and 2 cores): the baseline on the same cores;
* Ray, 1, 2 and 3 nodes of 1 CPU each (the driver on the head's machine, as ``--address`` gives it);
* speed-up = 1-node seconds / n-node seconds; overhead = Ray seconds / local seconds at the same CPUs.

Usage: python -m benchmarks.bench_ray_cluster [--quick] [--rounds N] [--files N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline import run
from stages import presets

from ._table import machine_line, print_table
from .bench_scaling import _best_seconds
from .clipsets import clip_sets, ensure


def _batch(work: Path, name: str, count: int) -> Path:
    """The first ``count`` clips of a clip set, linked into a folder of their own."""
    clip_set = next(s for s in clip_sets(quick=True) if s.name == name)
    footage = ensure(clip_set)
    folder = work / name
    folder.mkdir()
    for clip in footage.clips[:count]:
        (folder / clip.name).symlink_to(clip)
    return folder


def _timed(inputs: Path, work: Path, label: str, rounds: int, **options: object) -> float:
    """Best wall seconds of the default preset over ``inputs`` (after a warm-up run), every file succeeding."""
    counter = iter(range(1000))

    def once() -> None:
        r = run(presets.default(), inputs, work / f"{label}-{next(counter)}", cache=False, **options)  # type: ignore[arg-type]
        bad = [f for f in r.files if not f.ok]
        assert not bad, bad[0].error

    once()  # warm-up: workers started, codecs loaded
    return _best_seconds(once, rounds)


def _local(inputs: Path, work: Path, label: str, rounds: int, workers: int) -> float:
    """``_timed`` on the local executor with ``workers`` workers, in a fresh process pinned to that many cores."""
    cores = sorted(os.sched_getaffinity(0))[:workers]
    code = ("import sys; from pathlib import Path; from benchmarks.bench_ray_cluster import _timed; "
            f"print(_timed(Path({str(inputs)!r}), Path({str(work)!r}), {label!r}, {rounds}, workers={workers}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          preexec_fn=lambda: os.sched_setaffinity(0, cores))
    return float(done.stdout.strip().splitlines()[-1])


@contextmanager
def _pinned(core: int) -> Iterator[None]:
    """This process on one core while a node starts (its processes inherit it), then on its cores again."""
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {sorted(cores)[core % len(cores)]})
    try:
        yield
    finally:
        os.sched_setaffinity(0, cores)


def _on_cluster(nodes: int, jobs: list[tuple[str, Path]], work: Path, rounds: int) -> dict[str, float]:
    """Seconds of each job on a cluster of ``nodes`` nodes of one CPU each, started for it and stopped after."""
    import ray
    from ray.cluster_utils import Cluster

    from pipeline.executors.ray.cluster import init_ray

    with _pinned(0):
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        for k in range(1, nodes):
            with _pinned(k):
                cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        init_ray(address=cluster.address)
        try:
            return {name: _timed(inputs, work, f"ray{nodes}-{name}", rounds, executor="ray")
                    for name, inputs in jobs}
        finally:
            ray.shutdown()
    finally:
        cluster.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one round, 4 files")
    parser.add_argument("--rounds", type=int, default=0, help="runs per figure, best kept (default 2; quick 1)")
    parser.add_argument("--files", type=int, default=0, help="files of the realistic set (default 8; quick 4)")
    args = parser.parse_args(argv)
    try:
        import ray  # noqa: F401
    except ImportError:
        print("ray is not installed: pip install framepipe[ray]")
        return 0
    rounds = args.rounds or (1 if args.quick else 2)
    files = args.files or (4 if args.quick else 8)
    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="framepipe-cluster-bench-") as tmp:
        work = Path(tmp)
        jobs = [("small-files", _batch(work, "small-files", files)), ("ultrafast", _batch(work, "ultrafast", 2))]
        local = {(name, w): _local(inputs, work, f"local{w}-{name}", rounds, w)
                 for name, inputs in jobs for w in (1, 2)}
        ray_s = {n: _on_cluster(n, jobs, work, rounds) for n in (1, 2, 3)}
        shutil.rmtree(work, ignore_errors=True)
    for name, _ in jobs:
        count = files if name == "small-files" else 2
        rows: list[tuple[object, ...]] = []
        for w in (1, 2):
            rows.append((f"local executor, {w} worker(s) on {w} core(s)", w, f"{local[name, w]:.2f}",
                         f"{count / local[name, w]:.2f}", "", ""))
        for n in (1, 2, 3):
            secs = ray_s[n][name]
            base = local[name, min(n, 2)]
            rows.append((f"ray, {n} node(s) of 1 CPU, each on 1 core", n, f"{secs:.2f}", f"{count / secs:.2f}",
                         f"{ray_s[1][name] / secs:.2f}x", f"{secs / base:.2f}x"))
        what = ("realistic 720p30 phone-like clips" if name == "small-files"
                else "test patterns, x264 ultrafast (beside it)")
        print_table(f"default preset over {count} files of {name} ({what}); best of {rounds}",
                    ("executor", "CPUs", "seconds", "files/s", "speed-up vs 1 node", "overhead vs local"), rows)
    print("\n  nodes on one machine share its cores: past the machine's cores a node adds processes, not CPU time")
    speedup = ray_s[1]["small-files"] / ray_s[2]["small-files"]
    print(f"  target ray 2 nodes vs 1 (realistic): {speedup:.2f}x (goal 1.6x) {'MET' if speedup >= 1.6 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
