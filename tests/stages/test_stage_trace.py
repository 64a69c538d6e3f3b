"""A traced run of the default preset: each per-file stage's work shows as its own spans in its file's actor
(``pipeline/observe/stage_timeline.py`` on video), and their frames add up to the stage's figures."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from support.traces import check_events, spans

from pipeline import run
from stages import presets

PER_FILE = ("decode", "thumbnails", "sprite_sheet", "audio_levels", "proxy")


def test_every_good_file_shows_each_per_file_stage_and_their_frames_add_up(clip_dir: Path, tmp_path: Path) -> None:
    result = run(presets.default(thumb_every=1.0, thumb_width=160), clip_dir, tmp_path / "out", workers=2,
                 cache=False, trace=tmp_path / "t.json")
    trace = json.loads((tmp_path / "t.json").read_text())
    check_events(trace, result.wall_s)
    work = [e for e in spans(trace) if "stage" in e.get("args", {}) and "file" in e["args"]]
    good = [f.file.relpath for f in result.files if f.ok]
    assert good and len(good) < len(result.files)  # the broken clip fails; the others are the ones to see
    for file in good:
        shown = {e["args"]["stage"] for e in work if e["args"]["file"] == file}
        assert set(PER_FILE) <= shown, (file, shown)
    frames: Counter[str] = Counter()
    for e in work:
        assert e["cat"] == "actors" and e["name"] == e["args"]["stage"]
        frames[e["args"]["stage"]] += e["args"]["frames"]
    for stage in result.stages:
        if stage.name in PER_FILE:
            assert frames[stage.name] == stage.frames, stage.name
    assert frames["decode"] > 0 and frames["proxy"] > 0
