"""Ready-made pipelines, offered to ``framepipe run --preset NAME`` through entry points."""

from __future__ import annotations

from pipeline import Pipeline

from .decode import Decode
from .encode import Proxy
from .media import VIDEO_EXTENSIONS
from .metadata import Metadata
from .thumbnails import Thumbnails

__all__ = ["default", "thumbnails", "metadata"]


def default(*, thumb_every: float = 2.0, thumb_width: int = 320, thumb_format: str = "jpg",
            proxy: bool = True, proxy_width: int = 1280, proxy_height: int = 720, proxy_crf: int = 23,
            proxy_preset: str = "veryfast", proxy_passthrough: bool = False, audio: bool = True) -> Pipeline:
    """Metadata, a poster and a thumbnail every N s, and a 720p H.264 proxy; each file decoded once."""
    p = Pipeline("default", extensions=VIDEO_EXTENSIONS)
    p.add(Metadata())
    decode = p.add(Decode(audio=audio and proxy))
    p.add(Thumbnails(every=thumb_every, width=thumb_width, fmt=thumb_format), after=decode)
    if proxy:
        p.add(Proxy(max_width=proxy_width, max_height=proxy_height, crf=proxy_crf, preset=proxy_preset,
                    passthrough=proxy_passthrough, audio=audio), after=decode)
    return p


def thumbnails(*, thumb_every: float = 2.0, thumb_width: int = 320, thumb_format: str = "jpg") -> Pipeline:
    """Metadata, a poster and a thumbnail every N s (no proxy)."""
    return default(thumb_every=thumb_every, thumb_width=thumb_width, thumb_format=thumb_format, proxy=False)


def metadata() -> Pipeline:
    """Metadata only: no decoding beyond one frame per file."""
    p = Pipeline("metadata", extensions=VIDEO_EXTENSIONS)
    p.add(Metadata())
    return p
