"""The public API is exactly what the packages' ``__all__`` say (as trio and httpx check theirs)."""

from __future__ import annotations

import importlib
import types

import pytest

PACKAGES = ["pipeline", "stages"]


@pytest.mark.parametrize("package", PACKAGES)
def test_all_is_sorted_with_each_name_once(package: str) -> None:
    names = list(importlib.import_module(package).__all__)
    assert names == sorted(set(names), key=lambda n: (n.lower(), n))


@pytest.mark.parametrize("package", [*PACKAGES, "pipeline.errors", "pipeline.cache", "pipeline.executors"])
def test_all_names_only_what_exists(package: str) -> None:
    module = importlib.import_module(package)
    assert [n for n in module.__all__ if not hasattr(module, n)] == []


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_of_a_package_is_in_its_all(package: str) -> None:
    module = importlib.import_module(package)
    public = {n for n, v in vars(module).items()
              if not n.startswith("_") and not isinstance(v, types.ModuleType) and n != "annotations"}
    assert public - set(module.__all__) == set(), "export it in __all__, or import it under a private name"
