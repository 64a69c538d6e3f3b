"""Whether a shared-memory segment exists, or is still mapped by this process (Linux /dev/shm, /proc)."""

from __future__ import annotations

from pathlib import Path


def segment_exists(name: str) -> bool:
    """Whether segment ``name`` still has its name in /dev/shm."""
    return Path("/dev/shm", name).exists()


def mapped(name: str) -> bool:
    """Whether this process still maps segment ``name`` (unlinked or not)."""
    return f"/dev/shm/{name}" in Path("/proc/self/maps").read_text()
