"""The suite's small generated clips: what each was made with, and comparing video outputs (video library)."""

from __future__ import annotations

from pathlib import Path

from stages import ClipSpec
from support.runs import output_files

# Small versions of the sample set: what each clip was made with is what the tests expect back.
CLIPS: dict[str, ClipSpec] = {
    "landscape_audio.mp4": ClipSpec("landscape_audio.mp4", 320, 180, 3.0, fps=30, audio=True),
    "portrait_rot90.mp4": ClipSpec("portrait_rot90.mp4", 256, 144, 2.0, fps=25, audio=True, rotation=-90,
                                   black_frames=5),
    "web_vp9.webm": ClipSpec("web_vp9.webm", 256, 144, 2.0, fps=24, codec="libvpx-vp9"),
    "sub/odd_854x480.mp4": ClipSpec("odd_854x480.mp4", 854, 480, 1.0, fps=30),
}
BROKEN = "broken.mp4"


def frame_count(path: Path) -> int:
    """The number of video frames ``path`` decodes to."""
    import av
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(c.streams.video[0]))


def assert_same_outputs(out: Path, reference: Path, frames: int) -> None:
    """``out`` holds the outputs ``reference`` does: images byte for byte, videos with ``frames`` frames each."""
    mine, whole = output_files(out), output_files(reference)
    assert set(mine) == set(whole)
    for rel, path in mine.items():
        if rel.endswith(".mp4"):
            assert frame_count(path) == frame_count(whole[rel]) == frames, rel
        else:
            assert path.read_bytes() == whole[rel].read_bytes(), rel



def frame_hashes(path: Path) -> list[tuple[str, str]]:
    """Each video frame of ``path`` as decoded: its time and a BLAKE2b digest of its pixels (in the stream's own
    pixel format). Two files with the same list show the same pictures at the same times."""
    import hashlib

    import av
    with av.open(str(path)) as c:
        return [(f"{float(f.time or 0):.4f}", hashlib.blake2b(f.to_ndarray().tobytes(), digest_size=16).hexdigest())
                for f in c.decode(c.streams.video[0])]


def make_bitstream_aspect_clip(path: Path, frames: int = 15) -> Path:
    """A 160x90 H.264 MP4 with B-frames, shown turned (-90), whose 4:3 sample aspect only its bitstream states.

    The aspect is in the H.264 VUI and no ``pasp`` box: the container's
    header says nothing of it, as with files from muxers that do not copy it
    there, so what reads it must have it from a decoder. ``b-adapt=0`` makes
    every third frame a P-frame and the two between B-frames.
    """
    import av
    import numpy as np
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 160, 90, "yuv420p"
        v.options = {"preset": "veryfast", "x264-params": "bframes=2:b-adapt=0:scenecut=0:sar=4/3"}
        v.set_display_rotation(-90)
        ramp = np.tile(np.linspace(0, 255, 160, dtype=np.uint8), (90, 1))
        for i in range(frames):
            picture = np.repeat(np.roll(ramp, i * 5, axis=1)[..., None], 3, axis=2)
            picture[30:60, i * 8:i * 8 + 20] = (255, 0, 0)  # a square crossing the frame
            for packet in v.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                out.mux(packet)
        for packet in v.encode(None):
            out.mux(packet)
    return path
