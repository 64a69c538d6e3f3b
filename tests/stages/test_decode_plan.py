"""Decode plans: seeking to the keyframe before each wanted frame gives the frames straight through gives.

The plan itself is data (``plan_decode`` over a made-up index, no decoding);
a planned decode is checked against ``plan="straight"`` on clips with B-frames
and CABAC, long GOPs with a scene cut, an open GOP, and a variable frame rate,
by the frame number each picture carries.
"""

from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from support.clips import assert_same_outputs
from support.gop_clips import GopSpec, keyframe_times, make_gop_clip

from pipeline import FileItem, FileRun, Pipeline, run
from stages import Decode, Sampling, SpriteSheet, Thumbnails, presets, read_frame_marker
from stages.decode import decode_file
from stages.decode_plan import SEEK_WORTH, StreamIndex, plan_decode
from stages.frames import VideoFrameItem

CLIPS = {
    # 12 s at 25 fps: a keyframe every 3 s, and one at the scene cut (7.6 s); a black lead-in for the poster.
    "long_gop.mp4": GopSpec("long_gop.mp4", 12.0, x264="keyint=75:min-keyint=25:bframes=3", black_frames=6,
                            cut_at=190),
    # Open GOPs: the B-frames before each keyframe (in presentation order) are decoded after it.
    "open_gop.mkv": GopSpec("open_gop.mkv", 10.0, x264="keyint=50:min-keyint=50:bframes=3:open-gop=1:scenecut=0"),
    # Frames lasting 20 ms and 60 ms in turn: 25 fps on average, no frame on most ticks.
    "vfr.mp4": GopSpec("vfr.mp4", 10.0, x264="keyint=60:min-keyint=60:bframes=2:scenecut=0", vfr_ms=(20, 60)),
    # A keyframe every 12 frames: denser than the samples of the tests below.
    "short_gop.mp4": GopSpec("short_gop.mp4", 4.0, x264="keyint=12:min-keyint=12:bframes=3:scenecut=0"),
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("gops")
    return {name: make_gop_clip(folder, spec) for name, spec in CLIPS.items()}


def decode(path: Path, **options: object) -> tuple[list[VideoFrameItem], dict]:
    run_ = FileRun(FileItem.from_path(path, None), path.parent / "out", path.stem)
    frames = [x for x in decode_file(path, run=run_, audio=False, **options) if isinstance(x, VideoFrameItem)]
    return frames, run_.record


def shown(frames: list[VideoFrameItem]) -> list[tuple[int, int, float]]:
    """Each frame's number (read from its pixels), the number it carries, and its time."""
    return [(read_frame_marker(f.array("gray")), f.index, round(f.time, 6)) for f in frames]


# The plan, as data --------------------------------------------------------------------------------------------

def gop_index(frames: int, gop: int, bframes: int = 0) -> StreamIndex:
    """A closed-GOP stream at 25 fps: a keyframe every ``gop`` frames, runs of ``bframes`` B-frames between."""
    packets = []
    for start in range(0, frames, gop):
        n, order, i = min(gop, frames - start), [0], 1
        while i < n:  # decode order: the reference after a run of B-frames, then the run
            ref = min(i + bframes, n - 1)
            order += [ref, *range(i, ref)]
            i = ref + 1
        packets += [(start + k, k == 0, False) for k in order]
    return StreamIndex.from_packets(packets, Fraction(1, 25), 0.0)


def test_the_index_lists_frames_in_presentation_order_timed_as_the_decode_times_them() -> None:
    index = StreamIndex.from_packets([(0, True, False), (3, False, False), (1, False, False), (2, False, True)],
                                     Fraction(1, 25), 0.5)
    assert index.shown == (0, 2, 1)  # the discarded packet shows nothing
    assert index.times == (float(Fraction(0, 25)) - 0.5, float(Fraction(1, 25)) - 0.5, float(Fraction(3, 25)) - 0.5)
    assert index.keyframes == (0,) and index.usable


def test_sparse_frames_in_long_groups_are_reached_by_seeking() -> None:
    index = gop_index(1000, 250, bframes=3)
    plan = plan_decode(index, [0, 300, 600, 900])
    assert plan.kind == "seek"
    assert [s.seek for s in plan.steps] == [None, 250, 500, 750]
    assert plan.frames <= SEEK_WORTH * plan.straight_frames and plan.straight_frames > 900


def test_frames_denser_than_the_groups_are_decoded_straight_through() -> None:
    plan = plan_decode(gop_index(300, 12, bframes=3), list(range(0, 300, 5)))
    assert plan.kind == "straight" and plan.seeks == 0 and plan.frames == plan.straight_frames


def test_a_frame_in_the_group_being_read_is_read_on_to_never_sought_back() -> None:
    plan = plan_decode(gop_index(1000, 250), [0, 260, 300, 520])
    assert [s.seek for s in plan.steps] == [None, 250, None, 500]


def test_a_leading_picture_of_an_open_gop_is_decoded_from_the_keyframe_before() -> None:
    # Decode order I0 P3 B1 B2 | I6 B4 B5 P9 B7 B8: B4 and B5 are shown before I6 but decoded after it.
    pts = [0, 3, 1, 2, 6, 4, 5, 9, 7, 8]
    index = StreamIndex.from_packets([(p, p in (0, 6), False) for p in pts], Fraction(1, 25), 0.0)
    assert index.keyframe_for(4) == 0  # frame 4 (B4) needs I0's group
    assert index.keyframe_for(6) == 4 and index.keyframe_for(8) == 4  # frames 6 and 8 start from I6 (packet 4)


def test_no_wanted_frame_plans_no_step_and_stops_after_the_lead() -> None:
    plan = plan_decode(gop_index(100, 25), [])
    assert (plan.kind, plan.steps, plan.frames) == ("seek", (), 0)


# Planned decodes give the frames straight through gives ------------------------------------------------------

OPTIONS = {
    "thumbnails": {"sampling": (Sampling(every=3.0, poster_search_s=10.0),)},
    "sprites and count": {"sampling": (Sampling(count=4, poster_search_s=10.0), Sampling(every=2.5, last=True))},
    "fps": {"fps": 0.3},
    "every_nth": {"every_nth": 37},
    "range": {"start": 2.3, "end": 8.1, "sampling": (Sampling(every=2.0),)},
}


@pytest.mark.parametrize("clip", ["long_gop.mp4", "open_gop.mkv", "vfr.mp4", "short_gop.mp4"])
@pytest.mark.parametrize("options", list(OPTIONS))
def test_a_planned_decode_gives_the_frames_straight_through_gives(clips: dict[str, Path], clip: str,
                                                                  options: str) -> None:
    straight, straight_record = decode(clips[clip], plan="straight", **OPTIONS[options])
    planned, record = decode(clips[clip], **OPTIONS[options])
    assert straight and shown(planned) == shown(straight)
    assert straight_record["decode_plan"] == "straight"
    assert record["frames_decoded"] <= straight_record["frames_decoded"]
    if record["decode_plan"] == "seek":
        assert record["frames_decoded"] < straight_record["frames_decoded"]


def test_the_clips_have_what_they_are_made_for(clips: dict[str, Path]) -> None:
    import av
    with av.open(str(clips["long_gop.mp4"])) as c:
        types = {int(f.pict_type) for f in c.decode(video=0)}
    assert 3 in types  # B-frames
    assert keyframe_times(clips["long_gop.mp4"]) == pytest.approx([0.0, 3.0, 6.0, 7.6, 10.6])
    frames, _ = decode(clips["vfr.mp4"], plan="straight")
    steps = np.diff([f.time for f in frames])
    assert steps.min() == pytest.approx(0.02, abs=1e-6) and steps.max() == pytest.approx(0.06, abs=1e-6)


def test_sparse_samples_on_long_gops_seek_and_decode_fewer_frames(clips: dict[str, Path]) -> None:
    straight, straight_record = decode(clips["long_gop.mp4"], plan="straight", sampling=(Sampling(every=4.0),))
    planned, record = decode(clips["long_gop.mp4"], sampling=(Sampling(every=4.0),))
    assert [m for m, _, _ in shown(planned)] == [0, 100, 200] == [m for m, _, _ in shown(straight)]
    assert (record["decode_plan"], straight_record["decode_plan"]) == ("seek", "straight")
    assert straight_record["frames_decoded"] == 300
    assert record["frames_decoded"] <= 300 / 2


def test_samples_denser_than_the_gops_are_decoded_straight_through(clips: dict[str, Path]) -> None:
    frames, record = decode(clips["short_gop.mp4"], sampling=(Sampling(every=0.2),))
    assert [m for m, _, _ in shown(frames)] == list(range(0, 100, 5))
    assert record["decode_plan"] == "straight" and record["frames_decoded"] == 100


def test_a_time_range_is_kept_by_a_planned_decode(clips: dict[str, Path]) -> None:
    straight, _ = decode(clips["long_gop.mp4"], start=4.3, end=11.0, fps=0.25, plan="straight")
    frames, record = decode(clips["long_gop.mp4"], start=4.3, end=11.0, fps=0.25)
    assert shown(frames) == shown(straight) and len(frames) == 2  # the frames shown at 4.3 s and 8.3 s
    assert all(4.3 - 0.021 <= f.time < 11.0 for f in frames)
    assert record["decode_plan"] == "seek"


def test_a_seek_that_lands_elsewhere_gives_up_the_plan_and_the_same_frames(
        clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import stages.decode

    def past_the_end(index: StreamIndex, packet: int) -> int:
        return index.pts[index.keyframes[-1]]  # a later keyframe than the one asked for

    straight, _ = decode(clips["long_gop.mp4"], plan="straight", sampling=(Sampling(every=4.0),))
    monkeypatch.setattr(stages.decode, "seek_target", past_the_end)
    run_ = FileRun(FileItem.from_path(clips["long_gop.mp4"], None), clips["long_gop.mp4"].parent, "x")
    frames = [x for x in decode_file(clips["long_gop.mp4"], run=run_, audio=False, sampling=(Sampling(every=4.0),))]
    assert shown(frames) == shown(straight)
    assert run_.record["decode_plan"] == "straight"
    assert any("seek plan was given up" in w for w in run_.warnings)


def test_a_plan_is_not_made_where_sound_or_every_frame_is_needed(clips: dict[str, Path]) -> None:
    assert decode(clips["long_gop.mp4"], fps=0.25, deinterlace="bwdif")[1]["decode_plan"] == "straight"
    assert decode(clips["long_gop.mp4"], fps=0.25, plan="straight")[1]["frames_decoded"] == 300
    with pytest.raises(ValueError, match="plan"):
        Decode(plan="sometimes")


# The presets write what a straight decode would have them write -------------------------------------------------

def test_a_proxy_keeps_one_straight_decode_and_pictures_alone_are_sampled() -> None:
    assert presets.default().stages["decode"].sampling == ()  # a proxy needs every frame: one straight decode
    thumbs, sheet = Thumbnails(every=2.0), SpriteSheet(every=2.0)
    assert presets.default(proxy=False).stages["decode"].sampling == (thumbs.sampling(), sheet.sampling())
    assert presets.thumbnails().stages["decode"].sampling == (thumbs.sampling(),)
    assert presets.sprites().stages["decode"].sampling == (sheet.sampling(),)


def _by_hand(name: str, deinterlace: str, pictures: list[Thumbnails | SpriteSheet]) -> Pipeline:
    p = Pipeline(name)
    decode_stage = p.add(Decode(audio=False, deinterlace=deinterlace, plan="straight"))
    for stage in pictures:
        p.add(stage, after=decode_stage)
    return p


PRESETS = {
    "thumbnails": (lambda: presets.thumbnails(thumb_every=3.0),
                   lambda: _by_hand("thumbnails", "first_field", [Thumbnails(every=3.0, width=320)])),
    "sprites": (lambda: presets.sprites(sprite_count=5, sprite_columns=3),
                lambda: _by_hand("sprites", "first_field", [SpriteSheet(count=5, columns=3)])),
    "default": (lambda: presets.default(proxy=False, audio=False, thumb_every=4.0, sprite_every=3.0),
                lambda: _by_hand("default", "auto", [Thumbnails(every=4.0), SpriteSheet(every=3.0)])),
}


@pytest.mark.parametrize("preset", list(PRESETS))
def test_a_preset_writes_the_pictures_a_straight_decode_would(clips: dict[str, Path], tmp_path: Path,
                                                             preset: str) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(clips["long_gop.mp4"], folder / "long_gop.mp4")
    planned, straight = PRESETS[preset]
    result = run(planned(), folder, tmp_path / "planned", workers=1, cache=False)
    reference = run(straight(), folder, tmp_path / "straight", workers=1, cache=False)
    assert [f.status for f in result.files + reference.files] == ["ok", "ok"]
    assert result.files[0].record["decode_plan"] == "seek"
    assert result.files[0].record["frames_decoded"] < reference.files[0].record["frames_decoded"] == 300
    assert_same_outputs(tmp_path / "planned", tmp_path / "straight", frames=0)
