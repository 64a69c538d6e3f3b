"""A small video pipeline with a map stage, for tests of the video library and of runs over video."""

from __future__ import annotations

import numpy as np

from pipeline import Pipeline
from stages import Decode, Thumbnails
from stages.transforms import numpy_stage


@numpy_stage
def invert(rgb: np.ndarray) -> np.ndarray:
    """A map stage for tests: the negative of an RGB frame."""
    return 255 - rgb


def video_pipeline(name: str = "video") -> Pipeline:
    """Decode (in each file's actor) -> invert (a map stage, frame-parallel) -> thumbnails every 0.5 s (PNG)."""
    p = Pipeline(name)
    d = p.add(Decode(audio=False, pixel_format="rgb24"))
    n = p.add(invert, after=d)
    p.add(Thumbnails(every=0.5, width=None, fmt="png", poster=False), after=n)
    return p
