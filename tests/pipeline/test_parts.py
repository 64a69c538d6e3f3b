"""A long file in parts: the engine cuts it where its source says, runs the parts on every worker, and joins them.

Engine-only (``support.numbers``): a file of numbers is cut into spans; a splitting stage collects each part's
numbers into a scratch file, and its join writes them as one output. What a run in parts writes must be what
one worker writes; a part that fails fails its file alone; a part whose worker dies runs again; no scratch
file outlives its file.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.arrays import Invert
from support.disks import hidden_files
from support.numbers import Collect, Numbers, Tally, numbers_pipeline, write_input

from pipeline import Pipeline, run
from pipeline.executors.parts import split_plan


def collected(out: Path, name: str) -> list[int]:
    return [int(line) for line in (out / "collected" / name).read_text().split()]


def test_a_long_file_runs_in_parts_and_writes_what_one_worker_writes(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    write_input(src, "long.txt", 37)
    whole = run(numbers_pipeline(), src, tmp_path / "whole", workers=1, cache=False).files[0]
    parted = run(numbers_pipeline(), src, tmp_path / "parts", workers=2, cache=False).files[0]
    assert whole.ok and parted.ok, (whole.error, parted.error)
    assert whole.record["collected_parts"] == 0
    assert parted.record["collected_parts"] == 4  # two a worker
    assert collected(tmp_path / "parts", "long.txt") == collected(tmp_path / "whole", "long.txt") == list(range(37))
    assert parted.record["collected"] == 37
    assert parted.record["tally"] == 37  # the stage of the file's own session saw every number
    assert parted.outputs == ["collected/long.txt"]
    assert hidden_files(tmp_path / "parts" / "collected") == []  # the parts' scratch files are gone


def test_a_short_file_is_not_cut(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    write_input(src, "short.txt", 4)
    (result,) = run(numbers_pipeline(), src, tmp_path / "out", workers=2, cache=False).files
    assert result.ok and result.record["collected_parts"] == 0
    assert collected(tmp_path / "out", "short.txt") == list(range(4))


def test_a_shorter_file_is_cut_when_it_starts_with_no_other_waiting(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for name, count in (("a.txt", 30), ("b.txt", 6), ("c.txt", 6)):
        write_input(src, name, count)
    results = run(numbers_pipeline(), src, tmp_path / "out", workers=2, cache=False).files
    # a and b start at once (c waits): b is kept whole; c starts last, when workers would idle: it is cut.
    assert [r.record["collected_parts"] for r in results] == [4, 0, 4]
    for name, count in (("a.txt", 30), ("b.txt", 6), ("c.txt", 6)):
        assert collected(tmp_path / "out", name) == list(range(count))


def test_files_and_parts_share_the_workers_and_each_file_gets_its_own_numbers(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    counts = {"a.txt": 30, "b.txt": 4, "c.txt": 21, "d.txt": 12}
    for name, count in counts.items():
        write_input(src, name, count)
    results = run(numbers_pipeline(), src, tmp_path / "out", workers=2, cache=False).files
    assert all(r.ok for r in results), [r.error for r in results]
    for name, count in counts.items():
        assert collected(tmp_path / "out", name) == list(range(count))
    assert {r.file.relpath: r.record["collected_parts"] for r in results} == {"a.txt": 4, "b.txt": 0, "c.txt": 4,
                                                                              "d.txt": 4}
    assert hidden_files(tmp_path / "out" / "collected") == []


def test_a_failing_part_fails_its_file_alone_and_leaves_no_scratch(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    write_input(src, "bad.txt", 40, fail=2)
    write_input(src, "good.txt", 40)
    results = {r.file.relpath: r for r in run(numbers_pipeline(), src, tmp_path / "out", workers=2,
                                              cache=False).files}
    bad, good = results["bad.txt"], results["good.txt"]
    assert good.ok and collected(tmp_path / "out", "good.txt") == list(range(40))
    assert not bad.ok
    assert bad.error == "[collect] ValueError: part 2 refuses 22"
    assert not (tmp_path / "out" / "collected" / "bad.txt").exists()
    assert hidden_files(tmp_path / "out" / "collected") == []


def test_a_part_whose_worker_dies_runs_again(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    path = write_input(src, "crash.txt", 40, die=1)
    (result,) = run(numbers_pipeline(), src, tmp_path / "out", workers=2, cache=False, extensions=[".txt"]).files
    assert Path(str(path) + ".died").exists()  # the worker did die once
    assert result.ok, result.error
    assert collected(tmp_path / "out", "crash.txt") == list(range(40))
    assert result.record["collected_parts"] == 4
    assert hidden_files(tmp_path / "out" / "collected") == []


def test_a_file_alone_gets_every_core_and_files_started_together_share_them(tmp_path: Path) -> None:
    cores = os.cpu_count() or 1
    alone, together = tmp_path / "alone", tmp_path / "together"
    alone.mkdir()
    together.mkdir()
    write_input(alone, "one.txt", 5)
    for name in ("a.txt", "b.txt"):
        write_input(together, name, 5)
    (result,) = run(numbers_pipeline(), alone, tmp_path / "o1", workers=2, cache=False).files
    assert result.record["threads"] == cores  # two workers, but nothing else runs: it gets them all
    both = run(numbers_pipeline(), together, tmp_path / "o2", workers=2, cache=False).files
    assert [r.record["threads"] for r in both] == [max(1, cores // 2)] * 2


def test_a_pipeline_with_map_stages_runs_files_whole_on_the_local_executor(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.txt", "b.txt"):  # two files: two actors beside the map pool
        write_input(src, name, 37)
    results = run(numbers_pipeline(mapped=True), src, tmp_path / "out", workers=4, cache=False).files
    assert [r.record["collected_parts"] for r in results] == [0, 0]  # a part would run the map stage itself
    for name in ("a.txt", "b.txt"):
        assert collected(tmp_path / "out", name) == list(range(37))


def test_the_inline_executor_runs_files_whole(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    write_input(src, "long.txt", 37)
    (result,) = run(numbers_pipeline(), src, tmp_path / "out", executor="inline", cache=False).files
    assert result.ok and result.record["collected_parts"] == 0
    assert collected(tmp_path / "out", "long.txt") == list(range(37))


# Which stages run in parts ----------------------------------------------------------------------------------

def test_the_plan_runs_the_splitting_stages_and_what_feeds_them_alone_in_parts() -> None:
    plan = split_plan(numbers_pipeline())
    assert plan is not None
    assert plan.source == "numbers" and plan.in_parts == {"numbers", "collect"}
    assert plan.joined == ("collect",)  # numbers also feeds tally: the file's session runs it too
    plan = split_plan(numbers_pipeline(tally=False))
    assert plan is not None and plan.joined == ("numbers", "collect")


def test_a_per_file_stage_between_source_and_splitting_stage_keeps_files_whole() -> None:
    p = Pipeline("between")
    source = p.add(Numbers())
    tally = p.add(Tally(), after=source)
    tally.emits = ("number",)
    p.add(Collect(), after=tally)
    assert split_plan(p) is None


def test_a_pipeline_without_a_splitting_stage_has_no_plan() -> None:
    p = Pipeline("whole")
    p.add(Tally(), after=p.add(Numbers()))
    assert split_plan(p) is None


@pytest.mark.parametrize("feeds", [True, False])
def test_a_splitting_stage_that_feeds_another_keeps_files_whole(feeds: bool) -> None:
    p = Pipeline("chained")
    collect = p.add(Collect(), after=p.add(Numbers()))
    if feeds:
        collect.emits = ("number",)
        p.add(Tally(), after=collect)
    assert (split_plan(p) is None) is feeds


def test_a_map_stage_may_sit_between_source_and_splitting_stage() -> None:
    p = Pipeline("mapped")
    source = p.add(Numbers())
    invert = p.add(Invert(), after=source)
    invert.accepts = ("number",)
    invert.emits = ("number",)
    p.add(Collect(), after=invert)
    plan = split_plan(p)
    assert plan is not None and plan.joined == ("numbers", "invert", "collect")
