"""``run()``: gather the input files, run them on an executor, write the report."""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from .bookkeeping.ledger import LEDGER_NAME, LedgerEvents, RunLedger
from .bookkeeping.memo import StageMemo, memo_dir
from .bookkeeping.staging import sweep_staging
from .dataplane.segments import sweep_stale_segments
from .errors import OutputFolderInUse, OutputIsLink, UnsupportedRunOption
from .executors import Executor, FileTask, RunEvents, get_executor
from .executors.file_runner import replay_whole_file
from .graph import Pipeline
from .items import FileItem
from .observe.logs import LoggedEvents
from .observe.metrics import StageStats, merge_stats
from .observe.progress import SilentProgress
from .observe.report import report_is_current, report_key, write_report
from .observe.report_page import PAGE_NAME, write_report_page
from .observe.trace import RunTrace
from .outputs import check_writable, output_error, sweep_partial_outputs, write_output
from .results import FileResult, RunResult
from .sources import FileSelection, SkippedInput, file_items, find_files, report_skipped
from .stage import FileRun
from .storage.location import is_url, storage_environment
from .tuning.performance import PerformanceConfig

if TYPE_CHECKING:
    from .cache.locks import FileLock
    from .observe.progress import ConsoleProgress
    from .storage.mirror import RemoteFolder

__all__ = ["run", "collect_inputs", "output_keys", "LOCK_NAME"]

log = logging.getLogger("framepipe.run")

LOCK_NAME = ".framepipe.lock"
"""The file in the output folder that a run holds locked from start to end (and removes), holding its pid."""


def collect_inputs(inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
                   extensions: Iterable[str] | None = None, *,
                   select: FileSelection | None = None, out: str | os.PathLike[str] | None = None,
                   skipped: list[SkippedInput] | None = None, identify: bool = True) -> list[FileItem]:
    """Input files as numbered items: each folder is walked (``select``, ``extensions``); files are taken as given.

    Names (``relpath``) are relative to the one folder given, else to the
    folder that holds every input.

    One rule for walked and given paths alike: only regular files are inputs.
    A FIFO, socket or device node (or a link to one) is never opened; it is left
    out with a ``SkippedInput`` (``skipped x.mp4: not a regular file (FIFO)``).
    Nor is anything in ``out``, the run's output folder (compared by resolved
    path), or in a sub-folder that is another run's output folder: outputs are
    never inputs. What is left out is appended to ``skipped``; without that list it
    is logged as warnings. ``identify=False``: items without fingerprints (no file is read), to count them.
    """
    select = select or FileSelection()
    exts = select.extensions if select.extensions is not None else extensions
    named = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    urls = [str(p) for p in named if is_url(p)]
    if urls:
        if len(urls) != len(named):
            raise UnsupportedRunOption("inputs are either URLs or local paths, not both in one run")
        return _collect_objects(urls, exts, select, out, identify)
    given = [Path(p) for p in named]
    avoid = [out] if out is not None and not is_url(out) else []
    notes: list[SkippedInput] = []
    paths: list[Path] = []
    anchors: list[Path] = []  # what names are relative to: each folder, and each file's folder (not one skipped)
    for p in given:
        if p.is_dir():
            paths += find_files(p, exts, recursive=select.recursive, include_hidden=select.hidden,
                                include=select.include, exclude=select.exclude, skip_dirs=avoid, skipped=notes)
            anchors.append(p.resolve())
        else:  # a file is taken whatever its suffix (and fails clearly if missing)
            taken = find_files(p, skip_dirs=avoid, skipped=notes)
            paths += taken
            anchors += [p.resolve().parent] if taken else []
    if skipped is None:
        report_skipped(notes)
    else:
        skipped += notes
    if len(given) == 1 and given[0].is_dir():
        return file_items(paths, given[0], identify=identify)
    resolved = [Path(os.path.realpath(p)) for p in paths]  # realpath: a link loop is a file that fails, not an error
    common = Path(os.path.commonpath(anchors)) if anchors else None
    unique = list(dict.fromkeys(resolved))  # a file listed twice runs once (the first place it is listed)
    return file_items(unique, common, identify=identify)


