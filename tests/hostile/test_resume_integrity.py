"""Resume that cannot be fooled: an output replaced by other bytes of the same size is redone, an input whose
new content makes fewer outputs leaves none of the old ones behind, and outputs reach their final names only
with the file's ledger line."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from support.cli import framepipe
from support.runs import output_files

from pipeline import FILE, Pipeline, Stage, StageContext, run, write_atomic
from pipeline.bookkeeping.ledger import LEDGER_NAME
from pipeline.bookkeeping.staging import STAGING_NAME, output_digest
from stages import ClipSpec, make_clip


class Lines(Stage):
    """One output per line of a text input: OUT/lines/<key>/<n>.txt."""

    accepts = (FILE,)

    def __init__(self) -> None:
        super().__init__("lines")

    def process(self, item, ctx: StageContext) -> None:  # noqa: ANN001
        for n, line in enumerate(Path(item.path).read_text().splitlines()):
            ctx.add_output(write_atomic(ctx.output_path("lines", f"{n}.txt"), line.encode()))


def lines() -> Pipeline:
    p = Pipeline("lines", extensions=[".txt"])
    p.add(Lines())
    return p


def entries(out: Path) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for line in (out / LEDGER_NAME).read_text().splitlines():
        entry = json.loads(line)
        found[entry["file"]] = entry
    return found


def files_in(out: Path) -> set[str]:
    return set(output_files(out))


def test_an_output_replaced_by_other_bytes_of_the_same_size_is_redone(tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    (inp / "a.txt").write_text("alpha\nbeta\n")
    (inp / "b.txt").write_text("gamma\n")
    assert run(lines(), inp, out, executor="local", workers=2).exit_code == 0
    target = out / "lines" / "a" / "1.txt"
    target.write_bytes(os.urandom(4))  # "beta" was 4 bytes too
    again = run(lines(), inp, out, executor="local", workers=2)
    by_name = {r.file.relpath: r for r in again.files}
    assert not by_name["a.txt"].resumed and by_name["a.txt"].ok
    assert by_name["b.txt"].resumed
    assert target.read_bytes() == b"beta"
    assert entries(out)["a.txt"]["outputs"]["lines/a/1.txt"] == [4, output_digest(target)]


def test_an_output_replaced_by_a_link_to_the_same_bytes_is_redone(tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    (inp / "a.txt").write_text("alpha\n")
    run(lines(), inp, out, executor="inline")
    target = out / "lines" / "a" / "0.txt"
    (tmp_path / "elsewhere.txt").write_bytes(target.read_bytes())
    target.unlink()
    target.symlink_to(tmp_path / "elsewhere.txt")
    again = run(lines(), inp, out, executor="inline")
    assert not again.files[0].resumed and not target.is_symlink() and target.read_bytes() == b"alpha"


def test_outputs_an_earlier_version_of_an_input_made_are_removed_when_it_changes(tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    (inp / "a.txt").write_text("one\ntwo\nthree\n")
    (inp / "b.txt").write_text("kept\n")
    run(lines(), inp, out, executor="local", workers=2)
    assert files_in(out) == {"lines/a/0.txt", "lines/a/1.txt", "lines/a/2.txt", "lines/b/0.txt"}
    (inp / "a.txt").write_text("uno\n")  # fewer lines now: 1.txt and 2.txt are stale
    again = run(lines(), inp, out, executor="local", workers=2)
    assert [r.resumed for r in again.files] == [False, True]
    assert files_in(out) == {"lines/a/0.txt", "lines/b/0.txt"}
    assert (out / "lines" / "a" / "0.txt").read_text() == "uno"
    assert list(entries(out)["a.txt"]["outputs"]) == ["lines/a/0.txt"]


def test_an_input_that_now_fails_loses_the_outputs_of_its_earlier_version(tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    (inp / "a.txt").write_text("one\ntwo\n")
    run(lines(), inp, out, executor="inline")
    (inp / "a.txt").write_bytes(b"\xff\xfe not text")  # read_text fails: the file fails
    again = run(lines(), inp, out, executor="inline")
    assert not again.files[0].ok
    assert files_in(out) == set() and entries(out)["a.txt"]["outputs"] == {}


def test_a_file_in_flight_writes_only_into_its_staging_folder(tmp_path: Path) -> None:
    """While a file runs, nothing of it is under a final name; its line and its outputs come together."""
    seen: list[tuple[bool, bool]] = []

    class Peek(Stage):
        accepts = (FILE,)

        def process(self, item, ctx: StageContext) -> None:  # noqa: ANN001
            path = ctx.output_path("peek", "x.txt")
            ctx.add_output(write_atomic(path, b"x"))
            final = tmp_path / "out" / "peek" / ctx.run.output_key / "x.txt"
            seen.append((STAGING_NAME in path.parts, final.exists()))

    p = Pipeline("peek", extensions=[".txt"])
    p.add(Peek("peek"))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("a")
    result = run(p, tmp_path / "in", tmp_path / "out", executor="inline")
    assert seen == [(True, False)]
    assert result.files[0].outputs == ["peek/a/x.txt"] and (tmp_path / "out" / "peek" / "a" / "x.txt").is_file()
    assert not (tmp_path / "out" / STAGING_NAME).exists()


def test_a_replaced_proxy_of_the_same_size_is_redone_by_the_cli(tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    make_clip(inp / "a.mp4", ClipSpec("a.mp4", 160, 90, 1.0, fps=10), seed=1)
    shutil.copy(inp / "a.mp4", inp / "b.mp4")
    first = framepipe("run", inp, "-o", out, "-q", "-j", "1", "--no-cache")
    assert first.returncode == 0, first.stderr
    (proxy,) = (out / "proxies").glob("a.*")
    proxy.write_bytes(os.urandom(proxy.stat().st_size))
    again = framepipe("run", inp, "-o", out, "-q", "-j", "1", "--no-cache")
    assert again.returncode == 0, again.stderr
    assert "ok     b.mp4  (done by an earlier run" in again.stderr
    assert "ok     a.mp4  (done by an earlier run" not in again.stderr
    assert output_digest(proxy) == entries(out)["a.mp4"]["outputs"][proxy.relative_to(out).as_posix()][1]


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_the_ledger_names_each_output_with_the_digest_of_its_bytes(tmp_path: Path, executor: str) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    (inp / "a.txt").write_text("x\nyy\n")
    result = run(lines(), inp, out, executor=executor)
    (entry,) = entries(out).values()
    assert entry["outputs"] == {rel: [(out / rel).stat().st_size, output_digest(out / rel)]
                                for rel in result.files[0].outputs}


def test_a_link_planted_at_the_ledger_is_not_read_through(tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    (inp / "a.txt").write_text("alpha\n")
    run(lines(), inp, out, executor="inline")
    real = tmp_path / "elsewhere.jsonl"
    (out / LEDGER_NAME).rename(real)  # its lines, valid, now only reachable through a link
    (out / LEDGER_NAME).symlink_to(real)
    again = run(lines(), inp, out, executor="inline")
    assert not again.files[0].resumed and again.files[0].ok
