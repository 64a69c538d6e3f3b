"""Planning a decode from the file's index: straight through, or a seek to the keyframe before each wanted frame.

A ``Decode`` that gives only some frames (``fps=``, ``every_nth``, the frames
its consumers ask for with ``sampling``) need not decode the others. Before
any frame is decoded, one demux-only pass over the video stream's packets
(no decoding; an MP4's are listed in its moov) says where every frame and
every keyframe is, in decode and in presentation order (:class:`StreamIndex`).
``Decode`` runs its own pickers over the times of those frames to find the
ones it will give, and :func:`plan_decode` weighs, for each of them in turn,
reading on from where the decoder is against seeking to the keyframe before
it and decoding from there::

    index ─► wanted frames ─► per frame: read on, or seek ─┬─► "seek": far fewer frames decoded, ending at the last
                                                            └─► "straight": one pass to the end, as without a plan

Straight through wins where the wanted frames are denser than the keyframes:
every seek decodes from its keyframe, so two wanted frames in one group of
pictures are reached by reading on, never by seeking back. The plan is data,
checked by the tests without decoding; ``Decode`` carries it out, checks as it
goes that the frames come where the index says, and decodes straight through
where they do not.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from pipeline import InputError

from .damage import VideoDamage, read_packets
from .media import open_media

__all__ = ["StreamIndex", "Step", "DecodePlan", "scan_index", "plan_decode", "seek_target", "PLANNED_FORMATS",
           "SEEK_COST_FRAMES", "SEEK_WORTH"]

PLANNED_FORMATS = frozenset({"mp4", "matroska"})
"""Containers whose seeks land on the keyframe asked for (an index of sync samples or cues): FFmpeg's names."""

SEEK_COST_FRAMES = 6
"""What one seek costs, in frames decoded: the decoder is flushed and its frame threads fill again."""
SEEK_WORTH = 0.8
"""A file is decoded by seeking only when that decodes at most this share of what straight through would
(the estimate leaves out the frames a decoder holds back for reordering; a near tie goes straight)."""


@dataclass(frozen=True, slots=True)
class StreamIndex:
    """One video stream's packets in decode order, and its frames in presentation order, read without decoding.

    Packet ``n`` has stamp ``pts[n]`` and is a keyframe when ``keyframe[n]``;
    frame ``k`` (presentation order, the packets the demuxer marks discarded
    left out) comes from packet ``shown[k]`` and is given at ``times[k]``
    seconds, reckoned as ``Decode`` reckons a frame's time.
    """

    time_base: Fraction
    pts: tuple[int, ...]
    keyframe: tuple[bool, ...]
    shown: tuple[int, ...]
    times: tuple[float, ...]
    keyframes: tuple[int, ...]  # the keyframes' packet numbers

    @classmethod
    def from_packets(cls, packets: Sequence[tuple[int, bool, bool]], time_base: Fraction,
                     origin: float) -> StreamIndex:
        """From ``(pts, keyframe, discarded)`` per packet in decode order; ``origin`` is the file's time origin."""
        pts = tuple(p for p, _, _ in packets)
        shown = tuple(sorted((n for n, (_, _, discard) in enumerate(packets) if not discard), key=pts.__getitem__))
        keyframe = tuple(k for _, k, _ in packets)
        return cls(time_base, pts, keyframe, shown, tuple(float(pts[n] * time_base) - origin for n in shown),
                   tuple(n for n, key in enumerate(keyframe) if key))

    @property
    def usable(self) -> bool:
        """Whether a plan may rely on it: a keyframe first, and every frame's stamp its own."""
        return bool(self.pts) and self.keyframe[0] and len(set(self.pts)) == len(self.pts)

    def frame_of(self) -> dict[int, int]:
        """Each frame's presentation number by its stamp."""
        return {self.pts[n]: k for k, n in enumerate(self.shown)}

    def packet_of(self) -> dict[int, int]:
        """Each packet's number (decode order) by its stamp."""
        return {p: n for n, p in enumerate(self.pts)}

    def keyframe_for(self, frame: int) -> int:
        """The packet of the keyframe a decode of ``frame`` starts from: the last before it that shows no later.

        A frame shown before the keyframe that precedes it in decode order
        (a leading picture of an open GOP) needs the keyframe before that one.
        """
        packet = self.shown[frame]
        keys = self.keyframes
        i = bisect.bisect_right(keys, packet) - 1
        while i > 0 and self.pts[keys[i]] > self.pts[packet]:
            i -= 1
        return keys[max(i, 0)]


