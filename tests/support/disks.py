"""Full, read-only and faulty disks for the reliability tests: tmpfs mounts, the command with a write fault,
and checks that a run left no torn or hidden file behind (engine-only)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pipeline.cache import DiskCache
from support.cli import FRAMEPIPE


def hidden_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".")]


def framepipe_with(env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    """The ``framepipe`` command with extra environment (a write fault for its workers too)."""
    return subprocess.run([*FRAMEPIPE, *map(str, args)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **env})


@contextmanager
def tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at ``where`` (skips the test where this machine does not let us mount one)."""
    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def remount(where: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(where)], check=True)


def assert_cache_reads_back(cache_root: Path) -> None:
    """The stage cache opens, and every entry it lists reads back whole (no checksum or size failure)."""
    with DiskCache(cache_root, name="stages") as cache:
        keys = [row[0] for row in sqlite3.connect(cache.path / "index.sqlite").execute("SELECT key FROM entries")]
        assert all(cache.get(key) is not None for key in keys)
        assert cache.statistics().corrupt_found == 0 and len(cache) == len(keys)
        assert list(cache.path.glob("tmp/*")) == []  # no value left half written
