"""Colour end to end: HDR tone-mapped for stills and proxies, colour tags on every output, sRGB-tagged pictures.

The expected pictures are computed here from the standards' formulas (ST 2084,
BT.2100 HLG, Hable as FFmpeg's vf_tonemap, BT.1886's gamma 2.4), independently of
``stages.colour``; the fixture clips' patch code values are exact (lossless x265).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image
from support import hdr_clips

from pipeline import FileResult, Pipeline, RunResult, run
from stages import ClipSpec, Decode, Encode, Thumbnails, VideoFrameItem, frame_to_image, make_clip, presets
from stages.colour import Colour, srgb_icc_profile
from stages.decode import decode_file
from stages.frames import wrap_pixels

GREY_TOLERANCE = 3  # code values (8-bit) between a tone-mapped patch and the formula
HDR10, HLG, SDR709, UNTAGGED_SD, ODD_TRANSFER = "hdr10.mp4", "hlg.mp4", "sdr709.mp4", "untagged_sd.mp4", "log.mp4"
SDR_SPECS = {
    SDR709: ClipSpec(SDR709, 320, 180, 1.0, fps=10, color_primaries="bt709", color_trc="bt709", colorspace="bt709"),
    UNTAGGED_SD: ClipSpec(UNTAGGED_SD, 320, 180, 1.0, fps=10),
}


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """HDR10 (PQ, mastering display, MaxCLL) and HLG patch clips; SDR BT.709-tagged and untagged clips."""
    root = tmp_path_factory.mktemp("colour_src")
    hdr_clips.make_hdr_clip(root / HDR10, "smpte2084")
    hdr_clips.make_hdr_clip(root / HLG, "arib-std-b67")
    for i, spec in enumerate(SDR_SPECS.values()):
        make_clip(root / spec.name, spec, seed=i)
    return root


@pytest.fixture(scope="module")
def batch(sources: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """The default preset (PNG thumbnails at the source width, JPEG sprites, tone-mapped proxies), two workers."""
    out = tmp_path_factory.mktemp("colour_out")
    return run(presets.default(thumb_format="png", thumb_width=320, thumb_every=0.5, audio=False), sources, out,
               workers=2, cache=False)


@pytest.fixture(scope="module")
def keep_batch(sources: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """The proxies preset with proxy_hdr=keep."""
    out = tmp_path_factory.mktemp("colour_keep")
    return run(presets.proxies(proxy_hdr="keep", audio=False), sources, out, workers=2, cache=False)


def result(batch: RunResult, relpath: str) -> FileResult:
    found = next(r for r in batch.files if r.file.relpath == relpath)
    assert found.ok, found.error
    return found


# The operator, written from the standards -------------------------------------------

def _linear(signal: np.ndarray, transfer: str) -> np.ndarray:
    """Non-linear BT.2020 R'G'B' (... x 3) to display light, 1.0 = 100 nits."""
    if transfer == "smpte2084":
        m1, m2 = 0.1593017578125, 78.84375
        c1, c2, c3 = 0.8359375, 18.8515625, 18.6875
        p = np.power(signal, 1 / m2)
        return np.power(np.maximum(p - c1, 0) / (c2 - c3 * p), 1 / m1) * 100.0
    a = 0.17883277
    b, c = 1 - 4 * a, 0.5 - a * np.log(4 * a)
    scene = np.where(signal <= 0.5, signal ** 2 / 3, (np.exp((signal - c) / a) + b) / 12)
    ys = scene @ np.array([0.2627, 0.6780, 0.0593])
    return scene * (ys ** 0.2)[..., None] * 10.0  # OOTF of a 1000-nit display


