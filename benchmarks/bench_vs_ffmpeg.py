"""framepipe against the ffmpeg command line, both measured in the same run on the same footage.

Footage (``benchmarks/clipsets.py``, made once and cached outside the
repository): H.264 as users have it — x264 veryfast and medium, CABAC, 3
B-frames, 15 Mbit/s at 1080p30 (45 at 4K, 8 at 720p), textured panned scenes
with grain and scene cuts, AAC sound:

  vf-gop1s     1080p, veryfast, a keyframe every 1 s        (4 x 10 s; --quick 2 x 4 s)
  med-gop2s    1080p, medium, a keyframe every 2 s          (4 x 10 s; --quick 2 x 4 s)
  med-longgop  1080p, medium, keyint 250, keyframes at cuts (2 x 20 s; --quick 1 x 12 s)
  4k           2160p, veryfast, a keyframe every 1 s        (2 x 5 s;  --quick 1 x 3 s)
  long-file    one 1080p file, veryfast, keyframe every 2 s (1 x 60 s, --quick too)
  small-files  720p phone-like clips, veryfast, GOP 1 s     (200 x 2 s; --quick 200 x 1 s)
  ultrafast    the earlier set, second column: test patterns, x264 ultrafast crf 20, keyframe every 2 s
               (6 x 10 s; --quick 3 x 4 s)

Every job runs on every set. Wall seconds, best of ``--rounds`` (default 1).
Every framepipe run starts its worker server afresh (``stop_server()``), as a
new ``framepipe`` command does, runs on 2 workers with ``cache=False`` so
that it really decodes. ratio = peer seconds / framepipe seconds (above 1:
framepipe is faster). Outputs are counted on both sides (pictures, sprite
sheets, metadata files, proxy video packets), so a broken command cannot look
fast; the peers make what framepipe's preset makes (320 px JPEGs every 2 s,
10x10 sheets of 160 px tiles every 2 s, a 720p x264 veryfast crf 23 + AAC MP4).

  1. Thumbnails, one every 2 s, 320 px wide, JPEG: a sequential shell loop of
     ``ffmpeg -i IN -vf fps=1/2,scale=320:-1 OUT/%04d.jpg``; the same under
     ``xargs -P2``; framepipe ``presets.thumbnails(thumb_every=2, thumb_width=320)``.
  2. Keyframe-only thumbnails, about one every 2 s: a loop of ``ffmpeg
     -skip_frame nokey -i IN -vsync vfr -vf select=...,scale=320:-1`` (each
     keyframe at least 2 s after the last one taken) against
     ``presets.thumbnails(..., keyframes_only=True)`` (for each 2 s tick, the
     first keyframe at or after it: where keyframes are further apart than
     2 s, framepipe writes a picture for every tick and ffmpeg fewer).
  3. The default preset (metadata, thumbnails, sprite sheet, 720p proxy; one
     decode per file) against a per-file script of ffprobe (metadata JSON), the
     thumbnail command, a sprite sheet (``fps=1/2,scale=160:-1,tile=10x10``) and
     a proxy (``scale=-2:720``, x264 veryfast crf 23, AAC), under ``xargs -P2``.
  4. Proxies only (-> 720p, x264 veryfast crf 23, AAC): the proxy command under
     ``xargs -P2`` (on the one long file: one ffmpeg process, with its own
     threads) against ``presets.proxies()``.

Targets (issue 18, on the realistic sets): thumbnails >= 2x xargs where the
GOP is at most the 2 s interval, >= 1.1x on long-GOP; the long file's proxy
>= 1.2x one ffmpeg process; a folder's proxies >= 1.1x xargs; the default
preset >= 1.8x the script; the small files: thumbnails >= 2x, default preset
>= 3x. The ultrafast set keeps its earlier targets (thumbnails >= 0.95x xargs
and >= 1.1x the loop, keyframes >= 1.5x the loop, default preset >= 1.3x,
proxies >= 0.95x).

The ffmpeg CLI is the OS package (benchmarks only; framepipe uses PyAV's own
FFmpeg, whose version is printed too). Without ``ffmpeg``/``ffprobe`` the peer
is skipped, said so, and its checks are left out (the sets need the CLI to be
made: only the ultrafast set is then run).

Usage: python -m benchmarks.bench_vs_ffmpeg [--quick] [--only thumbs|keyframes|default|proxies]
       [--sets NAME,...] [--rounds N] [--stage-tables]
"""

