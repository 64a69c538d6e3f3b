"""Running pipelines: every file through every stage, bad files failing alone, reports written.

These tests use plain text files and small stages, so they exercise the engine
(and real loky worker processes) without any video.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support.text import text_pipeline

from pipeline import run
from pipeline.run import output_keys
from pipeline.sources import file_items


@pytest.fixture()
def texts(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    (root / "nested").mkdir(parents=True)
    (root / "a.txt").write_text("one\ntwo\nthree")
    (root / "nested" / "b.txt").write_text("alpha\nbeta")
    (root / "bad.txt").write_text("fine\nboom\nnever")
    (root / "ignored.csv").write_text("not,text")
    (root / ".hidden.txt").write_text("skipped")
    return root


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_every_good_file_is_processed_and_the_bad_one_fails_alone(texts: Path, tmp_path: Path,
                                                                  executor: str) -> None:
    out = tmp_path / "out"
    result = run(text_pipeline(), texts, out, executor=executor, workers=2)

    assert [r.file.relpath for r in result.files] == ["a.txt", "bad.txt", "nested/b.txt"]
    assert (out / "shout" / "a.txt").read_text() == "ONE\nTWO\nTHREE"
    assert (out / "shout" / "nested" / "b.txt").read_text() == "ALPHA\nBETA"
    assert not (out / "shout" / "bad.txt").exists()
    bad = result.failed[0]
    assert bad.file.relpath == "bad.txt"
    assert bad.failed_stage == "split_lines"
    assert bad.error == "[split_lines] ValueError: line 1 says boom"
    assert "raise ValueError" in (bad.traceback or "")
    assert result.exit_code == 1


def test_inline_and_local_executors_give_identical_outputs_and_reports(texts: Path, tmp_path: Path) -> None:
    a = run(text_pipeline(), texts, tmp_path / "inline", executor="inline")
    b = run(text_pipeline(), texts, tmp_path / "local", executor="local", workers=2)
    for rel in ("shout/a.txt", "shout/nested/b.txt"):
        assert (tmp_path / "inline" / rel).read_bytes() == (tmp_path / "local" / rel).read_bytes()
    assert [(r.status, r.record, r.outputs) for r in a.files] == [(r.status, r.record, r.outputs) for r in b.files]


def test_stage_statistics_count_items_in_and_out(texts: Path, tmp_path: Path) -> None:
    result = run(text_pipeline(), texts, tmp_path / "out", executor="inline")
    stats = {s.name: s for s in result.stages}
    assert stats["split_lines"].files == 3
    assert stats["split_lines"].items_in == 3
    assert stats["split_lines"].items_out == 3 + 2 + 1  # bad.txt fails after its first line
    assert stats["split_lines"].failures == 1
    assert stats["shout"].items_in == 6
    assert "split_lines" in result.table() and "frames/s" in result.table()


def test_report_has_one_typed_row_per_file(texts: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(text_pipeline(), texts, out, executor="inline")
    table = pq.read_table(out / "report.parquet")
    assert table.schema.field("line_count").type == pa.int64()
    rows = {r["relpath"]: r for r in table.to_pylist()}
    assert rows["a.txt"]["status"] == "ok" and rows["a.txt"]["line_count"] == 3
    assert rows["a.txt"]["outputs"] == ["shout/a.txt"]
    assert rows["bad.txt"]["status"] == "failed" and rows["bad.txt"]["line_count"] is None
    doc = json.loads((out / "report.json").read_text())
    assert doc["files_ok"] == 2 and doc["files_failed"] == 1
    assert [s["name"] for s in doc["stages"]] == ["split_lines", "shout"]


def test_a_worker_that_dies_is_retried_then_its_file_fails_and_the_rest_complete(texts: Path,
                                                                                 tmp_path: Path) -> None:
    (texts / "crash.txt").write_text("first\ndie")
    result = run(text_pipeline(), texts, tmp_path / "out", executor="local", workers=2)
    by_name = {r.file.relpath: r for r in result.files}
    assert by_name["crash.txt"].status == "failed"
    assert "worker process died" in (by_name["crash.txt"].error or "")
    assert by_name["crash.txt"].attempts == 2
    assert by_name["a.txt"].ok and by_name["nested/b.txt"].ok
    assert (tmp_path / "out" / "shout" / "a.txt").read_text() == "ONE\nTWO\nTHREE"


def test_rerunning_into_the_same_folder_replaces_outputs(texts: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(text_pipeline(), texts, out, executor="inline")
    (texts / "a.txt").write_text("changed")
    run(text_pipeline(), texts, out, executor="inline")
    assert (out / "shout" / "a.txt").read_text() == "CHANGED"
    leftovers = [p for p in out.rglob("*") if p.name.startswith(".")]
    assert leftovers == []


def test_files_that_would_share_an_output_name_get_distinct_ones(tmp_path: Path) -> None:
    for name in ("clip.mov", "clip.mp4", "other.mp4"):
        (tmp_path / name).write_text("x")
    items = file_items(sorted(tmp_path.iterdir()), tmp_path)
    assert output_keys(items) == ["clip_mov", "clip_mp4", "other"]
