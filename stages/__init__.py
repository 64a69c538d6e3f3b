"""framepipe's video library: stages on PyAV, built on the ``pipeline`` engine's public API."""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and editors see; at run time each name's module loads on first use
    from . import presets
    from .audio import AudioLevels
    from .colour import Colour
    from .decode import Decode
    from .deinterlace import Deinterlacer, combing
    from .encode import Encode, Proxy
    from .errors import CorruptMedia, EmptyStream, TruncatedMedia, UndecodableStream, UnsupportedMedia
    from .frames import AudioFrameItem, StreamInfo, VideoFrameItem
    from .media import VIDEO_EXTENSIONS, display_size, fit_within, open_media
    from .metadata import METADATA_FIELDS, MediaInfo, Metadata, probe
    from .samples import SAMPLE_SET, ClipSpec, generate_samples, make_clip, read_frame_marker
    from .sprites import SpriteSheet
    from .thumbnails import Sampling, Thumbnails, frame_to_image
    from .transforms import Convert, Crop, PixelFunction, Resize, numpy_stage

_MODULES = {
    "presets": ("presets",),
    "audio": ("AudioLevels",),
    "colour": ("Colour",),
    "decode": ("Decode",),
    "deinterlace": ("Deinterlacer", "combing"),
    "encode": ("Encode", "Proxy"),
    "errors": ("CorruptMedia", "EmptyStream", "TruncatedMedia", "UndecodableStream", "UnsupportedMedia"),
    "frames": ("AudioFrameItem", "StreamInfo", "VideoFrameItem"),
    "media": ("VIDEO_EXTENSIONS", "display_size", "fit_within", "open_media"),
    "metadata": ("METADATA_FIELDS", "MediaInfo", "Metadata", "probe"),
    "samples": ("SAMPLE_SET", "ClipSpec", "generate_samples", "make_clip", "read_frame_marker"),
    "sprites": ("SpriteSheet",),
    "thumbnails": ("Sampling", "Thumbnails", "frame_to_image"),
    "transforms": ("Convert", "Crop", "PixelFunction", "Resize", "numpy_stage"),
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    """An exported name, its module (and PyAV, numpy) imported on first use (PEP 562): the ``framepipe``
    command loads this package for the commands it adds (``samples``, ``bench``) without any of them."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    loaded = importlib.import_module(f".{module}", __name__)
    value = loaded if module == name else getattr(loaded, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [  # sorted; tests/test_public_api.py keeps it so
    "AudioFrameItem", "AudioLevels", "ClipSpec", "Colour", "combing", "Convert", "CorruptMedia", "Crop", "Decode",
    "Deinterlacer", "display_size", "EmptyStream", "Encode", "fit_within", "frame_to_image", "generate_samples",
    "make_clip", "MediaInfo", "Metadata", "METADATA_FIELDS", "numpy_stage", "open_media", "PixelFunction",
    "presets", "probe", "Proxy", "read_frame_marker", "Resize", "SAMPLE_SET", "Sampling", "SpriteSheet", "StreamInfo",
    "Thumbnails", "TruncatedMedia", "UndecodableStream", "UnsupportedMedia", "VIDEO_EXTENSIONS", "VideoFrameItem",
]
