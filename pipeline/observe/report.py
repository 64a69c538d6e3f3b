"""The run report: one row per input file in ``report.parquet`` and ``report.json``."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..graph import Pipeline
from ..items import readable
from ..outputs import write_atomic
from ..results import FileResult, RunResult
from .metrics import find_bottleneck, stats_table

__all__ = ["BASE_FIELDS", "report_schema", "report_table", "write_report"]

BASE_FIELDS: tuple[pa.Field, ...] = (
    pa.field("path", pa.string(), nullable=False),
    pa.field("relpath", pa.string(), nullable=False),
    pa.field("status", pa.string(), nullable=False),
    pa.field("error", pa.string()),
    pa.field("failed_stage", pa.string()),
    pa.field("size_bytes", pa.int64()),
    pa.field("fingerprint", pa.string()),
    pa.field("outputs", pa.list_(pa.string())),
    pa.field("warnings", pa.list_(pa.string())),
    pa.field("wall_s", pa.float64()),
)


def report_schema(pipeline: Pipeline) -> pa.Schema:
    """The base fields followed by every stage's ``report_fields`` (first declaration wins)."""
    fields = {f.name: f for f in BASE_FIELDS}
    for stage in pipeline.stages.values():
        for f in stage.report_fields:
            fields.setdefault(f.name, f)
    return pa.schema(list(fields.values()))


def _row(r: FileResult) -> dict[str, Any]:
    row = dict(r.record)
    row.update(path=r.file.path, relpath=r.file.relpath, status=r.status, error=r.error,
               failed_stage=r.failed_stage, size_bytes=r.file.size, fingerprint=r.file.fingerprint,
               outputs=list(r.outputs), warnings=list(r.warnings), wall_s=round(r.wall_s, 4))
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


def write_report(pipeline: Pipeline, result: RunResult) -> tuple[Path, Path]:
    """Write ``report.parquet`` and ``report.json`` into the run's output folder, atomically."""
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
        "files": table.to_pylist(),
    }
    json_path = write_atomic(result.out_dir / "report.json",
                             json.dumps(doc, indent=2, default=str).encode())
    return parquet_path, json_path
