"""``CacheManager``: every cache of a process under one name each, cleared and measured together."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

__all__ = ["ClearableCache", "CacheManager", "MeasuredCache"]


@runtime_checkable
class ClearableCache(Protocol):
    """Anything with a ``name`` that ``clear()`` empties (a cache of ours, or a user's own)."""

    name: str

    def clear(self) -> None: ...


@runtime_checkable
class MeasuredCache(Protocol):
    """Anything whose figures ``statistics()`` gives (every cache of ours; a user's own may be one)."""

    def statistics(self) -> object: ...


class CacheManager:
    """Caches by name: ``add_cache``, ``add_clearable_cache``, ``clear_all``, ``list_caches``, ``statistics``.

    ``statistics()`` asks each cache for its own ``statistics()``; a cache
    without one is listed without figures.
    """

    def __init__(self) -> None:
        self._caches: dict[str, Any] = {}
        self._lock = threading.Lock()

    def add_cache(self, name: str, cache: Any) -> Any:
        """Register ``cache`` under ``name`` (a name is taken once) and return it."""
        with self._lock:
            if name in self._caches:
                raise ValueError(f"a cache named {name!r} is already registered")
            self._caches[name] = cache
        return cache

    def add_clearable_cache(self, cache: ClearableCache) -> ClearableCache:
        """Register anything that has a ``name`` and a ``clear()``, under that name."""
        if not isinstance(cache, ClearableCache):
            raise TypeError(f"{cache!r} has no name and clear(): not a ClearableCache")
        self.add_cache(cache.name, cache)
        return cache

    def get(self, name: str) -> Any:
        """The cache registered under ``name``."""
        with self._lock:
            try:
                return self._caches[name]
            except KeyError:
                raise KeyError(f"no cache named {name!r} (have: {', '.join(self._caches) or 'none'})") from None

    def remove(self, name: str) -> None:
        """Forget the cache registered under ``name`` (it is not cleared)."""
        with self._lock:
            self._caches.pop(name, None)

    def list_caches(self) -> list[str]:
        """The registered names, in the order they were added."""
        with self._lock:
            return list(self._caches)

    def clear_all(self) -> None:
        """Empty every registered cache."""
        for name in self.list_caches():
            self.get(name).clear()

    def statistics(self) -> Mapping[str, Any]:
        """Each cache's figures by name (its ``statistics()``; a user's cache without one gives None), read-only."""
        out: dict[str, Any] = {}
        for name in self.list_caches():
            cache = self.get(name)
            out[name] = cache.statistics() if isinstance(cache, MeasuredCache) else None
        return MappingProxyType(out)

    def stats(self) -> dict[str, Any]:
        """Deprecated: the older name of :meth:`statistics`, as a plain dict."""
        warnings.warn(f"{type(self).__name__}.stats() is deprecated: use statistics()", DeprecationWarning,
                      stacklevel=2)
        return dict(self.statistics())
