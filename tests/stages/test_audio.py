"""Audio levels: peak and RMS of each file in dBFS, from any sample format."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline import AUDIO, Pipeline, Stage, run
from stages import ClipSpec, Decode, make_clip
from stages.audio import AudioLevels, dbfs, float_samples


def levels(folder: Path, out: Path, **decode: object) -> dict[str, dict]:
    p = Pipeline("levels")
    p.add(AudioLevels(), after=p.add(Decode(**decode)))  # type: ignore[arg-type]
    return {r.file.relpath: r.record for r in run(p, folder, out, workers=2).files}


def test_a_tone_of_amplitude_0_2_measures_minus_17_dbfs_rms(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    make_clip(folder / "tone.mp4", ClipSpec("tone.mp4", 160, 90, 2.0, audio=True))  # 0.2 x sine per channel
    make_clip(folder / "mute.mp4", ClipSpec("mute.mp4", 160, 90, 1.0, audio=False))
    for options in ({}, {"audio_rate": 16000, "audio_layout": "mono"}):
        rec = levels(folder, tmp_path / str(len(options)), **options)
        assert rec["tone.mp4"]["audio_rms_dbfs"] == pytest.approx(20 * np.log10(0.2 / np.sqrt(2)), abs=0.3)
        assert -14.5 < rec["tone.mp4"]["audio_peak_dbfs"] < 0.0  # the sine's peak, plus AAC's overshoot
        assert rec["mute.mp4"]["audio_peak_dbfs"] is None and rec["mute.mp4"]["audio_rms_dbfs"] is None


@pytest.mark.parametrize("fmt", ["s16", "s16p", "s32", "flt", "fltp", "dbl", "u8"])
def test_float_samples_scales_every_sample_format_to_plus_minus_one(fmt: str) -> None:
    half = np.array([[0.5, -0.5, 0.25, 0.0], [0.5, -0.5, 0.25, 0.0]], dtype=np.float32)
    frame = av.AudioFrame.from_ndarray(half, format="fltp", layout="stereo")
    frame.sample_rate, frame.pts, frame.time_base = 8000, 0, Fraction(1, 8000)
    converted = av.AudioResampler(format=fmt, layout="stereo", rate=8000).resample(frame)[0]
    back = float_samples(converted)
    assert back.shape == (2, 4)
    assert np.allclose(back, half, atol=0.01)


def test_dbfs() -> None:
    assert dbfs(1.0) == 0.0
    assert dbfs(0.5) == pytest.approx(-6.02, abs=0.01)
    assert dbfs(0.0) is None


class HalfGain(Stage):
    """A stateless audio stage: runs on map workers, the blocks crossing in pool slots."""

    accepts = (AUDIO,)
    emits = (AUDIO,)
    stateful = False

    def process(self, item, ctx):  # noqa: ANN001, ANN201
        yield item.with_samples(item.samples() * 0.5)


def test_audio_blocks_cross_to_map_workers_in_slots_and_come_back_in_order(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    make_clip(folder / "tone.mp4", ClipSpec("tone.mp4", 160, 90, 2.0, audio=True))
    records = {}
    for executor in ("local", "inline"):
        p = Pipeline("gain")
        decode = p.add(Decode(audio_rate=48000, audio_layout="stereo", audio_block_s=0.25))
        p.add(AudioLevels(name="plain"), after=decode)
        gain = p.add(HalfGain("gain"), after=decode)
        p.add(AudioLevels(prefix="halved_", name="halved"), after=gain)
        assert gain.is_map
        result = run(p, folder, tmp_path / executor, executor=executor, workers=2)
        assert result.files[0].ok, result.files[0].error
        records[executor] = result.files[0].record
    assert records["local"] == records["inline"]
    rec = records["local"]
    assert rec["halved_rms_dbfs"] == pytest.approx(rec["audio_rms_dbfs"] - 6.0206, abs=1e-3)
    assert rec["halved_peak_dbfs"] == pytest.approx(rec["audio_peak_dbfs"] - 6.0206, abs=1e-3)
