"""Atomic outputs and their names: a hidden part name always fits in 255 bytes and is swept when left; a final
name that does not fit fails its file with one line naming it."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from pipeline import FILE, Pipeline, Stage, StageContext, run, write_atomic
from pipeline.outputs import NAME_MAX, PartialOutput, as_output_error, fit_name, sweep_partial_outputs

FINAL_NAMES = {
    "short": "clip.mp4",
    "250 bytes": "L" * 246 + ".mp4",
    "255 bytes": "L" * 251 + ".mp4",
    "255 bytes, no suffix": "N" * 255,
    "two-byte characters": "é" * 125 + ".mp4",  # 254 bytes: a cut must not split one
    "a long suffix": "x." + "y" * 253,
}


def name_bytes(path: Path) -> int:
    return len(os.fsencode(path.name))


@pytest.mark.parametrize("name", FINAL_NAMES.values(), ids=FINAL_NAMES.keys())
def test_a_part_name_fits_keeps_the_suffix_and_commits_to_the_whole_final_name(tmp_path: Path, name: str) -> None:
    out = PartialOutput(tmp_path / name)
    assert out.part.parent == tmp_path and out.part.name.startswith(".")
    assert name_bytes(out.part) <= NAME_MAX
    if name.endswith(".mp4"):
        assert out.part.name.endswith(".fp-part.mp4")  # writers that pick a format from the suffix still see it
    out.part.write_bytes(b"data")  # the file system takes the name
    assert out.commit() == tmp_path / name
    assert (tmp_path / name).read_bytes() == b"data" and os.listdir(tmp_path) == [name]


@pytest.mark.parametrize("name", FINAL_NAMES.values(), ids=FINAL_NAMES.keys())
def test_a_part_file_left_behind_is_swept_whatever_its_name(tmp_path: Path, name: str) -> None:
    (tmp_path / "sub").mkdir()
    PartialOutput(tmp_path / "sub" / name).part.write_bytes(b"half")
    (tmp_path / "sub" / "kept.mp4").write_bytes(b"whole")
    assert sweep_partial_outputs(tmp_path) == 1
    assert os.listdir(tmp_path / "sub") == ["kept.mp4"]


def test_long_names_cut_alike_stay_apart_and_keep_whole_characters() -> None:
    a, b = fit_name("L" * 300 + "a.mp4"), fit_name("L" * 300 + "b.mp4")
    assert a != b and len(a) == len(b) == NAME_MAX and a.endswith(".mp4") and a[-13] == "~"
    cut = fit_name("é" * 200 + ".mp4")
    assert len(os.fsencode(cut)) <= NAME_MAX and cut.encode()  # valid UTF-8: no half character
    assert fit_name("clip.mp4") == "clip.mp4" and fit_name("N" * 255) == "N" * 255


def test_a_write_error_on_a_cut_part_name_names_the_final_file(tmp_path: Path) -> None:
    final = tmp_path / ("L" * 250 + ".mp4")
    out = PartialOutput(final)
    error = as_output_error(OSError(errno.ENOSPC, "No space left on device", str(out.part)))  # as a muxer raises
    assert str(error) == f"cannot write {final}: No space left on device"


class Named(Stage):
    """Writes OUT/named/<file>/<what the file says> (a name as long as its text)."""

    accepts = (FILE,)

    def __init__(self) -> None:
        super().__init__("named")

    def process(self, item, ctx: StageContext) -> None:  # noqa: ANN001
        ctx.add_output(write_atomic(ctx.output_path("named", Path(item.path).read_text()), b"x"))


def test_a_final_name_over_255_bytes_fails_its_file_with_one_line_naming_it(tmp_path: Path) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "fits.txt").write_text("n" * 255)
    (inp / "long.txt").write_text("n" * 256)
    p = Pipeline("named", extensions=[".txt"])
    p.add(Named())
    out = tmp_path / "out"
    result = run(p, inp, out, workers=1, cache=False)

    fits, long = result.files
    assert fits.ok and fits.outputs == [f"named/fits/{'n' * 255}"]
    assert long.error_type == "OutputError"
    assert long.summary_line() == (f"FAILED long.txt: [named] cannot write {out.resolve()}/named/long/{'n' * 256}: "
                                   "its name is 256 bytes, more than the 255 a file name may have")
    assert not (out / "named" / "long").exists()  # refused before anything was made for it