from __future__ import annotations

import argparse
import math
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av

from pipeline import Pipeline, run
from pipeline.runtime.forkserver import stop_server
from stages import Decode, presets

from ._table import machine_line, print_table, verdict
from .clipsets import ClipSet, Footage, cache_root, clip_sets, ensure, footage_table

WORKERS = 2

THUMB = "ffmpeg -v error -y -i \"$f\" -vf fps=1/2,scale=320:-1 \"$o/thumbs/%04d.jpg\""
KEYFRAMES = ("ffmpeg -v error -y -skip_frame nokey -i \"$f\" -vsync vfr "
             "-vf \"select='isnan(prev_selected_t)+gte(t-prev_selected_t,1.99)',scale=320:-1\" "
             "\"$o/thumbs/%04d.jpg\"")
PROBE = "ffprobe -v error -show_format -show_streams -of json \"$f\" > \"$o/meta.json\""
SPRITE = "ffmpeg -v error -y -i \"$f\" -vf fps=1/2,scale=160:-1,tile=10x10 \"$o/sprite.jpg\""
PROXY = ("ffmpeg -v error -y -i \"$f\" -vf scale=-2:720 -c:v libx264 -preset veryfast -crf 23 -c:a aac "
         "\"$o/proxy.mp4\"")


@dataclass
class Timed:
    """One side of a comparison: its best wall seconds and what it made."""

    seconds: float
    outputs: str


# job -> (title, [(side, label)]); the framepipe side ("fp") last, the others are peers
JOBS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "thumbs": ("1. Thumbnails every 2 s, 320 px JPEG; outputs: pictures", [
        ("loop", "(a) ffmpeg, sequential loop"),
        ("xargs", f"(b) ffmpeg, xargs -P{WORKERS}"),
        ("fp", f"(c) framepipe thumbnails preset, {WORKERS} workers")]),
    "keyframes": ("2. Keyframe-only thumbnails every 2 s, 320 px JPEG; outputs: pictures", [
        ("loop", "(a) ffmpeg -skip_frame nokey, sequential loop"),
        ("fp", f"(b) framepipe thumbnails keyframes_only, {WORKERS} workers")]),
    "default": ("3. Default preset vs a per-file script; outputs: pictures/sheets/proxy frames", [
        ("xargs", f"(a) ffprobe + 3 ffmpeg per file, xargs -P{WORKERS}"),
        ("fp", f"(b) framepipe default preset, {WORKERS} workers")]),
    "proxies": ("4. Proxies -> 720p H.264 veryfast crf 23 + AAC; outputs: proxy frames", [
        ("xargs", f"(a) ffmpeg, xargs -P{WORKERS} (one file: one process)"),
        ("whole", f"(b) framepipe, files kept whole (Decode split_s=None), {WORKERS} workers"),
        ("fp", f"(c) framepipe proxies preset (a file of 20 s or more in parts), {WORKERS} workers")]),
}
COMMANDS = {
    "thumbs": [f"(a), (b): {THUMB}"],
    "keyframes": [f"(a): {KEYFRAMES}"],
    "default": [f"(a): {PROBE} && {THUMB} && {SPRITE} && {PROXY}"],
    "proxies": [f"(a): {PROXY}"],
}

