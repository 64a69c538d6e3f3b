"""Named pipelines that installed packages offer to the command line, and the options they take.

A package registers a preset as an entry point in the ``framepipe.presets``
group: a function taking keyword options (each with a default) and returning
a :class:`Pipeline`. The engine finds presets this way without importing any
video library itself.

Each option says what it accepts in its annotation, next to its default::

    Width = Annotated[int, Option(min=16, max=8192, help="picture width in pixels")]

    def thumbnails(*, width: Width = 320) -> Pipeline: ...

``-O width=100000`` is then refused before any work, in one line that names
the option and what it takes (:class:`InvalidOption`), and ``framepipe
presets`` shows it. An option without an ``Option`` takes its default's type.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib.metadata import entry_points
from typing import Any

from .errors import FramepipeError, InvalidOption, PipelineDefinitionError, PresetNotFound
from .graph import Pipeline

__all__ = ["Option", "available_presets", "load_preset", "preset_options", "option_specs", "checked_options",
           "build_preset", "load_pipeline_file", "parse_options"]

PresetFactory = Callable[..., Pipeline]

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_EMPTY = '""'  # how an empty value is shown
_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "text"}


@dataclass(frozen=True, eq=False)
class Option:
    """What one option accepts: a type (bool, int, float or str), a range or a set of choices, and values
    with a meaning of their own (``special``: ``{0: "the profile's"}``).

    ``min``/``max`` bound a number (inclusive), ``above`` excludes its bound; a number is always finite.
    ``choices`` are matched without regard to case and given back as written here. ``test`` and ``what``
    add a check of another kind and the words that say what it allows. ``kind`` may be left out where the
    option's annotation says it.
    """

    kind: type | None = None
    min: float | None = None
    max: float | None = None
    above: float | None = None
    choices: tuple[str, ...] = ()
    special: Mapping[Any, str] = field(default_factory=dict)
    help: str = ""
    test: Callable[[Any], bool] | None = None
    what: str = ""

    def typed(self, kind: type) -> Option:
        """This option with ``kind`` (from an annotation or a default) when it names none itself."""
        return self if self.kind is not None else replace(self, kind=kind)

    @property
    def accepts(self) -> str:
        """What the option takes, in words: ``an integer from 16 to 8192``."""
        kind = self.kind or str
        if self.choices:
            text = "one of " + ", ".join(self.choices)
        elif self.what:
            text = self.what
        else:
            text = _KINDS.get(kind, kind.__name__)
            if kind in (int, float):
                text += _range_words(self.min, self.max, self.above)
        if self.special:
            meanings = ", ".join(f"{_plain(v) or _EMPTY} ({why})" for v, why in self.special.items())
            text = f"{meanings} or {text}"
        return text

    def parse(self, text: str) -> Any:
        """``text`` (from a command line) as the value it gives; ``ValueError`` when it is not one this takes."""
        kind = self.kind or str
        text = text.strip()
        for value in self.special:
            if text.lower() == _plain(value) or (value is None and not text):
                return value
        if kind is bool:
            lowered = text.lower()
            if lowered not in _TRUE + _FALSE:
                raise ValueError(text)
            return lowered in _TRUE
        if kind is int:
            return self.check(int(text))
        if kind is float:
            return self.check(float(text))
        return self.check(text)

    def check(self, value: Any) -> Any:
        """``value`` as this option keeps it (a choice as written, an int as a float); ``ValueError`` if not
        one it takes."""
        if any(value == v and type(value) is type(v) for v in self.special):  # (0 is special, False is not)
            return value
        kind = self.kind or str
        if kind is bool:
            if not isinstance(value, bool):
                raise ValueError(value)
            return value
        if kind in (int, float):
            if isinstance(value, bool) or not isinstance(value, numbers.Real if kind is float else numbers.Integral):
                raise ValueError(value)
            value = kind(value)  # type: ignore[call-overload]
            if not math.isfinite(value):
                raise ValueError(value)
            if (self.min is not None and value < self.min) or (self.max is not None and value > self.max) or \
                    (self.above is not None and value <= self.above):
                raise ValueError(value)
        elif not isinstance(value, kind):
            raise ValueError(value)
        if self.choices:
            found = next((c for c in self.choices if c.lower() == str(value).lower()), None)
            if found is None:
                raise ValueError(value)
            value = found
        if self.test is not None and not self.test(value):
            raise ValueError(value)
        return value

    def validate(self, name: str, value: Any, where: str = "option") -> Any:
        """``value`` checked (see ``check``); ``InvalidOption`` naming ``where`` and ``name`` when it is wrong."""
        try:
            return self.check(value)
        except (ValueError, TypeError, OverflowError):
            raise InvalidOption(name, value, self.accepts, where) from None

    def convert(self, name: str, text: str, where: str = "option") -> Any:
        """``text`` parsed (see ``parse``); ``InvalidOption`` naming ``where`` and ``name`` when it is wrong."""
        try:
            return self.parse(text)
        except (ValueError, TypeError, OverflowError):
            raise InvalidOption(name, text, self.accepts, where) from None


def _number(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _range_words(low: float | None, high: float | None, above: float | None) -> str:
    if above is not None:
        return f" above {_number(above)}" + (f", up to {_number(high)}" if high is not None else "")
    if low is not None and high is not None:
        return f" from {_number(low)} to {_number(high)}"
    if low is not None:
        return f", {_number(low)} or more"
    if high is not None:
        return f" up to {_number(high)}"
    return ""


def _plain(value: Any) -> str:
    """A value as it is written on a command line."""
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


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


def option_specs(factory: PresetFactory) -> dict[str, Option]:
    """What each of a preset's options accepts: its ``Option`` annotation, else its default's type.

    An option with neither (a default of None) takes any text, ``none`` or nothing meaning None.
    """
    try:
        hints = typing.get_type_hints(factory, include_extras=True)
    except Exception:  # an annotation that does not resolve (a user's file): the defaults say the types
        hints = {}
    specs = {}
    for name, default in preset_options(factory).items():
        hint = hints.get(name)
        declared = next((m for m in getattr(hint, "__metadata__", ()) if isinstance(m, Option)), None)
        kind = typing.get_args(hint)[0] if declared is not None else None
        if kind not in _KINDS:
            kind = None if default is None or default is inspect.Parameter.empty else type(default)
            kind = kind if kind in _KINDS else str
        if declared is None:
            declared = Option(special={None: "the default"}) if default is None else Option()
        specs[name] = declared.typed(kind)
    return specs


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


def checked_options(factory: PresetFactory) -> PresetFactory:
    """Decorate a preset so that a call from Python checks its options as the command line does.

    ``presets.default(thumb_width=100000)`` raises the ``InvalidOption`` that ``-O thumb_width=100000`` gives,
    before any stage is made; a value is passed on as its option keeps it (a choice as declared).
    """
    specs: dict[str, Option] = {}

    @functools.wraps(factory)
    def checked(**options: Any) -> Pipeline:
        if not specs:
            specs.update(option_specs(factory))
        for name, value in options.items():
            if name in specs:
                options[name] = specs[name].validate(name, value)
        return factory(**options)

    return checked


def _build(factory: PresetFactory, label: str, options: Mapping[str, str] | None) -> Pipeline:
    """The pipeline ``factory`` builds with ``options``: every name known and every value one its option
    takes, checked before anything is built (``InvalidOption``)."""
    known = option_specs(factory)
    kwargs = {}
    for key, text in (options or {}).items():
        key = key.replace("-", "_")
        if key not in known:
            raise PipelineDefinitionError(
                f"{label} has no option {key!r} (options: {', '.join(known) or 'none'})")
        kwargs[key] = known[key].convert(key, text)
    pipeline = factory(**kwargs)
    if not isinstance(pipeline, Pipeline):
        raise PipelineDefinitionError(f"{label} returned {type(pipeline).__name__}, not a Pipeline")
    return pipeline
