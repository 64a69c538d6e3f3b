"""Bad input, made here, run through ``framepipe run`` beside good clips: every bad file fails alone with one
clear line naming it and what is wrong, the batch completes, and what could be made from a damaged file is kept.
"""

from __future__ import annotations

import os
import struct
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from support.cli import FRAMEPIPE, framepipe

from stages import ClipSpec, make_clip
from stages.samples import read_frame_marker

GOOD = ClipSpec("good.mp4", 160, 90, 3.0, fps=10)  # 30 frames, frame n shown at n / 10 s
LONG_NAME = "L" * 246 + ".mp4"  # 250 bytes; most file systems allow 255
LONGEST_NAME = "T" * 252 + ".ts"  # 255 bytes: its proxy, T...T.mp4, would have 256
ODD_NAME = b"clip\xff\xfe.mp4"  # not UTF-8


def unprivileged_prefix() -> list[str] | None:
    """A command prefix under which a mode-000 file cannot be read; None when there is none here.

    Root reads any file: as root, the batch runs without the capabilities
    that let it (``setpriv``), where the system allows that.
    """
    if os.geteuid() != 0:
        return []
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
              "--inh-caps=-dac_override,-dac_read_search", "--"]
    try:
        works = subprocess.run([*prefix, "true"], capture_output=True).returncode == 0
    except OSError:  # no setpriv
        works = False
    return prefix if works else None


PREFIX = unprivileged_prefix()


# Making bad files ------------------------------------------------------------------------------


def boxes(data: bytes, start: int = 0, end: int | None = None) -> dict[str, tuple[int, int]]:
    """The top-level MP4 boxes between ``start`` and ``end``: type -> (offset, size)."""
    found, at, end = {}, start, len(data) if end is None else end
    while at + 8 <= end:
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        found[kind.decode("latin-1")] = (at, size)
        if size < 8:
            break
        at += size
    return found


