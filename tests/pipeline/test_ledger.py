"""The run ledger: a re-run into the same folder does only what is missing, and redoes what changed."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import FILE, Pipeline, Stage, StageContext, run, write_atomic
from pipeline.bookkeeping.ledger import LEDGER_NAME, RunLedger
from pipeline.cache.locks import FileLock
from pipeline.errors import OutputFolderInUse
from pipeline.observe.report import REPORT_NAMES
from pipeline.outputs import WRITE_FAULT_ENV
from pipeline.run import LOCK_NAME
from pipeline.sources import file_items


class Upper(Stage):
    """Writes each text file upper-cased to OUT/upper/<file>.txt; a file saying ``boom`` fails."""

    accepts = (FILE,)

    def __init__(self, suffix: str = "") -> None:
        super().__init__("upper")
        self.suffix = suffix

    def process(self, item, ctx: StageContext) -> None:  # noqa: ANN001
        text = Path(item.path).read_text()
        if text == "boom":
            raise ValueError("boom")
        ctx.add_output(write_atomic(ctx.output_path("upper").with_suffix(".txt"),
                                    (text.upper() + self.suffix).encode()))
        ctx.record(chars=len(text))


def upper(name: str = "upper", suffix: str = "") -> Pipeline:
    p = Pipeline(name, extensions=[".txt"])
    p.add(Upper(suffix))
    return p


@pytest.fixture()
def texts(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    root.mkdir()
    for name, text in (("a.txt", "alpha"), ("b.txt", "beta"), ("c.txt", "gamma")):
        (root / name).write_text(text)
    return root


def stamp(path: Path) -> tuple[int, int]:
    """What changes when a file is written again (write_atomic makes a new inode)."""
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def ran(result) -> set[str]:  # noqa: ANN001
    """The files a run did (not skipped)."""
    return {r.file.relpath for r in result.files if not r.resumed}


def test_a_second_run_skips_every_finished_file_and_reports_it_as_before(texts: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = run(upper(), texts, out, executor="inline")
    before = stamp(out / "upper" / "a.txt")
    again = run(upper(), texts, out, executor="inline")
    assert ran(again) == set() and len(again.resumed) == 3
    assert stamp(out / "upper" / "a.txt") == before
    assert [(r.file.relpath, r.status, r.outputs, r.record) for r in again.files] == \
        [(r.file.relpath, r.status, r.outputs, r.record) for r in first.files]
    assert "3 of 3 files done (3 skipped, done by an earlier run), 0 failed" in again.summary()
    rows = json.loads((out / "report.json").read_text())["files"]
    assert [(r["relpath"], r["status"], r["chars"], r["outputs"]) for r in rows] == \
        [("a.txt", "ok", 5, ["upper/a.txt"]), ("b.txt", "ok", 4, ["upper/b.txt"]), ("c.txt", "ok", 5, ["upper/c.txt"])]


def test_a_run_with_nothing_to_do_keeps_the_report_until_its_rows_change(texts: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(upper(), texts, out, executor="inline")
    key = json.loads((out / "report.json").read_text())["report_key"]
    written = {name: stamp(out / name) for name in REPORT_NAMES}
    assert ran(run(upper(), texts, out, executor="inline")) == set()
    assert {name: stamp(out / name) for name in REPORT_NAMES} == written  # the same rows: left as written
    (out / "stages.parquet").unlink()  # a report file missing: all of it is written again
    run(upper(), texts, out, executor="inline")
    assert all(stamp(out / name) != written[name] for name in REPORT_NAMES)
    assert json.loads((out / "report.json").read_text())["report_key"] == key
    (texts / "c.txt").unlink()  # fewer files: other rows, though every file left is done
    assert ran(run(upper(), texts, out, executor="inline")) == set()
    doc = json.loads((out / "report.json").read_text())
    assert [r["relpath"] for r in doc["files"]] == ["a.txt", "b.txt"] and doc["report_key"] != key
    run(upper(suffix="!"), texts, out, executor="inline")  # another pipeline: its rows, under another key
    assert json.loads((out / "report.json").read_text())["report_key"] not in (key, doc["report_key"])


def test_a_changed_input_is_redone(texts: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(upper(), texts, out, executor="inline")
    (texts / "b.txt").write_text("beta, edited")
    again = run(upper(), texts, out, executor="inline")
    assert ran(again) == {"b.txt"}
    assert (out / "upper" / "b.txt").read_text() == "BETA, EDITED"


def test_a_missing_or_replaced_output_is_redone(texts: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(upper(), texts, out, executor="inline")
    (out / "upper" / "a.txt").unlink()
    (out / "upper" / "c.txt").write_text("truncated")
    again = run(upper(), texts, out, executor="inline")
    assert ran(again) == {"a.txt", "c.txt"}
    assert (out / "upper" / "a.txt").read_text() == "ALPHA" and (out / "upper" / "c.txt").read_text() == "GAMMA"


def test_another_pipeline_or_other_parameters_redo_everything(texts: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(upper(), texts, out, executor="inline")
    assert ran(run(upper(suffix="!"), texts, out, executor="inline")) == {"a.txt", "b.txt", "c.txt"}
    assert (out / "upper" / "a.txt").read_text() == "ALPHA!"
    assert ran(run(upper("shout", suffix="!"), texts, out, executor="inline")) == {"a.txt", "b.txt", "c.txt"}
    assert ran(run(upper("shout", suffix="!"), texts, out, executor="inline")) == set()


def test_a_failed_file_is_tried_again_and_fresh_redoes_everything(texts: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (texts / "bad.txt").write_text("boom")
    assert [r.file.relpath for r in run(upper(), texts, out, executor="inline").failed] == ["bad.txt"]
    again = run(upper(), texts, out, executor="inline")
    assert ran(again) == {"bad.txt"} and again.exit_code == 1
    fresh = run(upper(), texts, out, executor="inline", resume=False)
    assert ran(fresh) == {"a.txt", "b.txt", "bad.txt", "c.txt"}


def test_a_torn_last_line_is_ignored_and_the_next_line_starts_clean(texts: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(upper(), texts, out, executor="inline")
    path = out / LEDGER_NAME
    lines = path.read_bytes().splitlines(keepends=True)
    assert len(lines) == 3
    path.write_bytes(b"".join(lines[:2]) + lines[2][: len(lines[2]) // 2])  # killed while writing c.txt's line
    again = run(upper(), texts, out, executor="inline")
    assert ran(again) == {"c.txt"}
    entries = [json.loads(line) for line in path.read_bytes().splitlines()]  # every line whole again
    assert sorted(e["file"] for e in entries) == ["a.txt", "b.txt", "c.txt"]
    assert ran(run(upper(), texts, out, executor="inline")) == set()


def test_a_ledger_that_cannot_be_written_costs_the_resume_never_the_run(texts: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    monkeypatch.setenv(WRITE_FAULT_ENV, f"ENOSPC:*{LEDGER_NAME}")  # every append writes half a line, then fails
    assert run(upper(), texts, out, executor="inline").exit_code == 0
    monkeypatch.delenv(WRITE_FAULT_ENV)
    assert ran(run(upper(), texts, out, executor="inline")) == {"a.txt", "b.txt", "c.txt"}
    assert ran(run(upper(), texts, out, executor="inline")) == set()


def test_a_run_into_a_folder_another_run_holds_is_refused_before_touching_it(texts: Path, tmp_path: Path) -> None:
    """Two runs into one folder would lose ledger lines and overwrite each other's outputs: the second refuses."""
    out = tmp_path / "out"
    run(upper(), texts, out, executor="inline")
    assert not (out / LOCK_NAME).exists()  # a run removes its lock file as it ends
    ledger = (out / LEDGER_NAME).read_bytes()
    in_flight = out / "upper" / ".d.4242.fp-part.txt"  # the other run's output being written
    in_flight.write_text("half")
    holder = FileLock(out / LOCK_NAME)  # what the other run holds from its start to its end
    holder.acquire()
    try:
        (out / LOCK_NAME).write_text("4242\n")
        with pytest.raises(OutputFolderInUse) as refused:
            run(upper(), texts, out, executor="inline", resume=False)  # --fresh would empty the ledger
    finally:
        holder.release()
    assert str(refused.value) == f"{out} is in use by another framepipe run (pid 4242)"
    assert refused.value.pid == 4242
    assert (out / LEDGER_NAME).read_bytes() == ledger and in_flight.read_text() == "half"
    assert ran(run(upper(), texts, out, executor="inline")) == set()  # a lock let go is no obstacle


