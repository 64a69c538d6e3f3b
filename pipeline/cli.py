"""The ``framepipe`` command.

It starts at once: ``--version`` and ``--help`` load none of numpy, PyAV, pyarrow or loky (the parser's
imports are light, a command's own modules load when it runs, and the commands that packages add register
their arguments without their work's imports); ``--version`` answers before those commands are looked up, and
the engine's own commands (``run``, ``report``, ``cache``, ``presets``) run without them. Nor does a ``run`` whose every
file is done already (by an earlier run into its output folder) load any of those libraries or start a worker.
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import threading
from collections.abc import Sequence
from importlib.metadata import entry_points, version
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from .errors import FramepipeError
from .executors import EXECUTORS
from .runtime.interrupts import Interrupted
from .runtime.lifecycle import stop_helpers
from .runtime.limits import limit_reason
from .storage.location import is_url

if TYPE_CHECKING:
    from .sources import SkippedInput

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_FILES_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
_ENGINE_COMMANDS = ("run", "report", "cache", "presets")  # those _engine_parser adds
log = logging.getLogger("framepipe.cli")


def _say(args: argparse.Namespace, message: str, level: int = logging.INFO) -> None:
    """A status or error line on stderr: plain for people, a log record under ``--log-json``."""
    if getattr(args, "log_json", False):
        log.log(level, message)
    else:
        print(f"framepipe: {message}", file=sys.stderr)


def _cmd_run(args: argparse.Namespace) -> int:
    from .observe.progress import ConsoleProgress, SilentProgress
    from .presets import build_preset, load_pipeline_file, parse_options
    from .run import collect_inputs, run
    from .sources import FileSelection, read_file_list
    options = parse_options(args.option)
    pipeline = load_pipeline_file(args.pipeline, options) if args.pipeline else build_preset(args.preset, options)
    inputs = list(args.input) + (read_file_list(args.files_from) if args.files_from else [])
    if not inputs:
        _say(args, "no input given (a folder, files, or --files-from LIST)", logging.ERROR)
        return EXIT_USAGE
    select = FileSelection(include=tuple(args.include), exclude=tuple(args.exclude),
                           recursive=not args.no_recursive, hidden=args.hidden)
    skipped: list[SkippedInput] = []
    # What run() will take, counted (it lists them again, and reads each file's fingerprint then).
    items = collect_inputs(inputs, pipeline.extensions, select=select, out=args.output, skipped=skipped,
                           identify=False)
    where = inputs[0] if len(inputs) == 1 else f"{len(inputs)} inputs"
    if not args.log_json or not items:  # under --log-json, run() logs each as a record of its own
        for entry in skipped:
            _say(args, str(entry), logging.WARNING)
    if not items:
        _say(args, f"no input files found in {where}", logging.ERROR)
        return EXIT_USAGE
    # Under --log-json stderr carries only JSON lines: each file's end is a log record instead.
    progress = SilentProgress() if args.log_json else \
        ConsoleProgress(len(items), live=None if not (args.quiet or args.verbose) else False,
                        total_bytes=sum(i.size for i in items))
    _say(args, f"{pipeline.name}: {len(items)} file(s) from {where} -> {args.output}")
    metrics_address = f"127.0.0.1:{args.metrics_port}" if args.metrics_port is not None else args.metrics_address
    if (metrics_address or args.metrics_push) and logging.getLogger("framepipe").getEffectiveLevel() > logging.INFO:
        logging.getLogger("framepipe.prometheus").setLevel(logging.INFO)  # where its figures go is always told
    try:
        result = run(pipeline, inputs, args.output, executor=args.executor, workers=args.workers,
                     select=select, progress=progress, cache=False if args.no_cache else args.cache_dir,
                     trace=args.trace, chart=args.chart, metrics_address=metrics_address,
                     metrics_push=args.metrics_push, performance=args.profile, resume=not args.fresh,
                     file_timeout=args.timeout, address=args.address)
    finally:
        progress.close()
    print(result.table())
    print(result.summary())
    if is_url(args.output):  # put into OUT with the reports
        print(f"report page: {args.output.rstrip('/')}/index.html")
    elif (page := Path(args.output) / "index.html").is_file():
        print(f"report page: {page}")
    if not args.log_json:
        for failed in result.failed:
            print(failed.summary_line(), file=sys.stderr)
    return result.exit_code


def _cmd_report(args: argparse.Namespace) -> int:
    from .observe.report_page import write_report_page
    page = write_report_page(args.folder)
    print(f"framepipe: report page written: {page}")
    return EXIT_OK


def _cmd_cache(args: argparse.Namespace) -> int:
    from .cache.disk import DiskCache
    from .cache.location import default_cache_dir
    root = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    if args.action == "path":
        print(root)
        return EXIT_OK
    names = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not names:
        print(f"framepipe: no cache in {root}")
        return EXIT_OK
    for name in names:
        with DiskCache(root, name=name) as cache:
            if args.action == "clear":
                cache.clear()
                print(f"{name}: cleared")
            elif args.action == "prune":
                print(f"{name}: {cache.prune()}")
            else:
                st = cache.statistics()
                print(f"{name}: {st.entries} entries, {st.size_bytes / 1e6:.1f} MB in {st.path}")
    return EXIT_OK


def _cmd_presets(args: argparse.Namespace) -> int:
    from .presets import available_presets, option_specs, preset_options
    for name, factory in sorted(available_presets().items()):
        doc = (factory.__doc__ or "").strip().splitlines()
        print(f"{name}: {doc[0] if doc else ''}")
        specs = option_specs(factory)
        for key, default in preset_options(factory).items():
            shown = str(default).lower() if isinstance(default, bool) else "" if default is None else default
            spec = specs[key]
            what = f"{spec.help}: {spec.accepts}" if spec.help else spec.accepts
            print(f"    {f'-O {key}={shown}':<28} {what}")
    return EXIT_OK


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def _address(text: str) -> str:
    """``HOST:PORT``, checked (called only when the option is given: ``--help`` loads no prometheus_client)."""
    from .observe.prometheus import parse_address
    try:
        parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with the commands that installed packages add."""
    parser, sub = _engine_parser()
    for ep in entry_points(group="framepipe.commands"):
        try:
            add_command = ep.load()
        except ImportError as exc:  # a plugin whose package is missing: the engine's own commands still work
            log.warning("command %s is not available: %s", ep.name, exc)
            continue
        add_command(sub)
    return parser


