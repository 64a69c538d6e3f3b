"""The video library's input errors: each an engine ``InputError``, drawn in the module's docstring, exported."""

from __future__ import annotations

import inspect
import re

import stages
import stages.errors as errors
from pipeline import InputError

CLASSES = {name: cls for name, cls in vars(errors).items()
           if inspect.isclass(cls) and issubclass(cls, BaseException) and cls.__module__ == errors.__name__}


def test_every_media_error_is_an_input_error_drawn_under_its_real_parent() -> None:
    drawn: dict[str, str | None] = {}  # name -> parent in the docstring's tree
    stack: list[tuple[int, str]] = []
    for line in (errors.__doc__ or "").split("::", 1)[1].splitlines():
        match = re.match(r"^(\s+)(\w+)", line)
        if not match:
            continue
        while stack and stack[-1][0] >= len(match[1]):
            stack.pop()
        drawn[match[2]] = stack[-1][1] if stack else None
        stack.append((len(match[1]), match[2]))
    assert set(drawn) - {"InputError"} == set(CLASSES)
    for name, cls in CLASSES.items():
        assert issubclass(cls, InputError) and issubclass(cls, ValueError), name
        assert [b.__name__ for b in cls.__bases__ if issubclass(b, InputError)] == [drawn[name]], name


def test_media_errors_are_exported_by_the_library_and_read_as_one_line() -> None:
    assert set(errors.__all__) == set(CLASSES) and set(CLASSES) <= set(stages.__all__)
    error = errors.TruncatedMedia("/in/cut.mp4", "the data ends at 2.0 s of 10.0 s")
    assert str(error) == "/in/cut.mp4: the data ends at 2.0 s of 10.0 s" and "\n" not in str(error)
    assert (error.path, error.reason) == ("/in/cut.mp4", "the data ends at 2.0 s of 10.0 s")
