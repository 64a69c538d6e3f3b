"""Packages whose exported names are imported on first use (PEP 562), so that importing a package costs nothing.

``framepipe --version`` imports ``pipeline`` and ``pipeline.cli``: were their names imported eagerly, it would
load numpy, pyarrow and loky to print one line. A package lists its exports by module instead::

    if TYPE_CHECKING:  # what type checkers and editors see
        from .graph import Pipeline
    else:
        __getattr__, __dir__ = lazy_exports(__name__, {".graph": ("Pipeline",)})

``pipeline.Pipeline`` then imports ``pipeline.graph`` the first time it is looked up, and keeps the value.
An export named as its module (``pipeline.run``, the function of ``pipeline/run.py``) stays the export once
the module is loaded, as it did when the package imported it eagerly.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

__all__ = ["lazy_exports"]


def lazy_exports(package: str, modules: Mapping[str, Iterable[str]]) -> tuple[Callable[[str], Any],
                                                                              Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``, which exports the names ``modules`` lists by the module
    (relative to ``package``) that defines them."""
    where = {name: module for module, names in modules.items() for name in names}
    shadowed = frozenset(name for name, module in where.items() if module == f".{name}")
    if shadowed:
        module = sys.modules[package]
        module.__class__ = _Exporting
        cast(_Exporting, module).__shadowed__ = shadowed

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)  # looked up once: the next use is a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *where})

    return __getattr__, __dir__


class _Exporting(types.ModuleType):
    """A package with an export named as the module that defines it (``run``, in ``pipeline/run.py``)."""

    __shadowed__: frozenset[str] = frozenset()

    def __setattr__(self, name: str, value: Any) -> None:
        # Loading ``pipeline.run`` sets the module as the package's attribute ``run``: the function stays instead.
        if name in self.__shadowed__ and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)