# (name, job, peer side, sets, goal): issue 18's targets on the realistic sets, then the ultrafast set's own
GOP_WITHIN_2S = ("vf-gop1s", "med-gop2s", "4k", "long-file")
FOLDERS = ("vf-gop1s", "med-gop2s", "med-longgop", "4k")
TARGETS: list[tuple[str, str, str, tuple[str, ...], float]] = [
    ("thumbnails, GOP <= 2 s: xargs / framepipe", "thumbs", "xargs", GOP_WITHIN_2S, 2.0),
    ("thumbnails, long GOP: xargs / framepipe", "thumbs", "xargs", ("med-longgop",), 1.1),
    ("one long file -> 720p proxy: one ffmpeg / framepipe", "proxies", "xargs", ("long-file",), 1.2),
    ("720p proxies of a folder: xargs / framepipe", "proxies", "xargs", FOLDERS, 1.1),
    ("default preset: script / framepipe", "default", "xargs", FOLDERS + ("long-file",), 1.8),
    ("small files, thumbnails: xargs / framepipe", "thumbs", "xargs", ("small-files",), 2.0),
    ("small files, default preset: script / framepipe", "default", "xargs", ("small-files",), 3.0),
    ("thumbnails: xargs / framepipe", "thumbs", "xargs", ("ultrafast",), 0.95),
    ("thumbnails: loop / framepipe", "thumbs", "loop", ("ultrafast",), 1.1),
    ("keyframe thumbnails: loop / framepipe", "keyframes", "loop", ("ultrafast",), 1.5),
    ("default preset: script / framepipe", "default", "xargs", ("ultrafast",), 1.3),
    ("proxies: xargs / framepipe", "proxies", "xargs", ("ultrafast",), 0.95),
]


# --- the two sides ---------------------------------------------------------------------------

def video_packets(path: Path) -> tuple[int, int]:
    """(video packets, keyframes) of ``path``, demuxed without decoding; (0, 0) if it does not open."""
    try:
        with av.open(str(path)) as c:
            n = k = 0
            for p in c.demux(c.streams.video[0]):
                if p.size:
                    n += 1
                    k += bool(p.is_keyframe)
            return n, k
    except (av.FFmpegError, IndexError, OSError):
        return 0, 0


