"""Decode plans: the thumbnails preset decoding straight through against seeking to each picture's keyframe.

Footage: 1080p30 H.264 clips made with ``stages.make_clip`` and re-encoded
with B-frames and CABAC (x264 ``superfast``), one with long GOPs (a keyframe
every 250 frames, 8.3 s, and at scene cuts: x264's defaults) and one with a
keyframe every 2 s (``keyint=60``). Each job runs ``presets.thumbnails`` twice
on 1 worker with ``cache=False``: as it is (``plan="auto"``: the file's index
decides) and with its Decode set to ``plan="straight"``, taking turns, best of
the rounds. Printed per job: the plan the file got, frames decoded (the
report's ``frames_decoded``) and wall seconds each way, and their ratios
(straight / planned); then the same for the preset's Decode alone
(``decode_file`` with the preset's options: no worker start, no pictures).
The pictures are the same both ways (the tests check it).

Usage: python -m benchmarks.bench_decode_plan [--quick] [--rounds N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av

from pipeline import Pipeline, run
from pipeline.runtime.forkserver import stop_server
from stages import ClipSpec, Thumbnails, make_clip, presets
from stages.decode import decode_file

from ._table import machine_line, print_table, verdict

FPS = 30
CLIPS = {"long GOP (250)": "keyint=250:min-keyint=25", "2 s GOP": "keyint=60:min-keyint=60:scenecut=0"}
JOBS = {"every 2 s": {"every": 2.0}, "every 10 s": {"every": 10.0}, "6 evenly": {"count": 6}}  # Thumbnails'


def reencode(src: Path, dst: Path, x264: str) -> Path:
    """``src``'s video as H.264 with B-frames and CABAC (x264 superfast) and the keyframes ``x264`` says."""
    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        v = o.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt = i.streams.video[0].width, i.streams.video[0].height, "yuv420p"
        v.options = {"preset": "superfast", "crf": "23", "x264-params": f"{x264}:bframes=3"}
        v.codec_context.thread_type = "FRAME"
        for n, frame in enumerate(i.decode(video=0)):
            frame.pts, frame.time_base, frame.pict_type = n, Fraction(1, FPS), 0
            for packet in v.encode(frame):
                o.mux(packet)
        for packet in v.encode(None):
            o.mux(packet)
    return dst


def straight(p: Pipeline) -> Pipeline:
    """``p`` with its Decode set to decode straight through."""
    p.stages["decode"].plan = "straight"  # type: ignore[attr-defined]
    return p


def preset(options: dict[str, float], way: str) -> Pipeline:
    """The thumbnails preset taking pictures as ``options`` (Thumbnails') say, planned or straight through."""
    p = presets.thumbnails(**{f"thumb_{k}": v for k, v in options.items()})  # type: ignore[arg-type]
    return straight(p) if way == "straight" else p


def decode_seconds(path: Path, options: dict[str, float], way: str) -> float:
    """Wall seconds of the preset's Decode alone (``decode_file``), ``plan="auto"`` or ``"straight"``."""
    sampling = (Thumbnails(**options).sampling(),)  # type: ignore[arg-type]
    start = time.perf_counter()
    for _ in decode_file(path, audio=False, deinterlace="first_field", sampling=sampling,
                         plan="straight" if way == "straight" else "auto"):
        pass
    return time.perf_counter() - start


def timed(pipeline: Pipeline, folder: Path, out: Path) -> tuple[float, str, int]:
    """Wall seconds of one run (its worker server started afresh), the plan and the frames decoded."""
    stop_server()
    start = time.perf_counter()
    result = run(pipeline, folder, out, workers=1, cache=False)
    seconds = time.perf_counter() - start
    record = result.files[0].record
    assert result.files[0].status == "ok", result.files[0].error
    return seconds, record["decode_plan"], record["frames_decoded"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="12 s clips instead of 30 s, one round")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per job (default 2, 1 with --quick)")
    args = parser.parse_args(argv)
    seconds = 12.0 if args.quick else 30.0
    rounds = args.rounds or (1 if args.quick else 2)
    print(machine_line())
    print(f"PyAV {av.__version__}, FFmpeg libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))}; "
          f"1080p30 clips of {seconds:g} s")
    rows, ratios = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        plain = make_clip(work / "plain.mp4", ClipSpec("plain.mp4", 1920, 1080, seconds, fps=FPS))
        for clip, x264 in CLIPS.items():
            folder = work / clip.replace(" ", "_").replace("(", "").replace(")", "")
            folder.mkdir()
            reencode(plain, folder / "clip.mp4", x264)
            for job, options in JOBS.items():
                best = {"planned": float("inf"), "straight": float("inf")}
                alone = dict(best)
                seen: dict[str, tuple[str, int]] = {}
                for r in range(rounds):
                    for way in ("straight", "planned"):
                        secs, plan, frames = timed(preset(options, way), folder, work / f"out-{way}-{r}-{len(rows)}")
                        best[way] = min(best[way], secs)
                        alone[way] = min(alone[way], decode_seconds(folder / "clip.mp4", options, way))
                        seen[way] = (plan, frames)
                plan, frames = seen["planned"]
                frames_straight = seen["straight"][1]
                ratio = best["straight"] / best["planned"]
                ratios[(clip, job)] = ratio
                rows.append([clip, job, plan, frames_straight, frames, f"{frames_straight / max(frames, 1):.1f}x",
                             f"{best['straight']:.2f}", f"{best['planned']:.2f}", f"{ratio:.2f}x",
                             f"{alone['straight']:.2f}", f"{alone['planned']:.2f}",
                             f"{alone['straight'] / alone['planned']:.2f}x"])
    print_table("thumbnails preset, 320 px JPEG, 1 worker: straight through vs planned (best of rounds); "
                "then its Decode alone (decode_file)",
                ["clip", "pictures", "plan", "frames straight", "frames planned", "frames ratio", "s straight",
                 "s planned", "ratio", "decode s straight", "decode s planned", "decode ratio"], rows)
    ok = verdict("long GOP, a picture every 10 s: straight / planned seconds",
                 ratios[("long GOP (250)", "every 10 s")], 1.5)
    ok &= verdict("2 s GOP, a picture every 2 s: straight / planned seconds", ratios[("2 s GOP", "every 2 s")], 2.0)
    ok &= verdict("long GOP, a picture every 2 s (straight either way): planned / straight seconds",
                  1 / ratios[("long GOP (250)", "every 2 s")], 1.1, at_most=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