def _top_parser() -> argparse.ArgumentParser:
    """The argument parser without its commands: all that ``--version`` needs."""
    parser = argparse.ArgumentParser(prog="framepipe", description="Batch video work as a graph of stages.")
    parser.add_argument("--version", action="version", version=f"framepipe {version('framepipe')}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more: -v what runs do (INFO), -vv scheduling detail (DEBUG)")
    parser.add_argument("--log-json", action="store_true",
                        help="log one JSON object per line on stderr (time, level, logger, message, fields)")
    return parser


def _engine_parser() -> tuple[argparse.ArgumentParser, Any]:
    """The argument parser with the engine's own commands, and its commands' group (for the others)."""
    from .tuning.performance import PROFILES  # (with dataclasses and inspect: not paid by --version)
    parser = _top_parser()
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p_run = sub.add_parser("run", help="run a preset over a folder (or file) of footage")
    p_run.add_argument("input", nargs="*", help="folders (walked recursively) or files")
    p_run.add_argument("--files-from", metavar="LIST", help="also the paths in LIST, one per line (- for stdin)")
    p_run.add_argument("--include", action="append", default=[], metavar="GLOB",
                       help="walk only files matching GLOB (relative path or name), repeatable")
    p_run.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                       help="skip files matching GLOB, repeatable")
    p_run.add_argument("--no-recursive", action="store_true", help="do not walk sub-folders")
    p_run.add_argument("--hidden", action="store_true", help="take hidden files and folders too")
    p_run.add_argument("-o", "--output", required=True, help="output folder")
    p_run.add_argument("-p", "--preset", default="default", help="preset name (see `framepipe presets`)")
    p_run.add_argument("-P", "--pipeline", metavar="FILE.py",
                       help="your own pipeline: a Python file with build(**options) -> Pipeline, or `pipeline`")
    p_run.add_argument("-O", "--option", action="append", default=[], metavar="KEY=VALUE",
                       help="preset option, repeatable (e.g. -O thumb_every=5)")
    p_run.add_argument("-j", "--workers", type=int, default=None, help="worker processes (default: cores)")
    p_run.add_argument("--profile", choices=PROFILES, default=None,
                       help="size the run for this machine: video_processing, low_memory, or auto "
                            "(video_processing, retuned as the run goes; its decisions print under the table)")
    p_run.add_argument("--executor", choices=EXECUTORS, default="local",
                       help="where files run: local (worker processes), inline (this process), ray (a Ray cluster; "
                            "pip install framepipe[ray])")
    p_run.add_argument("--address", metavar="ADDR",
                       help="the Ray cluster for --executor ray: ray://HEAD:10001, HEAD:6379 or auto "
                            "(default: $RAY_ADDRESS, else a local Ray instance for this run)")
    p_run.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                       help="fail a file still running after SECONDS: its worker is killed, the batch goes on")
    p_run.add_argument("-q", "--quiet", action="store_true", help="plain lines, no live progress")
    p_run.add_argument("--fresh", action="store_true",
                       help="run every file again, even those an earlier run into OUT finished "
                            "(resets OUT/ledger.jsonl)")
    p_run.set_defaults(func=_cmd_run)

    p_run.add_argument("--no-cache", action="store_true", help="neither use nor keep remembered stage results")
    p_run.add_argument("--cache-dir", metavar="DIR",
                       help="cache folder (default: $FRAMEPIPE_CACHE_DIR, ~/.cache/framepipe)")
    p_run.add_argument("--trace", metavar="FILE.json",
                       help="write a timeline of every worker's calls (Chrome trace; open in ui.perfetto.dev)")
    p_run.add_argument("--chart", metavar="FILE.png", help="write a chart of per-stage throughput and utilization")
    metrics_at = p_run.add_mutually_exclusive_group()
    metrics_at.add_argument("--metrics-address", type=_address, metavar="HOST:PORT",
                            help="serve the run's figures for Prometheus on http://HOST:PORT/metrics while it runs "
                                 "(port 0: a free one, logged; :PORT: every interface)")
    metrics_at.add_argument("--metrics-port", type=int, metavar="N",
                            help="short for --metrics-address 127.0.0.1:N (this machine only)")
    p_run.add_argument("--metrics-push", metavar="URL",
                       help="push the run's figures to the Prometheus Pushgateway at URL every few seconds and at "
                            "the end (job framepipe; a failed push is a warning)")

    p_report = sub.add_parser("report", help="draw OUT/index.html again from the run report in OUT")
    p_report.add_argument("folder", metavar="OUT", help="an output folder of framepipe run")
    p_report.set_defaults(func=_cmd_report)

    p_cache = sub.add_parser("cache", help="the cache of stage results: where it is, what it holds, clear, prune")
    p_cache.add_argument("action", choices=("path", "stats", "clear", "prune"))
    p_cache.add_argument("--cache-dir", metavar="DIR", help="cache folder (default: as for run)")
    p_cache.set_defaults(func=_cmd_cache)

    p_presets = sub.add_parser("presets", help="list installed presets and their options")
    p_presets.set_defaults(func=_cmd_presets)
    return parser, sub


