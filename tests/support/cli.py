"""Starting the ``framepipe`` command (as ``python -m pipeline``) the way a user would (engine-only)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FRAMEPIPE = [sys.executable, "-m", "pipeline"]


def framepipe(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the ``framepipe`` command (as ``python -m pipeline``) and capture what it says."""
    return subprocess.run([*FRAMEPIPE, *map(str, args)], capture_output=True, text=True, timeout=600)


def framepipe_interrupted(args: list[str], signum: int, when: str) -> tuple[int, int, str]:
    """Start ``framepipe *args``, send ``signum`` once a line of its stderr starts with ``when`` (an event, not a
    time) and wait for it to end: (its pid, its exit status, the rest of its stderr)."""
    proc = subprocess.Popen([*FRAMEPIPE, *args], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith(when):
            break
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    return proc.pid, proc.returncode, err


PLANTED = ["pipeline", "stages", "numpy", "av", "loky", "multiprocessing", "build", "framepipe_user_pipeline",
           "sitecustomize", "usercustomize", "conftest", "__init__", "my_pipeline"]
"""Names of Python files a shared input folder could hold, that a run from inside it must never import."""
