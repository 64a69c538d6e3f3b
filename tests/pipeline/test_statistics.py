"""One name for a thing's figures: ``statistics()``, a frozen record (or a read-only mapping of them)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import pytest
from support.text import text_pipeline, write_texts

from pipeline import run
from pipeline.cache import AsyncCache, Cache, CacheConfig, CacheManager, DiskCache
from pipeline.dataplane import BufferPool
from pipeline.runtime import TaskPoolConfig, WorkerPool
from pipeline.tuning import RuntimeCoordinator


def _frozen(record: object) -> None:
    assert dataclasses.is_dataclass(record)
    field = dataclasses.fields(record)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(record, field, None)


def test_caches_give_their_figures_as_statistics_and_the_older_names_warn(tmp_path: Path) -> None:
    memory = Cache(CacheConfig(max_entries=10))
    memory.insert("k", b"v")
    assert memory.get("k") == b"v"
    _frozen(memory.statistics())
    assert memory.statistics().hits == 1
    with pytest.deprecated_call(match=r"Cache.metrics\(\) is deprecated"):
        assert memory.metrics() == memory.statistics()
    assert AsyncCache(memory).statistics() == memory.statistics()
    with DiskCache(tmp_path / "disk", name="t") as disk:
        disk.set("k", b"v")
        _frozen(disk.statistics())
        assert disk.statistics().entries == 1
        with pytest.deprecated_call(match=r"DiskCache.stats\(\) is deprecated"):
            assert disk.stats().entries == 1
    manager = CacheManager()
    manager.add_cache("memory", memory)
    figures = manager.statistics()
    assert isinstance(figures, Mapping) and figures["memory"] == memory.statistics()
    with pytest.raises(TypeError):
        figures["other"] = None  # type: ignore[index]
    with pytest.deprecated_call():
        assert manager.stats() == dict(figures)


def test_pools_give_their_figures_as_statistics() -> None:
    with WorkerPool("figures", TaskPoolConfig(max_concurrent_tasks=1)) as pool:
        assert pool.execute(abs, -3) == 3
        _frozen(pool.statistics())
        assert pool.statistics().executed == 1
        with pytest.deprecated_call(match=r"WorkerPool.metrics\(\) is deprecated"):
            assert pool.metrics().executed == 1
    coordinator = RuntimeCoordinator()
    try:
        coordinator.register_pool("figures", TaskPoolConfig(max_concurrent_tasks=1)).execute(abs, -3)
        figures = coordinator.statistics()
        assert figures["figures"].executed == 1
        assert coordinator.metrics()["figures"]["executed"] == 1
    finally:
        coordinator.shutdown()
    with BufferPool(64, 2, name="figures") as buffers:
        _frozen(buffers.statistics())


def test_a_run_gives_its_figures_as_statistics(tmp_path: Path) -> None:
    texts = write_texts(tmp_path / "in", {"a.txt": "one\ntwo", "b.txt": "fine\nboom"})
    result = run(text_pipeline(), texts, tmp_path / "out", executor="inline")
    figures = result.statistics()
    _frozen(figures)
    assert (figures.files, figures.succeeded, figures.failed, figures.resumed) == (2, 1, 1, 0)
    assert [s.name for s in figures.stages] == [s.name for s in result.stages]
    assert figures.executor == "inline" and figures.wall_s == result.wall_s
