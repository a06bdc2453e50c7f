"""Typed dataclasses from plain YAML/JSON data: every value converted to its annotation
(``bool``, ``int``, ``float``, ``str``, ``Literal``, ``list``, ``dict``, unions with ``None``,
nested dataclasses), with a one-line :class:`~pwavenet.errors.ConfigError` naming the dotted key
for an unknown key or a value of the wrong type. :mod:`pwavenet.config` builds its configs with it.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, Union

from .errors import ConfigError

__all__ = ["build_dataclass", "unknown_key"]


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
        return value.lower() in ("true", "yes")
    raise ValueError(value)


def _to_number(value: Any, tp: type) -> Any:
    """``value`` as an int or a float (``tp``); a bool is an int to Python, never to a config,
    and PyYAML reads "2e-4" (no dot) as a string."""
    if isinstance(value, bool) or (
        tp is int and isinstance(value, float) and not value.is_integer()
    ):
        raise ValueError(value)
    if isinstance(value, (int, float, str)):
        return tp(value)
    raise ValueError(value)


def _to_str(value: Any) -> str:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(value)


# Scalar annotation -> converter of a YAML value (ValueError when it does not convert).
_SCALARS: dict[Any, Any] = {
    bool: _to_bool,
    int: lambda v: _to_number(v, int),
    float: lambda v: _to_number(v, float),
    str: _to_str,
}


def _coerce(value: Any, tp: Any, key: str, where: str) -> Any:
    """Convert a YAML value to the annotated type, or raise a ConfigError naming the key."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    bad = ConfigError(f"{where}: {key} must be {_type_name(tp)}, got {value!r}")
    if origin in (Union, types.UnionType):
        return _coerce_union(value, args, key, where, bad)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {key} must be one of {list(args)}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise bad
        return [_coerce(v, args[0], f"{key}[{i}]", where) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise bad
        return {
            _coerce(k, args[0], key, where): _coerce(v, args[1], f"{key}.{k}", where)
            for k, v in value.items()
        }
    if tp in _SCALARS:
        try:
            return _SCALARS[tp](value)
        except ValueError:
            raise bad from None
    raise ConfigError(f"{where}: {key} has an unsupported type {_type_name(tp)}")


def _coerce_union(value: Any, args: tuple[Any, ...], key: str, where: str, bad: ConfigError) -> Any:
    """The first member of a union (``X | None``) that ``value`` converts to; ``None`` (or
    the string null/none) where the union admits None."""
    if type(None) in args and (
        value is None or (isinstance(value, str) and value.lower() in ("null", "none"))
    ):
        return None
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _coerce(value, arg, key, where)
        except ConfigError:
            pass
    raise bad


def unknown_key(key: str, known: list[str], where: str) -> ConfigError:
    """The error for an unknown dotted ``key``, with the closest of ``known`` as a hint."""
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(f"{where}: unknown key '{key}'{hint}")


def build_dataclass(cls: type, data: Any, prefix: str, where: str) -> Any:
    """``cls(**data)`` with every value converted to its annotation (nested dataclasses
    recursively); an unknown key or a value of the wrong type is a :class:`ConfigError` naming
    ``where`` and the dotted key (``prefix`` + key)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {prefix or 'the top level'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise unknown_key(full, names, where)
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = build_dataclass(tp, value if value is not None else {}, f"{full}.", where)
        else:
            kwargs[key] = _coerce(value, tp, full, where)
    return cls(**kwargs)
