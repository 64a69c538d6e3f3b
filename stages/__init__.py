"""framepipe's video library: stages on PyAV, built on the ``pipeline`` engine's public API."""

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

__all__ = [  # sorted; tests/test_public_api.py keeps it so
    "AudioFrameItem", "AudioLevels", "ClipSpec", "Colour", "combing", "Convert", "CorruptMedia", "Crop", "Decode",
    "Deinterlacer", "display_size", "EmptyStream", "Encode", "fit_within", "frame_to_image", "generate_samples",
    "make_clip", "MediaInfo", "Metadata", "METADATA_FIELDS", "numpy_stage", "open_media", "PixelFunction",
    "presets", "probe", "Proxy", "read_frame_marker", "Resize", "SAMPLE_SET", "Sampling", "SpriteSheet", "StreamInfo",
    "Thumbnails", "TruncatedMedia", "UndecodableStream", "UnsupportedMedia", "VIDEO_EXTENSIONS", "VideoFrameItem",
]
