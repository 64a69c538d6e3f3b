"""Caches: bounded in-memory ``Cache`` with eviction policies, the persistent ``DiskCache``, and ``CacheManager``.

The engine keeps stage results across runs in a ``DiskCache`` (see
``pipeline.bookkeeping.memo``); these classes are also there for users' own code.
"""

from typing import TYPE_CHECKING

from ..errors import CacheClosed, CacheError, InvalidCacheName, LockTimeout, UnsupportedCacheValue

if TYPE_CHECKING:
    from .config import CacheConfig, EvictionPolicy, HybridPolicy
    from .disk import DiskCache, DiskCacheStats, PruneResult
    from .location import caching_disabled, default_cache_dir
    from .manager import CacheManager, ClearableCache, MeasuredCache
    from .memory import AsyncCache, Cache, CacheMetrics
else:  # a run looks up its cache folder (``location``) without loading SQLite or asyncio
    from .._lazy import lazy_exports

    __getattr__, __dir__ = lazy_exports(__name__, {
        ".config": ("CacheConfig", "EvictionPolicy", "HybridPolicy"),
        ".disk": ("DiskCache", "DiskCacheStats", "PruneResult"),
        ".location": ("caching_disabled", "default_cache_dir"),
        ".manager": ("CacheManager", "ClearableCache", "MeasuredCache"),
        ".memory": ("AsyncCache", "Cache", "CacheMetrics"),
    })
    del lazy_exports

__all__ = [  # sorted; tests/test_public_api.py keeps it so
    "AsyncCache", "Cache", "CacheClosed", "CacheConfig", "CacheError", "CacheManager", "CacheMetrics",
    "caching_disabled", "ClearableCache", "default_cache_dir", "DiskCache", "DiskCacheStats", "EvictionPolicy",
    "HybridPolicy", "InvalidCacheName", "LockTimeout", "MeasuredCache", "PruneResult", "UnsupportedCacheValue",
]