def shell_seconds(script: str, clips: list[Path], out: Path, parallel: int) -> float:
    """Wall seconds of ``script`` (sh, with ``$f`` the input and ``$o`` its output folder) over every clip.

    ``parallel`` 0: a sequential ``for`` loop in one shell; N: ``xargs -0 -P N``, one shell per file.
    """
    out.mkdir(parents=True)
    body = f'o="$0/$(basename "$f" .mp4)"; mkdir -p "$o/thumbs"; {script}'
    files = " ".join(shlex.quote(str(c)) for c in clips)
    if parallel:
        line = (f"printf '%s\\0' {files} | xargs -0 -n1 -P{parallel} sh -c "
                f"{shlex.quote('f=$1; ' + body)} {shlex.quote(str(out))}")
    else:
        line = f"set -- {shlex.quote(str(out))}; for f in {files}; do {body.replace('$0', '$1')} || exit 1; done"
    t0 = time.perf_counter()
    done = subprocess.run(["sh", "-c", line], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode:
        raise RuntimeError(f"shell peer failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return seconds


def framepipe_seconds(pipeline: Pipeline, folder: Path, out: Path) -> tuple[float, str]:
    """Wall seconds of ``run(pipeline)`` over ``folder`` on 2 workers, a fresh worker server, no cache."""
    stop_server()
    t0 = time.perf_counter()
    result = run(pipeline, folder, out, workers=WORKERS, cache=False)
    seconds = time.perf_counter() - t0
    bad = [f.summary_line() for f in result.files if not f.ok]
    if bad:
        raise RuntimeError("framepipe failed: " + "; ".join(bad))
    return seconds, result.table()


def count(out: Path, pattern: str) -> int:
    return sum(1 for _ in out.glob(pattern))


def proxy_packets(paths: list[Path]) -> int:
    """Video packets in every proxy (0 for a missing or broken one counts against the side)."""
    return sum(video_packets(p)[0] for p in paths)


# --- the jobs on one set ---------------------------------------------------------------------

class SetBench:
    """The four jobs on one clip set: each side timed over the same clips, its outputs counted."""

    def __init__(self, work: Path, footage: Footage, rounds: int, peer: bool) -> None:
        self.work, self.footage, self.rounds, self.peer = work, footage, rounds, peer
        self.cs: ClipSet = footage.clip_set
        self.clips = footage.clips
        self.stage_tables: list[tuple[str, str]] = []
        self._n = 0

    def out(self, label: str) -> Path:
        self._n += 1
        return self.work / f"{self._n:03d}-{label}"

    def shell(self, script: str, parallel: int, label: str) -> tuple[float, Path]:
        outs: list[Path] = []

        def once() -> float:
            outs.append(self.out(label))
            return shell_seconds(script, self.clips, outs[-1], parallel)
        return min(once() for _ in range(self.rounds)), outs[-1]

    def ours(self, make: Callable[[], Pipeline], label: str) -> tuple[float, Path]:
        outs: list[Path] = []

        def once() -> float:
            outs.append(self.out(label))
            seconds, table = framepipe_seconds(make(), self.footage.folder, outs[-1])
            self.stage_tables.append((f"{self.cs.name}, {label}", table))
            return seconds
        return min(once() for _ in range(self.rounds)), outs[-1]

    def _expect(self, label: str, got: int, least: int) -> None:
        if got < least:
            raise RuntimeError(f"{self.cs.name}, {label}: {got} outputs, expected at least {least}")

    @property
    def ticks(self) -> int:
        """Pictures every 2 s from 0, over every clip (the least either side must make)."""
        return self.cs.files * math.ceil(self.cs.seconds / 2.0)

    def thumbs(self) -> dict[str, Timed]:
        ours, o = self.ours(lambda: presets.thumbnails(thumb_every=2.0, thumb_width=320), "fp-thumbs")
        n = count(o, "thumbnails/*/t*.jpg")
        self._expect("framepipe thumbnails", n, self.ticks)
        sides = {"fp": Timed(ours, str(n))}
        if self.peer:
            for side, parallel in (("loop", 0), ("xargs", WORKERS)):
                seconds, p = self.shell(THUMB, parallel, f"ff-thumbs-{side}")
                n = count(p, "*/thumbs/*.jpg")
                self._expect(f"ffmpeg thumbnails ({side})", n, self.ticks)
                sides[side] = Timed(seconds, str(n))
        return sides

    def keyframes(self) -> dict[str, Timed]:
        ours, o = self.ours(lambda: presets.thumbnails(thumb_every=2.0, thumb_width=320, keyframes_only=True),
                            "fp-keyframes")
        n = count(o, "thumbnails/*/t*.jpg")
        self._expect("framepipe keyframe thumbnails", n, self.cs.files)
        sides = {"fp": Timed(ours, str(n))}
        if self.peer:
            seconds, p = self.shell(KEYFRAMES, 0, "ff-keyframes-loop")
            n = count(p, "*/thumbs/*.jpg")
            self._expect("ffmpeg keyframe thumbnails", n, self.cs.files)
            sides["loop"] = Timed(seconds, str(n))
        return sides

    def default(self) -> dict[str, Timed]:
        files = self.cs.files
        ours, o = self.ours(presets.default, "fp-default")
        thumbs, sheets = count(o, "thumbnails/*/t*.jpg"), count(o, "sprites/*/sheet_*.jpg")
        frames = proxy_packets(sorted((o / "proxies").glob("*.mp4")))
        self._expect("framepipe default thumbnails", thumbs, self.ticks)
        self._expect("framepipe default sprite sheets", sheets, files)
        self._expect("framepipe default proxy frames", frames, self.cs.frames)
        sides = {"fp": Timed(ours, f"{thumbs}/{sheets}/{frames}")}
        if self.peer:
            seconds, p = self.shell(" && ".join((PROBE, THUMB, SPRITE, PROXY)), WORKERS, "ff-default-xargs")
            meta = sum(1 for m in p.glob("*/meta.json") if m.stat().st_size > 100)
            thumbs, sheets = count(p, "*/thumbs/*.jpg"), count(p, "*/sprite.jpg")
            frames = proxy_packets(sorted(p.glob("*/proxy.mp4")))
            self._expect("ffprobe metadata", meta, files)
            self._expect("ffmpeg thumbnails", thumbs, self.ticks)
            self._expect("ffmpeg sprite sheets", sheets, files)
            self._expect("ffmpeg proxy frames", frames, self.cs.frames)
            sides["xargs"] = Timed(seconds, f"{thumbs}/{sheets}/{frames}")
        return sides

    def proxies(self) -> dict[str, Timed]:
        ours, o = self.ours(presets.proxies, "fp-proxies")
        frames = proxy_packets(sorted((o / "proxies").glob("*.mp4")))
        self._expect("framepipe proxy frames", frames, self.cs.frames)
        sides = {"fp": Timed(ours, str(frames))}
        if self.cs.seconds >= 20:  # long enough to be cut into parts: what keeping it whole costs
            whole, o = self.ours(lambda: _kept_whole(presets.proxies()), "fp-proxies-whole")
            sides["whole"] = Timed(whole, str(proxy_packets(sorted((o / "proxies").glob("*.mp4")))))
        if self.peer:
            seconds, p = self.shell(PROXY, WORKERS, "ff-proxies-xargs")
            frames = proxy_packets(sorted(p.glob("*/proxy.mp4")))
            self._expect("ffmpeg proxy frames", frames, self.cs.frames)
            sides["xargs"] = Timed(seconds, str(frames))
        return sides


def _kept_whole(pipeline: Pipeline) -> Pipeline:
    """The pipeline with every file decoded and encoded whole, by one worker (no parts)."""
    for stage in pipeline.stages.values():
        if isinstance(stage, Decode):
            stage.split_s = None
    return pipeline


# --- tables and targets ----------------------------------------------------------------------

Results = dict[str, dict[str, dict[str, Timed] | None]]  # job -> set name -> side -> Timed (None: it failed)


def job_table(job: str, results: Results, sets: list[ClipSet]) -> tuple[tuple[str, ...], list[tuple[object, ...]]]:
    """Rows of sides, a column per set: seconds, and for a peer its ratio to framepipe."""
    _, sides = JOBS[job]
    cols = [cs for cs in sets if cs.name in results.get(job, {})]
    header = ("how", *[cs.name + ("" if cs.headline else " (ref)") for cs in cols])
    rows: list[tuple[object, ...]] = []
    for side, label in sides:
        cells = []
        for cs in cols:
            got = results[job][cs.name]
            if got is None or side not in got:
                cells.append("failed" if got is None else "-")
                continue
            t = got[side]
            cells.append(f"{t.seconds:.2f}" + ("" if side == "fp" else f" {t.seconds / got['fp'].seconds:.2f}x"))
        rows.append((label, *cells))
    done = [results[job][cs.name] for cs in cols]
    rows.append(("framepipe: source frames/s",
                 *[f"{cs.frames / got['fp'].seconds:.0f}" if got else "-" for cs, got in zip(cols, done)]))
    rows.append(("outputs, " + " | ".join(s[1][:3] for s in sides),
                 *[" | ".join(got[s].outputs if s in got else "-" for s, _ in sides) if got else "-"
                   for got in done]))
    return header, rows


def check_targets(results: Results, sets: list[ClipSet]) -> list[bool]:
    """A verdict line for every target whose job and set were run, with the peer measured."""
    by_name = {cs.name: cs for cs in sets}
    ok = []
    for name, job, side, names, goal in TARGETS:
        for set_name in names:
            if set_name not in results.get(job, {}):
                continue  # not run (--only, --sets)
            got = results[job][set_name]
            cs = by_name[set_name]
            label = name.replace("small files", f"{cs.files} small files").replace(
                "one long file", f"one {cs.seconds:g} s {cs.height}p file")
            if got is None:
                print(f"  target {label} [{set_name}]: not measured, the job failed")
                ok.append(False)
                continue
            if side not in got:
                continue  # no peer
            ok.append(verdict(f"{label} [{set_name}]", got[side].seconds / got["fp"].seconds, goal))
    return ok


def ffmpeg_version() -> str | None:
    """The ffmpeg CLI's version line, or None when ``ffmpeg``, ``ffprobe`` or ``xargs`` is missing."""
    if not all(shutil.which(t) for t in ("ffmpeg", "ffprobe", "xargs")):
        return None
    line = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.splitlines()
    return line[0].split(" Copyright")[0] if line else "ffmpeg (version unknown)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer and shorter clips in every set")
    parser.add_argument("--only", choices=tuple(JOBS), help="one job only")
    parser.add_argument("--sets", default="", help="comma-separated set names (default: every set)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds (best of) for every comparison")
    parser.add_argument("--stage-tables", action="store_true",
                        help="print framepipe's stage table for every run (default: the long file's only)")
    args = parser.parse_args(argv)
    print(machine_line())
    version = ffmpeg_version()
    if version is None:
        print("ffmpeg CLI peer SKIPPED: ffmpeg, ffprobe or xargs is not on PATH (apt-get install ffmpeg); "
              "framepipe is timed alone on the ultrafast set and the ratio targets are left out")
    print(f"peer: {version or 'none'}; framepipe: PyAV {av.__version__} on its bundled FFmpeg "
          f"{getattr(av, 'ffmpeg_version_info', '?')}")
    sets = clip_sets(args.quick)
    wanted = [s for s in args.sets.split(",") if s]
    unknown = set(wanted) - {cs.name for cs in sets}
    if unknown:
        parser.error(f"unknown set(s): {', '.join(sorted(unknown))}")
    sets = [cs for cs in sets if (not wanted or cs.name in wanted) and (version or cs.source == "pattern")]
    sets.sort(key=lambda cs: not cs.headline)  # the reference column last

    t0 = time.perf_counter()
    footage = []
    for cs in sets:
        footage.append(ensure(cs))
        print(f"footage {cs.name}: {'found' if footage[-1].cached else 'made'} in {footage[-1].folder}", flush=True)
    print_table(f"Footage (made once, kept under {cache_root()}; {time.perf_counter() - t0:.0f} s this run)",
                *footage_table(footage))

    jobs = [j for j in JOBS if args.only in (None, j)]
    results: Results = {j: {} for j in jobs}
    stage_tables: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="framepipe-vs-ffmpeg-") as tmp:
        for f in footage:
            for clip in f.clips:  # the first side should not pay for reading from disk
                clip.read_bytes()
            bench = SetBench(Path(tmp) / f.clip_set.name, f, max(1, args.rounds), version is not None)
            t1 = time.perf_counter()
            for job in jobs:
                try:
                    results[job][f.clip_set.name] = getattr(bench, job)()
                except Exception as e:  # one failed job should not cost the others' figures
                    print(f"set {f.clip_set.name}, job {job} FAILED: {e}", flush=True)
                    results[job][f.clip_set.name] = None
            print(f"set {f.clip_set.name}: {len(jobs)} jobs in {time.perf_counter() - t1:.0f} s", flush=True)
            if args.stage_tables or f.clip_set.name == "long-file":
                stage_tables += bench.stage_tables
            shutil.rmtree(bench.work, ignore_errors=True)
    for job in jobs:
        title, _ = JOBS[job]
        print_table(f"{title} — wall seconds (peer / framepipe); peer: {version or 'skipped'}",
                    *job_table(job, results, sets))
        for line in COMMANDS[job]:
            print(f"  {line}")
    for label, table in stage_tables:
        print(f"\nframepipe's own statistics, {label}:\n{table}")
    print()
    ok = check_targets(results, sets) if version else []
    if version is None:
        print("no ratio targets checked: the ffmpeg CLI peer was skipped")
    print(f"\n{sum(ok)} of {len(ok)} targets met")
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