def _engine_command(argv: Sequence[str]) -> bool:
    """Whether ``argv`` names one of the engine's own commands (``run``, ``report``, ``cache``, ``presets``) before
    anything that needs the others (``--help``): then the commands that packages add are not looked up (nor their
    modules loaded), and a re-run with nothing to do starts sooner."""
    for arg in argv:
        if arg in _ENGINE_COMMANDS:
            return True
        if arg not in ("--verbose", "--log-json") and not re.fullmatch(r"-v+", arg):
            return False
    return False


def _asks_version(argv: Sequence[str]) -> bool:
    """Whether ``argv`` asks for ``--version`` before anything else it could mean (a command, ``--help``).

    Then the answer needs no command: none is looked up (the engine's, or those that packages add).
    """
    for arg in argv:
        if arg == "--version":
            return True
        if arg not in ("--verbose", "--log-json") and not re.fullmatch(r"-v+", arg):
            return False
    return False


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


def _thread_failed(args: threading.ExceptHookArgs) -> None:
    """A thread ended by an exception (loky's, out of memory): one log line, its traceback only with -vv. What it
    stopped is reported where it matters (the pool fails its tasks, naming the limit)."""
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    reason = limit_reason(args.exc_value) if args.exc_value is not None else None
    log.warning("thread %s failed: %s", name, reason or f"{args.exc_type.__name__}: {args.exc_value}")
    if args.exc_value is not None:
        log.debug("thread %s failed", name, exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


def _unraisable(hook: object) -> None:
    """An exception Python could not raise (a thread that failed as it started, out of memory): one log line."""
    exc = getattr(hook, "exc_value", None)
    reason = limit_reason(exc) if isinstance(exc, BaseException) else None
    log.warning("%s: %s", getattr(hook, "err_msg", None) or "exception ignored",
                reason or f"{type(exc).__name__}: {exc}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``framepipe`` command; returns the exit status."""
    threading.excepthook = _thread_failed
    sys.unraisablehook = _unraisable
    # SIGTERM ends a run the way Ctrl-C does: workers stopped, partial outputs removed. It raises Interrupted, so
    # that wherever it lands (a scan of the inputs, a blocked read) the line and the status name it (143).
    signal.signal(signal.SIGTERM, _raise_interrupted)
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _top_parser() if _asks_version(argv) else _engine_parser()[0] if _engine_command(argv) else build_parser()
    args = parser.parse_args(argv)
    from .observe.logs import configure_logging  # (its imports are a run's: not paid by --version or --help)
    # Without -v, run's -q (its quiet switch) also keeps the log to errors; --log-json keeps its lines on stderr.
    configure_logging(args.verbose or (-1 if getattr(args, "quiet", False) else 0), json=args.log_json)
    try:
        return int(args.func(args))
    except KeyboardInterrupt as exc:
        if not args.log_json:
            print(file=sys.stderr)  # past the ^C the terminal echoed
        reason = str(exc) or "interrupted by SIGINT"  # a bare KeyboardInterrupt is Python's own Ctrl-C
        _say(args, f"{reason}; finished outputs are kept, partial ones removed", logging.ERROR)
        return exc.exit_status if isinstance(exc, Interrupted) else EXIT_INTERRUPTED
    except FramepipeError as exc:  # an expected error: its message, never a traceback
        _say(args, str(exc), logging.ERROR)
        return EXIT_USAGE
    finally:  # the command returns only once every process it started has exited (the forkserver, trackers...)
        stop_helpers()
