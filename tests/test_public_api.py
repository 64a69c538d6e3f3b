"""The public API is exactly what the packages' ``__all__`` say (as trio and httpx check theirs).

``pipeline``'s top holds what a pipeline author needs; the layers below are
documented subpackages with their own ``__all__``, and ``stages`` (the video
library) is built on those names alone.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import subprocess
import sys
import types

import pytest
from support.paths import REPO

PACKAGES = ["pipeline", "stages"]
SUBPACKAGES = ["pipeline.bookkeeping", "pipeline.cache", "pipeline.dataplane", "pipeline.executors",
               "pipeline.observe", "pipeline.runtime", "pipeline.storage", "pipeline.tuning"]
# The top-level modules of pipeline that stage authors may import from by name, beside the package itself.
PUBLIC_MODULES = ["pipeline.errors", "pipeline.outputs", "pipeline.presets"]


@pytest.mark.parametrize("package", [*PACKAGES, *SUBPACKAGES])
def test_all_is_sorted_with_each_name_once(package: str) -> None:
    names = list(importlib.import_module(package).__all__)
    assert names == sorted(set(names), key=lambda n: (n.lower(), n))


@pytest.mark.parametrize("package", [*PACKAGES, *SUBPACKAGES, *PUBLIC_MODULES])
def test_all_names_only_what_exists(package: str) -> None:
    module = importlib.import_module(package)
    assert [n for n in module.__all__ if not hasattr(module, n)] == []


@pytest.mark.parametrize("package", [*PACKAGES, *SUBPACKAGES])
def test_every_public_name_of_a_package_is_in_its_all(package: str) -> None:
    module = importlib.import_module(package)
    names = {n: getattr(module, n) for n in dir(module)}  # dir(): those it loads on first use too
    public = {n for n, v in names.items()  # names it defines (a class of another module is that one's)
              if not n.startswith("_") and not isinstance(v, types.ModuleType)
              and n not in ("annotations", "TYPE_CHECKING") and getattr(v, "__module__", package).startswith(package)}
    assert public - set(module.__all__) == set(), "export it in __all__, or import it under a private name"


@pytest.mark.parametrize("package", [*PACKAGES, *SUBPACKAGES])
def test_every_exported_name_is_imported_for_type_checkers_as_it_is_at_run_time(package: str) -> None:
    # A package's names load on first use (PEP 562, so that `framepipe --version` loads no numpy); type checkers
    # and editors read the package's imports instead (under TYPE_CHECKING). Both must name the same objects.
    module = importlib.import_module(package)
    tree = ast.parse((REPO / package.replace(".", "/") / "__init__.py").read_text())
    imported = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            where = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            imported.update({alias.asname or alias.name: (where, alias.name) for alias in node.names})
    defined = {target.id for node in tree.body if isinstance(node, ast.Assign)
               for target in node.targets if isinstance(target, ast.Name)}
    defined |= {node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.ClassDef)}
    assert set(module.__all__) - set(imported) - defined == set()
    for name in set(module.__all__) & set(imported):
        where, attr = imported[name]
        assert getattr(module, name) is getattr(importlib.import_module(where), attr), name


def test_importing_a_package_loads_no_heavy_library_until_a_name_is_used() -> None:
    code = (f"import {', '.join([*PACKAGES, *SUBPACKAGES, *PUBLIC_MODULES])}, sys\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'av', 'pyarrow', 'loky', 'PIL'}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_the_engine_top_stays_small() -> None:
    import pipeline

    assert len(pipeline.__all__) <= 32, "a new name at the top? it may belong in a subpackage"
    modules = sorted(p.stem for p in (REPO / "pipeline").glob("*.py"))
    assert len(modules) <= 14, modules


def test_stages_import_only_what_the_engine_exports() -> None:
    allowed = {"pipeline", *SUBPACKAGES, *PUBLIC_MODULES}
    wrong = []
    for path in sorted((REPO / "stages").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                wrong += [f"{path.name}: import {a.name}" for a in node.names if a.name.startswith("pipeline.")]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("pipeline"):
                module = node.module or ""
                if module not in allowed:
                    wrong.append(f"{path.name}: from {module}")
                    continue
                exported = set(importlib.import_module(module).__all__)
                wrong += [f"{path.name}: {module}.{a.name}" for a in node.names if a.name not in exported]
    assert wrong == []
