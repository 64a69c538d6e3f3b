"""Thumbnails: JPEGs at the requested size that show the frame they are named for."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from support.clips import CLIPS
from support.runs import result_for

from pipeline import RunResult
from stages import read_frame_marker
from stages.media import rotation_turns


def _stored_orientation(path, rotation: int) -> np.ndarray:  # noqa: ANN001
    """A thumbnail turned back to the orientation the frame was stored in, to read its marker."""
    return np.rot90(np.asarray(Image.open(path).convert("RGB")), k=-rotation_turns(rotation))


@pytest.mark.parametrize("relpath", list(CLIPS))
def test_a_thumbnail_every_second_shows_the_frame_at_that_time(batch: RunResult, relpath: str) -> None:
    spec = CLIPS[relpath]
    res = result_for(batch, relpath)
    key = relpath.rsplit(".", 1)[0]
    thumbs = sorted((batch.out_dir / "thumbnails" / key).glob("t*.jpg"))
    expected_times = [float(t) for t in range(int(np.ceil(spec.seconds)))]
    assert [float(p.stem[1:]) for p in thumbs] == expected_times
    assert res.record["thumbnail_count"] == len(expected_times)
    for path, t in zip(thumbs, expected_times):
        image = Image.open(path)
        assert image.format == "JPEG"
        assert image.width == 160  # requested width; height follows the shown aspect
        dw, dh = res.record["display_width"], res.record["display_height"]
        assert image.height == round(160 * dh / dw)
        expected_frame = round(t * spec.fps)
        if expected_frame < spec.black_frames:
            continue  # a black lead-in frame carries no readable marker beyond its band
        assert read_frame_marker(_stored_orientation(path, spec.rotation)) == expected_frame


def test_poster_skips_black_lead_in_frames(batch: RunResult) -> None:
    spec = CLIPS["portrait_rot90.mp4"]
    res = result_for(batch, "portrait_rot90.mp4")
    poster = batch.out_dir / res.record["poster"]
    assert read_frame_marker(_stored_orientation(poster, spec.rotation)) == spec.black_frames


def test_thumbnails_of_rotated_video_are_upright(batch: RunResult) -> None:
    res = result_for(batch, "portrait_rot90.mp4")
    image = Image.open(batch.out_dir / res.record["poster"])
    assert image.height > image.width  # stored 256x144, shown 144x256


def test_poster_of_a_clip_without_lead_in_is_its_first_frame(batch: RunResult) -> None:
    res = result_for(batch, "landscape_audio.mp4")
    assert read_frame_marker(np.asarray(Image.open(batch.out_dir / res.record["poster"]).convert("RGB"))) == 0


def _thumbnail_run(folder, out, **options):  # noqa: ANN001, ANN201
    from pipeline import Pipeline, run
    from stages import Decode, Thumbnails
    p = Pipeline("thumbs")
    p.add(Thumbnails(**options), after=p.add(Decode(audio=False)))
    return {r.file.relpath: r for r in run(p, folder, out, workers=2).files}


def test_a_count_spreads_pictures_evenly_and_names_follow_the_template(clip_dir, tmp_path) -> None:  # noqa: ANN001
    spec = CLIPS["landscape_audio.mp4"]
    results = _thumbnail_run(clip_dir, tmp_path, count=4, poster=False, height=90, fmt="png",
                             filename="{stem}_{n:02d}_frame{index}")
    assert results["landscape_audio.mp4"].record["thumbnail_count"] == 4
    pictures = sorted((tmp_path / "thumbnails" / "landscape_audio").glob("*.png"))
    times = [spec.seconds * (i + 0.5) / 4 for i in range(4)]
    expected = [round(t * spec.fps) for t in times]
    assert [p.name for p in pictures] == [f"landscape_audio_{i + 1:02d}_frame{f}.png" for i, f in enumerate(expected)]
    for path, frame in zip(pictures, expected):
        image = Image.open(path)
        assert image.format == "PNG" and image.height == 90 and image.width == 160
        assert read_frame_marker(np.asarray(image.convert("RGB"))) == frame


def test_fit_keeps_pictures_inside_a_box_whatever_their_orientation(clip_dir, tmp_path) -> None:  # noqa: ANN001
    _thumbnail_run(clip_dir, tmp_path, every=10.0, poster=False, fit=(100, 100), fmt="webp")
    wide = Image.open(next((tmp_path / "thumbnails" / "landscape_audio").glob("*.webp")))
    tall = Image.open(next((tmp_path / "thumbnails" / "portrait_rot90").glob("*.webp")))
    assert wide.format == "WEBP" and wide.size == (100, 56)
    assert tall.size == (56, 100)


def test_a_name_template_cannot_leave_the_output_folder() -> None:
    from pipeline import OutputError
    from stages import Thumbnails
    with pytest.raises(OutputError, match="not a plain file name"):
        Thumbnails(filename="../../{stem}")
    with pytest.raises(OutputError, match="not a plain file name"):
        Thumbnails(filename="sub/{n}")
