"""Zero-copy file I/O: mapped reads share memory with the page cache; transfers move every byte."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from pipeline.dataplane.buffers import BufferPool
from pipeline.dataplane.zerocopy import MappedFile, iter_chunks, read_into, transfer
from pipeline.items import fingerprint


@pytest.fixture()
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.bin"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 3_000_001, dtype=np.uint8).tobytes())
    return path


def test_mapped_file_reads_chunks_as_views_and_tracks_its_position(data_file: Path) -> None:
    data = data_file.read_bytes()
    with MappedFile(data_file) as f:
        assert f.size == len(f) == len(data)
        first = f.read(10)
        assert isinstance(first, memoryview) and first.readonly and bytes(first) == data[:10]
        assert f.position == 10
        chunks = list(f.chunks(1 << 20))
        assert b"".join(bytes(c) for c in chunks) == data[10:]
        assert f.tell() == f.size and f.read(5).nbytes == 0
        f.seek(-4, os.SEEK_END)
        assert bytes(f.read()) == data[-4:]
        for view in (first, *chunks):
            view.release()


def test_copy_on_write_views_can_be_edited_without_touching_the_file(data_file: Path) -> None:
    before = data_file.read_bytes()
    with MappedFile(data_file, copy_on_write=True) as f:
        view = f.view(0, 4)
        view[:] = b"EDIT"
        assert bytes(f.view(0, 4)) == b"EDIT"
        view.release()
    assert data_file.read_bytes() == before


def test_empty_files_map_to_nothing(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    with MappedFile(tmp_path / "empty") as f:
        assert f.size == 0 and list(f.chunks()) == []


def test_iter_chunks_reads_files_bytes_and_mapped_files_alike(data_file: Path) -> None:
    data = data_file.read_bytes()
    with open(data_file, "rb") as fobj:
        from_file = b"".join(bytes(c) for c in iter_chunks(fobj, 1 << 20))
    with MappedFile(data_file) as mf:
        from_map = b"".join(bytes(c) for c in iter_chunks(mf, 1 << 20))
    assert from_file == from_map == b"".join(bytes(c) for c in iter_chunks(data, 999)) == data


def test_read_into_fills_a_pool_slot_straight_from_the_file(data_file: Path) -> None:
    data = data_file.read_bytes()
    with BufferPool(1 << 20, 1) as pool, pool.acquire() as lease:
        fd = os.open(data_file, os.O_RDONLY)
        try:
            n = read_into(fd, lease.buffer(), 5)
        finally:
            os.close(fd)
        assert n == 1 << 20
        assert lease.array((n,)).tobytes() == data[5:5 + n]


@pytest.mark.parametrize("method", ["auto", "copy_file_range", "sendfile", "splice", "copy"])
def test_transfer_moves_every_byte_by_each_method(data_file: Path, tmp_path: Path, method: str) -> None:
    dst = tmp_path / f"copy-{method}.bin"
    moved = transfer(data_file, dst, method=method)  # type: ignore[arg-type]
    assert moved == data_file.stat().st_size
    assert dst.read_bytes() == data_file.read_bytes()


def test_transfer_of_a_range_between_open_files(data_file: Path, tmp_path: Path) -> None:
    with open(data_file, "rb") as src, open(tmp_path / "part.bin", "wb") as dst:
        src.seek(100)
        assert transfer(src, dst, length=1000) == 1000
    assert (tmp_path / "part.bin").read_bytes() == data_file.read_bytes()[100:1100]


def test_fingerprint_changes_with_content_at_either_end(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    payload = bytearray(5 << 20)
    path.write_bytes(payload)
    st = path.stat()
    base = fingerprint(path, st.st_size, st.st_mtime_ns)
    payload[-1] = 1
    path.write_bytes(payload)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert fingerprint(path, st.st_size, st.st_mtime_ns) != base
