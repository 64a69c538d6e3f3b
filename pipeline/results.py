"""What a run returns: one ``FileResult`` per input and a ``RunResult`` for the batch."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from .items import FileItem, readable
from .observe.metrics import Bottleneck, StageStats, find_bottleneck, format_stage_table

__all__ = ["FileResult", "RunResult", "RunStatistics", "OK", "FAILED", "this_host"]

OK = "ok"
FAILED = "failed"


@cache
def this_host() -> str:
    """This machine's host name: where a file that ran in this process (or one of its local workers) ran."""
    return socket.gethostname()


@dataclass(slots=True)
class FileResult:
    """The outcome of one input file: status, report row, outputs and per-stage statistics."""

    file: FileItem
    status: str
    record: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stats: dict[str, StageStats] = field(default_factory=dict)
    error: str | None = None
    error_type: str | None = None
    failed_stage: str | None = None
    traceback: str | None = None
    wall_s: float = 0.0
    attempts: int = 1
    resumed: bool = False  # done by an earlier run into the same folder (see ``RunLedger``), not run again
    replayed: bool = False  # every stage's results replayed from the cache (``replay_whole_file``), none run
    digests: dict[str, str] = field(default_factory=dict)  # output -> BLAKE2b of its bytes (``staging.seal_outputs``)
    sizes: dict[str, int] = field(default_factory=dict)  # output -> bytes, once put at its URL (``ship_outputs``)
    # Where it ran: the host's name, and on Ray "<host>/<Ray node id, 8 hex digits>" (the node the trace's tracks
    # name; one host may hold several nodes). "" where it ran nowhere, or an earlier run's ledger did not say.
    node: str = field(default_factory=this_host)

    @property
    def ok(self) -> bool:
        """True when every stage finished this file."""
        return self.status == OK

    def summary_line(self) -> str:
        """One line for the console: which file and, if it failed, what went wrong (else its first warning)."""
        name = readable(self.file.relpath)
        if not self.ok:
            return f"FAILED {name}: {readable(self.error or '')}"
        took = "done by an earlier run" if self.resumed else f"{self.wall_s:.2f} s"
        line = f"ok     {name}  ({took}, {len(self.outputs)} outputs)"
        if self.warnings:
            more = f" (+{len(self.warnings) - 1} more)" if len(self.warnings) > 1 else ""
            line += f"  warning: {readable(self.warnings[0])}{more}"
        return line


@dataclass(frozen=True, slots=True)
class RunStatistics:
    """A batch's figures as one frozen record: ``RunResult.statistics()``."""

    files: int
    succeeded: int
    failed: int
    resumed: int  # done by an earlier run into the same folder, skipped this time
    wall_s: float
    workers: int
    executor: str
    peak_slots: int
    stages: tuple[StageStats, ...]
    bottleneck: Bottleneck | None


@dataclass(slots=True)
class RunResult:
    """The outcome of a batch: every file's result and the per-stage totals."""

    pipeline: str
    out_dir: Path
    files: list[FileResult]
    stages: list[StageStats]
    wall_s: float
    workers: int
    executor: str
    peak_slots: int = 0  # most shared-memory frame slots leased at once (local executor)
    decisions: list[Any] = field(default_factory=list)  # the optimizer's RunDecision s (performance="auto")
    out_url: str | None = None  # OUT on object storage (out_dir was its local stand-in during the run, now gone)

    @property
    def out(self) -> str:
        """Where the outputs are: OUT's URL, or its folder."""
        return self.out_url or str(self.out_dir)

    @property
    def succeeded(self) -> list[FileResult]:
        """Results of the files that finished."""
        return [r for r in self.files if r.ok]

    @property
    def failed(self) -> list[FileResult]:
        """Results of the files that failed."""
        return [r for r in self.files if not r.ok]

    @property
    def exit_code(self) -> int:
        """0 when every file succeeded, 1 when any failed."""
        return 1 if self.failed else 0

    def table(self) -> str:
        """The per-stage statistics table."""
        table = format_stage_table(self.stages, self.wall_s)
        if self.decisions:
            from .tuning.plan import describe
            table += "\n" + describe(self.decisions)
        return table

    @property
    def resumed(self) -> list[FileResult]:
        """Results of the files an earlier run into the same folder had done (skipped this time)."""
        return [r for r in self.files if r.resumed]

    def statistics(self) -> RunStatistics:
        """The batch's figures: file counts, wall time, workers, peak slots, stages and the bottleneck."""
        return RunStatistics(len(self.files), len(self.succeeded), len(self.failed), len(self.resumed),
                             self.wall_s, self.workers, self.executor, self.peak_slots, tuple(self.stages),
                             find_bottleneck(self.stages, self.wall_s))

    def summary(self) -> str:
        """One line: how many files succeeded (and were skipped as done before) and failed, and how long it took."""
        skipped = f" ({len(self.resumed)} skipped, done by an earlier run)" if self.resumed else ""
        return (f"{len(self.succeeded)} of {len(self.files)} files done{skipped}, {len(self.failed)} failed, "
                f"in {self.wall_s:.2f} s on {self.workers} {self.executor} worker(s); outputs in {self.out}")
