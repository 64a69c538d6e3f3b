"""Unusual inputs through the whole library: 10-bit, odd sizes, anamorphic pixels, frames in slots."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from pipeline import Pipeline, run
from stages import ClipSpec, Decode, Thumbnails, make_clip, read_frame_marker
from stages.transforms import numpy_stage

SPECS = {
    "ten_bit_hevc.mp4": ClipSpec("ten_bit_hevc.mp4", 320, 180, 1.0, fps=10, codec="libx265", pix_fmt="yuv420p10le"),
    "ten_bit_h264.mp4": ClipSpec("ten_bit_h264.mp4", 320, 180, 1.0, fps=10, pix_fmt="yuv420p10le"),
    "odd_321x179.mp4": ClipSpec("odd_321x179.mp4", 321, 179, 1.0, fps=10, pix_fmt="yuv444p"),
    "odd_ffv1.mkv": ClipSpec("odd_ffv1.mkv", 161, 91, 1.0, fps=10, codec="ffv1"),
    "anamorphic.mp4": ClipSpec("anamorphic.mp4", 240, 180, 1.0, fps=10, sar=Fraction(4, 3)),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("formats")
    for name, spec in SPECS.items():
        make_clip(root / name, spec)
    return root


@numpy_stage
def brighten(rgb: np.ndarray) -> np.ndarray:
    return np.minimum(rgb.astype(np.uint16) + 10, 255).astype(np.uint8)


def test_every_format_decodes_to_thumbnails_of_the_right_frame_and_size(folder: Path, tmp_path: Path) -> None:
    p = Pipeline("formats")
    p.add(Thumbnails(every=0.5, width=None, fmt="png", poster=False), after=p.add(Decode(audio=False)))
    results = {r.file.relpath: r for r in run(p, folder, tmp_path, workers=2).files}
    for name, spec in SPECS.items():
        assert results[name].ok, results[name].error
        assert results[name].record["frame_count"] == 10
        pictures = sorted((tmp_path / "thumbnails" / name.rsplit(".", 1)[0]).glob("t*.png"))
        assert len(pictures) == 2
        shown_w = round(spec.width * (spec.sar or 1))
        for picture, frame in zip(pictures, (0, 5)):
            image = np.asarray(Image.open(picture).convert("RGB"))
            assert image.shape[:2] == (spec.height, shown_w)
            assert read_frame_marker(image) == frame


def test_ten_bit_and_odd_frames_cross_to_map_workers_and_match_one_process(folder: Path, tmp_path: Path) -> None:
    outs = {}
    for executor in ("local", "inline"):
        p = Pipeline("formats-map")
        d = p.add(Decode(audio=False, pixel_format="rgb24"))
        p.add(Thumbnails(every=0.5, width=None, fmt="png", poster=False), after=p.add(brighten, after=d))
        result = run(p, folder, tmp_path / executor, executor=executor, workers=2)
        assert all(r.ok for r in result.files), [r.error for r in result.files]
        outs[executor] = {f.relative_to(tmp_path / executor): np.asarray(Image.open(f))
                          for f in sorted((tmp_path / executor / "thumbnails").rglob("*.png"))}
    assert outs["local"].keys() == outs["inline"].keys() and len(outs["local"]) == 2 * len(SPECS)
    assert all(np.array_equal(outs["local"][k], outs["inline"][k]) for k in outs["local"])


def test_ten_bit_pixels_keep_their_depth_when_asked(folder: Path) -> None:
    with av.open(str(folder / "ten_bit_hevc.mp4")) as c:
        frame = next(c.decode(video=0))
    assert frame.format.name == "yuv420p10le"
    assert frame.to_ndarray().dtype == np.uint16


def test_frames_cross_in_their_native_format_too(folder: Path, tmp_path: Path) -> None:
    from stages.transforms import Convert
    outs = {}
    for executor in ("local", "inline"):
        p = Pipeline("native")
        d = p.add(Decode(audio=False))  # 10-bit, 4:4:4 and 4:2:0 frames cross as decoded
        p.add(Thumbnails(every=0.5, width=None, fmt="png", poster=False), after=p.add(Convert("gray"), after=d))
        result = run(p, folder, tmp_path / executor, executor=executor, workers=2)
        assert all(r.ok for r in result.files), [r.error for r in result.files]
        outs[executor] = {f.relative_to(tmp_path / executor): np.asarray(Image.open(f))
                          for f in sorted((tmp_path / executor / "thumbnails").rglob("*.png"))}
    assert len(outs["local"]) == 2 * len(SPECS)
    assert all(np.array_equal(outs["local"][k], outs["inline"][k]) for k in outs["inline"])
