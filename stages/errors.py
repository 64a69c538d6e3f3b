"""What can be wrong inside a media file: the video library's input errors.

Each is an ``InputError`` of the engine (the file fails, the batch goes on)
and a ``ValueError``; the message is one line, the file and then what is
wrong with it. The tree::

    InputError (pipeline.errors)
      CorruptMedia (ValueError): not a media file FFmpeg can open, or a header that makes no sense
        TruncatedMedia: the data ends before the file's own index or duration says
        EmptyStream: a video stream with no packets in it
        UndecodableStream: packets there, but not one frame decodes from them
      UnsupportedMedia (ValueError): a sound file, an unknown codec: nothing this pipeline can use
"""

from __future__ import annotations

from pipeline import InputError

__all__ = ["CorruptMedia", "EmptyStream", "TruncatedMedia", "UndecodableStream", "UnsupportedMedia"]


class CorruptMedia(InputError, ValueError):
    """The file is not a valid media container, or its streams do not decode."""


class TruncatedMedia(CorruptMedia):
    """The data ends before the file's own index or duration says it should (an interrupted copy).

    The frames before the cut are decoded and handed on first, so outputs made
    from them (thumbnails) are kept; then the file fails.
    """


class EmptyStream(CorruptMedia):
    """The file has a video stream with no packets in it (a header and nothing after it)."""


class UndecodableStream(CorruptMedia):
    """The video stream has packets, but not one frame decodes from them."""


class UnsupportedMedia(InputError, ValueError):
    """The file is valid but has nothing this pipeline can use (audio only, a codec with no decoder...)."""
