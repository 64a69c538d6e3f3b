"""Where the repository and the real-world footage are (engine-only)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

FOOTAGE = REPO.parent / "shared" / "footage"
"""Real-world files (tests that read them carry the ``footage`` marker, and skip where the folder is absent)."""
