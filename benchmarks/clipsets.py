"""Clip sets as users have them, for ``bench_vs_ffmpeg``: H.264 at camera bit rates, generated once and cached.

Test patterns encoded with x264 ``ultrafast`` (no CABAC, no B-frames, few
bits) decode several times faster than what users bring. These sets are made
as ``footage.py`` makes its clips — a textured scene (``footage.Scene``:
several octaves of noise, a brighter sky, specular highlights) panned across
the frame, an object crossing it, per-frame grain — but rendered by the
ffmpeg CLI's filters, which keeps a 60 s 1080p file cheap to make:

* the scene: four scenes (``Scene.make``, BT.709-encoded) stacked in one PNG;
  ``crop`` pans across one of them and cuts to the next every 3.7 s (the
  pan changes direction at each cut), so the content has scene cuts;
* the object: ``testsrc2`` (itself moving) crossing the frame;
* the grain: ``noise=alls=20:allf=t+u``, new every frame;
* sound: pink noise, AAC 128 kbit/s stereo;
* the encode: x264 ``veryfast`` or ``medium``, High profile (CABAC), 3
  B-frames, one-pass ABR with a VBV (``-b:v 15M -maxrate 20M -bufsize 30M``
  at 1080p30). A fixed GOP (``scenecut=0``: a keyframe every 1 or 2 s, as
  cameras and phones write) or a long GOP (``keyint=250``, ``scenecut=40``:
  x264's default, keyframes at the cuts, as edited and web video has it).

``clip_sets(quick)`` lists the sets; ``ensure(clip_set)`` makes one (or finds
it) under ``$FRAMEPIPE_BENCH_FOOTAGE`` (default ``~/.cache/framepipe-bench``)
in a folder keyed by its parameters, so a re-run does not make it again. The
``ultrafast`` set is the earlier one (``stages.make_clip`` patterns, x264
ultrafast crf 20, a keyframe every 2 s), kept as a second column.

``python -m benchmarks.clipsets [--quick] [--sets a,b]`` makes the sets and
prints what they hold. Nothing here is ever committed: the media stay in the
cache folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from .footage import Scene, _bt709_encode

__all__ = ["ClipSet", "Footage", "clip_sets", "ensure", "cache_root", "footage_table"]

GENERATOR = 1  # bump when the pictures or the encode change: it is part of every set's cache key
CUT = 3.7  # seconds between scene cuts (not a multiple of a GOP or of the 2 s thumbnail interval)
SCENES = 4


@dataclass(frozen=True)
class ClipSet:
    """One set of clips: how many, how long, and how they are encoded."""

    name: str
    what: str
    files: int
    seconds: float
    width: int = 1920
    height: int = 1080
    fps: int = 30
    preset: str = "veryfast"
    gop: int = 30  # x264 keyint (frames)
    scenecut: int = 0  # x264 scenecut: 0 = a fixed GOP, 40 = x264's default (keyframes at cuts too)
    bitrate_k: int = 15_000
    maxrate_k: int = 20_000
    bufsize_k: int = 30_000
    source: str = "scene"  # "scene": the textured pan above; "pattern": stages.make_clip, x264 crf 20
    headline: bool = True  # False: a reference column, after the others

    @property
    def key(self) -> str:
        """The cache folder's name: the set's name and a hash of everything that makes its pixels."""
        fields = json.dumps({**asdict(self), "what": None, "headline": None, "generator": GENERATOR},
                            sort_keys=True)
        return f"{self.name}-{hashlib.sha1(fields.encode()).hexdigest()[:10]}"

    @property
    def frames(self) -> int:
        """Source frames over the whole set."""
        return self.files * round(self.seconds * self.fps)

    def encoding(self) -> str:
        """The encoder settings in words."""
        if self.source == "pattern":
            return f"x264 {self.preset} crf 20, keyint {self.gop} fixed"
        gop = f"keyint {self.gop} fixed" if not self.scenecut else f"keyint {self.gop} + scenecut {self.scenecut}"
        return (f"x264 {self.preset}, {self.bitrate_k / 1000:g}M (max {self.maxrate_k / 1000:g}M), "
                f"3 B-frames, {gop}")


def clip_sets(quick: bool = False) -> list[ClipSet]:
    """The sets ``bench_vs_ffmpeg`` runs every job on; ``quick``: fewer and shorter clips."""
    q = quick
    return [
        ClipSet("vf-gop1s", "1080p30 camera-like, veryfast, a keyframe every 1 s",
                files=2 if q else 4, seconds=4 if q else 10, preset="veryfast", gop=30),
        ClipSet("med-gop2s", "1080p30, medium, a keyframe every 2 s",
                files=2 if q else 4, seconds=4 if q else 10, preset="medium", gop=60),
        ClipSet("med-longgop", "1080p30 edited, medium, keyint 250 with keyframes at the scene cuts",
                files=1 if q else 2, seconds=12 if q else 20, preset="medium", gop=250, scenecut=40),
        ClipSet("4k", "2160p30, veryfast, 45 Mbit/s, a keyframe every 1 s",
                files=1 if q else 2, seconds=3 if q else 5, width=3840, height=2160, preset="veryfast", gop=30,
                bitrate_k=45_000, maxrate_k=60_000, bufsize_k=90_000),
        # The long file and the 200 files are what their targets are about: --quick keeps them.
        ClipSet("long-file", "one long 1080p30 file, veryfast, a keyframe every 2 s",
                files=1, seconds=60, preset="veryfast", gop=60),
        ClipSet("small-files", "a folder of short 720p30 phone-like clips, veryfast, 8 Mbit/s, GOP 1 s",
                files=200, seconds=1 if q else 2, width=1280, height=720, preset="veryfast", gop=30,
                bitrate_k=8_000, maxrate_k=11_000, bufsize_k=16_000),
        ClipSet("ultrafast", "the earlier set: test patterns, x264 ultrafast crf 20 (no CABAC, no B-frames)",
                files=3 if q else 6, seconds=4 if q else 10, preset="ultrafast", gop=60, source="pattern",
                headline=False),
    ]


@dataclass
class Footage:
    """A set made on disk: its clips and what they hold."""

    clip_set: ClipSet
    clips: list[Path]
    made_s: float  # seconds it took to make (when it was made, maybe by an earlier run)
    cached: bool  # found in the cache rather than made now
    keyframes: list[int]  # per clip
    video_bytes: int
    x264: str  # "cabac=1 bframes=3" as x264 wrote it into the first clip

    @property
    def folder(self) -> Path:
        return self.clips[0].parent

    @property
    def mbit_s(self) -> float:
        return self.video_bytes * 8 / 1e6 / (self.clip_set.files * self.clip_set.seconds)

    @property
    def keyframe_every_s(self) -> float:
        return self.clip_set.files * self.clip_set.seconds / max(1, sum(self.keyframes))


def cache_root() -> Path:
    """Where sets are kept: ``$FRAMEPIPE_BENCH_FOOTAGE``, else ``~/.cache/framepipe-bench`` (XDG)."""
    if os.environ.get("FRAMEPIPE_BENCH_FOOTAGE"):
        return Path(os.environ["FRAMEPIPE_BENCH_FOOTAGE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "framepipe-bench"


def ensure(clip_set: ClipSet, root: Path | None = None) -> Footage:
    """The set's clips, made now unless an earlier run left them in the cache."""
    folder = (root or cache_root()) / clip_set.key
    marker = folder / "set.json"
    cached = marker.exists()
    if not cached:
        tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "clips").mkdir(parents=True)
        t0 = time.perf_counter()
        if clip_set.source == "pattern":
            _pattern_set(clip_set, tmp / "clips", tmp)
        else:
            _scene_set(clip_set, tmp / "clips", tmp)
        made = len(list((tmp / "clips").glob("*.mp4")))
        if made != clip_set.files:
            raise RuntimeError(f"{clip_set.name}: made {made} clips, expected {clip_set.files}")
        (tmp / "set.json").write_text(json.dumps({"set": asdict(clip_set), "generator": GENERATOR,
                                                  "made_s": round(time.perf_counter() - t0, 1)}, indent=1))
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)  # whole or not at all: a run stopped half-way leaves only a .tmp folder
    made_s = json.loads(marker.read_text())["made_s"]
    clips = sorted((folder / "clips").glob("*.mp4"))
    keyframes, vbytes = [], 0
    for clip in clips:
        _, k, b = _video_packets(clip)
        keyframes.append(k)
        vbytes += b
    return Footage(clip_set, clips, made_s, cached, keyframes, vbytes, _x264_settings(clips[0]))