def expected_rgb(codes: tuple[int, int, int], transfer: str, peak: float) -> np.ndarray:
    """8-bit BT.709 R'G'B' that a patch of 10-bit limited Y'CbCr ``codes`` must become."""
    y, cb, cr = (codes[0] - 64) / 876, (codes[1] - 512) / 896, (codes[2] - 512) / 896
    kr, kb = 0.2627, 0.0593
    r = y + 2 * (1 - kr) * cr
    b = y + 2 * (1 - kb) * cb
    g = (y - kr * r - kb * b) / (1 - kr - kb)
    linear = _linear(np.clip(np.array([r, g, b]), 0, 1), transfer)
    to709 = np.linalg.solve(hdr_clips.BT709_TO_XYZ, hdr_clips.BT2020_TO_XYZ)
    linear = np.maximum(to709 @ linear, 0)

    def hable(x: float) -> float:
        return (x * (x * 0.15 + 0.05) + 0.004) / (x * (x * 0.15 + 0.5) + 0.06) - 0.02 / 0.3

    sig = max(linear.max(), 1e-6)
    linear = np.clip(linear * hable(sig) / hable(peak) / sig, 0, 1)
    return np.round(linear ** (1 / 2.4) * 255)  # for a BT.1886 display, as zscale's t=bt709


def patch_means(picture: np.ndarray) -> list[np.ndarray]:
    """Each patch's mean RGB over a 16 x 16 block at its centre (a full-size picture)."""
    return [picture[y - 8:y + 8, x - 8:x + 8].reshape(-1, 3).mean(axis=0) for x, y in hdr_clips.patch_centres()]


def poster(batch: RunResult, relpath: str) -> Image.Image:
    return Image.open(batch.out_dir / result(batch, relpath).record["poster"])


# Stills ----------------------------------------------------------------------------

@pytest.mark.parametrize("relpath, transfer, peak", [(HDR10, "smpte2084", hdr_clips.MAX_CLL / 100),
                                                      (HLG, "arib-std-b67", 10.0)])
def test_hdr_grey_patches_are_tone_mapped_as_the_formula_says(batch: RunResult, relpath: str, transfer: str,
                                                                peak: float) -> None:
    got = patch_means(np.asarray(poster(batch, relpath).convert("RGB"), dtype=float))
    codes = hdr_clips.patch_codes(transfer)
    for nits, mean, code in zip(hdr_clips.GREY_NITS, got, codes):
        want = expected_rgb(code, transfer, peak)
        assert np.abs(mean - want).max() <= GREY_TOLERANCE, (nits, mean, want)
    # brighter light, brighter picture; the 1000-nit patch is the peak: white
    greys = [m.mean() for m in got[:len(hdr_clips.GREY_NITS)]]
    assert greys == sorted(greys) and greys[-1] >= 250


@pytest.mark.parametrize("relpath, transfer, peak", [(HDR10, "smpte2084", 10.0), (HLG, "arib-std-b67", 10.0)])
def test_the_colour_patch_keeps_its_hue(batch: RunResult, relpath: str, transfer: str, peak: float) -> None:
    got = patch_means(np.asarray(poster(batch, relpath).convert("RGB"), dtype=float))[-1]
    want = expected_rgb(hdr_clips.patch_codes(transfer)[-1], transfer, peak)
    assert np.abs(got - want).max() <= GREY_TOLERANCE, (got, want)
    assert got[0] > got[1] > got[2]  # an orange stays an orange

    def hue(rgb: np.ndarray) -> float:
        r, g, b = rgb
        return float(np.degrees(np.arctan2(np.sqrt(3) * (g - b), 2 * r - g - b)))

    assert abs(hue(got) - hue(want)) < 3.0


def test_every_hdr_picture_carries_an_srgb_icc_profile(batch: RunResult) -> None:
    profile = srgb_icc_profile()
    for relpath in (HDR10, HLG, SDR709):
        pictures = sorted((batch.out_dir / "thumbnails" / Path(relpath).stem).iterdir())
        pictures += sorted((batch.out_dir / "sprites" / Path(relpath).stem).glob("sheet_*.jpg"))
        assert len(pictures) >= 3
        for path in pictures:
            assert Image.open(path).info.get("icc_profile") == profile, path


def test_an_hdr_poster_is_no_longer_washed_out(batch: RunResult, sources: Path) -> None:
    """Shown as SDR without tone-mapping, PQ code values look grey and flat; tone-mapped, darks are dark."""
    with av.open(str(sources / HDR10)) as c:
        naive = next(c.decode(video=0)).reformat(format="rgb24", src_colorspace="bt2020").to_ndarray()
    mapped = np.asarray(poster(batch, HDR10).convert("RGB"), dtype=float)
    assert mapped.std() > naive.std() + 10  # more contrast
    assert patch_means(mapped)[0].mean() < patch_means(naive.astype(float))[0].mean() - 8  # darks are dark


