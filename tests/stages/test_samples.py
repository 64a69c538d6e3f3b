"""``framepipe samples``: a varied folder of footage, every frame numbered."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from stages import SAMPLE_SET, generate_samples, probe, read_frame_marker
from stages.errors import CorruptMedia


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return generate_samples(tmp_path_factory.mktemp("samples"), scale=0.125, seconds=1.0)


def test_the_set_has_the_promised_variety(samples: list[Path]) -> None:
    infos = {p.name: probe(str(p)) for p in samples if p.name != "broken_truncated.mp4"}
    assert {s.name for s in SAMPLE_SET} == set(infos)
    codecs = {i.video_codec for i in infos.values()}
    assert codecs == {"h264", "vp9"}
    assert any(i.has_audio and i.audio_codec == "aac" for i in infos.values())
    assert any(i.rotation for i in infos.values())
    assert any(i.container.startswith("matroska") for i in infos.values())
    sizes = {(i.width, i.height) for i in infos.values()}
    assert (480, 270) in sizes  # 4K x 0.125


def test_the_broken_sample_does_not_open(samples: list[Path]) -> None:
    broken = next(p for p in samples if p.name == "broken_truncated.mp4")
    with pytest.raises(CorruptMedia):
        probe(str(broken))


@pytest.mark.parametrize("index", range(len(SAMPLE_SET)))
def test_every_frame_carries_its_number(samples: list[Path], index: int) -> None:
    spec = SAMPLE_SET[index]
    with av.open(str(samples[index])) as c:
        for i, frame in enumerate(c.decode(c.streams.video[0])):
            if i < spec.black_frames:
                continue
            assert read_frame_marker(frame.to_ndarray(format="gray")) == i
