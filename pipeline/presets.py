"""Named pipelines that installed packages offer to the command line.

A package registers a preset as an entry point in the ``framepipe.presets``
group: a function taking keyword options (each with a default) and returning
a :class:`Pipeline`. The engine finds presets this way without importing any
video library itself.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any

from .errors import PipelineDefinitionError, PresetNotFound
from .graph import Pipeline

__all__ = ["available_presets", "load_preset", "preset_options", "build_preset"]

PresetFactory = Callable[..., Pipeline]


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


def build_preset(name: str, options: Mapping[str, str] | None = None) -> Pipeline:
    """Build preset ``name`` with ``options`` given as text (converted to each default's type)."""
    factory = load_preset(name)
    known = preset_options(factory)
    kwargs = {}
    for key, text in (options or {}).items():
        key = key.replace("-", "_")
        if key not in known:
            raise PipelineDefinitionError(
                f"preset {name!r} has no option {key!r} (options: {', '.join(known) or 'none'})")
        kwargs[key] = _convert(key, text, known[key])
    return factory(**kwargs)
