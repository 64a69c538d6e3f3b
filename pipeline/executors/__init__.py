"""Executors: where a pipeline's files run (``inline`` in this process, ``local`` on a loky pool, ``ray`` on Ray)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import UnsupportedRunOption

if TYPE_CHECKING:
    from .base import ExecutionReport, Executor, FileTask, RunEvents
    from .inline import InlineExecutor
    from .local import LocalExecutor
else:  # the command's parser needs ``EXECUTORS``; an executor's modules load when one is asked for
    from .._lazy import lazy_exports

    __getattr__, __dir__ = lazy_exports(__name__, {
        ".base": ("ExecutionReport", "Executor", "FileTask", "RunEvents"),
        ".inline": ("InlineExecutor",),
        ".local": ("LocalExecutor",),
    })
    del lazy_exports

__all__ = [  # sorted; tests/test_public_api.py keeps it so
    "ExecutionReport", "Executor", "EXECUTORS", "FileTask", "get_executor", "InlineExecutor", "LocalExecutor",
    "RunEvents",
]

EXECUTORS = ("local", "inline", "ray")


def get_executor(name: str, workers: int | None = None, *, file_timeout: float | None = None,
                 address: str | None = None, **options: Any) -> Executor:
    """The executor called ``name`` (``"local"``, ``"inline"`` or ``"ray"``).

    ``file_timeout`` needs the local or the Ray executor; ``address`` (a Ray cluster) and ``options`` (the
    ``RayExecutor``'s own) the Ray one, which imports Ray only now.
    """
    ray_only = (["address"] if address is not None else []) + sorted(options)
    if name != "ray" and ray_only:
        raise UnsupportedRunOption(f"{', '.join(ray_only)}: an option of the ray executor, not of the {name} one")
    if name == "inline":
        if file_timeout is not None:
            raise UnsupportedRunOption("a file timeout needs the local executor: the inline one cannot stop "
                                       "a call in its own process")
        from .inline import InlineExecutor
        return InlineExecutor()
    if name == "local":
        from .local import LocalExecutor
        return LocalExecutor(workers, file_timeout=file_timeout)
    if name == "ray":
        from .ray import RayExecutor  # raises MissingExtra when Ray is not installed
        return RayExecutor(workers, address=address, file_timeout=file_timeout, **options)
    raise ValueError(f"unknown executor {name!r} (choose {', '.join(map(repr, EXECUTORS))})")