def test_sdr_bt709_stills_are_converted_as_before(batch: RunResult, sources: Path) -> None:
    with av.open(str(sources / SDR709)) as c:
        first = next(c.decode(video=0))
        assert first.colorspace == 1  # tagged BT.709: PyAV converts a local frame with its tags
        before = first.reformat(format="rgb24").to_ndarray().astype(int)
    now = np.asarray(poster(batch, SDR709).convert("RGB"), dtype=int)
    assert np.abs(now - before).max() <= 1


def _crossed(item: VideoFrameItem) -> VideoFrameItem:
    """``item`` as another process sees it: pixels only (a wrapped frame has no tags, no side data)."""
    return VideoFrameItem(wrap_pixels(item.array(), item.format), item.index, item.time, item.rotation, item.stream)


def test_an_untagged_hd_frame_from_another_process_is_read_as_bt709(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "hd.mp4", ClipSpec("hd.mp4", 1280, 720, 0.1, fps=10))
    item = next(i for i in decode_file(clip, audio=False))
    assert item.stream.colour == Colour("bt709", "bt709", "bt709", "tv")  # the guess for HD
    far = _crossed(item)
    assert far.frame.colorspace == 2  # unspecified: swscale alone would take BT.601
    got = np.asarray(frame_to_image(far), dtype=int)
    bt709 = item.frame.reformat(format="rgb24", src_colorspace="itu709", src_color_range="MPEG").to_ndarray()
    bt601 = item.frame.reformat(format="rgb24", src_colorspace="itu601", src_color_range="MPEG").to_ndarray()
    assert np.abs(got - bt709.astype(int)).max() <= 1
    assert np.abs(got - bt601.astype(int)).max() > 3  # the test tells the two apart


def test_an_hdr_frame_from_another_process_is_tone_mapped_the_same(sources: Path) -> None:
    item = next(i for i in decode_file(sources / HDR10, audio=False))
    assert item.stream.colour is not None and item.stream.colour.max_cll == hdr_clips.MAX_CLL
    here, there = np.asarray(frame_to_image(item)), np.asarray(frame_to_image(_crossed(item)))
    # Equal but on the patches' edges: a wrapped frame also loses its chroma siting (PyAV 18 does not
    # expose it), so swscale upsamples chroma a little differently there.
    assert np.array_equal(patch_means(here.astype(float)), patch_means(there.astype(float)))
    assert (here != there).any(axis=-1).mean() < 0.01


def test_side_data_is_read_from_the_first_frame(sources: Path) -> None:
    with av.open(str(sources / HDR10)) as c:
        colour = Colour.from_frame(next(c.decode(video=0)))
    assert (colour.primaries, colour.transfer, colour.matrix, colour.range) == ("bt2020", "smpte2084", "bt2020nc",
                                                                                "tv")
    m = colour.mastering
    assert m is not None
    assert (m.green, m.blue, m.red, m.white_point) == ((0.265, 0.69), (0.15, 0.06), (0.68, 0.32), (0.3127, 0.329))
    assert (m.max_nits, m.min_nits) == (1000.0, 0.005)
    assert (colour.max_cll, colour.max_fall) == (hdr_clips.MAX_CLL, hdr_clips.MAX_FALL)
    assert not colour.dolby_vision


@pytest.mark.parametrize("width, height, pix_fmt, expected", [
    (1920, 1080, "yuv420p", ("bt709", "bt709", "bt709", "tv")),
    (1280, 536, "yuv420p", ("bt709", "bt709", "bt709", "tv")),
    (720, 576, "yuv420p", ("bt470bg", "smpte170m", "bt470bg", "tv")),
    (720, 480, "yuvj420p", ("smpte170m", "smpte170m", "smpte170m", "pc")),
    (640, 360, "rgb24", ("smpte170m", "smpte170m", "gbr", "pc")),
])
def test_untagged_pictures_get_the_guess_players_make(width: int, height: int, pix_fmt: str,
                                                      expected: tuple[str, ...]) -> None:
    c = Colour.guess(width, height, pix_fmt)
    assert (c.primaries, c.transfer, c.matrix, c.range) == expected


