"""framepipe against the ffmpeg command line, both measured in the same run on the same footage.

Footage: a folder of six 10 s 1080p30 H.264 clips with AAC sound (``--quick``:
three 4 s clips), made with ``stages.make_clip`` and re-encoded with a keyframe
every 2 s (x264 ``keyint=60:min-keyint=60:scenecut=0``), so that keyframe-only
thumbnails give ~5 pictures a 10 s clip on both sides. Wall seconds; the cheap
comparisons (1, 2) are best of 2, the ones that encode a 720p proxy (3, 4) take
one round each (``--rounds`` for more). Every framepipe run starts its worker
server afresh (``stop_server()``), as a new ``framepipe`` command does, and
runs with ``cache=False`` so that it really decodes. ratio = peer seconds /
framepipe seconds (above 1: framepipe is faster). Outputs are counted on both
sides (pictures, sprite sheets, metadata files, proxy video packets), so a
broken command cannot look fast.

  1. Thumbnails, one every 2 s, 320 px wide, JPEG: a sequential shell loop of
     ``ffmpeg -i IN -vf fps=1/2,scale=320:-1 OUT/%04d.jpg``; the same under
     ``xargs -P2``; framepipe ``presets.thumbnails(thumb_every=2, thumb_width=320)``
     on 2 workers. Targets: >= 0.95x of xargs, >= 1.1x of the loop.
  2. Keyframe-only thumbnails: a loop of ``ffmpeg -skip_frame nokey -i IN
     -vsync vfr -vf scale=320:-1 OUT/%04d.jpg`` against ``presets.thumbnails(...,
     keyframes_only=True)``. Target >= 1.5x.
  3. The default preset (metadata, thumbnails, sprite sheet, 720p proxy; one
     decode per file) against a per-file script of ffprobe (metadata JSON), the
     thumbnail command, a sprite sheet (``fps=1/2,scale=160:-1,tile=10x10``) and
     a proxy (``scale=-2:720``, x264 veryfast crf 23, AAC), under ``xargs -P2``.
     Target >= 1.3x.
  4. Proxies only (1080p -> 720p, x264 veryfast crf 23, AAC): the proxy command
     under ``xargs -P2`` (and in a loop, for reference) against
     ``presets.proxies()``. Target >= 0.95x of xargs.

The ffmpeg CLI is the OS package (benchmarks only; framepipe uses PyAV's own
FFmpeg, whose version is printed too). Without ``ffmpeg``/``ffprobe`` the peer
is skipped, said so, and its checks are left out.

Usage: python -m benchmarks.bench_vs_ffmpeg [--quick] [--only thumbs|keyframes|default|proxies] [--rounds N]
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
from fractions import Fraction
from pathlib import Path

import av

from pipeline import Pipeline, run
from pipeline.runtime.forkserver import stop_server
from stages import ClipSpec, make_clip, presets

from ._table import machine_line, print_table, verdict

FPS = 30
GOP = 60  # a keyframe every 2 s
WORKERS = 2

Check = tuple[str, float, float, bool]
Row = tuple[object, ...]

THUMB = "ffmpeg -v error -y -i \"$f\" -vf fps=1/2,scale=320:-1 \"$o/thumbs/%04d.jpg\""
KEYFRAMES = "ffmpeg -v error -y -skip_frame nokey -i \"$f\" -vsync vfr -vf scale=320:-1 \"$o/thumbs/%04d.jpg\""
PROBE = "ffprobe -v error -show_format -show_streams -of json \"$f\" > \"$o/meta.json\""
SPRITE = "ffmpeg -v error -y -i \"$f\" -vf fps=1/2,scale=160:-1,tile=10x10 \"$o/sprite.jpg\""
PROXY = ("ffmpeg -v error -y -i \"$f\" -vf scale=-2:720 -c:v libx264 -preset veryfast -crf 23 -c:a aac "
         "\"$o/proxy.mp4\"")


# --- footage ---------------------------------------------------------------------------------

def _with_gop(src: Path, dst: Path, gop: int) -> None:
    """Re-encode ``src``'s video with a keyframe every ``gop`` frames (x264 ultrafast crf 20); sound copied."""
    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        vin = i.streams.video[0]
        ain = i.streams.audio[0] if i.streams.audio else None
        v = o.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
        v.options = {"preset": "ultrafast", "crf": "20",
                     "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
        a = o.add_stream_from_template(ain) if ain is not None else None
        n = 0
        for packet in i.demux(*[s for s in (vin, ain) if s is not None]):
            if packet.stream is ain:
                if packet.dts is not None:
                    packet.stream = a
                    o.mux(packet)
                continue
            for frame in packet.decode():
                frame.pts, frame.time_base, frame.pict_type = n, Fraction(1, FPS), 0
                n += 1
                for p in v.encode(frame):
                    o.mux(p)
        for p in v.encode(None):
            o.mux(p)


def make_footage(folder: Path, count: int, seconds: float) -> list[Path]:
    """``count`` 1080p30 H.264 + AAC clips of ``seconds``, a keyframe every 2 s, in ``folder``."""
    folder.mkdir(parents=True)
    raw = folder.parent / "raw"
    raw.mkdir()
    paths = []
    for i in range(count):
        name = f"clip{i + 1:02d}.mp4"
        make_clip(raw / name, ClipSpec(name, 1920, 1080, seconds, fps=FPS, audio=True), seed=i)
        _with_gop(raw / name, folder / name, GOP)
        paths.append(folder / name)
    shutil.rmtree(raw)
    return paths


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


# --- the two sides ---------------------------------------------------------------------------

def _best(rounds: int, call: Callable[[int], float]) -> float:
    return min(call(r) for r in range(rounds))


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


# --- the comparisons -------------------------------------------------------------------------

class Bench:
    def __init__(self, work: Path, clips: list[Path], seconds: float, rounds: int, peer: bool) -> None:
        self.work, self.clips, self.seconds, self.rounds, self.peer = work, clips, seconds, rounds, peer
        self.folder = clips[0].parent
        self.frames = len(clips) * round(seconds * FPS)
        self.tables: list[tuple[str, str]] = []
        self._n = 0

    def out(self, label: str) -> Path:
        self._n += 1
        return self.work / "out" / f"{self._n:03d}-{label}"

    def shell(self, script: str, parallel: int, label: str, rounds: int) -> tuple[float, list[Path]]:
        outs: list[Path] = []

        def once(_: int) -> float:
            outs.append(self.out(label))
            return shell_seconds(script, self.clips, outs[-1], parallel)
        return _best(rounds, once), outs

    def ours(self, make: Callable[[], Pipeline], label: str, rounds: int) -> tuple[float, list[Path]]:
        outs: list[Path] = []

        def once(_: int) -> float:
            outs.append(self.out(label))
            seconds, table = framepipe_seconds(make(), self.folder, outs[-1])
            self.tables.append((label, table))
            return seconds
        return _best(rounds, once), outs

    def row(self, how: str, seconds: float, outputs: str, ours: float | None) -> Row:
        ratio = f"{seconds / ours:.2f}x" if ours else "-"
        return (how, f"{seconds:.2f}", f"{self.frames / seconds:.0f}", outputs, ratio)

    def _expect(self, label: str, got: int, least: int) -> None:
        if got < least:
            raise RuntimeError(f"{label}: {got} outputs, expected at least {least}")

    # 1 -------------------------------------------------------------------------------------
    def thumbnails(self) -> tuple[list[Row], list[Check]]:
        least = len(self.clips) * math.ceil(self.seconds / 2.0)
        ours, outs = self.ours(lambda: presets.thumbnails(thumb_every=2.0, thumb_width=320), "fp-thumbs", 2)
        n_ours = count(outs[-1], "thumbnails/*/t*.jpg")
        self._expect("framepipe thumbnails", n_ours, least)
        rows = [self.row(f"(c) framepipe thumbnails preset, {WORKERS} workers", ours, f"{n_ours} jpg", None)]
        if not self.peer:
            return rows, []
        seq, so = self.shell(THUMB, 0, "ff-thumbs-seq", 2)
        par, po = self.shell(THUMB, WORKERS, "ff-thumbs-xargs", 2)
        n_seq, n_par = count(so[-1], "*/thumbs/*.jpg"), count(po[-1], "*/thumbs/*.jpg")
        self._expect("ffmpeg thumbnails (loop)", n_seq, least)
        self._expect("ffmpeg thumbnails (xargs)", n_par, least)
        rows = [self.row("(a) ffmpeg, sequential loop", seq, f"{n_seq} jpg", ours),
                self.row(f"(b) ffmpeg, xargs -P{WORKERS}", par, f"{n_par} jpg", ours)] + rows
        return rows, [("thumbnails: (b) xargs / framepipe", par / ours, 0.95, False),
                      ("thumbnails: (a) loop / framepipe", seq / ours, 1.1, False)]

    # 2 -------------------------------------------------------------------------------------
    def keyframes(self) -> tuple[list[Row], list[Check]]:
        least = len(self.clips) * math.ceil(self.seconds / 2.0)
        ours, outs = self.ours(lambda: presets.thumbnails(thumb_every=2.0, thumb_width=320, keyframes_only=True),
                               "fp-keyframes", 2)
        n_ours = count(outs[-1], "thumbnails/*/t*.jpg")
        self._expect("framepipe keyframe thumbnails", n_ours, least)
        rows = [self.row(f"(b) framepipe thumbnails keyframes_only, {WORKERS} workers", ours, f"{n_ours} jpg", None)]
        if not self.peer:
            return rows, []
        seq, so = self.shell(KEYFRAMES, 0, "ff-keyframes-seq", 2)
        n_seq = count(so[-1], "*/thumbs/*.jpg")
        self._expect("ffmpeg keyframe thumbnails", n_seq, least)
        rows = [self.row("(a) ffmpeg -skip_frame nokey, sequential loop", seq, f"{n_seq} jpg", ours)] + rows
        return rows, [("keyframe thumbnails: (a) loop / framepipe", seq / ours, 1.5, False)]

    # 3 -------------------------------------------------------------------------------------
    def default(self) -> tuple[list[Row], list[Check]]:
        n = len(self.clips)
        least = n * math.ceil(self.seconds / 2.0)
        ours, outs = self.ours(presets.default, "fp-default", self.rounds)
        o = outs[-1]
        n_thumbs, n_sheets = count(o, "thumbnails/*/t*.jpg"), count(o, "sprites/*/sheet_*.jpg")
        packets = proxy_packets(sorted((o / "proxies").glob("*.mp4")))
        self._expect("framepipe default thumbnails", n_thumbs, least)
        self._expect("framepipe default sprite sheets", n_sheets, n)
        self._expect("framepipe default proxy frames", packets, self.frames)
        rows = [self.row(f"(b) framepipe default preset, {WORKERS} workers", ours,
                         f"{n_thumbs} jpg, {n_sheets} sheets, {packets} proxy frames", None)]
        if not self.peer:
            return rows, []
        script = " && ".join((PROBE, THUMB, SPRITE, PROXY))
        par, po = self.shell(script, WORKERS, "ff-default-xargs", self.rounds)
        p = po[-1]
        n_meta = sum(1 for m in p.glob("*/meta.json") if m.stat().st_size > 100)
        n_thumbs, n_sheets = count(p, "*/thumbs/*.jpg"), count(p, "*/sprite.jpg")
        packets = proxy_packets(sorted(p.glob("*/proxy.mp4")))
        self._expect("ffprobe metadata", n_meta, n)
        self._expect("ffmpeg thumbnails", n_thumbs, least)
        self._expect("ffmpeg sprite sheets", n_sheets, n)
        self._expect("ffmpeg proxy frames", packets, self.frames)
        rows = [self.row(f"(a) ffprobe + 3 ffmpeg per file, xargs -P{WORKERS}", par,
                         f"{n_meta} json, {n_thumbs} jpg, {n_sheets} sheets, {packets} proxy frames", ours)] + rows
        return rows, [("default preset: (a) xargs script / framepipe", par / ours, 1.3, False)]

    # 4 -------------------------------------------------------------------------------------
    def proxies(self) -> tuple[list[Row], list[Check]]:
        ours, outs = self.ours(presets.proxies, "fp-proxies", self.rounds)
        packets = proxy_packets(sorted((outs[-1] / "proxies").glob("*.mp4")))
        self._expect("framepipe proxy frames", packets, self.frames)
        rows = [self.row(f"(c) framepipe proxies preset, {WORKERS} workers", ours, f"{packets} frames", None)]
        if not self.peer:
            return rows, []
        par, po = self.shell(PROXY, WORKERS, "ff-proxies-xargs", self.rounds)
        seq, so = self.shell(PROXY, 0, "ff-proxies-seq", 1)
        n_par, n_seq = (proxy_packets(sorted(x[-1].glob("*/proxy.mp4"))) for x in (po, so))
        self._expect("ffmpeg proxy frames (xargs)", n_par, self.frames)
        self._expect("ffmpeg proxy frames (loop)", n_seq, self.frames)
        rows = [self.row("(a) ffmpeg, sequential loop (reference)", seq, f"{n_seq} frames", ours),
                self.row(f"(b) ffmpeg, xargs -P{WORKERS}", par, f"{n_par} frames", ours)] + rows
        return rows, [("proxies: (b) xargs / framepipe", par / ours, 0.95, False)]


TITLES = {
    "thumbs": "1. Thumbnails every 2 s, 320 px, JPEG",
    "keyframes": "2. Keyframe-only thumbnails (a keyframe every 2 s), 320 px, JPEG",
    "default": "3. Default preset (metadata, thumbnails, sprite sheet, 720p proxy) vs a per-file script",
    "proxies": "4. Proxies: 1080p -> 720p H.264 veryfast crf 23 + AAC",
}


def ffmpeg_version() -> str | None:
    """The ffmpeg CLI's version line, or None when ``ffmpeg``, ``ffprobe`` or ``xargs`` is missing."""
    if not all(shutil.which(t) for t in ("ffmpeg", "ffprobe", "xargs")):
        return None
    line = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.splitlines()
    return line[0] if line else "ffmpeg (version unknown)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="three 4 s clips instead of six 10 s clips")
    parser.add_argument("--only", choices=tuple(TITLES))
    parser.add_argument("--rounds", type=int, default=1, help="rounds (best of) for the proxy comparisons 3 and 4")
    parser.add_argument("--stage-tables", action="store_true", help="print framepipe's stage table for every run")
    args = parser.parse_args(argv)
    print(machine_line())
    version = ffmpeg_version()
    if version is None:
        print("ffmpeg CLI peer SKIPPED: ffmpeg, ffprobe or xargs is not on PATH (apt-get install ffmpeg); "
              "framepipe is timed alone and the ratio targets are left out")
    print(f"peer: {version or 'none'}; framepipe: PyAV {av.__version__} on its bundled FFmpeg "
          f"{getattr(av, 'ffmpeg_version_info', '?')}")
    n_clips, seconds = (3, 4.0) if args.quick else (6, 10.0)
    checks: list[Check] = []
    with tempfile.TemporaryDirectory(prefix="framepipe-vs-ffmpeg-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        clips = make_footage(work / "clips", n_clips, seconds)
        keys = [video_packets(c)[1] for c in clips]
        print(f"footage: {n_clips} x {seconds:g} s 1920x1080 {FPS} fps H.264 (x264 ultrafast crf 20, keyint={GOP}) "
              f"+ AAC stereo, {sum(c.stat().st_size for c in clips) / 1e6:.0f} MB, keyframes per clip {keys}, "
              f"made in {time.perf_counter() - t0:.0f} s")
        bench = Bench(work, clips, seconds, max(1, args.rounds), version is not None)
        for key, title in TITLES.items():
            if args.only not in (None, key):
                continue
            rows, c = getattr(bench, {"thumbs": "thumbnails"}.get(key, key))()
            checks += c
            print_table(f"{title} — {n_clips} clips, {bench.frames} source frames; peer: {version or 'skipped'}",
                        ("how", "seconds", "src frames/s", "outputs", "peer/framepipe"), rows)
        tables = bench.tables if args.stage_tables else list({k: t for k, t in bench.tables}.items())
        for label, table in tables:
            print(f"\nframepipe's own statistics, {label} (last round):\n{table}")
    print()
    ok = [verdict(name, value, goal, at_most=at_most) for name, value, goal, at_most in checks]
    if version is None:
        print("no ratio targets checked: the ffmpeg CLI peer was skipped")
    print(f"\n{sum(ok)} of {len(ok)} targets met")
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