def scan_index(path: str, stream_index: int, origin: float) -> StreamIndex | None:
    """The index of ``path``'s stream ``stream_index`` from a demux-only pass; None where no plan should use one.

    None for a container not in ``PLANNED_FORMATS``, a packet without a stamp
    or marked corrupt, two packets with one stamp, data that stops short of the
    end the file states (the straight decode judges such a file), or no keyframe first.
    """
    try:
        with open_media(path, probe=False) as container:
            if not PLANNED_FORMATS & set(container.format.name.split(",")):
                return None
            stream = container.streams[stream_index]
            damage = VideoDamage(path, container, stream)
            packets = []
            for packet in read_packets(container, [stream], damage):
                if not packet.size:
                    continue  # the empty packet read_packets ends with
                if packet.pts is None or packet.is_corrupt:
                    return None
                damage.packet(packet)
                packets.append((packet.pts, bool(packet.is_keyframe), bool(packet.is_discard)))
            if damage.read_error:
                return None
            damage.verdict(len(packets), to_the_end=True)  # raises for a file cut short
            if not stream.time_base:
                return None
            index = StreamIndex.from_packets(packets, stream.time_base, origin)
    except InputError:
        return None
    return index if index.usable else None


@dataclass(frozen=True, slots=True)
class Step:
    """Decode on until frame ``until`` (presentation order) has come out; first seek to packet ``seek``, if set."""

    until: int
    seek: int | None = None


@dataclass(frozen=True, slots=True)
class DecodePlan:
    """How one file is decoded: ``"seek"`` (follow ``steps``) or ``"straight"``, and the frames each decodes.

    A seek plan's decode seeks where a step says and ends when the last
    step's frame is out (with no step, as soon as what is decoded first is
    out); a straight one reads every packet to the end.
    """

    kind: str
    steps: tuple[Step, ...]
    frames: int  # packets the plan hands the decoder, a seek counted as SEEK_COST_FRAMES more
    straight_frames: int  # packets straight through hands it: every one from the start on

    @property
    def seeks(self) -> int:
        return sum(step.seek is not None for step in self.steps)


def plan_decode(index: StreamIndex, wanted: Sequence[int], start: int = 0) -> DecodePlan:
    """The cheaper way to decode frames ``wanted`` (presentation numbers, ascending) from packet ``start`` on.

    For each wanted frame, in order: read on from where the decoder is, or
    seek to its keyframe when decoding from there, plus ``SEEK_COST_FRAMES``,
    is cheaper (a frame in the group of pictures being read is always read on
    to). The file is decoded so when that, ending at the last wanted frame,
    decodes at most ``SEEK_WORTH`` of what one pass to the end would.
    """
    through = len(index.pts) - start
    position, cost, steps = start, 0, []
    for frame in wanted:
        need = index.shown[frame] + 1  # packets up to and including the frame's own
        key = index.keyframe_for(frame)
        on, jump = max(0, need - position), need - key + SEEK_COST_FRAMES
        if key > position and jump < on:
            steps.append(Step(frame, key))
            cost, position = cost + jump, need
        else:
            steps.append(Step(frame))
            cost, position = cost + on, max(position, need)
    if cost <= SEEK_WORTH * through:
        return DecodePlan("seek", tuple(steps), cost, through)
    return DecodePlan("straight", (), through, through)


def seek_target(index: StreamIndex, packet: int) -> int:
    """The timestamp (stream time base) to seek to for keyframe ``packet``: its own presentation stamp.

    MP4 looks sync samples up by decode stamp and Matroska cues by presentation
    stamp: either way the last keyframe at or before this one's presentation
    stamp is this one (``Decode`` checks where the seek landed).
    """
    return index.pts[packet]

