"""Caches: bounded in-memory ``Cache`` with eviction policies, the persistent ``DiskCache``, and ``CacheManager``.

The engine keeps stage results across runs in a ``DiskCache`` (see
``pipeline.bookkeeping.memo``); these classes are also there for users' own code.
"""

from ..errors import CacheClosed, CacheError, InvalidCacheName, LockTimeout, UnsupportedCacheValue
from .config import CacheConfig, EvictionPolicy, HybridPolicy
from .disk import DiskCache, DiskCacheStats, PruneResult
from .location import caching_disabled, default_cache_dir
from .manager import CacheManager, ClearableCache, MeasuredCache
from .memory import AsyncCache, Cache, CacheMetrics

__all__ = [  # sorted; tests/test_public_api.py keeps it so
    "AsyncCache", "Cache", "CacheClosed", "CacheConfig", "CacheError", "CacheManager", "CacheMetrics",
    "caching_disabled", "ClearableCache", "default_cache_dir", "DiskCache", "DiskCacheStats", "EvictionPolicy",
    "HybridPolicy", "InvalidCacheName", "LockTimeout", "MeasuredCache", "PruneResult", "UnsupportedCacheValue",
]