def test_lines_that_are_damaged_or_of_another_shape_are_ignored(texts: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(upper(), texts, out, executor="inline")
    path = out / LEDGER_NAME
    lines = path.read_bytes().splitlines()
    wrong = json.loads(lines[1])
    wrong["outputs"] = ["upper/b.txt"]  # a list where a mapping of sizes belongs
    path.write_bytes(b"\n".join([lines[0], b"\xff\xfe not json", json.dumps(wrong).encode(), b"[1, 2]", lines[2]]))
    assert ran(run(upper(), texts, out, executor="inline")) == {"b.txt"}


def test_an_entry_records_status_fingerprint_pipeline_and_output_sizes_and_digests(texts: Path,
                                                                                   tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run(upper(), texts, out, executor="local", workers=2)
    ledger = RunLedger.open(out, upper())
    entry = ledger.entries["a.txt"]
    digest = hashlib.blake2b(b"ALPHA", digest_size=16).hexdigest()
    assert (entry["status"], entry["key"], entry["outputs"]) == ("ok", "a", {"upper/a.txt": [5, digest]})
    assert entry["fingerprint"] == result.files[0].file.fingerprint
    assert entry["pipeline"] == RunLedger.open(out, upper()).pipeline != RunLedger.open(out, upper("x")).pipeline
    item = file_items([texts / "a.txt"], texts)[0]
    assert ledger.earlier_result(item, "a") is not None and ledger.earlier_result(item, "other") is None


def test_function_stages_are_known_across_processes_by_their_code(tmp_path: Path) -> None:
    """A pipeline of plain functions resumes too: its identity holds no memory address."""
    script = tmp_path / "ident.py"
    script.write_text(
        "from pipeline import Pipeline, stage\n"
        "from pipeline.bookkeeping.memo import pipeline_digest\n"
        "@stage\n"
        "def count(item, ctx):\n"
        "    ctx.record(known=item.kind in {'file', 'frame', 'audio'})\n"  # a set constant: hashed in any order

        "p = Pipeline('fn')\n"
        "p.add(count)\n"
        "print(pipeline_digest(p))\n")
    digests = {subprocess.run([sys.executable, script], capture_output=True, text=True, check=True).stdout
               for _ in range(3)}
    assert len(digests) == 1 and digests != {""}


RUN_AND_COUNT = """
import sys
import psutil
from pipeline import run
from support.text import text_pipeline
result = run(text_pipeline(), sys.argv[1], sys.argv[2], workers=1)
print(len(result.resumed), len(result.files), len(psutil.Process().children(recursive=True)), "loky" in sys.modules)
"""
"""A local run in a process of its own: files skipped, files, processes it leaves running, whether loky is loaded."""


def test_a_run_with_every_file_done_starts_no_worker_process(tmp_path: Path) -> None:
    texts = tmp_path / "in"
    texts.mkdir()
    for name, text in (("a.txt", "one\ntwo"), ("b.txt", "three")):
        (texts / name).write_text(text)
    tests = Path(__file__).resolve().parents[1]  # where `support` is, for the process the test starts
    # The repository first: with tests/ alone on the path, a worker's `import pipeline` would find the
    # folder tests/pipeline (no __init__) as a namespace package before the installed engine.
    path = os.pathsep.join(filter(None, [str(tests.parent), str(tests), os.environ.get("PYTHONPATH")]))

    def run_apart() -> list[str]:
        done = subprocess.run([sys.executable, "-c", RUN_AND_COUNT, str(texts), str(tmp_path / "out")],
                              capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": path})
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    skipped, files, processes, loky = run_apart()
    assert (skipped, files, loky) == ("0", "2", "True") and int(processes) > 0  # the workers' server stays up
    assert run_apart() == ["2", "2", "0", "False"]  # nothing to do: no server, no pool, not even loky loaded