def audio_only_copy(src: Path, dst: Path) -> Path:
    """The sound of ``src`` alone, in an MP4."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = out.add_stream_from_template(inp.streams.audio[0])
        for packet in inp.demux(inp.streams.audio[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    return dst


def empty_stream_mp4(dst: Path) -> Path:
    """A fragmented MP4 with an H.264 stream and no packet: what a recorder that died at once leaves."""
    with av.open(str(dst), "w", format="mp4", options={"movflags": "frag_keyframe+empty_moov"}) as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        out.start_encoding()
    return dst


def huge_dims_mkv(dst: Path) -> Path:
    """An FFV1 Matroska file whose header says 65535x65535 (the codec has no size of its own)."""
    clip = make_clip(dst.with_name("ffv1_256.mkv"), ClipSpec("x", 256, 256, 1.0, fps=10, codec="ffv1"))
    data = bytearray(clip.read_bytes())
    clip.unlink()
    for element in (b"\xb0", b"\xba"):  # PixelWidth, PixelHeight: 2-byte values, 256 each
        at = data.index(element + b"\x82\x01\x00")
        data[at + 2:at + 4] = b"\xff\xff"
    dst.write_bytes(bytes(data))
    return dst


def make_inputs(root: Path) -> Path:
    """The folder a batch runs over: good clips beside every kind of bad input."""
    good = make_clip(root / "good.mp4", GOOD)
    data = good.read_bytes()
    make_clip(root / "good_audio.mp4", ClipSpec("good_audio.mp4", 160, 90, 2.0, fps=10, audio=True), seed=1)
    (root / "empty.mp4").write_bytes(b"")
    (root / "random.mp4").write_bytes(np.random.default_rng(1).bytes(50_000))
    (root / "truncated.mp4").write_bytes(data[:len(data) // 3])  # the index, at the end, is cut off
    full = make_clip(root / "faststart.tmp", replace(GOOD, faststart=True)).read_bytes()
    (root / "faststart.tmp").unlink()
    (root / "truncated_data.mp4").write_bytes(full[:len(full) // 2])  # index first and whole, data cut at 1.4 s
    mdat_at, mdat_size = boxes(data)["mdat"]
    middle = mdat_at + mdat_size // 2
    corrupt = bytearray(data)
    corrupt[middle:middle + 2000] = np.random.default_rng(2).bytes(2000)
    (root / "corrupt_packets.mp4").write_bytes(bytes(corrupt))
    empty_stream_mp4(root / "zero_length_stream.mp4")
    audio_only_copy(root / "good_audio.mp4", root / "audio_only.mp4")
    (root / "huge.y4m").write_bytes(b"YUV4MPEG2 W100000 H100000 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(10_000))
    huge_dims_mkv(root / "huge_dims.mkv")
    os.link(good, os.path.join(os.fsencode(root), ODD_NAME))
    os.link(good, root / LONG_NAME)
    os.link(good, root / LONGEST_NAME)  # an MP4 under another suffix: FFmpeg goes by the content
    (root / "folder.mp4").mkdir()
    os.link(good, root / "folder.mp4" / "inside.mp4")
    os.symlink("loop.mp4", root / "loop.mp4")
    os.symlink("missing.mp4", root / "dangling.mp4")
    if PREFIX is not None:
        locked = root / "locked.mp4"
        locked.write_bytes(data)
        locked.chmod(0)
    return root


# What each bad file must give: the line on the console (after "FAILED <name>: ").
FAILURES: dict[str, str] = {
    "empty.mp4": "[metadata] file is empty (0 bytes)",
    "random.mp4": "[metadata] not a readable media file (moov atom not found)",
    "truncated.mp4": "[metadata] not a readable media file (moov atom not found)",
    "truncated_data.mp4": "[decode] truncated: the data ends at 1.40 s of 3.00 s (13 of 30 frames decoded)",
    "zero_length_stream.mp4": "[decode] the video stream is empty (no packets)",
    "huge.y4m": "[metadata] not a readable media file (Picture size 100000x100000 is invalid)",
    "huge_dims.mkv": "[decode] the ffv1 decoder refuses the stream (Picture size 65535x65535 is invalid)",
    "loop.mp4": "[metadata] too many levels of symbolic links",
    "dangling.mp4": "[metadata] no such file",
}
if PREFIX is not None:
    FAILURES["locked.mp4"] = "[metadata] permission denied"
DONE = {"good.mp4", "good_audio.mp4", "corrupt_packets.mp4", "audio_only.mp4", "folder.mp4/inside.mp4",
        LONG_NAME, LONGEST_NAME, "clip\\xff\\xfe.mp4"}


class Batch:
    """One ``framepipe run`` over the bad folder: what it said and the report rows by relpath."""

    def __init__(self, inputs: Path, out: Path) -> None:
        self.inputs, self.out = inputs, out
        args = ["run", str(inputs), "-o", str(out), "-q", "-j", "2", "-O", "thumb_every=0.5", "-O", "thumb_width=160"]
        self.proc = subprocess.run([*(PREFIX or []), *FRAMEPIPE, *args], capture_output=True, text=True, timeout=600)
        self.rows: dict[str, dict[str, Any]] = {
            r["relpath"]: r for r in pq.read_table(out / "report.parquet").to_pylist()}

    def failed_lines(self, name: str) -> set[str]:
        return {line for line in self.proc.stderr.splitlines() if line.startswith(f"FAILED {name}: ")}


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Batch:
    inputs = make_inputs(tmp_path_factory.mktemp("bad-in"))
    return Batch(inputs, tmp_path_factory.mktemp("bad-out"))


def test_the_batch_completes_and_exits_1_with_a_summary(batch: Batch) -> None:
    assert batch.proc.returncode == 1, batch.proc.stderr
    assert "Traceback" not in batch.proc.stderr
    total = len(FAILURES) + len(DONE)
    assert f"{len(DONE)} of {total} files done, {len(FAILURES)} failed" in batch.proc.stdout
    assert set(batch.rows) == set(FAILURES) | DONE


@pytest.mark.parametrize("name", sorted(FAILURES))
def test_each_bad_file_gets_one_clear_line_and_a_failed_row(batch: Batch, name: str) -> None:
    assert batch.failed_lines(name) == {f"FAILED {name}: {FAILURES[name]}"}
    row = batch.rows[name]
    assert row["status"] == "failed"
    assert row["error"] == FAILURES[name]
    assert row["failed_stage"] == FAILURES[name][1:].split("]")[0]


@pytest.mark.parametrize("name", sorted(DONE - {"audio_only.mp4"}))
def test_good_files_and_odd_names_give_every_output(batch: Batch, name: str) -> None:
    row = batch.rows[name]
    assert row["status"] == "ok", row["error"]
    assert row["poster"] and row["proxy"] and row["thumbnail_count"] >= 4
    for rel in row["outputs"]:  # the report escapes what is not UTF-8; the disk has the bytes themselves
        on_disk = os.fsdecode(rel.encode().decode("unicode_escape").encode("latin-1"))
        assert (batch.out / on_disk).is_file(), rel


def frames_in(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(c.streams.video[0]))


def test_a_250_byte_name_keeps_its_name_in_every_output(batch: Batch) -> None:
    row = batch.rows[LONG_NAME]
    key = LONG_NAME.removesuffix(".mp4")
    assert row["proxy"] == f"proxies/{key}.mp4"  # 250 bytes: its hidden part name is cut to fit, not it
    assert row["poster"] == f"thumbnails/{key}/poster.jpg"
    mine = (f"thumbnails/{key}/", f"sprites/{key}/", f"proxies/{key}.mp4")
    assert all(rel.startswith(mine) for rel in row["outputs"])
    assert frames_in(batch.out / row["proxy"]) == 30


def test_a_proxy_name_that_would_pass_255_bytes_is_cut_and_ends_in_a_hash(batch: Batch) -> None:
    proxy = Path(batch.rows[LONGEST_NAME]["proxy"])
    assert proxy.parent.name == "proxies" and proxy.name.startswith("T" * 200) and proxy.suffix == ".mp4"
    assert len(os.fsencode(proxy.name)) == 255 and proxy.stem[-9] == "~"
    assert frames_in(batch.out / proxy) == 30
    assert (batch.out / "thumbnails" / LONGEST_NAME.removesuffix(".ts") / "poster.jpg").is_file()


def test_a_name_that_is_not_utf8_is_shown_escaped_and_kept_on_disk(batch: Batch) -> None:
    assert "ok     clip\\xff\\xfe.mp4  (" in batch.proc.stderr
    assert os.path.isdir(os.path.join(os.fsencode(batch.out), b"thumbnails", ODD_NAME[:-4]))
    assert batch.rows["clip\\xff\\xfe.mp4"]["path"].endswith("clip\\xff\\xfe.mp4")


def thumbnail_markers(out: Path, key: str) -> dict[str, int]:
    """Every picture in ``thumbnails/<key>/``: name -> the frame number burnt into it."""
    return {p.name: read_frame_marker(np.asarray(Image.open(p).convert("L")))
            for p in sorted((out / "thumbnails" / key).iterdir())}


def test_a_truncated_file_keeps_the_thumbnails_of_the_frames_before_the_cut(batch: Batch) -> None:
    row = batch.rows["truncated_data.mp4"]
    assert thumbnail_markers(batch.out, "truncated_data") == {
        "poster.jpg": 0, "t0000.000.jpg": 0, "t0000.500.jpg": 5, "t0001.000.jpg": 10}
    assert sorted(row["outputs"]) == [f"thumbnails/truncated_data/{n}"
                                      for n in ("poster.jpg", "t0000.000.jpg", "t0000.500.jpg", "t0001.000.jpg")]
    assert not (batch.out / "proxies" / "truncated_data.mp4").exists()  # a proxy would be as short: none is left
    assert row["frame_count"] == 30 and row["width"] == 160  # what the index says, from the metadata


def test_corrupt_packets_are_skipped_with_a_warning_on_the_console_and_in_the_report(batch: Batch) -> None:
    row = batch.rows["corrupt_packets.mp4"]
    assert row["status"] == "ok" and row["decode_errors"] >= 1
    warning = next(w for w in row["warnings"] if w.startswith("[decode] "))
    assert "packet(s) failed to decode, the first at " in warning and "of 30 frames decoded" in warning
    line = next(x for x in batch.proc.stderr.splitlines() if x.startswith("ok     corrupt_packets.mp4 "))
    assert f"warning: {warning}" in line
    markers = thumbnail_markers(batch.out, "corrupt_packets")
    assert markers["t0000.500.jpg"] == 5 and markers["t0002.500.jpg"] == 25  # before and after the damage


def test_an_audio_only_file_is_done_without_pictures_under_the_default_preset(batch: Batch) -> None:
    row = batch.rows["audio_only.mp4"]
    assert row["status"] == "ok" and row["has_audio"] and row["width"] is None
    assert row["warnings"][0] == "[decode] no video stream (audio only): no pictures"
    assert row["audio_peak_dbfs"] is not None and row["outputs"] == []
    assert "ok     audio_only.mp4  (" in batch.proc.stderr and "warning: [decode] no video stream" in batch.proc.stderr


def test_an_audio_only_file_fails_a_pictures_only_preset(batch: Batch, tmp_path: Path) -> None:
    proc = framepipe("run", batch.inputs / "audio_only.mp4", "-o", tmp_path, "-q", "-p", "thumbnails")
    assert proc.returncode == 1
    assert "FAILED audio_only.mp4: [decode] no video stream (audio only), and this pipeline decodes no audio" \
        in proc.stderr.splitlines()


def test_a_folder_named_like_a_video_is_walked_as_a_folder(batch: Batch) -> None:
    assert "folder.mp4" not in batch.rows and batch.rows["folder.mp4/inside.mp4"]["status"] == "ok"
    assert (batch.out / "proxies" / "folder.mp4" / "inside.mp4").is_file()

