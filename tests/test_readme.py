"""The README's Python example runs as printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from conftest import BROKEN, CLIPS, REPO


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


def run_readme_block(containing: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """Run, in ``folder``, the README's Python block that mentions ``containing``."""
    readme = (REPO / "README.md").read_text()
    code = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if containing in b)
    (folder / "example.py").write_text(code)
    # TMPDIR: the cache example keeps its cache in a tempfile.mkdtemp() folder that it leaves, as a user's would
    # be left; under the test's folder it goes with it (each run left one in /tmp).
    return subprocess.run([sys.executable, "example.py"], cwd=folder, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TMPDIR": str(folder)})


def test_the_shared_memory_example_runs_as_printed(tmp_path: Path) -> None:
    proc = run_readme_block("BufferPool", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "leaked" not in proc.stderr


def test_the_cache_example_runs_as_printed(tmp_path: Path) -> None:
    proc = run_readme_block("DiskCache", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "hits=" in proc.stdout and "entries=" in proc.stdout
