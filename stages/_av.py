"""PyAV as the stages use it: imported where a stage's work first needs it (``from ._av import av``), never when
a pipeline is built, with FFmpeg's logging set up once, before any codec runs.

PyAV's Python log callback can deadlock a threaded codec: a decoder thread
that logs waits for the GIL while the thread holding it waits for the decoder
(PyAV issues #751, #909; seen here about once in 30 runs of a file failing
mid-decode). It is off, except around ``av.open``, where no codec thread runs
yet and FFmpeg's own reason ("moov atom not found") is worth having on the
exception (``exc.log``; ``media.ffmpeg_reasons``). PyAV's Python logger stays
quiet in either case.
"""

from __future__ import annotations

import logging

import av
import av.logging

__all__ = ["av"]

av.logging.set_level(None)
logging.getLogger("libav").setLevel(logging.CRITICAL)
