"""Pixel layouts: a frame in a slot takes its real size, in PyAV's ``to_ndarray`` layout."""

from __future__ import annotations

import numpy as np
import pytest

from stages.pixels import frame_layout, frame_nbytes


def test_frame_sizes_are_real_sizes() -> None:
    assert frame_nbytes(1920, 1080, "rgb24") == 1920 * 1080 * 3
    assert frame_nbytes(1920, 1080, "yuv420p") == 1920 * 1080 * 3 // 2
    assert frame_nbytes(3840, 2160, "yuv420p10le") == 3840 * 2160 * 3
    assert frame_nbytes(853, 481, "yuv420p") == 853 * 481 + 2 * 427 * 241  # odd sizes round chroma up
    assert frame_layout(1920, 1080, "yuv420p") == ((1620, 1920), np.dtype(np.uint8))
    assert frame_layout(640, 360, "rgb24") == ((360, 640, 3), np.dtype(np.uint8))
    with pytest.raises(ValueError, match="unknown pixel format"):
        frame_layout(2, 2, "weird")
