"""``framepipe bench``: per-stage figures, JSON and Parquet, a Chrome trace and a chart, on any preset or file."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image


def bench(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline", "bench", *map(str, args)], capture_output=True,
                          text=True, timeout=600)


def test_bench_prints_every_figure_and_writes_json_parquet_trace_and_chart(clip_dir: Path, tmp_path: Path) -> None:
    files = {k: tmp_path / n for k, n in (("json", "b.json"), ("parquet", "b.parquet"), ("trace", "t.json"),
                                          ("chart", "c.png"))}
    done = bench("thumbnails", clip_dir, "-j", "2", "-q", *[a for k, f in files.items() for a in (f"--{k}", f)])
    assert done.returncode == 0, done.stderr
    for heading in ("frames/s", "MB/s", "busy %", "starved %", "blocked %", "cache hit %", "pool utilization",
                    "bottleneck:"):
        assert heading in done.stdout
    report = json.loads(files["json"].read_text())
    assert {s["stage"] for s in report["stages"]} == {"metadata", "decode", "thumbnails"}
    assert report["files"] == 5 and report["failed"] == 1 and report["bottleneck"]["stage"]
    decode = next(s for s in report["stages"] if s["stage"] == "decode")
    assert decode["frames"] > 0 and 0 < decode["busy_pct"] <= 100 and decode["cache_hit_pct"] is None
    assert decode["mb_per_s"] > 0 and next(s for s in report["stages"] if s["stage"] == "thumbnails")["mb_per_s"] > 0
    assert pq.read_table(files["parquet"]).num_rows == 3
    trace = json.loads(files["trace"].read_text())
    assert any(e.get("ph") == "X" for e in trace["traceEvents"])
    assert Image.open(files["chart"]).format == "PNG"


@pytest.mark.slow
def test_bench_runs_a_pipeline_file_with_a_map_stage(clip_dir: Path, tmp_path: Path) -> None:
    script = tmp_path / "mine.py"
    script.write_text(textwrap.dedent("""
        from pipeline import Pipeline
        from stages import Decode, Thumbnails, numpy_stage

        @numpy_stage
        def invert(rgb):
            return 255 - rgb

        def build():
            p = Pipeline("mine")
            d = p.add(Decode(audio=False, pixel_format="rgb24"))
            p.add(Thumbnails(every=1.0, width=64), after=p.add(invert, after=d))
            return p
    """))
    out = tmp_path / "figures.json"
    done = bench(script, clip_dir / "landscape_audio.mp4", "-q", "--json", out)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert any(k.startswith("map:") for k in report["pool_utilization_pct"])
    assert next(s for s in report["stages"] if s["stage"] == "invert")["where"].startswith("map:")


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_a_stage_counts_the_bytes_of_the_frames_it_takes_and_a_decoder_those_it_makes(executor: str,
                                                                                    tmp_path: Path) -> None:
    from pipeline import run
    from stages import ClipSpec, make_clip, presets
    make_clip(tmp_path / "in" / "c.mp4", ClipSpec("c", 160, 96, 1.0, audio=True))
    result = run(presets.default(proxy=False), tmp_path / "in", tmp_path / "out", executor=executor, workers=2,
                 cache=False)
    stats = {s.name: s for s in result.stages}
    frame_bytes = 160 * 96 * 3 // 2  # a yuv420p frame
    # Without a proxy the decode gives only the frames the pictures need: the first (tick 0, the poster) and the
    # last (where the sprites' last cue ends), 2 of the 30; both picture stages take each.
    assert stats["thumbnails"].bytes == stats["sprite_sheet"].bytes == 2 * frame_bytes
    assert stats["audio_levels"].bytes > 0 and stats["decode"].bytes == 2 * frame_bytes + stats["audio_levels"].bytes
    assert stats["metadata"].bytes == 0  # it takes the file, not frames