def test_an_unknown_transfer_warns_once_and_is_shown_as_sdr(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "log.mp4", ClipSpec("log.mp4", 320, 180, 1.0, fps=10, color_primaries="bt709",
                                                   color_trc="log100", colorspace="bt709"))
    p = Pipeline("odd")
    p.add(Thumbnails(every=0.2, fmt="png"), after=p.add(Decode(audio=False)))
    (res,) = run(p, src, tmp_path / "out", executor="inline", cache=False).files
    assert res.ok, res.error
    assert res.record["thumbnail_count"] == 5
    assert [w for w in res.warnings if "log100" in w] == [
        "[thumbnails] colour transfer 'log100' is not converted: pictures are shown as if it were BT.709"]


# Video outputs ---------------------------------------------------------------------

def first_frame_tags(path: Path) -> tuple[Any, ...]:
    """The codec, pixel format and (primaries, transfer, matrix, range) codes a decoder reads back."""
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
        return (c.streams.video[0].codec_context.name, frame.format.name, frame.color_primaries, frame.color_trc,
                frame.colorspace, frame.color_range)


@pytest.mark.parametrize("relpath, expected", [
    (HDR10, ("h264", "yuv420p", 1, 1, 1, 1)),  # tone-mapped: BT.709
    (HLG, ("h264", "yuv420p", 1, 1, 1, 1)),
    (SDR709, ("h264", "yuv420p", 1, 1, 1, 1)),  # the source's
    (UNTAGGED_SD, ("h264", "yuv420p", 6, 6, 6, 1)),  # the guess for 320x180: BT.601 (smpte170m)
])
def test_every_proxy_carries_colour_tags(batch: RunResult, relpath: str, expected: tuple[Any, ...]) -> None:
    assert first_frame_tags(batch.out_dir / result(batch, relpath).record["proxy"]) == expected


def test_a_tone_mapped_proxy_shows_the_patches_as_the_stills_do(batch: RunResult) -> None:
    with av.open(str(batch.out_dir / result(batch, HDR10).record["proxy"])) as c:
        frame = next(c.decode(video=0))
        rgb = frame.reformat(format="rgb24", src_colorspace="itu709", src_color_range="MPEG").to_ndarray()
    still = np.asarray(poster(batch, HDR10).convert("RGB"), dtype=float)
    for got, want in zip(patch_means(rgb.astype(float)), patch_means(still)):
        assert np.abs(got - want).max() <= 4  # x264 (crf 23) and 4:2:0 on flat patches


def test_a_kept_hdr_proxy_is_10_bit_hevc_with_its_tags_and_mastering_metadata(keep_batch: RunResult) -> None:
    path = keep_batch.out_dir / result(keep_batch, HDR10).record["proxy"]
    assert first_frame_tags(path) == ("hevc", "yuv420p10le", 9, 16, 9, 1)
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_tag == "hvc1"
        colour = Colour.from_frame(next(c.decode(video=0)))
    assert colour.mastering is not None
    assert (colour.mastering.max_nits, colour.mastering.min_nits) == (1000.0, 0.005)
    assert colour.mastering.red == (0.68, 0.32) and colour.mastering.white_point == (0.3127, 0.329)
    assert (colour.max_cll, colour.max_fall) == (hdr_clips.MAX_CLL, hdr_clips.MAX_FALL)


def test_a_kept_hlg_proxy_stays_hlg_and_sdr_sources_stay_h264(keep_batch: RunResult) -> None:
    assert first_frame_tags(keep_batch.out_dir / result(keep_batch, HLG).record["proxy"]) == (
        "hevc", "yuv420p10le", 9, 18, 9, 1)
    assert first_frame_tags(keep_batch.out_dir / result(keep_batch, SDR709).record["proxy"]) == (
        "h264", "yuv420p", 1, 1, 1, 1)


def encode(src: Path, out: Path, **options: Any) -> Path:
    p = Pipeline("encode-colour")
    p.add(Encode(**options), after=p.add(Decode(audio=False)))
    (res,) = run(p, src, out, executor="inline", cache=False).files
    assert res.ok, res.error
    return out / res.record["encode"]


