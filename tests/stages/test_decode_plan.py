"""Decode plans: seeking to the keyframe before each wanted frame gives the frames straight through gives.

The plan itself is data (``plan_decode`` over a made-up index, no decoding).
"""

from __future__ import annotations

from fractions import Fraction

from stages.decode_plan import SEEK_WORTH, StreamIndex, plan_decode

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
