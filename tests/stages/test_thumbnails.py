"""Thumbnails: JPEGs at the requested size that show the frame they are named for."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import CLIPS, result_for
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
