"""The README's Python example, and every Python block in docs/, runs as printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from support.clips import BROKEN, CLIPS
from support.paths import REPO


def test_the_python_example_runs_and_records_its_custom_column(clip_dir: Path, tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)  # type: ignore[union-attr]
    (tmp_path / "example.py").write_text(code)
    (tmp_path / "samples").symlink_to(clip_dir, target_is_directory=True)
    proc = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "brightness" in proc.stdout and f"FAILED {BROKEN}" in proc.stdout
    rows = {r["relpath"]: r for r in pq.read_table(tmp_path / "out-mine" / "report.parquet").to_pylist()}
    for rel in CLIPS:
        assert 16 <= rows[rel]["mean_luma"] <= 235
    assert rows[BROKEN]["mean_luma"] is None


DOCS = sorted((REPO / "docs").glob("*.md"))


def python_blocks(path: Path) -> list[str]:
    """The fenced Python blocks of a Markdown file."""
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


def run_block(code: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as a script in ``folder``."""
    (folder / "example.py").write_text(code)
    # TMPDIR: the cache example keeps its cache in a tempfile.mkdtemp() folder that it leaves, as a user's would
    # be left; under the test's folder it goes with it (each run left one in /tmp).
    return subprocess.run([sys.executable, "example.py"], cwd=folder, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TMPDIR": str(folder)})


def run_readme_block(containing: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """Run, in ``folder``, the Python block of the README or docs/ that mentions ``containing``."""
    blocks = [b for doc in [REPO / "README.md", *DOCS] for b in python_blocks(doc)]
    return run_block(next(b for b in blocks if containing in b), folder)


def test_the_docs_exist_and_have_python_blocks() -> None:
    assert {p.name for p in DOCS} >= {"guide.md", "operations.md", "architecture.md", "benchmarks.md", "testing.md"}
    assert sum(len(python_blocks(p)) for p in DOCS) >= 4


@pytest.mark.parametrize("doc, number", [(p.name, i) for p in DOCS for i in range(len(python_blocks(p)))])
def test_every_python_block_in_the_docs_runs(doc: str, number: int, tmp_path: Path) -> None:
    proc = run_block(python_blocks(REPO / "docs" / doc)[number], tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_the_shared_memory_example_runs_as_printed(tmp_path: Path) -> None:
    proc = run_readme_block("BufferPool", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "leaked" not in proc.stderr


def test_the_cache_example_runs_as_printed(tmp_path: Path) -> None:
    proc = run_readme_block("DiskCache", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "hits=" in proc.stdout and "entries=" in proc.stdout
