"""``framepipe bench``: run a preset or a pipeline file and show how fast every stage went, and why.

On generated samples when no input is given. Stage results are not taken from
the cache unless ``--cache`` is given, so the figures measure real work.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline import RunResult
    from pipeline.observe import StageStats

__all__ = ["add_command", "bench_rows", "bench_report"]


def bench_rows(result: RunResult) -> list[dict[str, Any]]:
    """Per stage: frames/s and MB/s over the run's wall time, busy / starved / blocked shares, cache hit rate."""
    wall = max(result.wall_s, 1e-9)
    rows = []
    for s in result.stages:
        capacity = wall * max(s.workers, 1)
        looked_up = s.cache_hits + s.cache_misses
        rows.append({
            "stage": s.name, "where": s.where, "workers": s.workers, "files": s.files, "frames": s.frames,
            "frames_per_s": s.frames / wall, "mb_per_s": s.bytes / 1e6 / wall,
            "busy_pct": 100 * s.busy_s / capacity, "starved_pct": 100 * s.starved_s / capacity,
            "blocked_pct": 100 * s.blocked_s / capacity, "failures": s.failures,
            "p95_ms": s.p95_s * 1e3 if s.p95_s else None,  # None: no per-task latencies (a per-file stage)
            "cache_hit_pct": 100 * s.cache_hits / looked_up if looked_up else None,
        })
    return rows


def _pools(stages: list[StageStats], wall: float) -> dict[str, float]:
    """Utilization of each group of workers: the file actors, and each map pool."""
    groups: dict[str, list[StageStats]] = {}
    for s in stages:
        groups.setdefault("actors" if s.where == "file" else s.where, []).append(s)
    out = {}
    for name, members in groups.items():
        workers = max(m.workers for m in members)
        out[name] = 100 * sum(m.busy_s for m in members) / (max(wall, 1e-9) * max(workers, 1))
    return out


def bench_report(result: RunResult) -> dict[str, Any]:
    """Everything ``framepipe bench`` prints, as a JSON-ready dict."""
    from pipeline.observe import find_bottleneck
    neck = find_bottleneck(result.stages, result.wall_s)
    return {
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "pipeline": result.pipeline, "executor": result.executor, "workers": result.workers,
        "files": len(result.files), "failed": len(result.failed), "wall_s": result.wall_s,
        "stages": bench_rows(result), "pool_utilization_pct": _pools(result.stages, result.wall_s),
        "peak_slots": result.peak_slots,
        "bottleneck": None if neck is None else {"stage": neck.stage, "utilization": neck.utilization,
                                                 "reason": neck.reason},
    }


def _format(report: dict[str, Any]) -> str:
    from pipeline.observe import text_table
    head = ("stage", "where", "frames", "frames/s", "MB/s", "busy %", "starved %", "blocked %", "p95 ms", "cache hit %")
    rows = [head]
    for r in report["stages"]:
        rows.append((r["stage"], r["where"], str(r["frames"]), f"{r['frames_per_s']:.1f}", f"{r['mb_per_s']:.1f}",
                     f"{r['busy_pct']:.0f}", f"{r['starved_pct']:.0f}", f"{r['blocked_pct']:.0f}",
                     "-" if r["p95_ms"] is None else f"{r['p95_ms']:.1f}",
                     "-" if r["cache_hit_pct"] is None else f"{r['cache_hit_pct']:.0f}"))
    lines = text_table(rows, left=2).split("\n")
    pools = ", ".join(f"{k} {v:.0f}%" for k, v in report["pool_utilization_pct"].items())
    lines.append(f"pool utilization: {pools}")
    if report.get("peak_slots"):
        lines.append(f"peak shared-memory slots in use: {report['peak_slots']}")
    neck = report["bottleneck"]
    if neck:
        lines.append(f"bottleneck: {neck['stage']} ({neck['reason']})")
    lines.append(f"{report['files']} file(s), {report['failed']} failed, {report['wall_s']:.2f} s on "
                 f"{report['workers']} {report['executor']} worker(s)")
    return "\n".join(lines)


def _cmd_bench(args: argparse.Namespace) -> int:
    # The run's imports are here: `framepipe --help` loads this module for add_command alone.
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline import build_preset, run
    from pipeline.observe import ConsoleProgress
    from pipeline.presets import load_pipeline_file, parse_options

    from .samples import generate_samples
    options = parse_options(args.option)
    target = args.target
    pipeline = load_pipeline_file(target, options) if target.endswith(".py") else build_preset(target, options)
    with tempfile.TemporaryDirectory(prefix="framepipe-bench-") as tmp:
        inputs = args.input
        if inputs is None:
            inputs = str(Path(tmp) / "samples")
            print(f"framepipe bench: generating samples in {inputs}", file=sys.stderr)
            generate_samples(inputs)
        out = args.output or str(Path(tmp) / "out")
        progress = ConsoleProgress(0, live=False) if not args.quiet else None
        extra = {k: v for k, v in (("trace", args.trace), ("chart", args.chart)) if v}
        # resume=False: a bench into an OUT kept from before measures the work, not a skip of every file.
        result = run(pipeline, inputs, out, workers=args.workers, cache=None if args.cache else False,
                     events=progress, resume=False, **extra)
    report = bench_report(result)
    print(_format(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    if args.parquet:
        table = pa.Table.from_pylist(report["stages"])
        p95 = table.schema.get_field_index("p95_ms")
        table = table.set_column(p95, pa.field("p95_ms", pa.float64()), table.column(p95).cast(pa.float64()))
        pq.write_table(table, args.parquet)
    return 0


def add_command(subparsers: Any) -> None:
    """Register ``framepipe bench`` (an entry point of the ``framepipe.commands`` group)."""
    p = subparsers.add_parser("bench", help="run a preset or pipeline file and show per-stage speed and why")
    p.add_argument("target", nargs="?", default="default", help="preset name or PIPELINE.py (default: default)")
    p.add_argument("input", nargs="?", help="folder or file (default: generated samples)")
    p.add_argument("-O", "--option", action="append", default=[], metavar="KEY=VALUE", help="preset option")
    p.add_argument("-j", "--workers", type=int, default=None)
    p.add_argument("-o", "--output", help="keep the outputs here (default: a temporary folder)")
    p.add_argument("--cache", action="store_true", help="let remembered stage results stand in (default: off)")
    p.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    p.add_argument("--parquet", metavar="FILE", help="write the per-stage figures as Parquet")
    p.add_argument("--trace", metavar="FILE", help="write a Chrome trace-event timeline (Perfetto, chrome://tracing)")
    p.add_argument("--chart", metavar="FILE.png", help="write a chart of throughput and utilization over time")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-file lines")
    p.set_defaults(func=_cmd_bench)
