"""A small typed-schema checker: nested dataclasses built from plain dicts (YAML).

Unknown keys, wrong types and out-of-range values raise ``ConfigError`` naming
the dotted key and what is allowed. Range limits sit in field metadata
(``ge``, ``gt``, ``le``, ``lt``); the field's type gives the rest (bool, int,
float, str, Optional, Literal, nested dataclasses).
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from typing import Any, Dict, Literal, Union


class ConfigError(ValueError):
    """A config value that the schema does not allow; the message names the key."""


def field(default, *, help: str = "", **limits):
    """A dataclass field with a help text and optional limits ge/gt/le/lt."""
    if dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: dataclasses.replace(default), metadata={"help": help, **limits})
    return dataclasses.field(default=default, metadata={"help": help, **limits})


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is Union:
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _convert(tp, value: Any, key: str):
    origin = typing.get_origin(tp)
    if origin is Union:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, key)
            except ConfigError:
                pass
        # Name every allowed form (e.g. "an integer or null"), not only the first one tried.
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed or isinstance(value, bool) != isinstance(allowed[0], bool):
            raise ConfigError(f"{key}: must be {_type_name(tp)}; got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key + ".")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None:
            if not math.isfinite(number):  # .inf / .nan pass no range check meaningfully
                raise ConfigError(f"{key}: expected a finite number, got {value!r}")
            return number
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def _check_limits(meta, value, key: str) -> None:
    if value is None or isinstance(value, (bool, str)):
        return
    for name, op, word in (("ge", lambda v, b: v >= b, ">="), ("gt", lambda v, b: v > b, ">"),
                           ("le", lambda v, b: v <= b, "<="), ("lt", lambda v, b: v < b, "<")):
        if name in meta and not op(value, meta[name]):
            raise ConfigError(f"{key}: must be {word} {meta[name]}, got {value!r}")


def build(cls, data: Any, prefix: str = ""):
    """An instance of dataclass ``cls`` from a dict; missing keys take their defaults."""
    where = prefix[:-1] if prefix else "the config"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean {prefix + close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown key {prefix + str(key)!r}{hint}; allowed keys in {where}: "
                              f"{', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], prefix + name)
            _check_limits(f.metadata, kwargs[name], prefix + name)
    return cls(**kwargs)


def to_dict(obj) -> Dict[str, Any]:
    return dataclasses.asdict(obj)


def describe(cls, prefix: str = "") -> str:
    """One line per key: dotted name, type, default and help (for --help-config)."""
    lines = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            lines.append(describe(tp, prefix + f.name + "."))
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        limits = " ".join(f"{k}={f.metadata[k]}" for k in ("ge", "gt", "le", "lt") if k in f.metadata)
        lines.append(f"{prefix}{f.name}: {_type_name(tp)} = {default!r} {limits}  {f.metadata.get('help', '')}".rstrip())
    return "\n".join(lines)
