"""Ready-made pipelines, offered to ``framepipe run --preset NAME`` through entry points."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from pipeline import Pipeline
from pipeline.errors import InvalidOption
from pipeline.presets import Option, checked_options

from .audio import AudioLevels
from .decode import STREAM_NUMBER, Decode
from .deinterlace import DEINTERLACE
from .encode import CATEGORY, ENCODER_CRF, ENCODER_PRESETS, VIDEO_SIDE, Encode, Proxy
from .media import VIDEO_EXTENSIONS
from .metadata import Metadata
from .sprites import SHEET_TILES, TILE_WIDTH, SpriteSheet
from .thumbnails import IMAGE_FORMATS, PICTURE_COUNT, PICTURE_SIDE, SECONDS_APART, Sampling, Thumbnails

__all__ = ["default", "thumbnails", "sprites", "metadata", "proxies", "transcode", "TRANSCODE_PROFILES"]

# The options: what each accepts (the stages' own bounds) and what it does. ``framepipe presets`` lists them,
# and a value outside them is refused before any work (``option thumb_width=100000: must be an integer from 16
# to 8192``).
ThumbEvery = Annotated[float, replace(SECONDS_APART, help="seconds between thumbnails (0: only the poster)")]
ThumbCount = Annotated[int, replace(PICTURE_COUNT, help="that many thumbnails evenly spaced instead (0: by time)")]
ThumbWidth = Annotated[int, replace(PICTURE_SIDE, help="thumbnail width in pixels")]
ThumbFormat = Annotated[str, Option(choices=tuple(IMAGE_FORMATS), help="thumbnail image format")]
Sprites = Annotated[bool, Option(help="make a sprite sheet and its WebVTT file")]
SpriteEvery = Annotated[float, Option(above=0, help="seconds between sprite tiles")]
SpriteEveryOr0 = Annotated[float, replace(SECONDS_APART, help="seconds between sprite tiles (0: by sprite_count)")]
SpriteCount = Annotated[int, replace(PICTURE_COUNT, help="that many tiles evenly spaced instead (0: by time)")]
SpriteWidth = Annotated[int, replace(TILE_WIDTH, help="sprite tile width in pixels")]
SpriteColumns = Annotated[int, replace(SHEET_TILES, help="tiles across a sprite sheet")]
SpriteRows = Annotated[int, replace(SHEET_TILES, help="tiles down a sprite sheet")]
MakeProxy = Annotated[bool, Option(help="make an H.264 proxy")]
ProxyWidth = Annotated[int, replace(VIDEO_SIDE, help="the proxy fits this width (never upscaled)")]
ProxyHeight = Annotated[int, replace(VIDEO_SIDE, help="the proxy fits this height (never upscaled)")]
ProxyCrf = Annotated[int, Option(min=0, max=51, help="x264 constant quality, lower is better and larger")]
ProxyPreset = Annotated[str, replace(ENCODER_PRESETS["libx264"], help="x264 speed preset")]
Passthrough = Annotated[bool, Option(help="copy a source that already is such a proxy instead")]
ProxyHdr = Annotated[str, Option(choices=("tonemap", "keep"),
                                 help="HDR sources: tone-mapped to an SDR H.264 proxy, or kept HDR in 10-bit HEVC")]
Audio = Annotated[bool, Option(help="decode the sound (levels; the proxy's audio)")]
KeyframesOnly = Annotated[bool, Option(help="pictures from keyframes only (fast; each the next keyframe)")]
Levels = Annotated[bool, Option(help="also decode the sound for peak/RMS levels")]
Deinterlace = Annotated[str, replace(DEINTERLACE, help="interlaced footage: detected and deinterlaced by bwdif "
                                                       "(auto) or shown by its first field (first_field: stills only), "
                                                       "left woven (off), or always through bwdif or yadif")]
VideoStream = Annotated[int, replace(STREAM_NUMBER, special={-1: "the best, as FFmpeg chooses"},
                                     help="which video stream, by its number among the file's (ffmpeg's 0:v:N)")]
AudioStream = Annotated[int, replace(STREAM_NUMBER, special={-1: "the best, as FFmpeg chooses"},
                                     help="which audio stream, by its number among the file's (ffmpeg's 0:a:N)")]


def _decoded(p: Pipeline, *, audio: bool, keyframes_only: bool = False, deinterlace: str = "auto",
             video_stream: int = -1, audio_stream: int = -1, sampling: tuple[Sampling, ...] = (),
             sampling_when_split: tuple[Sampling, ...] = ()) -> Any:
    """Add a preset's Metadata and its one Decode, describing and decoding the same streams; the Decode.

    ``sampling``: what the picture stages it feeds need, when nothing it feeds needs every frame (no proxy);
    ``sampling_when_split``: what they need when a long file's proxy is encoded in parts.
    """
    streams = {"video_stream": None if video_stream < 0 else video_stream,
               "audio_stream": None if audio_stream < 0 or not audio else audio_stream}
    p.add(Metadata(**streams))
    return p.add(Decode(audio=audio, keyframes_only=keyframes_only, deinterlace=deinterlace, sampling=sampling,
                        sampling_when_split=sampling_when_split, **streams))


@checked_options
def default(*, thumb_every: ThumbEvery = 2.0, thumb_count: ThumbCount = 0, thumb_width: ThumbWidth = 320,
            thumb_format: ThumbFormat = "jpg", sprites: Sprites = True, sprite_every: SpriteEvery = 2.0,
            sprite_width: SpriteWidth = 160, sprite_columns: SpriteColumns = 10, proxy: MakeProxy = True,
            proxy_width: ProxyWidth = 1280, proxy_height: ProxyHeight = 720, proxy_crf: ProxyCrf = 23,
            proxy_preset: ProxyPreset = "veryfast", proxy_passthrough: Passthrough = False,
            proxy_hdr: ProxyHdr = "tonemap", audio: Audio = True, keyframes_only: KeyframesOnly = False,
            deinterlace: Deinterlace = "auto", video_stream: VideoStream = -1,
            audio_stream: AudioStream = -1) -> Pipeline:
    """Metadata, audio levels, a poster and thumbnails, a sprite sheet with WebVTT, a 720p proxy; one decode."""
    p = Pipeline("default", extensions=VIDEO_EXTENSIONS)
    pictures: list[Thumbnails | SpriteSheet] = [Thumbnails(every=thumb_every, count=thumb_count, width=thumb_width,
                                                           fmt=thumb_format)]
    if sprites:
        pictures.append(SpriteSheet(every=sprite_every, tile_width=sprite_width, columns=sprite_columns))
    # Without a proxy only the pictures' frames are needed: the decode may skip the others (a seek plan); with
    # one, so it is when a long file's proxy is encoded in parts (Decode's split_s), each decoding its own span.
    samplings = tuple(stage.sampling() for stage in pictures)
    decode = _decoded(p, audio=audio, keyframes_only=keyframes_only and not proxy, deinterlace=deinterlace,
                      video_stream=video_stream, audio_stream=audio_stream, sampling=() if proxy else samplings,
                      sampling_when_split=samplings if proxy else ())
    for stage in pictures:
        p.add(stage, after=decode)
    if audio:
        p.add(AudioLevels(), after=decode)
    if proxy:
        p.add(Proxy(max_width=proxy_width, max_height=proxy_height, crf=proxy_crf, preset=proxy_preset,
                    passthrough=proxy_passthrough, hdr=proxy_hdr, audio=audio), after=decode)
    return p


@checked_options
def thumbnails(*, thumb_every: ThumbEvery = 2.0, thumb_count: ThumbCount = 0, thumb_width: ThumbWidth = 320,
               thumb_format: ThumbFormat = "jpg", keyframes_only: KeyframesOnly = False,
               deinterlace: Deinterlace = "first_field", video_stream: VideoStream = -1) -> Pipeline:
    """Metadata, a poster and thumbnails every N s or N evenly spaced (keyframes_only: fast, nearest keyframe)."""
    p = default(thumb_every=thumb_every, thumb_count=thumb_count, thumb_width=thumb_width, thumb_format=thumb_format,
                sprites=False, proxy=False, audio=False, keyframes_only=keyframes_only, deinterlace=deinterlace,
                video_stream=video_stream)
    p.name = "thumbnails"
    return p


@checked_options
def sprites(*, sprite_every: SpriteEveryOr0 = 2.0, sprite_count: SpriteCount = 0, sprite_width: SpriteWidth = 160,
            sprite_columns: SpriteColumns = 10, sprite_rows: SpriteRows = 10,
            keyframes_only: KeyframesOnly = False, deinterlace: Deinterlace = "first_field",
            video_stream: VideoStream = -1) -> Pipeline:
    """Metadata and a sprite sheet with its WebVTT file per video (timeline scrubbing previews)."""
    if not sprite_every and not sprite_count:
        raise InvalidOption("sprite_every", f"{sprite_every:g}", "above 0 when sprite_count is 0")
    p = Pipeline("sprites", extensions=VIDEO_EXTENSIONS)
    sheet = SpriteSheet(every=sprite_every, count=sprite_count, tile_width=sprite_width, columns=sprite_columns,
                        rows=sprite_rows)
    decode = _decoded(p, audio=False, keyframes_only=keyframes_only, deinterlace=deinterlace,
                      video_stream=video_stream, sampling=(sheet.sampling(),))
    p.add(sheet, after=decode)
    return p


@checked_options
def metadata(*, audio_levels: Levels = False, video_stream: VideoStream = -1,
             audio_stream: AudioStream = -1) -> Pipeline:
    """Metadata only: no decoding beyond one frame per file (audio_levels: also decode the sound for peak/RMS)."""
    p = Pipeline("metadata", extensions=VIDEO_EXTENSIONS)
    streams = {"video_stream": None if video_stream < 0 else video_stream,
               "audio_stream": None if audio_stream < 0 else audio_stream}
    if not audio_levels:
        p.add(Metadata(**streams))
    else:
        decode = _decoded(p, audio=True, keyframes_only=True, video_stream=video_stream, audio_stream=audio_stream)
        p.add(AudioLevels(), after=decode)
    return p


@checked_options
def proxies(*, proxy_width: ProxyWidth = 1280, proxy_height: ProxyHeight = 720, proxy_crf: ProxyCrf = 23,
            proxy_preset: ProxyPreset = "veryfast", proxy_passthrough: Passthrough = False,
            proxy_hdr: ProxyHdr = "tonemap", audio: Audio = True, deinterlace: Deinterlace = "auto",
            video_stream: VideoStream = -1, audio_stream: AudioStream = -1) -> Pipeline:
    """Metadata and a 720p H.264 + AAC MP4 proxy of each file (no thumbnails)."""
    p = Pipeline("proxies", extensions=VIDEO_EXTENSIONS)
    decode = _decoded(p, audio=audio, deinterlace=deinterlace, video_stream=video_stream, audio_stream=audio_stream)
    p.add(Proxy(max_width=proxy_width, max_height=proxy_height, crf=proxy_crf, preset=proxy_preset,
                passthrough=proxy_passthrough, hdr=proxy_hdr, audio=audio), after=decode)
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

Profile = Annotated[str, Option(choices=tuple(TRANSCODE_PROFILES), help="what the transcode is for")]
MaxSide = Annotated[int, replace(VIDEO_SIDE, special={0: "the profile's"}, help="fit within this (never upscaled)")]
Crf = Annotated[int, Option(min=0, max=63, special={-1: "the profile's"},
                            help="constant quality, as the profile's codec takes it (x264: 0 to 51)")]
Preset = Annotated[str, Option(special={"": "the profile's"}, what="a preset of the profile's codec",
                               help="speed preset (x264), cpu-used (VP9) or profile (ProRes)")]
TranscodeAudio = Annotated[str, Option(choices=("auto", "encode", "off"),
                                       help="sound: copied when the container takes it (auto), encoded, or off")]
Category = Annotated[str, replace(CATEGORY, special={"": "the profile's"}, help="its folder under the output folder")]
TranscodeDeinterlace = Annotated[str, replace(DEINTERLACE, special={"": "the profile's: auto for proxy and web, off "
                                                                         "for edit and archive"},
                                              help="interlaced footage: detected and deinterlaced, left woven, "
                                                   "or always through bwdif or yadif")]
TranscodeHdr = Annotated[str, Option(choices=("auto", "tonemap", "keep"),
                                     help="HDR sources: kept HDR where the codec is 10-bit (auto), tone-mapped to "
                                          "SDR BT.709, or kept")]
_KEEPS_FIELDS = frozenset({"edit", "archive"})  # an editing master or an archive keeps both fields of every frame


@checked_options
def transcode(*, profile: Profile = "web", max_width: MaxSide = 0, max_height: MaxSide = 0, crf: Crf = -1,
              preset: Preset = "", audio: TranscodeAudio = "auto", category: Category = "",
              deinterlace: TranscodeDeinterlace = "", hdr: TranscodeHdr = "auto", video_stream: VideoStream = -1,
              audio_stream: AudioStream = -1) -> Pipeline:
    """Metadata and one transcode of each file by profile: proxy, edit (ProRes), web (H.264) or archive (FFV1).

    ``max_width``/``max_height``/``crf``/``preset``/``category`` override the
    profile's (0, -1 and "" keep them). ``audio``: auto (copy the source's
    audio when the container takes it, else encode), encode, or off.
    """
    settings = dict(TRANSCODE_PROFILES[profile])
    codec = settings["codec"]
    # What the profile's codec takes, said in the option's own words (Encode would refuse it too).
    if crf >= 0:
        if codec not in ENCODER_CRF:
            raise InvalidOption("crf", crf, f"left out: the {profile} profile's {codec} has no constant-quality mode")
        spec = ENCODER_CRF[codec]
        if not spec.min <= crf <= spec.max:  # type: ignore[operator]
            raise InvalidOption("crf", crf, f"-1 (the profile's) or an integer from {spec.min:g} to {spec.max:g} "
                                            f"for the {profile} profile's {codec}")
    if preset:
        if codec not in ENCODER_PRESETS:
            raise InvalidOption("preset", preset, f"left out: the {profile} profile's {codec} has no preset")
        try:
            ENCODER_PRESETS[codec].parse(preset)
        except ValueError:
            raise InvalidOption("preset", preset,
                                f"{ENCODER_PRESETS[codec].accepts} for the {profile} profile's {codec}") from None
    overrides = {"max_width": max_width or None, "max_height": max_height or None,
                 "crf": crf if crf >= 0 else None, "preset": preset or None, "category": category or None}
    settings.update({k: v for k, v in overrides.items() if v is not None})
    p = Pipeline(f"transcode-{profile}", extensions=VIDEO_EXTENSIONS)
    decode = _decoded(p, audio=audio != "off", deinterlace=deinterlace or ("off" if profile in _KEEPS_FIELDS
                                                                            else "auto"),
                      video_stream=video_stream, audio_stream=audio_stream)
    p.add(Encode(**settings, hdr=hdr, audio=False if audio == "off" else audio, name="transcode"), after=decode)
    return p
