"""Typed, validated configs: YAML mappings into frozen dataclasses.

Every field is checked for type and range; an unknown key, a wrong type, a non-finite number or
an out-of-range value raises ConfigError naming the dotted key and the reason. Range checks live
in field metadata: ``field(default=1, metadata=check(lambda v: v > 0, "must be > 0"))``, or
``validate(fn)`` where ``fn`` raises ConfigError with its own reason. Error messages show values
through :func:`brief`, so a hostile value (a YAML alias bomb) cannot blow up its own error.
"""

import dataclasses
import math
import reprlib
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from semnet.errors import ConfigError

T = TypeVar("T")


_BRIEF = reprlib.Repr()
_BRIEF.maxlevel, _BRIEF.maxstring, _BRIEF.maxother = 2, 60, 60
_BRIEF.maxlist = _BRIEF.maxtuple = _BRIEF.maxdict = _BRIEF.maxset = 4


def brief(value: Any) -> str:
    """A repr of bounded length, whatever the value's size or nesting."""
    return _BRIEF.repr(value)


def check(predicate: Callable[[Any], bool], why: str) -> dict:
    """Field metadata that rejects values for which ``predicate`` is false."""
    return {"check": (predicate, why)}


def validate(fn: Callable[[Any], object]) -> dict:
    """Field metadata that runs ``fn(value)``; the ConfigError it raises gives the reason."""
    return {"validate": fn}


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; a missing file or invalid YAML is a ConfigError, not a traceback."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def load(cls: type[T], data: Mapping[str, Any] | None, where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, validating every key."""
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{where.rstrip('.') or 'config'}: must be a mapping, got {type(data).__name__}"
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{where}{key}: unknown key (known: {known})")
    values = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where}{name}: required key is missing")
            continue
        value = _convert(hints[name], data[name], f"{where}{name}")
        predicate, why = f.metadata.get("check", (None, None))
        if predicate is not None and not predicate(value):
            raise ConfigError(f"{where}{name}: {brief(value)} {why}")
        if "validate" in f.metadata:
            try:
                f.metadata["validate"](value)
            except ConfigError as exc:
                raise ConfigError(f"{where}{name}: {exc}") from None
        values[name] = value
    return cls(**values)


def _convert(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return load(hint, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: must be a list, got {type(value).__name__}")
        (item,) = typing.get_args(hint)[:1]
        items = [_convert(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: must be a mapping, got {type(value).__name__}")
        return dict(value)
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            raise ConfigError(f"{key}: {brief(value)} is too large") from None
    if hint is int and isinstance(value, bool) or not isinstance(value, hint):
        raise ConfigError(
            f"{key}: must be {hint.__name__}, got {type(value).__name__} {brief(value)}"
        )
    if hint is float and not math.isfinite(value):
        raise ConfigError(f"{key}: {value!r} must be a finite number")
    return value
