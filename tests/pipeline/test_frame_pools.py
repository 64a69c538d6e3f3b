"""Size classes: each frame goes to the smallest pool it fits, at its real size."""

from __future__ import annotations

import pytest

from pipeline.dataplane.frame_pools import (
    AUDIO_SECOND_BYTES,
    BufferConfig,
    SizeClass,
    SlotAllocator,
    VideoBufferPool,
)


def test_the_smallest_class_that_fits_is_chosen() -> None:
    with VideoBufferPool(BufferConfig.low_memory()) as pools:
        assert pools.allocate(1920 * 1080 * 3).pool.name == "rgb24_1080p"  # a 1080p RGB24 frame
        assert pools.allocate(3840 * 2160 * 3 // 2).pool.name == "rgb24_4k"  # a 4K YUV 4:2:0 frame
        assert pools.allocate(1280 * 720 * 3).pool.name == "rgb24_1080p"
        assert pools.allocate_audio(48_000).pool.name == "audio_1s"
        with pytest.raises(ValueError, match="larger than the largest size class"):
            pools.allocate(7680 * 4320 * 3)


def test_a_full_class_spills_to_the_next_larger_one_before_waiting() -> None:
    config = BufferConfig((SizeClass("small", 100, 1), SizeClass("big", 1000, 1)))
    with VideoBufferPool(config) as pools:
        first = pools.allocate(50)
        second = pools.allocate(50)
        assert (first.pool.name, second.pool.name) == ("small", "big")
        assert pools.try_allocate(50) is None


def test_presets_reserve_what_they_say() -> None:
    video = BufferConfig.video_processing()
    low = BufferConfig.low_memory()
    assert low.total_bytes() < video.total_bytes()
    assert {c.name for c in video.classes} == {"audio_1s", "rgb24_1080p", "rgb24_4k"}
    assert next(c for c in video.classes if c.name == "audio_1s").slot_size == AUDIO_SECOND_BYTES


def test_slots_are_made_as_asked_within_the_budget_and_one_beyond_only_when_forced() -> None:
    slots = SlotAllocator(4 * 1024)
    leases = [slots.grant(1000) for _ in range(4)]
    assert all(leases) and slots.reserved_bytes == 4 * 1024
    assert slots.grant(1000) is None  # spent: the caller waits for a release
    forced = slots.grant(1000, force=True)
    assert forced is not None and slots.reserved_bytes == 5 * 1024
    for lease in [*leases, forced]:
        lease.release()
    slots.close()


def test_trim_gives_free_slots_back_down_to_the_budget_and_keeps_leased_ones() -> None:
    slots = SlotAllocator(8 * 4096)
    leases = [slots.grant(4096) for _ in range(8)]
    for lease in leases[2:]:
        lease.release()
    slots.budget_bytes = 3 * 4096
    assert slots.trim() == 3 * 4096
    assert slots.leased_slots == 2 and not any(lease.released for lease in leases[:2])
    slots.budget_bytes = 0  # below what is leased: the leased slots stay, every free one goes
    assert slots.trim() == 2 * 4096
    assert slots.grant(4096) is None
    for lease in leases[:2]:
        lease.release()
    assert slots.trim() == 0 and slots.pools == []
    slots.close()
