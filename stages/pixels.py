"""Pixel layouts: the numpy shape, dtype and byte count of a frame of each pixel format in a slot.

The engine's slots are bytes; how a frame of a pixel format lies in them is
video knowledge, so it lives here and the stages that write or read frames
(``frames``, ``y4m``) use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: building a pipeline loads none of them
    import numpy as np


__all__ = ["frame_layout", "frame_nbytes"]

# Bytes per pixel of the luma plane, and chroma subsampling (x, y) with the number of chroma planes.
_PLANAR: dict[str, tuple[int, int, int, int]] = {
    "yuv420p": (1, 2, 2, 2), "yuvj420p": (1, 2, 2, 2), "yuv422p": (1, 2, 1, 2), "yuv444p": (1, 1, 1, 2),
    "yuv420p10le": (2, 2, 2, 2), "yuv422p10le": (2, 2, 1, 2), "yuv444p10le": (2, 1, 1, 2),
    "nv12": (1, 2, 2, 1),  # one interleaved UV plane at half height, full width in bytes
}
_PACKED: dict[str, tuple[int, str]] = {  # channels, numpy dtype
    "gray": (1, "uint8"), "gray16le": (1, "uint16"), "rgb24": (3, "uint8"), "bgr24": (3, "uint8"),
    "rgba": (4, "uint8"), "bgra": (4, "uint8"), "rgb48le": (3, "uint16"), "flt": (1, "float32"),
}


def frame_layout(width: int, height: int, pixel_format: str) -> tuple[tuple[int, ...], np.dtype]:
    """The numpy shape and dtype of a frame in a slot (PyAV's ``to_ndarray`` layout where it has one).

    Packed formats are ``(height, width[, channels])``; planar YUV is its planes
    back to back: ``(height * 3 // 2, width)`` for even 4:2:0 sizes, else flat.
    """
    import numpy as np
    if pixel_format in _PACKED:
        channels, dtype = _PACKED[pixel_format]
        shape = (height, width) if channels == 1 else (height, width, channels)
        return shape, np.dtype(dtype)
    if pixel_format in _PLANAR:
        bpp, sx, sy, planes = _PLANAR[pixel_format]
        cw, ch = -(-width // sx), -(-height // sy)
        chroma = cw * ch * 2 if pixel_format == "nv12" else cw * ch * planes
        dtype = np.dtype(np.uint16 if bpp == 2 else np.uint8)
        if pixel_format in ("yuv420p", "yuvj420p", "yuv420p10le") and width % 2 == 0 and height % 4 == 0:
            return (height * 3 // 2, width), dtype
        return (width * height + chroma,), dtype
    raise ValueError(f"unknown pixel format {pixel_format!r}")


def frame_nbytes(width: int, height: int, pixel_format: str) -> int:
    """Bytes a frame of this size and pixel format takes in a slot."""
    import numpy as np
    shape, dtype = frame_layout(width, height, pixel_format)
    return int(np.prod(shape)) * dtype.itemsize