def _video_packets(path: Path) -> tuple[int, int, int]:
    """(video packets, keyframes, video bytes) of ``path``, demuxed without decoding."""
    with av.open(str(path)) as c:
        n = k = b = 0
        for p in c.demux(c.streams.video[0]):
            if p.size:
                n, k, b = n + 1, k + bool(p.is_keyframe), b + p.size
        return n, k, b


def _x264_settings(path: Path) -> str:
    """CABAC and B-frames as x264 wrote them in its SEI message (what the encode really used)."""
    head = path.read_bytes()[:400_000]
    found = []
    for name in (b"cabac=", b"bframes=", b"keyint=", b"scenecut="):
        i = head.find(name)
        if i >= 0:
            found.append(head[i:head.find(b" ", i)].decode("ascii", "replace"))
    return " ".join(found) or "?"


# --- the textured scene, through ffmpeg's filters -----------------------------------------------

def _scene_texture(path: Path, width: int, height: int, pan: int, seed: int) -> None:
    """``SCENES`` scenes of ``footage.Scene``, BT.709-encoded, stacked top to bottom in one 8-bit PNG."""
    rows = [_bt709_encode(Scene.make(width, height, pan=pan, seed=seed + k).light * 0.8) for k in range(SCENES)]
    rgb = (np.clip(np.concatenate(rows, axis=0), 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    Image.fromarray(rgb).save(path, compress_level=1)


def scene_graph(width: int, height: int, fps: int, offset: float, seed: int) -> str:
    """The filter graph: input 0 the stacked scenes, 1 the crossing object; out ``[v]``."""
    speed = width / 8  # pan, pixels a second
    t = f"(t+{offset:g})"
    seg = f"floor({t}/{CUT})"
    local = f"({t}-{seg}*{CUT})"
    x = f"if(mod({seg},2),(iw-ow)-{local}*{speed:g},{local}*{speed:g})"
    y = f"{height}*mod({seg},{SCENES})"
    ow = width // 4
    return (f"[0:v]loop=loop=-1:size=1:start=0,setpts=N/{fps}/TB,"
            f"crop=w={width}:h={height}:x='{x}':y='{y}',format=yuv420p[bg];"
            f"[bg][1:v]overlay=x='mod(t*{width // 6},{width + ow})-{ow}':y={height // 3},"
            f"noise=alls=20:allf=t+u:all_seed={seed},format=yuv420p[v]")


def _scene_set(cs: ClipSet, clips: Path, work: Path) -> None:
    """Encode ``cs`` from the textured scene with the ffmpeg CLI: one clip per process, or (many files)
    one stream cut into files at its keyframes by the segment muxer."""
    pan = math.ceil(cs.width / 8 * CUT) + 4
    texture = work / "scenes.png"
    _scene_texture(texture, cs.width, cs.height, pan, seed=11)
    keyint = f"keyint={cs.gop}:min-keyint={cs.gop if not cs.scenecut else min(25, cs.gop)}:scenecut={cs.scenecut}"
    encode = ["-c:v", "libx264", "-preset", cs.preset, "-profile:v", "high", "-pix_fmt", "yuv420p", "-bf", "3",
              "-b:v", f"{cs.bitrate_k}k", "-maxrate", f"{cs.maxrate_k}k", "-bufsize", f"{cs.bufsize_k}k",
              "-x264-params", f"{keyint}:bframes=3", "-r", str(cs.fps),
              "-c:a", "aac", "-b:a", "128k", "-ac", "2"]
    many = cs.files > 8
    jobs = [(0, cs.files * cs.seconds)] if many else [(i, cs.seconds) for i in range(cs.files)]
    for i, seconds in jobs:
        inputs = ["-i", str(texture), "-f", "lavfi", "-i", f"testsrc2=s={cs.width // 4}x{cs.height // 4}:r={cs.fps}",
                  "-f", "lavfi", "-i", f"anoisesrc=c=pink:a=0.05:r=48000:seed={i + 1}"]
        graph = scene_graph(cs.width, cs.height, cs.fps, offset=i * 7.3, seed=i + 1)
        if many:
            out = ["-f", "segment", "-segment_time", f"{cs.seconds:g}", "-reset_timestamps", "1",
                   "-segment_format", "mp4", str(clips / "clip%03d.mp4")]
        else:
            out = [str(clips / f"clip{i + 1:02d}.mp4")]
        cmd = ["ffmpeg", "-v", "error", "-y", *inputs, "-filter_complex", graph, "-map", "[v]", "-map", "2:a",
               *encode, "-t", f"{seconds:g}", *out]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{cs.name}: ffmpeg failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    texture.unlink()  # up to 150 MB (4K): the cache keeps the clips only


# --- the earlier set: test patterns, x264 ultrafast ----------------------------------------------

def _with_gop(src: Path, dst: Path, gop: int, fps: int) -> None:
    """Re-encode ``src``'s video with a keyframe every ``gop`` frames (x264 ultrafast crf 20); sound copied."""
    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        vin = i.streams.video[0]
        ain = i.streams.audio[0] if i.streams.audio else None
        v = o.add_stream("libx264", rate=fps)
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
                frame.pts, frame.time_base, frame.pict_type = n, Fraction(1, fps), 0
                n += 1
                for p in v.encode(frame):
                    o.mux(p)
        for p in v.encode(None):
            o.mux(p)


def _pattern_set(cs: ClipSet, clips: Path, work: Path) -> None:
    """``stages.make_clip`` clips with AAC sound, re-encoded with a keyframe every ``cs.gop`` frames."""
    from stages import ClipSpec, make_clip

    raw = work / "raw"
    raw.mkdir()
    for i in range(cs.files):
        name = f"clip{i + 1:02d}.mp4"
        make_clip(raw / name, ClipSpec(name, cs.width, cs.height, cs.seconds, fps=cs.fps, audio=True), seed=i)
        _with_gop(raw / name, clips / name, cs.gop, cs.fps)
    shutil.rmtree(raw)


# --- what a set holds --------------------------------------------------------------------------

def footage_table(sets: list[Footage]) -> tuple[tuple[str, ...], list[tuple[object, ...]]]:
    """Header and rows describing each set as made (bit rate and keyframes measured from the files)."""
    header = ("set", "files", "each", "frame", "encode", "x264 wrote", "video Mbit/s", "keyframe every", "made")
    rows = []
    for f in sets:
        cs = f.clip_set
        rows.append((cs.name, cs.files, f"{cs.seconds:g} s", f"{cs.width}x{cs.height}p{cs.fps}", cs.encoding(),
                     f.x264, f"{f.mbit_s:.1f}", f"{f.keyframe_every_s:.2f} s",
                     f"{'cached, ' if f.cached else ''}{f.made_s:.0f} s"))
    return header, rows


def main(argv: list[str] | None = None) -> int:
    from ._table import print_table

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer and shorter clips")
    parser.add_argument("--sets", default="", help="comma-separated set names (default: all)")
    args = parser.parse_args(argv)
    wanted = [s for s in args.sets.split(",") if s]
    made = []
    for cs in clip_sets(args.quick):
        if wanted and cs.name not in wanted:
            continue
        made.append(ensure(cs))
        print(f"{cs.name}: {made[-1].folder}", flush=True)
    print_table(f"clip sets under {cache_root()}", *footage_table(made))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
