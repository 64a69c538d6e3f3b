"""A traced run of a video preset whose files all come back from the cache (``pipeline/observe/trace.py`` on video:
a corrupt clip's input error is remembered as well as the good clips' results)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from support.traces import check_events, spans, track_names

from pipeline import run
from stages import presets


def test_files_replayed_from_the_cache_are_spans_on_the_parent_track(clip_dir: Path, tmp_path: Path) -> None:
    first = run(presets.metadata(), clip_dir, tmp_path / "a", workers=2, cache=tmp_path / "cache")
    again = run(presets.metadata(), clip_dir, tmp_path / "b", workers=2, cache=tmp_path / "cache",
                trace=tmp_path / "t.json")
    trace = json.loads((tmp_path / "t.json").read_text())
    check_events(trace, again.wall_s)
    replayed = sorted(e["args"]["file"] for e in spans(trace) if e["name"].startswith("replay "))
    assert replayed == sorted(f.file.relpath for f in first.files)  # the broken file's error is remembered too
    assert f"cache replay (pid {os.getpid()})" in track_names(trace).values()
