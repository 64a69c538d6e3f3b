"""``StageTimeline``: a session's stage work gathered into few spans, on a clock the test drives."""

from __future__ import annotations

import pytest

from pipeline.observe.stage_timeline import WINDOW_S, StageSpan, StageTimeline


class Frames:
    """The frames each stage has done so far, as a session counts them."""

    def __init__(self) -> None:
        self.done = {"decode": 0, "thumbs": 0}

    def __call__(self, stage: str) -> int:
        return self.done[stage]


def test_a_window_lays_its_stages_end_to_end_from_its_start_each_as_long_as_its_work() -> None:
    frames = Frames()
    timeline = StageTimeline(["decode", "thumbs"], frames)
    for i in range(3):  # the stages take turns frame by frame
        t = 1.0 + i * 0.01
        frames.done["decode"] += 1
        timeline.work("decode", t, t + 0.004)
        frames.done["thumbs"] += 1
        timeline.work("thumbs", t + 0.004, t + 0.005)
    (decode, thumbs) = timeline.take()
    assert (decode.stage, decode.start, decode.frames, decode.first) == ("decode", 1.0, 3, 0)
    assert decode.end - decode.start == pytest.approx(0.012)
    assert thumbs.start == decode.end and thumbs.end - thumbs.start == pytest.approx(0.003)
    assert decode.args() == {"stage": "decode", "frames": 3, "first": 0, "last": 2}
    assert timeline.take() == []  # handed over once


def test_a_window_closes_after_its_wall_time_so_spans_grow_with_time_not_frames() -> None:
    frames = Frames()
    timeline = StageTimeline(["decode", "thumbs"], frames)
    step = WINDOW_S / 50
    for i in range(1000):  # 1000 frames over 20 windows
        frames.done["decode"] += 1
        timeline.work("decode", i * step, (i + 0.5) * step)
    spans = timeline.take()
    assert 19 <= len(spans) <= 21
    assert sum(s.frames for s in spans) == 1000
    assert [s.first for s in spans] == [sum(p.frames for p in spans[:k]) for k in range(len(spans))]
    assert all(b.start >= a.end for a, b in zip(spans, spans[1:], strict=False))  # in order, none overlapping


def test_a_stage_that_only_worked_has_no_frames_and_frames_counted_late_still_get_a_span() -> None:
    frames = Frames()
    timeline = StageTimeline(["decode", "thumbs"], frames)
    timeline.work("thumbs", 2.0, 2.5)  # a begin() or an end(): work without frames
    (worked,) = timeline.take()
    assert worked == StageSpan("thumbs", 2.0, 2.5, 0, 0) and worked.args() == {"stage": "thumbs", "frames": 0}
    frames.done["decode"] = 4  # counted after the last work
    assert timeline.take() == [StageSpan("decode", 2.5, 2.5, 4, 0)]
