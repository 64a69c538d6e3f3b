"""Preset options with values they do not take: one line naming the option and what it accepts, exit 2, and
nothing done — no output folder, no cache, no worker — before the first file would have been touched."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from support.cli import FRAMEPIPE

from pipeline import FramepipeError, PipelineDefinitionError
from pipeline.errors import InvalidOption
from pipeline.presets import Option, available_presets, option_specs, preset_options
from stages import Encode, Proxy, SpriteSheet, Thumbnails, presets

X264 = "ultrafast, superfast, veryfast, faster, fast, medium, slow, slower, veryslow, placebo"
PRORES = "auto, proxy, lt, standard, hq, 4444, 4444xq"

# (preset, -O options, the one line the command says): every kind of option, and each kind of mistake.
REFUSED = [
    # numbers: below, above, not finite, not a number, not an integer
    ("default", ["thumb_every=-1"], "option thumb_every=-1: must be a number, 0 or more"),
    ("default", ["thumb_every=nan"], "option thumb_every=nan: must be a number, 0 or more"),
    ("default", ["thumb_every=inf"], "option thumb_every=inf: must be a number, 0 or more"),
    ("thumbnails", ["thumb_every=soon"], "option thumb_every=soon: must be a number, 0 or more"),
    ("default", ["thumb_width=100000"], "option thumb_width=100000: must be an integer from 16 to 8192"),
    ("default", ["thumb_width=8"], "option thumb_width=8: must be an integer from 16 to 8192"),
    ("default", ["thumb_width=wide"], "option thumb_width=wide: must be an integer from 16 to 8192"),
    ("default", ["thumb_width=320.5"], "option thumb_width=320.5: must be an integer from 16 to 8192"),
    ("thumbnails", ["thumb_count=-1"], "option thumb_count=-1: must be an integer from 0 to 10000"),
    ("thumbnails", ["thumb_count=1000000"], "option thumb_count=1000000: must be an integer from 0 to 10000"),
    ("default", ["sprite_every=0"], "option sprite_every=0: must be a number above 0"),
    ("default", ["sprite_width=4"], "option sprite_width=4: must be an integer from 8 to 1024"),
    ("default", ["sprite_columns=0"], "option sprite_columns=0: must be an integer from 1 to 32"),
    ("sprites", ["sprite_rows=33"], "option sprite_rows=33: must be an integer from 1 to 32"),
    ("sprites", ["sprite_count=-3"], "option sprite_count=-3: must be an integer from 0 to 10000"),
    ("sprites", ["sprite_every=0"], "option sprite_every=0: must be above 0 when sprite_count is 0"),
    ("default", ["proxy_width=0"], "option proxy_width=0: must be an integer from 16 to 8192"),
    ("proxies", ["proxy_height=100000"], "option proxy_height=100000: must be an integer from 16 to 8192"),
    ("proxies", ["proxy_crf=52"], "option proxy_crf=52: must be an integer from 0 to 51"),
    ("default", ["proxy_crf=-1"], "option proxy_crf=-1: must be an integer from 0 to 51"),
    # choices
    ("default", ["thumb_format=gif"], "option thumb_format=gif: must be one of jpg, jpeg, png, webp"),
    ("proxies", ["proxy_preset=fastest"], f"option proxy_preset=fastest: must be one of {X264}"),
    ("transcode", ["profile=tiny"], "option profile=tiny: must be one of proxy, edit, web, archive"),
    ("transcode", ["audio=copy"], "option audio=copy: must be one of auto, encode, off"),
    # booleans
    ("default", ["sprites=maybe"], "option sprites=maybe: must be true or false"),
    ("default", ["proxy_passthrough=2"], "option proxy_passthrough=2: must be true or false"),
    ("metadata", ["audio_levels="], "option audio_levels=: must be true or false"),
    ("thumbnails", ["keyframes_only=fast"], "option keyframes_only=fast: must be true or false"),
    # values with a meaning of their own, and what the profile's codec takes
    ("transcode", ["max_width=8"], "option max_width=8: must be 0 (the profile's) or an integer from 16 to 8192"),
    ("transcode", ["crf=-2"], "option crf=-2: must be -1 (the profile's) or an integer from 0 to 63"),
    ("transcode", ["crf=60"],
     "option crf=60: must be -1 (the profile's) or an integer from 0 to 51 for the web profile's libx264"),
    ("transcode", ["profile=edit", "crf=20"],
     "option crf=20: must be left out: the edit profile's prores_ks has no constant-quality mode"),
    ("transcode", ["preset=fastest"], f"option preset=fastest: must be one of {X264} for the web profile's libx264"),
    ("transcode", ["profile=edit", "preset=4445"],
     f"option preset=4445: must be one of {PRORES} for the edit profile's prores_ks"),
    ("transcode", ["profile=archive", "preset=fast"],
     "option preset=fast: must be left out: the archive profile's ffv1 has no preset"),
    ("transcode", ["category=../elsewhere"], "option category=../elsewhere: must be \"\" (the profile's) or a folder "
                                             "name inside the output folder (relative, no '..')"),
    # names and form
    ("metadata", ["levels=true"], "preset 'metadata' has no option 'levels' "
                                  "(options: audio_levels, video_stream, audio_stream)"),
    ("default", ["thumb_width"], "option 'thumb_width' is not KEY=VALUE"),
]


def refused(clip_dir: Path, tmp_path: Path, preset: str, options: list[str]) -> subprocess.CompletedProcess[str]:
    """``framepipe run CLIPS -o OUT -p preset -O ...`` with a cache folder of its own."""
    env = dict(os.environ, FRAMEPIPE_CACHE_DIR=str(tmp_path / "cache"))
    args = ["run", str(clip_dir), "-o", str(tmp_path / "out"), "-p", preset]
    for option in options:
        args += ["-O", option]
    return subprocess.run([*FRAMEPIPE, *args], capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize("preset, options, line", REFUSED, ids=[" ".join(c[1]) or c[0] for c in REFUSED])
def test_a_bad_option_is_one_line_exit_2_and_nothing_is_done(clip_dir: Path, tmp_path: Path, preset: str,
                                                             options: list[str], line: str) -> None:
    proc = refused(clip_dir, tmp_path, preset, options)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"framepipe: {line}"]  # not even the "N file(s) from IN -> OUT" line
    assert proc.stdout == ""
    assert not (tmp_path / "out").exists()  # no output folder, no lock, no ledger: no run began
    assert not (tmp_path / "cache").exists()  # no cache opened: no file was looked at


def test_values_in_range_other_spellings_and_special_values_are_taken() -> None:
    from pipeline import build_preset
    p = build_preset("default", {"thumb_format": "PNG", "thumb_every": "0", "sprites": "off", "proxy_crf": "0",
                                 "proxy_preset": "VeryFast", "thumb_width": "8192", "sprite_every": "0.5"})
    assert p.stages["thumbnails"].fmt == "png" and p.stages["thumbnails"].width == 8192
    assert p.stages["proxy"].preset == "veryfast" and "sprite_sheet" not in p.stages
    t = build_preset("transcode", {"max_width": "0", "crf": "-1", "preset": "", "category": "renders/web",
                                   "profile": "edit"})
    assert (t.stages["transcode"].max_width, t.stages["transcode"].crf, t.stages["transcode"].preset) == (
        None, None, "hq")
    assert t.stages["transcode"].category == "renders/web"


def test_every_installed_preset_declares_what_each_option_accepts_and_its_default_passes() -> None:
    for name, factory in available_presets().items():
        specs = option_specs(factory)
        for key, default in preset_options(factory).items():
            spec = specs[key]
            assert spec.help and spec.accepts, f"{name}: {key} says nothing of itself"
            assert spec.check(default) == default, f"{name}: {key}'s default is not one it accepts"
        assert factory() is not None


def test_presets_lists_what_each_option_accepts() -> None:
    listing = subprocess.run([*FRAMEPIPE, "presets"], capture_output=True, text=True, timeout=120).stdout
    lines = listing.splitlines()
    width = "-O thumb_width=320 thumbnail width in pixels: an integer from 16 to 8192"
    assert any(" ".join(line.split()) == width for line in lines)
    assert any(line.split()[:2] == ["-O", "sprites=true"] and line.endswith(": true or false") for line in lines)
    assert any(line.split()[:2] == ["-O", "thumb_format=jpg"] and line.endswith("one of jpg, jpeg, png, webp")
               for line in lines)
    options = sum(len(preset_options(f)) for f in available_presets().values())
    assert sum(line.lstrip().startswith("-O ") for line in lines) == options


@pytest.mark.parametrize("call, message", [
    (lambda: presets.default(thumb_width=100000), "option thumb_width=100000: must be an integer from 16 to 8192"),
    (lambda: presets.thumbnails(thumb_every=-1), "option thumb_every=-1: must be a number, 0 or more"),
    (lambda: presets.default(sprites="yes"), "option sprites=yes: must be true or false"),
    (lambda: presets.transcode(profile="tiny"), "option profile=tiny: must be one of proxy, edit, web, archive"),
    (lambda: Thumbnails(width=100000), "Thumbnails width=100000: must be an integer from 16 to 8192"),
    (lambda: Thumbnails(every=-1.0), "Thumbnails every=-1.0: must be a number, 0 or more"),
    (lambda: Thumbnails(fit=(8, 100)), "Thumbnails fit width=8: must be an integer from 16 to 8192"),
    (lambda: Thumbnails(quality=0), "Thumbnails quality=0: must be an integer from 1 to 100"),
    (lambda: SpriteSheet(columns=0), "SpriteSheet columns=0: must be an integer from 1 to 32"),
    (lambda: SpriteSheet(tile_width=2000), "SpriteSheet tile_width=2000: must be an integer from 8 to 1024"),
    (lambda: Encode(crf=60), "Encode crf=60: must be a number from 0 to 51 for libx264"),
    (lambda: Encode(codec="libvpx-vp9", extension=".webm", crf=64),
     "Encode crf=64: must be an integer from 0 to 63 for libvpx-vp9"),
    (lambda: Encode(codec="libvpx-vp9", extension=".webm", preset="9"),
     "Encode preset='9': must be an integer from -8 to 8 for libvpx-vp9"),
    (lambda: Encode(codec="prores_ks", extension=".mov", crf=20),
     "Encode crf=20: must be left out (prores_ks has no constant-quality mode)"),
    (lambda: Encode(codec="ffv1", extension=".mkv", preset="fast"), "Encode preset='fast': must be left out (ffv1 "
                                                                     "has no preset)"),
    (lambda: Encode(gop=-1), "Encode gop=-1: must be an integer, 0 or more"),
    (lambda: Encode(category="../up"), "Encode category='../up': must be a folder name inside the output folder "
                                       "(relative, no '..')"),
    (lambda: Proxy(max_width=100000), "Proxy max_width=100000: must be an integer from 16 to 8192"),
    (lambda: Proxy(preset="fastest"), f"Proxy preset='fastest': must be one of {X264} for libx264"),
])
def test_library_calls_get_the_same_early_error(call, message: str) -> None:  # noqa: ANN001
    with pytest.raises(InvalidOption) as caught:
        call()
    assert str(caught.value) == message
    assert isinstance(caught.value, (PipelineDefinitionError, FramepipeError, ValueError))


def test_an_option_spec_reads_as_it_checks() -> None:
    spec = Option(float, above=0, max=10)
    assert spec.accepts == "a number above 0, up to 10"
    assert spec.parse("10") == 10.0 and spec.check(3) == 3.0
    for bad in ("0", "10.5", "-inf", "nan", "x"):
        with pytest.raises(ValueError):
            spec.parse(bad)
    with pytest.raises(ValueError):
        Option(int, min=0).check(True)  # a bool is not a count
    assert Option(int, min=16, special={0: "none"}).parse("0") == 0
    assert Option(str, choices=("a", "B")).parse("b") == "B"
