"""Where persistent caches live: the platform's per-user cache folder, one subfolder per cache."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from ..errors import InvalidCacheName

__all__ = ["ENV_VAR", "caching_disabled", "default_cache_dir", "cache_path", "InvalidCacheName"]

ENV_VAR = "FRAMEPIPE_CACHE_DIR"
_APP = "framepipe"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def caching_disabled() -> bool:
    """Whether ``FRAMEPIPE_CACHE`` turns caching off (``0``, ``off``, ``false``, ``no``)."""
    return os.environ.get("FRAMEPIPE_CACHE", "").strip().lower() in ("0", "off", "false", "no")


def default_cache_dir() -> Path:
    """The root folder of framepipe's caches on this machine.

    ``$FRAMEPIPE_CACHE_DIR`` if set; else ``$XDG_CACHE_HOME/framepipe`` where
    the XDG variable is set to an absolute path (honoured on Linux and macOS,
    as users who set it expect); else ``~/.cache/framepipe`` on Linux and
    other Unixes, ``~/Library/Caches/framepipe`` on macOS and
    ``%LOCALAPPDATA%\\framepipe\\Cache`` on Windows.
    """
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(local) / _APP / "Cache"
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):  # the XDG spec says relative values are to be ignored
        return Path(xdg) / _APP
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / _APP
    return Path.home() / ".cache" / _APP


def cache_path(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """The folder of the cache called ``name`` under ``root`` (``default_cache_dir()`` when ``None``)."""
    if not _NAME_RE.match(name) or name in (".", ".."):
        raise InvalidCacheName(f"cache name {name!r} must be a plain folder name ([A-Za-z0-9._-], at most 128)")
    base = Path(root).expanduser() if root is not None else default_cache_dir()
    return base / name
