"""Stage results kept across runs, on numpy frames: a second run over unchanged files replays them and reads
nothing; a changed file or parameter is a miss (the video presets' cases are in tests/stages/test_preset_memo.py)."""

from __future__ import annotations

import os
from pathlib import Path

from support.arrays import array_pipeline, write_frames
from support.runs import output_files, result_for

from pipeline import run


def inputs(folder: Path) -> Path:
    for i in range(2):
        write_frames(folder / f"c{i}.npy", 8, seed=i)
    for path in folder.iterdir():  # settled files: one the cache sees changing as it reads is not remembered
        os.utime(path, (1_600_000_000, 1_600_000_000))
    return folder


def stage(result, name: str):  # noqa: ANN001, ANN201
    return next(s for s in result.stages if s.name == name)


def test_a_second_run_replays_every_output_and_reads_nothing(tmp_path: Path) -> None:
    folder, cache = inputs(tmp_path / "in"), tmp_path / "cache"
    cold = run(array_pipeline(keep_every=2, mapped=False), folder, tmp_path / "cold", cache=cache, workers=2)
    warm = run(array_pipeline(keep_every=2, mapped=False), folder, tmp_path / "warm", cache=cache, workers=2)
    assert all(r.ok for r in cold.files) and all(r.ok for r in warm.files)
    for rel in ("c0.npy", "c1.npy"):
        assert result_for(warm, rel).record == result_for(cold, rel).record
        assert result_for(warm, rel).outputs == result_for(cold, rel).outputs
    assert stage(warm, "read_frames").frames == 0 and stage(cold, "read_frames").frames == 16
    mine, whole = output_files(tmp_path / "warm"), output_files(tmp_path / "cold")
    assert set(mine) == set(whole) and len(mine) == 8
    assert all(mine[rel].read_bytes() == whole[rel].read_bytes() for rel in mine)


def test_a_changed_file_or_parameter_is_recomputed_and_the_rest_replayed(tmp_path: Path) -> None:
    folder, cache = inputs(tmp_path / "in"), tmp_path / "cache"
    run(array_pipeline(keep_every=2, mapped=False), folder, tmp_path / "a", cache=cache)
    write_frames(folder / "c1.npy", 8, seed=7)
    os.utime(folder / "c1.npy", (1_600_000_100, 1_600_000_100))
    again = run(array_pipeline(keep_every=2, mapped=False), folder, tmp_path / "b", cache=cache)
    assert stage(again, "read_frames").frames == 8  # c1 alone
    wider = run(array_pipeline(keep_every=4, mapped=False), folder, tmp_path / "c", cache=cache)
    assert stage(wider, "save_frames").frames == 16  # a parameter of save_frames changed: every file again
    assert result_for(wider, "c0.npy").record["frames_saved"] == 2
