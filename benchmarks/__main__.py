"""``python -m benchmarks``: run every benchmark in turn and write ``benchmarks/RESULTS.md`` (``make bench``).

Each benchmark's output is shown as it runs and captured; one that crashes is
reported (its traceback goes into the results) and the others still run.
RESULTS.md holds the machine, then each benchmark's command and output, then a
table of every target line ("target NAME: X (goal G) MET|MISSED") found in them.

Usage: python -m benchmarks [--quick] [--only NAME[,NAME...]] [--results PATH]
  --quick   passed to every benchmark (shorter runs)
  --only    run only these (handoff, runtime, pipeline, cache, vs_ffmpeg, scaling, memory, ray,
            ray_cluster, deinterlace, pictures, decode_plan)
  --results where to write the results (default benchmarks/RESULTS.md; "-" for nowhere)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import io
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

# (name, module, extra arguments for a full run). A full run was meant to finish
# within about 20 minutes on a 2-core machine; since issue 18, vs_ffmpeg alone takes
# 10-20 minutes even with --quick (realistic clip sets: a 60 s file, 200 small files),
# and its first run makes the sets (6 minutes at --quick) under ~/.cache/framepipe-bench.
BENCHMARKS: list[tuple[str, str, list[str]]] = [
    ("handoff", "bench_handoff", []),
    ("runtime", "bench_runtime", []),
    ("pipeline", "bench_pipeline", []),
    ("cache", "bench_cache", []),
    ("vs_ffmpeg", "bench_vs_ffmpeg", []),
    ("scaling", "bench_scaling", []),
    ("memory", "bench_memory", []),
    ("ray", "bench_ray", []),
    ("ray_cluster", "bench_ray_cluster", []),
    ("feed", "bench_feed", []),
    ("deinterlace", "bench_deinterlace", []),
    ("pictures", "bench_pictures", []),
    ("decode_plan", "bench_decode_plan", []),
]

TARGET = re.compile(r"^\s*target (?P<name>.+?): (?P<value>\S+(?: \S+)?) "
                    r"\(goal (?P<goal>[^)]*)\) (?P<verdict>MET|MISSED)\s*$")


class _Tee(io.TextIOBase):
    """Writes to the real stream and keeps a copy."""

    def __init__(self, stream) -> None:  # noqa: ANN001
        self.stream = stream
        self.copy = io.StringIO()

    def write(self, s: str) -> int:
        self.stream.write(s)
        self.stream.flush()
        self.copy.write(s)
        return len(s)

    def flush(self) -> None:
        self.stream.flush()


def _first_line(cmd: list[str]) -> str:
    if shutil.which(cmd[0]) is None:
        return "not installed"
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout
        return out.splitlines()[0].strip() if out else "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine_header() -> list[str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil
        mem = f"{psutil.virtual_memory().total / 2**30:.1f} GiB"
    except Exception:  # noqa: BLE001
        mem = "?"
    try:
        import av
        pyav = f"PyAV {av.__version__}, FFmpeg {getattr(av, 'ffmpeg_version_info', '?')} " \
               f"(libavcodec {'.'.join(map(str, av.library_versions.get('libavcodec', ())))})"
    except Exception:  # noqa: BLE001
        pyav = "PyAV not importable"
    return [
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores "
        f"(usable: {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'}), {mem} memory",
        f"- CPU: {cpu}",
        f"- OS: {platform.platform()}",
        f"- Python {platform.python_version()} ({sys.executable})",
        f"- {pyav}",
        f"- ffmpeg CLI: {_first_line(['ffmpeg', '-version'])}",
    ]


def run_one(module: str, argv: list[str]) -> tuple[int, str, float, bool]:
    """(status, captured output, seconds, crashed) of ``benchmarks.<module>.main(argv)``."""
    tee_out, tee_err = _Tee(sys.stdout), _Tee(sys.stderr)
    crashed = False
    status = 0
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(tee_out), contextlib.redirect_stderr(tee_err):
        try:
            mod = importlib.import_module(f"benchmarks.{module}")
            status = int(mod.main(argv) or 0)
        except KeyboardInterrupt:
            raise
        except BaseException:  # noqa: BLE001 - a crash (or SystemExit) is reported, the others still run
            crashed = True
            status = 2
            traceback.print_exc()
        finally:
            try:
                from pipeline.runtime.forkserver import stop_server
                stop_server()  # the next benchmark starts from a clean slate
            except Exception:  # noqa: BLE001
                pass
    seconds = time.perf_counter() - t0
    text = tee_out.copy.getvalue()
    err = tee_err.copy.getvalue()
    if err.strip():
        text += ("\n" if text and not text.endswith("\n") else "") + "[stderr]\n" + err
    return status, text, seconds, crashed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter runs (passed to every benchmark)")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--results", default=str(Path(__file__).with_name("RESULTS.md")))
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(names) - {b[0] for b in BENCHMARKS}
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    chosen = [b for b in BENCHMARKS if not names or b[0] in names]

    header = machine_header()
    print("\n".join(header), flush=True)
    sections: list[str] = []
    targets: list[tuple[str, str, str, str, str]] = []
    summary: list[tuple[str, str, float]] = []
    status = 0
    start = time.perf_counter()
    for name, module, full_args in chosen:
        bench_argv = ["--quick"] if args.quick else list(full_args)
        command = " ".join(["python", "-m", f"benchmarks.{module}", *bench_argv])
        print(f"\n{'=' * 78}\n== {name}: {command}\n{'=' * 78}", flush=True)
        code, text, seconds, crashed = run_one(module, bench_argv)
        status |= code
        outcome = "CRASHED" if crashed else ("all targets met" if code == 0 else "exit 1 (a target missed)")
        print(f"== {name}: {outcome}, {seconds:.0f} s", flush=True)
        summary.append((name, outcome, seconds))
        for line in text.splitlines():
            m = TARGET.match(line)
            if m:
                targets.append((name, m["name"], m["value"], m["goal"], m["verdict"]))
        sections += [f"## {name}", "", f"`{command}` ({seconds:.0f} s, {outcome})", "",
                     "```", text.rstrip("\n").replace("```", "'''"), "```", ""]
    total = time.perf_counter() - start
    print(f"\nall benchmarks: {total:.0f} s ({total / 60:.1f} min)")

    met = sum(t[4] == "MET" for t in targets)
    lines = ["# framepipe benchmark results", "",
             f"`python -m benchmarks{' --quick' if args.quick else ''}`"
             f"{' (quick mode: shorter runs, targets are indicative only)' if args.quick else ''}; "
             f"total {total:.0f} s ({total / 60:.1f} min). Numbers are as measured on a shared machine and noisy.",
             "", *header, "", "| benchmark | result | seconds |", "|---|---|---:|",
             *[f"| {n} | {o} | {s:.0f} |" for n, o, s in summary], "", *sections,
             "## Targets", "", f"{met} of {len(targets)} met.", "",
             "| benchmark | target | measured | goal | verdict |", "|---|---|---:|---|---|",
             *[f"| {b} | {n.replace('|', '/')} | {v} | {g} | {'MET' if r == 'MET' else '**MISSED**'} |"
               for b, n, v, g, r in targets], ""]
    crashed = [n for n, o, _ in summary if o == "CRASHED"]
    if crashed:
        lines += [f"Crashed (no targets reported): {', '.join(crashed)}.", ""]
    print(f"{met} of {len(targets)} targets met" + (f"; crashed: {', '.join(crashed)}" if crashed else ""))
    if args.results != "-":
        Path(args.results).write_text("\n".join(lines))
        print(f"wrote {args.results}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
