"""Ready-made pipelines, offered to ``framepipe run --preset NAME`` through entry points."""

from __future__ import annotations

from typing import Any

from pipeline import Pipeline, PipelineDefinitionError

from .audio import AudioLevels
from .decode import Decode
from .encode import Encode, Proxy
from .media import VIDEO_EXTENSIONS
from .metadata import Metadata
from .sprites import SpriteSheet
from .thumbnails import Thumbnails

__all__ = ["default", "thumbnails", "sprites", "metadata", "proxies", "transcode", "TRANSCODE_PROFILES"]


def default(*, thumb_every: float = 2.0, thumb_count: int = 0, thumb_width: int = 320, thumb_format: str = "jpg",
            sprites: bool = True, sprite_every: float = 2.0, sprite_width: int = 160, sprite_columns: int = 10,
            proxy: bool = True, proxy_width: int = 1280, proxy_height: int = 720, proxy_crf: int = 23,
            proxy_preset: str = "veryfast", proxy_passthrough: bool = False, audio: bool = True,
            keyframes_only: bool = False) -> Pipeline:
    """Metadata, audio levels, a poster and thumbnails, a sprite sheet with WebVTT, a 720p proxy; one decode."""
    p = Pipeline("default", extensions=VIDEO_EXTENSIONS)
    p.add(Metadata())
    decode = p.add(Decode(audio=audio, keyframes_only=keyframes_only and not proxy))
    p.add(Thumbnails(every=thumb_every, count=thumb_count, width=thumb_width, fmt=thumb_format), after=decode)
    if sprites:
        p.add(SpriteSheet(every=sprite_every, tile_width=sprite_width, columns=sprite_columns), after=decode)
    if audio:
        p.add(AudioLevels(), after=decode)
    if proxy:
        p.add(Proxy(max_width=proxy_width, max_height=proxy_height, crf=proxy_crf, preset=proxy_preset,
                    passthrough=proxy_passthrough, audio=audio), after=decode)
    return p


def thumbnails(*, thumb_every: float = 2.0, thumb_count: int = 0, thumb_width: int = 320,
               thumb_format: str = "jpg", keyframes_only: bool = False) -> Pipeline:
    """Metadata, a poster and thumbnails every N s or N evenly spaced (keyframes_only: fast, nearest keyframe)."""
    p = default(thumb_every=thumb_every, thumb_count=thumb_count, thumb_width=thumb_width, thumb_format=thumb_format,
                sprites=False, proxy=False, audio=False, keyframes_only=keyframes_only)
    p.name = "thumbnails"
    return p


def sprites(*, sprite_every: float = 2.0, sprite_count: int = 0, sprite_width: int = 160, sprite_columns: int = 10,
            sprite_rows: int = 10, keyframes_only: bool = False) -> Pipeline:
    """Metadata and a sprite sheet with its WebVTT file per video (timeline scrubbing previews)."""
    p = Pipeline("sprites", extensions=VIDEO_EXTENSIONS)
    p.add(Metadata())
    decode = p.add(Decode(audio=False, keyframes_only=keyframes_only))
    p.add(SpriteSheet(every=sprite_every, count=sprite_count, tile_width=sprite_width, columns=sprite_columns,
                      rows=sprite_rows), after=decode)
    return p


def metadata(*, audio_levels: bool = False) -> Pipeline:
    """Metadata only: no decoding beyond one frame per file (audio_levels: also decode the sound for peak/RMS)."""
    p = Pipeline("metadata", extensions=VIDEO_EXTENSIONS)
    p.add(Metadata())
    if audio_levels:
        p.add(AudioLevels(), after=p.add(Decode(audio=True, keyframes_only=True)))
    return p


def proxies(*, proxy_width: int = 1280, proxy_height: int = 720, proxy_crf: int = 23,
            proxy_preset: str = "veryfast", proxy_passthrough: bool = False, audio: bool = True) -> Pipeline:
    """Metadata and a 720p H.264 + AAC MP4 proxy of each file (no thumbnails)."""
    p = Pipeline("proxies", extensions=VIDEO_EXTENSIONS)
    p.add(Metadata())
    decode = p.add(Decode(audio=audio))
    p.add(Proxy(max_width=proxy_width, max_height=proxy_height, crf=proxy_crf, preset=proxy_preset,
                passthrough=proxy_passthrough, audio=audio), after=decode)
    return p


TRANSCODE_PROFILES: dict[str, dict[str, Any]] = {
    # Review copies: as the proxies preset makes them.
    "proxy": dict(codec="libx264", crf=23, preset="veryfast", max_width=1280, max_height=720,
                  extension=".mp4", category="proxies", audio_codec="aac"),
    # Editing: ProRes 422 HQ, 10-bit 4:2:2, in QuickTime; sound as 16-bit PCM (or the source's AAC/PCM, copied).
    "edit": dict(codec="prores_ks", preset="hq", pix_fmt="yuv422p10le", extension=".mov", category="edit",
                 audio_codec="pcm_s16le"),
    # The web: H.264 4:2:0 + AAC in an MP4 whose index is at the front (plays while it downloads).
    "web": dict(codec="libx264", crf=23, preset="medium", pix_fmt="yuv420p", extension=".mp4", category="web",
                faststart=True, audio_codec="aac"),
    # Archive: lossless FFV1 version 3 (every frame a keyframe, per-slice CRCs) in Matroska; sound
    # copied when Matroska takes it (nearly always), else FLAC.
    "archive": dict(codec="ffv1", gop=1, extension=".mkv", category="archive", audio_codec="flac"),
}
"""The settings each ``transcode`` profile gives ``Encode``."""


def transcode(*, profile: str = "web", max_width: int = 0, max_height: int = 0, crf: int = -1,
              preset: str = "", audio: str = "auto", category: str = "") -> Pipeline:
    """Metadata and one transcode of each file by profile: proxy, edit (ProRes), web (H.264) or archive (FFV1).

    ``max_width``/``max_height``/``crf``/``preset``/``category`` override the
    profile's (0, -1 and "" keep them). ``audio``: auto (copy the source's
    audio when the container takes it, else encode), encode, or off.
    """
    if profile not in TRANSCODE_PROFILES:
        raise PipelineDefinitionError(f"no transcode profile {profile!r} (profiles: {', '.join(TRANSCODE_PROFILES)})")
    if audio not in ("auto", "encode", "off"):
        raise PipelineDefinitionError(f"option audio expects auto, encode or off, not {audio!r}")
    settings = dict(TRANSCODE_PROFILES[profile])
    overrides = {"max_width": max_width or None, "max_height": max_height or None,
                 "crf": crf if crf >= 0 else None, "preset": preset or None, "category": category or None}
    settings.update({k: v for k, v in overrides.items() if v is not None})
    p = Pipeline(f"transcode-{profile}", extensions=VIDEO_EXTENSIONS)
    p.add(Metadata())
    decode = p.add(Decode(audio=audio != "off"))
    p.add(Encode(**settings, audio=False if audio == "off" else audio, name="transcode"), after=decode)
    return p
