"""Sources: folder walks (globs, depth, hidden files, symlink loops), file lists, and file fingerprints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline import FileSelection, find_files, fingerprint, read_file_list
from pipeline.errors import UnreadableFile
from pipeline.run import collect_inputs


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "footage"
    for rel in ["a.MP4", "b.mov", "notes.txt", "day1/c.mp4", "day1/c_proxy.mp4", "day1/deep/d.mkv",
                ".hidden.mp4", ".cache/e.mp4"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(rel.encode())
    os.symlink(root, root / "day1" / "loop")  # a link back up: must not loop
    os.symlink(root / "day1" / "deep", root / "linked_deep")  # a linked folder: walked once
    return root


def rel(paths: list[Path], root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in paths]


VIDEO = (".mp4", ".mov", ".mkv")


def test_a_walk_is_recursive_case_insensitive_skips_hidden_and_ends_symlink_loops(tree: Path) -> None:
    found = rel(find_files(tree, VIDEO), tree)
    assert found == ["a.MP4", "b.mov", "day1/c.mp4", "day1/c_proxy.mp4", "day1/deep/d.mkv"]


def test_hidden_files_and_folders_on_request(tree: Path) -> None:
    found = rel(find_files(tree, VIDEO, include_hidden=True), tree)
    assert ".hidden.mp4" in found and ".cache/e.mp4" in found


def test_include_and_exclude_globs_match_the_relative_path_or_the_name(tree: Path) -> None:
    assert rel(find_files(tree, VIDEO, include=["day1/*"]), tree) == [
        "day1/c.mp4", "day1/c_proxy.mp4", "day1/deep/d.mkv"]
    assert rel(find_files(tree, VIDEO, exclude=["*_proxy.*", "*.mkv"]), tree) == ["a.MP4", "b.mov", "day1/c.mp4"]
    assert rel(find_files(tree, VIDEO, recursive=False), tree) == ["a.MP4", "b.mov"]


def test_a_selection_narrows_a_run_and_a_list_mixes_folders_and_files(tree: Path, tmp_path: Path) -> None:
    items = collect_inputs(tree, VIDEO, select=FileSelection(exclude=("*_proxy.*",), recursive=True))
    assert [i.relpath for i in items] == ["a.MP4", "b.mov", "day1/c.mp4", "day1/deep/d.mkv"]
    mixed = collect_inputs([tree / "day1", tree / "b.mov", tree / "b.mov"], VIDEO)
    assert [i.relpath for i in mixed] == ["day1/c.mp4", "day1/c_proxy.mp4", "day1/deep/d.mkv", "b.mov"]
    assert [i.index for i in mixed] == [0, 1, 2, 3]


def test_a_file_list_skips_blank_lines_and_comments(tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("# shoot day 1\n/media/a.mp4\n\n  /media/b.mov  \n")
    assert read_file_list(listing) == [Path("/media/a.mp4"), Path("/media/b.mov")]
    with pytest.raises(UnreadableFile):
        read_file_list(tmp_path / "missing.txt")


def test_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFile, match="no such file or folder"):
        find_files(tmp_path / "nope", VIDEO)


def test_a_fingerprint_changes_with_the_first_or_last_mib_or_the_size(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    data = bytearray(os.urandom(3 << 20))
    path.write_bytes(data)
    st = path.stat()

    def fp() -> str:
        return fingerprint(path, len(data), st.st_mtime_ns)

    first = fp()
    assert fp() == first  # stable
    for offset in (10, len(data) - 10):
        data[offset] ^= 0xFF
        path.write_bytes(data)
        assert fp() != first
        data[offset] ^= 0xFF
    data[len(data) // 2] ^= 0xFF  # the middle is not read: a cheap identity, not a checksum
    path.write_bytes(data)
    assert fp() == first
    assert fingerprint(path, len(data) + 1, st.st_mtime_ns) != first
