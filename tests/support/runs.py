"""Reading what a run did: its result for a file, and the outputs it wrote (engine-only)."""

from __future__ import annotations

from pathlib import Path

from pipeline import RunResult
from pipeline.results import FileResult


def result_for(batch: RunResult, relpath: str) -> FileResult:
    """The FileResult of ``relpath`` in ``batch``."""
    for r in batch.files:
        if r.file.relpath == relpath:
            return r
    raise AssertionError(f"{relpath} not in batch: {[r.file.relpath for r in batch.files]}")


BOOKKEEPING = {"report.parquet", "report.json", "stages.parquet", "ledger.jsonl", "index.html"}
"""What a run writes about itself in OUT, beside the outputs of its files (and the report page's ``index_files``)."""


def output_files(out: Path) -> dict[str, Path]:
    """Every output of a run in ``out`` by its path relative to ``out`` (bookkeeping files left out)."""
    return {p.relative_to(out).as_posix(): p for p in sorted(out.rglob("*"))
            if p.is_file() and p.name not in BOOKKEEPING and p.relative_to(out).parts[0] != "index_files"}
