"""The error tree: one module holds it, its docstring draws it as it is, and every error is exported."""

from __future__ import annotations

import ast
import inspect
import re

from support.paths import REPO

import pipeline.errors as errors

CLASSES = {name: cls for name, cls in vars(errors).items()
           if inspect.isclass(cls) and issubclass(cls, BaseException) and cls.__module__ == errors.__name__}


def drawn_tree() -> dict[str, tuple[str | None, tuple[str, ...]]]:
    """name -> (parent in the drawing, built-ins in parentheses), from the module docstring's tree."""
    doc = errors.__doc__ or ""
    block = doc.split("::", 1)[1]
    drawn: dict[str, tuple[str | None, tuple[str, ...]]] = {}
    stack: list[tuple[int, str]] = []
    for line in block.splitlines():
        match = re.match(r"^(\s+)(\w+)(?: \(([\w, ]+)\))?", line)
        if not match:
            continue
        depth, name = len(match[1]), match[2]
        while stack and stack[-1][0] >= depth:
            stack.pop()
        builtins = tuple(b.strip() for b in match[3].split(",")) if match[3] else ()
        drawn[name] = (stack[-1][1] if stack else None, builtins)
        stack.append((depth, name))
    return drawn


def test_the_docstring_draws_every_error_under_its_real_parent() -> None:
    drawn = drawn_tree()
    assert set(drawn) == set(CLASSES)
    for name, (parent, builtins) in drawn.items():
        cls = CLASSES[name]
        ours = [b.__name__ for b in cls.__bases__ if b.__module__ == errors.__name__]
        theirs = [b.__name__ for b in cls.__bases__ if b.__module__ == "builtins" and b is not Exception]
        assert ours == ([parent] if parent else []), name
        assert sorted(theirs) == sorted(builtins), name


def test_every_error_is_exported_and_every_export_is_an_error() -> None:
    assert set(errors.__all__) == set(CLASSES)


def test_every_error_type_a_result_names_is_an_error_class() -> None:
    named: set[str] = set()
    for path in (REPO / "pipeline").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "error_type" and isinstance(node.value, ast.Constant):
                named.add(str(node.value.value))
    assert named <= set(CLASSES), named - set(CLASSES)