def _collect_objects(urls: list[str], extensions: Iterable[str] | None, select: FileSelection,
                     out: str | os.PathLike[str] | None, identify: bool) -> list[FileItem]:
    """``collect_inputs`` for URLs: each prefix listed as a folder is walked (``storage.objects.list_objects``),
    each object fingerprinted by its ETag (one HEAD each, in threads). Names are relative to the one prefix given,
    else to the prefix that holds every input."""
    from .storage.objects import identify as identify_objects
    from .storage.objects import list_objects
    skip = [str(out)] if out is not None and is_url(out) else []
    entries = []
    for url in urls:
        entries += list_objects(url, extensions, select, skip)
    entries = list({e.url: e for e in entries}.values())  # an object listed twice runs once
    if len(urls) == 1:
        names = [e.relpath for e in entries]
    else:
        common = posixpath.commonpath([posixpath.dirname(e.url.split("://", 1)[1]) for e in entries] or ["/"])
        names = [posixpath.relpath(e.url.split("://", 1)[1], common) for e in entries]
    prints = identify_objects([e.url for e in entries]) if identify else [""] * len(entries)
    return [FileItem(e.url, name, e.size, e.mtime_ns, fp, i)
            for i, (e, name, fp) in enumerate(zip(entries, names, prints))]


def _replay_remembered_files(pipeline: Pipeline, tasks: Sequence[FileTask], events: RunEvents,
                             trace: RunTrace | None) -> list[FileResult]:
    """Files whose every stage result is remembered, finished here without starting a worker.

    With ``trace``, each replayed file is a span on the track of this process.
    """
    memo = StageMemo.open(tasks[0].cache_dir) if tasks and tasks[0].cache_dir else None
    out = []
    for task in tasks:
        run_ = FileRun(task.file, task.begin_attempt(), task.output_key, task.cpu_budget, memo=memo,
                       publish_to=task.remote_out)
        t0 = time.perf_counter()
        result = replay_whole_file(pipeline, run_)
        if result is not None:
            result.replayed = result.ok
            if trace is not None:
                trace.span(f"cache replay (pid {os.getpid()})", f"replay {task.file.relpath}", trace.since(t0),
                           trace.since(time.perf_counter()), {"file": task.file.relpath, "status": result.status},
                           group="replay")
            events.file_started(task)
            events.file_done(result)
            out.append(result)
    return out


def output_keys(items: Sequence[FileItem]) -> list[str]:
    """Output names per file: the relative path without suffix, or with it when two files would collide."""
    stems = [str(PurePosixPath(i.relpath).with_suffix("")) for i in items]
    counts = Counter(stems)
    plain = [counts[s] == 1 and not {".", ".."} & set(s.split("/")) for s in stems]  # "...mp4": no ".." key
    return [s if ok else i.relpath.replace(".", "_") for s, ok, i in zip(stems, plain, items)]


def _split_done(ledger: RunLedger, items: Sequence[FileItem]) -> tuple[list[FileResult], list[tuple[FileItem, str]]]:
    """The earlier results of the files the ledger says need not run again, and the (file, output key) s that do."""
    earlier: list[FileResult] = []
    todo: list[tuple[FileItem, str]] = []
    for item, key in zip(items, output_keys(items)):
        result = ledger.earlier_result(item, key)
        if result is not None:
            earlier.append(result)
        else:
            todo.append((item, key))
    return earlier, todo


