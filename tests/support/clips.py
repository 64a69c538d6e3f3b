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