@pytest.mark.parametrize("options, expected", [
    (dict(codec="prores_ks", extension=".mov"), ("prores", "yuv422p10le", 9, 16, 9, 1)),  # auto: 10 bits keep
    (dict(codec="ffv1", extension=".mkv"), ("ffv1", "yuv420p10le", 9, 16, 9, 1)),  # the source's 10 bits: keep
    (dict(codec="libx264"), ("h264", "yuv420p", 1, 1, 1, 1)),  # auto: 8 bits tone-map
    (dict(codec="prores_ks", extension=".mov", hdr="tonemap"), ("prores", "yuv422p10le", 1, 1, 1, 1)),
    (dict(codec="libx264", hdr="keep"), ("h264", "yuv420p", 9, 16, 9, 1)),
])
def test_encode_keeps_or_tone_maps_hdr_as_asked(sources: Path, tmp_path: Path, options: dict[str, Any],
                                                expected: tuple[Any, ...]) -> None:
    assert first_frame_tags(encode(sources / HDR10, tmp_path, **options)) == expected


@pytest.mark.parametrize("codec, extension", [("libx264", ".mp4"), ("prores_ks", ".mov"), ("ffv1", ".mkv"),
                                              ("libvpx-vp9", ".webm")])
def test_transcodes_of_sdr_sources_carry_the_source_tags(sources: Path, tmp_path: Path, codec: str,
                                                        extension: str) -> None:
    _, _, *tags = first_frame_tags(encode(sources / SDR709, tmp_path, codec=codec, extension=extension))
    assert tags == [1, 1, 1, 1]


# Report columns --------------------------------------------------------------------

def test_metadata_reports_mastering_luminance_and_light_levels(batch: RunResult) -> None:
    rec = result(batch, HDR10).record
    assert (rec["mastering_max_nits"], rec["mastering_min_nits"]) == (1000.0, 0.005)
    assert (rec["max_cll"], rec["max_fall"]) == (hdr_clips.MAX_CLL, hdr_clips.MAX_FALL)
    assert rec["hdr"] is True
    for relpath in (HLG, SDR709):
        rec = result(batch, relpath).record
        assert [rec[k] for k in ("mastering_max_nits", "mastering_min_nits", "max_cll", "max_fall")] == [None] * 4


# Against FFmpeg ---------------------------------------------------------------------

def _ffmpeg_with_zscale() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        pytest.skip("no ffmpeg command")
    filters = subprocess.run([exe, "-hide_banner", "-filters"], capture_output=True, text=True).stdout
    if " zscale " not in filters:
        pytest.skip("this ffmpeg has no zscale filter")
    return exe


CLI_TOLERANCE = 1.5  # mean absolute difference, 8-bit code values, over the whole poster


def test_the_poster_matches_ffmpegs_zscale_and_hable(batch: RunResult, sources: Path, tmp_path: Path) -> None:
    exe = _ffmpeg_with_zscale()
    png = tmp_path / "ffmpeg.png"
    chain = ("zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,tonemap=hable:desat=0,"
             "zscale=t=bt709:m=bt709:r=full,format=gbrp")
    subprocess.run([exe, "-v", "error", "-i", str(sources / HDR10), "-vf", chain, "-frames:v", "1", str(png)],
                   check=True)
    theirs = np.asarray(Image.open(png).convert("RGB"), dtype=float)
    ours = np.asarray(poster(batch, HDR10).convert("RGB"), dtype=float)
    assert np.abs(theirs - ours).mean() <= CLI_TOLERANCE


# Real footage -----------------------------------------------------------------------

def test_ten_bit_hevc_footage_is_read_with_its_tags(footage: Path, tmp_path: Path) -> None:
    path = footage / "torchcodec_h265_10bits.mp4"
    if not path.is_file():
        pytest.skip("torchcodec_h265_10bits.mp4 is not in the footage folder")
    item = next(i for i in decode_file(path, audio=False))
    colour = item.stream.colour
    assert colour is not None
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
        assert colour == Colour.from_frame(frame)
    picture = np.asarray(frame_to_image(_crossed(item)))
    assert picture.shape == (200, 200, 3) and picture.std() > 5
    out = encode(path, tmp_path, codec="libx264")
    _, fmt, *tags = first_frame_tags(out)
    expected = Colour.guess(200, 200) if not colour.hdr else Colour("bt709", "bt709", "bt709", "tv")
    assert fmt == "yuv420p" and tags[3] == expected.codes()["color_range"]