def run(pipeline: Pipeline, inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
        out: str | os.PathLike[str], *, executor: str = "local", workers: int | None = None,
        extensions: Iterable[str] | None = None, select: FileSelection | None = None,
        events: RunEvents | None = None, write_reports: bool = True,
        cache: bool | str | os.PathLike[str] | None = None, trace: str | os.PathLike[str] | None = None,
        chart: str | os.PathLike[str] | None = None, metrics_port: int | None = None,
        metrics_address: str | None = None, metrics_push: str | None = None,
        performance: PerformanceConfig | str | None = None, resume: bool = True,
        file_timeout: float | None = None, address: str | None = None,
        progress: bool | RunEvents = False) -> RunResult:
    """Run ``pipeline`` over ``inputs`` into the folder ``out`` and return what happened.

    ``inputs``: a folder, a file, or several of either. A folder is walked
    recursively for ``extensions`` (default: the pipeline's own), narrowed by
    ``select`` (globs, depth, hidden files). ``cache``: where the results of
    cacheable stages (thumbnails, sprites, metadata) are kept across runs —
    a folder, or None for the default cache folder (``FRAMEPIPE_CACHE=off``
    turns that off), or False for no cache. Bad files fail alone; their error is in the result and in
    ``out/report.parquet``. ``resume``: re-running into the same ``out`` skips the files that the run
    ledger (``out/ledger.jsonl``) says this pipeline finished from the same content, with their outputs
    still in place; they keep their earlier result (``FileResult.resumed``). False runs every file again,
    replacing its outputs, and starts the ledger afresh. One run at a time writes into ``out``: while another
    holds it (``out/.framepipe.lock``), this one raises ``OutputFolderInUse`` at once, having changed nothing there.
    ``trace``: write a timeline of every worker's calls there (Chrome trace JSON,
    for Perfetto); ``chart``: a PNG of per-stage throughput and utilization over time.
    ``metrics_address``: serve the run's figures for Prometheus at ``http://HOST:PORT/metrics`` until it ends
    (``HOST:PORT``; port 0: a free one, logged); ``metrics_port=N`` is short for ``127.0.0.1:N``.
    ``metrics_push``: a Prometheus Pushgateway URL the figures are pushed to every few seconds and at the end
    (job ``framepipe``, grouped by pipeline and output folder); a push that fails is a warning, never the run's end.
    ``progress``: True shows the batch's progress on stderr (live on a terminal or in a notebook, plain lines
    elsewhere); a ``RunEvents`` object (``ConsoleProgress``) is told instead, as ``events`` is. By default a run
    prints nothing.
    ``performance``: a ``PerformanceConfig`` or a profile name (``"video_processing"``, ``"low_memory"``,
    ``"auto"``: video_processing with the optimizer retuning buffer, map pools and caches as the run goes)
    sizing the local executor; ``workers``, when given, still sets the core budget. The optimizer's
    decisions are in ``RunResult.decisions``.
    ``file_timeout``: seconds each attempt at a file may take (local and Ray executors); past it its worker is
    killed and the file fails with ``FileTimeout``.
    ``executor="ray"`` runs on a Ray cluster: ``address`` (``ray://head:10001``, ``head:6379``, ``auto``), else
    ``$RAY_ADDRESS``, else a local Ray instance started for the run; ``pip install framepipe[ray]``.
    """
    pipeline.validate()
    if not isinstance(progress, bool) and events is not None:
        raise ValueError("give run() a progress object or events, not both")
    metrics_at = _metrics_address(metrics_port, metrics_address)
    ex = get_executor(executor, workers, file_timeout=file_timeout, address=address)
    if performance is not None:
        config = PerformanceConfig.named(performance)
        config.apply(ex)
        if workers is not None:
            ex.workers = workers
        log.info("performance profile %s: %s", config.name, config, extra={"profile": config.name})
    cache_dir = memo_dir(cache)
    replayable = cache_dir is not None and all(s.cacheable for s in pipeline.stages.values())
    remote = _remote_folder(out, resume)  # OUT on object storage: a local folder stands for it (storage.mirror)
    out_dir = remote.local if remote is not None else Path(out)
    try:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise output_error("create output folder", out_dir, exc) from exc
        check_writable(out_dir)  # a read-only folder is one clear error now, not one per file
        lock = _claim_output_folder(out_dir)  # before anything is started, swept or read there
    except BaseException:
        if remote is not None:
            remote.close()
        raise
    pushed = False  # a remote OUT has everything the run wrote (or its last push failed: see kept)
    kept = False  # the local stand-in for a remote OUT is kept: what could not be put into OUT is there
    # The executor warms up (the workers' server imports the stages) while the inputs are found, unless the run
    # may find that no file needs a worker: each one done by an earlier run (there is a ledger to resume from)
    # or remembered (every stage is cacheable). Such a run prepares it once it knows that a file needs one.
    resumable = resume and os.path.lexists(out_dir / LEDGER_NAME)
    display: ConsoleProgress | None = None  # the one this run shows (progress=True), and closes
    try:
        if not replayable and not resumable:
            ex.prepare(pipeline)
        items = collect_inputs(inputs, extensions if extensions is not None else pipeline.extensions,
                               select=select, out=remote.url if remote is not None else out_dir)
        sweep_partial_outputs(out_dir)
        sweep_staging(out_dir)
        sweep_stale_segments()
        ledger = RunLedger.open(out_dir, pipeline, fresh=not resume, remote=remote)
        earlier, todo = _split_done(ledger, items)
        if todo and resumable and not replayable:  # files left to run: workers are needed
            ex.prepare(pipeline)
        n_parallel = max(1, min(ex.workers, len(todo)))
        budget = max(1, (os.cpu_count() or 1) // n_parallel)
        storage_env = storage_environment() if remote is not None or any(is_url(i.path) for i in items) else ()
        tasks = [FileTask(item, out_dir, key, budget, cache_dir, staged=True, storage_env=storage_env,
                          remote_out=remote.url if remote is not None else None) for item, key in todo]
        if progress is True:
            display = _progress_display(items)
        given = None if isinstance(progress, bool) else progress
        events = LoggedEvents(events or given or display or SilentProgress())
        log.info("run %s: %d file(s) on the %s executor, %d at once", pipeline.name, len(items), ex.name, n_parallel,
                 extra={"pipeline": pipeline.name, "files": len(items), "executor": ex.name, "parallel": n_parallel})
        if ledger.entries:
            log.info("%d of %d file(s) skipped: done by an earlier run (%s)", len(earlier), len(items), ledger.path,
                     extra={"skipped": len(earlier), "files": len(items)})
        for done_before in earlier:
            events.file_done(done_before)
        events = LedgerEvents(events, ledger, tasks)  # each file is in the ledger before anyone hears it finished
        start = time.perf_counter()
        # the report page's charts come from the timeline, as do the trace and the chart asked for
        recorder = RunTrace(origin=start) if trace is not None or chart is not None or write_reports else None
        replayed = _replay_remembered_files(pipeline, tasks, events, recorder) if replayable else []
        if replayable:
            log.info("%d of %d file(s) replayed from the cache", len(replayed), len(tasks),
                     extra={"replayed": len(replayed), "files": len(tasks)})
        done = {r.file.index for r in replayed}
        pending = [t for t in tasks if t.file.index not in done]
        if pending and replayable:  # files not remembered: workers are needed
            ex.prepare(pipeline)
        exports: list[Any] = []  # the metrics endpoint and pusher asked for
        charting: threading.Thread | None = None
        try:  # (an address that cannot be bound stops the executor prepared above, as a failed run does)
            shown_out = remote.url if remote is not None else str(out_dir.resolve())
            exports += _metrics_exports(ex, metrics_at, metrics_push, {"pipeline": pipeline.name, "out": shown_out})
            if pending and (write_reports or chart is not None):  # matplotlib loads while the workers work
                from .observe.chart import load_in_background
                charting = load_in_background()
            report = ex.run(pipeline, pending, events, trace=recorder)
        finally:  # its workers are gone: half files left are a killed worker's or an interrupted run's
            ex.close()  # what prepare() started (a Ray instance), stopped
            sweep_partial_outputs(out_dir)
            sweep_staging(out_dir)  # the outputs of files that did not finish
            for export in exports:  # the pusher's last push carries the run's final figures
                export.stop()
        results = sorted(earlier + replayed + list(report.results), key=lambda r: r.file.index)
        wall = time.perf_counter() - start
        stats = merge_stats((r.stats for r in results), pipeline.order())
        stats = [report.stage_stats.get(s.name, s) for s in stats]
        for s in stats:
            if s.where == "file":
                s.workers = report.actor_count or n_parallel
        result = RunResult(pipeline.name, out_dir, results, stats, wall, n_parallel, ex.name,
                           peak_slots=report.peak_slots, decisions=list(report.decisions),
                           out_url=remote.url if remote is not None else None)
        log.info("run %s ended: %d ok, %d failed in %.2f s", pipeline.name, len(results) - len(result.failed),
                 len(result.failed), wall, extra={"pipeline": pipeline.name, "files": len(results),
                                                  "failed": len(result.failed), "wall_s": round(wall, 3)})
        if charting is not None:
            charting.join()
        if write_reports:
            # A run that did no file's work keeps the report of the run that did, when it holds the same rows.
            key = report_key(ledger.pipeline, results)
            if todo or not report_is_current(out_dir, key) or not (out_dir / PAGE_NAME).is_file():
                write_report(pipeline, result, key, recorder)
                write_report_page(out_dir, outputs_at=remote.url if remote is not None else None)
        if recorder is not None:
            _write_timeline(recorder, stats, trace, chart)
        if remote is not None:  # the ledger, reports and report page, into OUT
            kept = not _push_all(remote, pipeline.name)
            pushed = True
        return result
    finally:  # released on every way out (Ctrl-C included); a killed run's lock goes with its process
        if display is not None:
            display.close()
        lock.release()
        if remote is not None:
            if not pushed:  # an interrupted or failed run: what its ledger says is kept for the next one
                remote.push_ledger(force=True)
            remote.close(keep=kept)


def _remote_folder(out: str | os.PathLike[str], resume: bool) -> RemoteFolder | None:
    """The ``RemoteFolder`` of ``out`` when it is a URL (checked now: a missing bucket is one line before any work),
    its ledger read when the run resumes; None for a local folder."""
    if not is_url(out):
        return None
    from .storage.mirror import RemoteFolder
    return RemoteFolder.open(str(out), resume=resume)


def _push_all(remote: RemoteFolder, name: str) -> bool:
    """Put the run's ledger, reports and page into its remote OUT; False when that failed, which is one error line
    naming the local folder that holds them (kept): every file is done, and the run's result is not lost to it."""
    try:
        remote.push_all()
    except OSError as exc:  # StorageError, UnreadableFile: the store, gone or refusing, at the very end
        log.error("run %s: every file is done, but its ledger and reports were not all put into %s (%s); they are "
                  "kept in %s: copy its files there, so that the next run skips the files done", name, remote.url,
                  exc, remote.local, extra={"out": remote.url, "kept": str(remote.local)})
        return False
    return True


def _claim_output_folder(out_dir: Path) -> FileLock:
    """This run's hold on ``out_dir`` (a ``FileLock`` on ``LOCK_NAME``), taken now or never: another run
    holding it is ``OutputFolderInUse`` at once.

    Two runs into one folder would overwrite each other's outputs and lose ledger lines (one compacts it on
    open while the other appends). The lock is an flock: a run killed with SIGKILL lets go with its process,
    and the file it leaves is taken over by the next run. A symbolic link planted at its name is never
    followed (``OutputIsLink``: neither its target nor a dangling link's is created or written).
    """
    from .cache.locks import FileLock  # the cache package is loaded where it is used, as by memo
    lock = FileLock(out_dir / LOCK_NAME, unlink=True)
    try:
        taken = lock.try_acquire()
    except OSError as exc:
        if exc.errno == errno.ELOOP and lock.path.is_symlink():
            raise OutputIsLink(f"cannot lock output folder {out_dir}: {lock.path} is a symbolic link "
                               "(refusing to follow it)", lock.path) from exc
        raise output_error("lock output folder", out_dir, exc) from exc
    if not taken:
        raise OutputFolderInUse(out_dir, _holder(lock.path))
    try:  # who holds it, for the line another run gives; written through the lock's own descriptor
        fd = lock.fileno()
        if os.fstat(fd).st_nlink == 1:  # a hard link planted at the name is not ours to overwrite
            os.ftruncate(fd, 0)
            with open(fd, "wb", closefd=False) as f:
                write_output(f, f"{os.getpid()}\n".encode(), lock.path)
    except OSError:
        pass
    return lock


def _holder(lock_file: Path) -> int | None:
    """The pid written in ``lock_file``; None when it cannot be read (its holder just ended, or not yet written)."""
    try:
        return int(lock_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _metrics_address(port: int | None, address: str | None) -> str | None:
    """The ``HOST:PORT`` to serve metrics on (``port`` is short for loopback), checked now, before any work."""
    if port is not None and address is not None:
        raise ValueError("give run() metrics_port or metrics_address, not both")
    if port is not None:
        address = f"127.0.0.1:{port}"
    if address is not None:
        from .observe.prometheus import parse_address  # prometheus_client is loaded only for runs that export
        parse_address(address)
    return address


def _metrics_exports(ex: Executor, address: str | None, push: str | None,
                     grouping_key: dict[str, str]) -> list[Any]:
    """The Prometheus endpoint and the Pushgateway pusher asked for, over the executor's snapshots, started."""
    exports: list[Any] = []
    if address is not None:
        from .observe.prometheus import MetricsServer
        exports.append(MetricsServer.at(address, ex.snapshot).start())
    if push is not None:
        from .observe.pushgateway import MetricsPusher
        exports.append(MetricsPusher(push, ex.snapshot, grouping_key).start())
    return exports


def _progress_display(items: Sequence[FileItem]) -> ConsoleProgress:
    """The display of ``run(progress=True)``: a ``ConsoleProgress`` of ``items`` on stderr."""
    from .observe.progress import ConsoleProgress  # rich is loaded only for runs that show progress
    return ConsoleProgress(len(items), total_bytes=sum(i.size for i in items))


def _write_timeline(recorder: RunTrace, stats: Sequence[StageStats], trace: str | os.PathLike[str] | None,
                    chart: str | os.PathLike[str] | None) -> None:
    """Write the run's trace JSON and chart PNG, those asked for."""
    if trace is not None:
        recorder.write(trace)
    if chart is not None:
        from .observe.chart import write_chart  # drawing is loaded only for runs that ask for a chart
        write_chart(recorder, stats, chart)
