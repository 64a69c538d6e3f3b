"""Whether a shared-memory segment exists, or is still mapped by this process (Linux /dev/shm, /proc)."""

from __future__ import annotations

from pathlib import Path


def segment_exists(name: str) -> bool:
    """Whether segment ``name`` still has its name in /dev/shm."""
    return Path("/dev/shm", name).exists()


def mapped(name: str) -> bool:
    """Whether this process still maps segment ``name`` (unlinked or not)."""
    return f"/dev/shm/{name}" in Path("/proc/self/maps").read_text()


def mapped_file(address: int) -> str:
    """The file this process maps at ``address`` ("" for anonymous memory): a /dev/shm path for a slot."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        span, *rest = line.split(maxsplit=5)
        low, high = (int(x, 16) for x in span.split("-"))
        if low <= address < high:
            return rest[4] if len(rest) == 5 else ""
    return ""
