"""Proxies: H.264 MP4s within 1280x720, upright, every frame in order, audio carried."""

from __future__ import annotations

import av
import numpy as np
import pytest
from support.clips import CLIPS
from support.runs import result_for

from pipeline import RunResult
from stages import read_frame_marker


@pytest.mark.parametrize("relpath", list(CLIPS))
def test_proxy_decodes_at_the_expected_size_with_every_frame_in_order(batch: RunResult, relpath: str) -> None:
    spec = CLIPS[relpath]
    res = result_for(batch, relpath)
    path = batch.out_dir / res.record["proxy"]
    assert path.suffix == ".mp4"
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        assert v.codec_context.name == "h264"
        turned = spec.rotation % 180 != 0
        shown = (spec.height, spec.width) if turned else (spec.width, spec.height)
        expected = tuple(d - d % 2 for d in shown)  # no upscale; even for 4:2:0
        assert (v.codec_context.width, v.codec_context.height) == expected
        markers = []
        for i, frame in enumerate(c.decode(v)):
            if i >= spec.black_frames and i % 7 == 0:
                gray = frame.to_ndarray(format="gray")
                if turned:  # the proxy is upright: turn it back to read the marker
                    gray = np.rot90(gray, k=1)
                markers.append((i, read_frame_marker(gray)))
        assert i + 1 == round(spec.seconds * spec.fps)
        assert all(i == m for i, m in markers), markers
    if spec.audio:
        with av.open(str(path)) as c:
            a = c.streams.audio[0]
            assert a.codec_context.name == "aac"
            assert a.rate == 48000
            assert sum(f.samples for f in c.decode(a)) >= 48000 * spec.seconds * 0.95


def test_large_sources_are_scaled_to_fit_720p(batch: RunResult) -> None:
    res = result_for(batch, "sub/odd_854x480.mp4")
    assert (res.record["proxy_width"], res.record["proxy_height"]) == (854, 480)  # within the box: kept
    assert res.record["proxy"] == "proxies/sub/odd_854x480.mp4"


def test_passthrough_copies_a_source_that_already_is_a_proxy(clip_dir, tmp_path) -> None:  # noqa: ANN001
    from pipeline import run
    from stages import presets

    result = run(presets.default(proxy_passthrough=True), clip_dir, tmp_path, workers=2)
    by_name = {r.file.relpath: r for r in result.files}
    copied = by_name["landscape_audio.mp4"]
    assert copied.record["proxy_passthrough"] is True
    assert (tmp_path / copied.record["proxy"]).read_bytes() == (clip_dir / "landscape_audio.mp4").read_bytes()
    # rotated, or not H.264 in MP4: re-encoded as usual
    assert by_name["portrait_rot90.mp4"].record["proxy_passthrough"] is False
    assert by_name["web_vp9.webm"].record["proxy_passthrough"] is False
