"""Segment-parallel encoding: a long file's pictures encoded in parts on every worker and joined without
re-encoding give the output one worker gives — the same pictures at the same times, the same sound.

Each run in parts is checked against the same pipeline on one worker (which never cuts a file), by the frame
number every picture carries (``read_frame_marker``), on clips with B-frames and CABAC, an open GOP, a long
GOP with a scene cut, and a variable frame rate.
"""

from __future__ import annotations

from pathlib import Path

import av
import pytest
from support.disks import hidden_files
from support.gop_clips import GopSpec, make_gop_clip

from pipeline import Pipeline, run
from stages import ClipSpec, Decode, Encode, Proxy, make_clip, presets, read_frame_marker

CLIPS = {
    "bframes.mp4": GopSpec("bframes.mp4", 6.0, x264="keyint=25:min-keyint=25:bframes=3:scenecut=0"),
    "open_gop.mkv": GopSpec("open_gop.mkv", 6.0, x264="keyint=25:min-keyint=25:bframes=3:open-gop=1:scenecut=0"),
    "long_gop.mp4": GopSpec("long_gop.mp4", 8.0, x264="keyint=75:min-keyint=25:bframes=3", cut_at=110),
    "vfr.mp4": GopSpec("vfr.mp4", 6.0, x264="keyint=30:min-keyint=30:bframes=2:scenecut=0", vfr_ms=(20, 60)),
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("parts")
    made = {name: make_gop_clip(folder, spec) for name, spec in CLIPS.items()}
    made["sound.mp4"] = make_clip(folder / "sound.mp4", ClipSpec("sound.mp4", 320, 240, 6.0, fps=25, audio=True))
    return made


def encoder_pipeline(encoder: Encode, split_s: float | None = 1.0) -> Pipeline:
    p = Pipeline("encode")
    p.add(encoder, after=p.add(Decode(split_s=split_s)))
    return p


def pictures(path: Path) -> list[tuple[int, float]]:
    """Each picture of the output's video: its frame number (read from its pixels) and its time."""
    with av.open(str(path)) as c:
        return [(read_frame_marker(f.to_ndarray(format="gray")), round(float(f.time), 4)) for f in c.decode(video=0)]


def sound(path: Path) -> list[tuple[int | None, bytes]]:
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return []
        return [(p.pts, bytes(p)) for p in c.demux(audio=0) if p.size]


def both(clip: Path, tmp_path: Path, make: type[Encode] | None = None, **options: object) -> tuple[Path, Path, dict]:
    """The output of one worker and that of a run in parts (two workers), and the latter's report row."""
    outs = []
    record: dict = {}
    for workers in (1, 2):
        encoder = (make or Encode)(preset="veryfast", **options)
        (result,) = run(encoder_pipeline(encoder), clip, tmp_path / f"w{workers}", workers=workers,
                        cache=False).files
        assert result.ok, result.error
        outs.append(tmp_path / f"w{workers}" / result.outputs[0])
        record = result.record
    return outs[0], outs[1], record


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_an_encode_in_parts_gives_the_pictures_and_times_of_one_workers(clips: dict[str, Path], tmp_path: Path,
                                                                       name: str) -> None:
    whole, parted, record = both(clips[name], tmp_path)
    assert record["decode_plan"] == "parts (4)"  # two parts a worker
    expected = pictures(whole)
    assert [n for n, _ in expected] == list(range(len(expected)))  # every source frame, in order
    assert record["frame_count"] == len(expected) <= record["frames_decoded"]  # (a part reads a frame past its end)
    assert pictures(parted) == expected
    assert hidden_files(tmp_path / "w2") == []  # no scratch part is left


def test_the_joined_stream_plays_from_any_keyframe(clips: dict[str, Path], tmp_path: Path) -> None:
    _, parted, _ = both(clips["bframes.mp4"], tmp_path)
    with av.open(str(parted)) as c:
        stream = c.streams.video[0]
        keys = [p for p in c.demux(stream) if p.size and p.is_keyframe]
        dts = [p.dts for p in c.demux(stream) if p.size] if c.seek(0) is None else []
    assert len(keys) >= 4  # each part starts with one
    assert dts == sorted(set(dts))  # decode stamps rise strictly across the joins


@pytest.mark.parametrize("make", [Encode, Proxy], ids=["remuxed", "encoded"])
def test_a_file_in_parts_keeps_the_whole_files_sound(clips: dict[str, Path], tmp_path: Path,
                                                     make: type[Encode]) -> None:
    whole, parted, record = both(clips["sound.mp4"], tmp_path, make)
    assert record.get("encode_audio_remuxed", False) is (make is Encode)
    assert sound(parted) == sound(whole) != []
    assert pictures(parted) == pictures(whole)


def test_a_file_shorter_than_split_s_is_encoded_whole(clips: dict[str, Path], tmp_path: Path) -> None:
    (result,) = run(encoder_pipeline(Encode(preset="veryfast"), split_s=30.0), clips["bframes.mp4"], tmp_path,
                    workers=2, cache=False).files
    assert result.ok and result.record["decode_plan"] == "straight"


def test_the_default_preset_cuts_a_long_files_proxy_and_writes_the_same_files(tmp_path: Path) -> None:
    clip = make_gop_clip(tmp_path, GopSpec("long.mp4", 21.0, fps=10, width=160, height=120,
                                           x264="keyint=10:min-keyint=10:bframes=3:scenecut=0"))
    results = {}
    for workers in (1, 2):
        (results[workers],) = run(presets.default(), clip, tmp_path / f"w{workers}", workers=workers,
                                  cache=False).files
        assert results[workers].ok, results[workers].error
    assert results[2].record["proxy"] == results[1].record["proxy"]
    proxies = [tmp_path / f"w{w}" / results[w].record["proxy"] for w in (1, 2)]
    assert pictures(proxies[1]) == pictures(proxies[0])
    # The pictures of the whole file (thumbnails, sprites) come from a sampled decode of it: the same files.
    assert sorted(results[2].outputs) == sorted(results[1].outputs)
    for rel in results[1].outputs:
        if not rel.endswith(".mp4"):
            assert (tmp_path / "w2" / rel).read_bytes() == (tmp_path / "w1" / rel).read_bytes(), rel
    assert results[2].record["decode_plan"] == "seek"  # the whole file's decode no longer reads every frame
    assert hidden_files(tmp_path / "w2") == []
