"""Frames of the video library over the engine's shared memory (``stages/frames.py``)."""

from __future__ import annotations

import pytest
from support.segments import mapped, segment_exists

from pipeline.dataplane.buffers import BufferPool
from pipeline.errors import PoolClosed
from stages.frames import wrap_pixels


def test_an_array_taken_before_the_pool_closed_stays_readable_and_goes_unmapped_with_it() -> None:
    pool = BufferPool(276 * 320, 2)
    names = pool.segment_names()
    with pool.acquire() as lease:
        ref = lease.ref((276, 320))
        ref.array()[:] = 7
        kept = ref.array()
        frame = wrap_pixels(ref.array(), "yuv420p")  # a PyAV frame over the slot, as a decoder makes
    pool.close()
    assert not any(segment_exists(n) for n in names)  # the name goes at once
    assert kept.mean() == 7 and frame.to_ndarray().mean() == 7  # the memory stays while viewed
    with pytest.raises(PoolClosed):
        ref.array()
    assert all(mapped(n) for n in names)
    del kept, frame
    assert not any(mapped(n) for n in names)
