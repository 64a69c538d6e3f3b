"""Named pipelines that installed packages offer to the command line.

A package registers a preset as an entry point in the ``framepipe.presets``
group: a function taking keyword options (each with a default) and returning
a :class:`Pipeline`. The engine finds presets this way without importing any
video library itself.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any

from .errors import FramepipeError, PipelineDefinitionError, PresetNotFound
from .graph import Pipeline

__all__ = ["available_presets", "load_preset", "preset_options", "build_preset", "load_pipeline_file",
           "parse_options"]

PresetFactory = Callable[..., Pipeline]


def parse_options(pairs: Sequence[str]) -> dict[str, str]:
    """``["KEY=VALUE", ...]`` (the command line's ``-O``) as a dict; a malformed pair is an error."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise FramepipeError(f"option {pair!r} is not KEY=VALUE")
        options[key.strip()] = value.strip()
    return options


def available_presets() -> dict[str, PresetFactory]:
    """Installed presets by name (loaded lazily from entry points)."""
    return {ep.name: ep.load() for ep in entry_points(group="framepipe.presets")}


def load_preset(name: str) -> PresetFactory:
    """The preset factory called ``name``."""
    for ep in entry_points(group="framepipe.presets"):
        if ep.name == name:
            factory: PresetFactory = ep.load()
            return factory
    names = ", ".join(sorted(ep.name for ep in entry_points(group="framepipe.presets"))) or "none installed"
    raise PresetNotFound(f"no preset named {name!r} (available: {names})")


def preset_options(factory: PresetFactory) -> dict[str, Any]:
    """A preset's options and their defaults."""
    return {p.name: p.default for p in inspect.signature(factory).parameters.values()
            if p.kind is p.KEYWORD_ONLY or p.kind is p.POSITIONAL_OR_KEYWORD}


def _convert(name: str, text: str, default: Any) -> Any:
    if isinstance(default, bool):
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise PipelineDefinitionError(f"option {name} expects true or false, not {text!r}")
    for kind in (int, float):
        if isinstance(default, kind):
            try:
                return kind(text)
            except ValueError:
                raise PipelineDefinitionError(f"option {name} expects a {kind.__name__}, not {text!r}") from None
    if default is None and text.lower() in ("none", ""):
        return None
    return text


def load_pipeline_file(path: str, options: Mapping[str, str] | None = None) -> Pipeline:
    """Build the pipeline a user's Python file defines: a ``build(**options)`` function or a ``pipeline``.

    The file runs as a module named ``framepipe_user_pipeline`` (registered in
    ``sys.modules`` so that worker processes can unpickle its stages).
    """
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("framepipe_user_pipeline", path)
    if spec is None or spec.loader is None:
        raise PipelineDefinitionError(f"cannot load a pipeline from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    # Workers cannot import this file by name: its stages travel by value.
    import cloudpickle
    cloudpickle.register_pickle_by_value(module)
    try:
        spec.loader.exec_module(module)
    except FileNotFoundError:
        raise PipelineDefinitionError(f"pipeline file {path} does not exist") from None
    factory = getattr(module, "build", None)
    if callable(factory):
        return _build(factory, str(path), options)
    found = getattr(module, "pipeline", None)
    if isinstance(found, Pipeline):
        if options:
            raise PipelineDefinitionError(f"{path} defines `pipeline`, not `build(**options)`: it takes no options")
        return found
    raise PipelineDefinitionError(f"{path} defines neither build(**options) -> Pipeline nor a `pipeline` variable")


def build_preset(name: str, options: Mapping[str, str] | None = None) -> Pipeline:
    """Build preset ``name`` with ``options`` given as text (converted to each default's type)."""
    return _build(load_preset(name), f"preset {name!r}", options)


def _build(factory: PresetFactory, label: str, options: Mapping[str, str] | None) -> Pipeline:
    known = preset_options(factory)
    kwargs = {}
    for key, text in (options or {}).items():
        key = key.replace("-", "_")
        if key not in known:
            raise PipelineDefinitionError(
                f"{label} has no option {key!r} (options: {', '.join(known) or 'none'})")
        kwargs[key] = _convert(key, text, known[key])
    pipeline = factory(**kwargs)
    if not isinstance(pipeline, Pipeline):
        raise PipelineDefinitionError(f"{label} returned {type(pipeline).__name__}, not a Pipeline")
    return pipeline
