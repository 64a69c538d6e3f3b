"""Transforms: resize (fit, fill, pad), crop, convert and numpy functions, alone and frame-parallel in a pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.video import invert

from pipeline import Pipeline, run
from stages import ClipSpec, Decode, Thumbnails, make_clip, read_frame_marker
from stages.transforms import Convert, Crop, Resize, crop_pixels, numpy_stage, pad_pixels, resize_box


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("transforms")
    return make_clip(folder / "wide.mp4", ClipSpec("wide.mp4", 320, 180, 1.0, fps=10))


def stills(pipe_tail, clip: Path, out: Path, executor: str = "inline", **decode) -> list[np.ndarray]:  # noqa: ANN001
    """Run Decode -> transforms -> full-size PNG thumbnails every 0.5 s; the pictures as arrays."""
    p = Pipeline("t")
    node = p.add(Decode(audio=False, **decode))
    for stage in pipe_tail:
        node = p.add(stage, after=node)
    p.add(Thumbnails(every=0.5, width=None, fmt="png", poster=False), after=node)
    result = run(p, clip, out, executor=executor, workers=2)
    assert result.files[0].ok, result.files[0].error
    return [np.asarray(Image.open(f)) for f in sorted((out / "thumbnails" / "wide").glob("t*.png"))]


def test_resize_box_keeps_the_aspect_in_every_mode() -> None:
    assert resize_box(1920, 1080, 640, None) == (640, 360)
    assert resize_box(1920, 1080, None, 360) == (640, 360)
    assert resize_box(1920, 1080, 400, 400, "fit") == (400, 225)
    assert resize_box(1920, 1080, 400, 400, "fill") == (711, 400)
    assert resize_box(720, 576, 1024, None, sample_aspect=16 / 15 * 1) == (1024, 768)  # PAL 4:3, non-square pixels
    assert resize_box(321, 179, 161, None, even=True) == (162, 90)


def test_fit_by_width_gives_the_requested_width_and_the_right_frame(clip: Path, tmp_path: Path) -> None:
    pictures = stills([Resize(160)], clip, tmp_path)
    assert [p.shape for p in pictures] == [(90, 160, 3)] * 2
    assert [read_frame_marker(p) for p in pictures] == [0, 5]


def test_fill_covers_the_box_and_crops_the_centre(clip: Path, tmp_path: Path) -> None:
    (filled, _), (full, _) = stills([Resize(100, 100, mode="fill")], clip, tmp_path / "a"), \
        stills([Resize(None, 100)], clip, tmp_path / "b")
    assert filled.shape == (100, 100, 3) and full.shape == (100, 178, 3)
    assert np.abs(filled.astype(int) - full[:, 38:138].astype(int)).mean() < 3  # x made even for 4:2:0


def test_pad_letterboxes_onto_black(clip: Path, tmp_path: Path) -> None:
    padded = stills([Resize(200, 200, mode="pad", pixel_format="rgb24")], clip, tmp_path)[0]
    assert padded.shape == (200, 200, 3)
    assert padded[:40].max() < 20 and padded[-40:].max() < 20  # bars above and below
    assert padded[60:140].mean() > 40  # the picture in between


def test_crop_and_pad_keep_4_2_0_planes_aligned() -> None:
    y = np.arange(8 * 6, dtype=np.uint8).reshape(6, 8)
    u = np.full((3, 4), 100, np.uint8)
    v = np.full((3, 4), 200, np.uint8)
    packed = np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(9, 8)
    cropped = crop_pixels(packed, "yuv420p", 3, 1, 5, 4)  # odd offsets and size are made even
    assert cropped.shape == (6, 4)
    assert np.array_equal(cropped[:4], y[0:4, 2:6])
    padded = pad_pixels(packed, "yuv420p", 12, 10)
    assert padded.shape == (15, 12)
    assert padded[0, 0] == 16 and padded[10:].reshape(-1)[0] == 128  # black in limited-range YUV


def test_crop_and_convert(clip: Path, tmp_path: Path) -> None:
    pictures = stills([Crop(0, 0, 160, 40), Convert("gray")], clip, tmp_path)
    assert pictures[0].shape == (40, 160, 3)
    assert np.array_equal(pictures[0][..., 0], pictures[0][..., 2])  # gray
    full = stills([Convert("gray")], clip, tmp_path / "full")[0]
    assert np.abs(pictures[0].astype(int) - full[:40, :160].astype(int)).max() <= 2


def test_a_numpy_function_runs_frame_parallel_and_matches_one_process(clip: Path, tmp_path: Path) -> None:
    assert invert.is_map and invert.name == "invert"
    local = stills([invert], clip, tmp_path / "local", executor="local", pixel_format="rgb24")
    inline = stills([invert], clip, tmp_path / "inline", executor="inline", pixel_format="rgb24")
    plain = stills([], clip, tmp_path / "plain", pixel_format="rgb24")
    assert all(np.array_equal(a, b) for a, b in zip(local, inline, strict=True))
    assert np.array_equal(local[0], 255 - plain[0])


def test_a_numpy_function_must_return_an_array(clip: Path, tmp_path: Path) -> None:
    p = Pipeline("bad")
    d = p.add(Decode(audio=False))
    p.add(numpy_stage(lambda rgb: "oops", name="not_an_array"), after=d)
    result = run(p, clip, tmp_path, executor="inline")
    assert not result.files[0].ok
    assert "not_an_array" in result.files[0].error and "not a numpy array" in result.files[0].error


def test_bad_options_are_refused_when_the_stage_is_made() -> None:
    with pytest.raises(ValueError, match="both a width and a height"):
        Resize(100, mode="pad")
    with pytest.raises(ValueError, match="fit, fill or pad"):
        Resize(100, 100, mode="stretch")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Crop(0, 0, 0, 10)


@pytest.mark.parametrize("height", [90, 88, 270, 1080])
def test_a_4_2_0_picture_keeps_its_height_when_wrapped_as_a_frame(height: int) -> None:
    from stages.frames import wrap_pixels
    packed = np.zeros((height * 3 // 2, 160), np.uint8)
    assert (wrap_pixels(packed, "yuv420p").width, wrap_pixels(packed, "yuv420p").height) == (160, height)
