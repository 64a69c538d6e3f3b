"""The run report: one row per input file in ``report.parquet`` and ``report.json``.

``report.json`` also holds the report's key (``report_key``): a digest of the pipeline that made the rows and of
every row. A run that did no file's work (each done by an earlier run into the folder) and finds the report of
that key in place leaves it as it is: the report it would write holds the same rows, and writing it would load
pyarrow (and numpy), most of such a run's time. The run-wide figures (wall time, stage statistics) then stay
those of the run that did the work.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..graph import Pipeline
from ..items import readable
from ..outputs import no_follow, write_atomic
from ..results import FileResult, RunResult
from .chart import timeline
from .metrics import find_bottleneck, stats_table
from .trace import RunTrace

if TYPE_CHECKING:  # pyarrow is loaded where a report is written: a run that leaves it in place loads none
    import pyarrow as pa

__all__ = ["CARD_KEY", "CARD_ROLES", "REPORT_NAMES", "base_fields", "card_field", "report_key", "report_is_current",
           "report_schema", "report_table", "write_report"]

REPORT_NAMES = ("report.parquet", "stages.parquet", "report.json")
"""The files a run's report is, in the output folder."""
CARD_KEY = b"framepipe.card"
"""The Arrow field-metadata key that says what a report column is on a file's card (``card_field``)."""
CARD_ROLES = ("poster", "scrubber", "link", "fact", "flag")
_HOW_DONE = ("resumed", "replayed")  # not in the key: a run that did nothing keeps the report of the one that did
_FORMAT = 3  # part of every report key: bump when the report of the same rows changes (a base field, a type)


def card_field(name: str, type: pa.DataType, role: str, label: str | None = None, unit: str = "") -> pa.Field:
    """A report field that the report page shows on each file's card.

    ``role``: ``poster`` (the path of the file's picture, relative to OUT), ``scrubber`` (a WebVTT of sprite
    tiles, ``sheet.jpg#xywh=x,y,w,h`` per cue), ``link`` (an output worth a link, e.g. a proxy), ``fact`` (a
    value shown as ``label: value unit``; facts of one label are joined with ×) or ``flag`` (a badge while
    the value is true or non-zero).
    """
    import pyarrow as pa
    if role not in CARD_ROLES:
        raise ValueError(f"card role {role!r} is not one of {', '.join(CARD_ROLES)}")
    return pa.field(name, type, metadata={CARD_KEY: json.dumps([role, label or name, unit]).encode()})


