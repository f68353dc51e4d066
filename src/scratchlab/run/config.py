"""Dataclass configs and dotted `--set key=value` overrides.

Each experiment owns a dataclass of its defaults (nested dataclasses allowed). Overrides are
`a.b=value` strings; the value is parsed with the field's declared type. An unknown key or a
value that does not parse as the field's type is a `ConfigError` naming the key, the expected
type and what was found.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from typing import Any


class ConfigError(ValueError):
    """A configuration override names an unknown key or has the wrong type."""


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a (possibly nested) dataclass from `to_dict` output; unknown keys are errors."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown config keys {sorted(unknown)}; valid keys: {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        tp = hints[key]
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            kwargs[key] = from_dict(tp, value)
        elif _origin(tp) in (tuple,) and isinstance(value, list):
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    return cls(**kwargs)


def _origin(tp: Any) -> Any:
    return typing.get_origin(tp)


def _parse(text: str, tp: Any, key: str) -> Any:
    """Parse `text` as a value of type `tp` (bool, int, float, str, Optional[...], tuple[...], Literal)."""
    origin = _origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args and text.lower() in ("none", "null"):
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _parse(text, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"--set {key}={text}: expected {tp}, got {text!r}")
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        for c in choices:
            if str(c) == text:
                return c
        raise ConfigError(f"--set {key}={text}: expected one of {list(choices)}, got {text!r}")
    if origin in (tuple, list):
        args = typing.get_args(tp)
        item = args[0] if args else str
        parts = [p for p in text.strip("()[] ").split(",") if p.strip()]
        values = [_parse(p.strip(), item, key) for p in parts]
        return tuple(values) if origin is tuple else values
    if tp is bool:
        low = text.lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"--set {key}={text}: expected a bool (true/false), got {text!r}")
    if tp in (int, float):
        try:
            value = float(text) if tp is float else int(text)
        except ValueError:
            raise ConfigError(f"--set {key}={text}: expected {tp.__name__}, got {text!r}") from None
        return value
    if tp is str:
        return text
    raise ConfigError(f"--set {key}: fields of type {tp} cannot be set from the command line")


def set_value(cfg: Any, key: str, value: Any) -> None:
    """Set dotted `key` on `cfg`; `value` is a string (parsed by the field type) or an already-typed value."""
    parts = key.split(".")
    target = cfg
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(target):
            raise ConfigError(f"--set {key}: {'.'.join(parts[:i])} is not a config section")
        fields = {f.name: f for f in dataclasses.fields(target)}
        if part not in fields:
            where = ".".join(parts[:i]) or type(target).__name__
            raise ConfigError(f"--set {key}: unknown key {part!r} in {where}; valid keys: {sorted(fields)}")
        if i < len(parts) - 1:
            target = getattr(target, part)
            continue
        tp = typing.get_type_hints(type(target))[part]
        if dataclasses.is_dataclass(tp):
            raise ConfigError(f"--set {key}: {key} is a section; set one of its keys, e.g. {key}.<name>=...")
        if isinstance(value, str):
            value = _parse(value, tp, key)
        setattr(target, part, value)


def apply_overrides(cfg: Any, overrides: list[str] | dict[str, Any]) -> Any:
    """Apply `["a.b=1", ...]` or `{"a.b": 1}` to a copy of `cfg` and return it."""
    cfg = copy.deepcopy(cfg)
    items = overrides.items() if isinstance(overrides, dict) else (_split(o) for o in overrides)
    for key, value in items:
        set_value(cfg, key, value)
    return cfg


def _split(override: str) -> tuple[str, str]:
    if "=" not in override:
        raise ConfigError(f"--set {override}: expected key=value")
    key, value = override.split("=", 1)
    return key.strip(), value.strip()