@cache
def base_fields() -> tuple[pa.Field, ...]:
    """The fields every report row starts with, before the stages' own."""
    import pyarrow as pa
    return (
        pa.field("path", pa.string(), nullable=False),
        pa.field("relpath", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("failed_stage", pa.string()),
        card_field("size_bytes", pa.int64(), "fact", "file size", "bytes"),
        pa.field("fingerprint", pa.string()),
        pa.field("outputs", pa.list_(pa.string())),
        pa.field("warnings", pa.list_(pa.string())),
        pa.field("wall_s", pa.float64()),
        pa.field("node", pa.string()),  # where it ran: FileResult.node
        pa.field("resumed", pa.bool_()),  # done by an earlier run into the folder, not run again
        pa.field("replayed", pa.bool_()),  # its results replayed from the cache
    )


def report_schema(pipeline: Pipeline) -> pa.Schema:
    """The base fields followed by every stage's ``report_fields`` (first declaration wins)."""
    import pyarrow as pa
    fields = {f.name: f for f in base_fields()}
    for stage in pipeline.stages.values():
        for f in stage.report_fields:
            fields.setdefault(f.name, f)
    return pa.schema(list(fields.values()))


def report_key(pipeline_digest: str, results: Sequence[FileResult]) -> str:
    """The key of the report of ``results`` made by the pipeline of ``pipeline_digest``
    (``bookkeeping.memo.pipeline_digest``: its stages, and so their report fields): a digest of it and every row."""
    rows = [{k: v for k, v in _row(r).items() if k not in _HOW_DONE} for r in results]
    text = json.dumps([_FORMAT, pipeline_digest, rows], sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def report_is_current(out_dir: str | os.PathLike[str], key: str) -> bool:
    """Whether the report in ``out_dir`` is the one of ``key``: ``report.json`` says so, and ``report.parquet``
    and ``stages.parquet`` are there (regular files, never followed through a link)."""
    out = Path(out_dir)
    try:
        for name in REPORT_NAMES[:-1]:
            if not stat.S_ISREG(os.lstat(out / name).st_mode):
                return False
        with open(out / REPORT_NAMES[-1], "rb", opener=no_follow) as f:
            doc = json.load(f)
    except (OSError, ValueError):  # missing, a link, unreadable, not JSON: written again
        return False
    return isinstance(doc, dict) and doc.get("report_key") == key


def _row(r: FileResult) -> dict[str, Any]:
    row = dict(r.record)
    row.update(path=r.file.path, relpath=r.file.relpath, status=r.status, error=r.error,
               failed_stage=r.failed_stage, size_bytes=r.file.size, fingerprint=r.file.fingerprint,
               outputs=list(r.outputs), warnings=list(r.warnings), wall_s=round(r.wall_s, 4), node=r.node,
               resumed=r.resumed, replayed=r.replayed)
    return {k: _text(v) for k, v in row.items()}


def _text(value: Any) -> Any:
    """Strings (and lists of them) made writable as UTF-8: file names that are not are escaped."""
    if isinstance(value, str):
        return readable(value)
    if isinstance(value, list) and any(isinstance(v, str) for v in value):
        return [readable(v) if isinstance(v, str) else v for v in value]
    return value


def report_table(pipeline: Pipeline, results: Iterable[FileResult]) -> pa.Table:
    """The report as an Arrow table; columns no stage declared are added with inferred types."""
    import pyarrow as pa
    rows = [_row(r) for r in results]
    schema = report_schema(pipeline)
    extra = sorted({k for row in rows for k in row} - set(schema.names))
    table = pa.Table.from_pylist([{k: row.get(k) for k in schema.names} for row in rows], schema=schema)
    for name in extra:
        values = [row.get(name) for row in rows]
        try:
            column = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types: keep them readable as JSON text
            column = pa.array([None if v is None else json.dumps(v, default=str) for v in values], pa.string())
        table = table.append_column(name, column)
    return table


def write_report(pipeline: Pipeline, result: RunResult, key: str | None = None,
                 trace: RunTrace | None = None) -> tuple[Path, Path]:
    """Write ``report.parquet`` and ``report.json`` into the run's output folder, atomically; ``report.json``
    holds ``key`` (``report_key``) when given, and the ``timeline`` of ``trace`` (the series the report page
    charts) when given."""
    import pyarrow.parquet as pq
    table = report_table(pipeline, result.files)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    parquet_path = write_atomic(result.out_dir / "report.parquet", buf.getvalue())
    stages_buf = io.BytesIO()
    pq.write_table(stats_table(result.stages), stages_buf)
    write_atomic(result.out_dir / "stages.parquet", stages_buf.getvalue())
    doc = {
        "pipeline": result.pipeline,
        "executor": result.executor,
        "workers": result.workers,
        "wall_s": round(result.wall_s, 4),
        "files_ok": len(result.succeeded),
        "files_failed": len(result.failed),
        "stages": [s.to_dict() for s in result.stages],
        "bottleneck": (lambda b: None if b is None else {"stage": b.stage, "utilization": round(b.utilization, 3),
                                                         "reason": b.reason})(find_bottleneck(result.stages,
                                                                                              result.wall_s)),
        "decisions": [d.to_dict() for d in result.decisions],
        "report_key": key,
        "timeline": None if trace is None else timeline(trace, [s.name for s in result.stages]),
        "files": table.to_pylist(),
    }
    json_path = write_atomic(result.out_dir / "report.json",
                             json.dumps(doc, indent=2, default=str).encode())
    return parquet_path, json_path
