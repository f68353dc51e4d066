"""Dataclass configs and dotted `--set key=value` overrides.

Each experiment owns a dataclass of its defaults (nested dataclasses allowed). Overrides are
`a.b=value` strings; the value is parsed with the field's declared type. An unknown key or a
value that does not parse as the field's type is a `ConfigError` naming the key, the expected
type and what was found.

A field's range is part of its type, written beside it with `typing.Annotated`:

    steps: PositiveInt = 3000                        # an int >= 1
    lr: PositiveFloat = 1e-3                         # a float > 0
    hidden: tuple[PositiveInt, ...] = (512, 256)     # every item
    bits: Annotated[int, Range(ge=1, le=62)] = 8     # any other bounds
    d_steps: PositiveInt | None = None               # None, or in range

`validate(cfg)` checks every field's type and range; `apply_overrides` and `from_dict` call it, so `--set`
values, `--quick` settings and configs read back from a run directory all pass through the same checks, and
a bad one is one line: "--set batch=0: expected an int >= 1, got 0".

`read_file` reads `--config FILE` (JSON, or YAML with PyYAML): a run directory's config.json or a mapping of
fields; `file_overrides` turns its fields into overrides, checked with the file's name in the message.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Annotated, Any


class ConfigError(ValueError):
    """A configuration override names an unknown key, has the wrong type or is out of the field's range."""


@dataclasses.dataclass(frozen=True)
class Range:
    """Bounds on a number (on each item of a tuple of numbers), as `Annotated[int, Range(ge=1)]`.

    ge/gt: at least / more than; le/lt: at most / less than; None: no bound on that side. A bounded float
    must also be finite: NaN and infinities are never in range.
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def __contains__(self, x: float) -> bool:
        finite = isinstance(x, int) or math.isfinite(x)  # math.isfinite(10**400) would overflow
        return (finite and (self.ge is None or x >= self.ge) and (self.gt is None or x > self.gt)
                and (self.le is None or x <= self.le) and (self.lt is None or x < self.lt))

    def describe(self, integer: bool) -> str:
        """'>= 1', '> 0', '1..62' (ints, both ends closed) or '[0, 1)'."""
        lo = (self.ge, "[", ">=") if self.ge is not None else (self.gt, "(", ">") if self.gt is not None else None
        hi = (self.le, "]", "<=") if self.le is not None else (self.lt, ")", "<") if self.lt is not None else None
        if lo and hi:
            if integer and lo[1] == "[" and hi[1] == "]":
                return f"in {lo[0]:g}..{hi[0]:g}"
            return f"in {lo[1]}{lo[0]:g}, {hi[0]:g}{hi[1]}"
        value, _, op = lo or hi or (None, "", "")
        return f"{op} {value:g}" if op else "finite"


PositiveInt = Annotated[int, Range(ge=1)]          # counts and sizes: steps, batch, widths
NonNegativeInt = Annotated[int, Range(ge=0)]       # counts where 0 has a meaning the field's comment gives
PositiveFloat = Annotated[float, Range(gt=0)]      # learning rates, clip norms
NonNegativeFloat = Annotated[float, Range(ge=0)]   # weight decay, loss weights
Probability = Annotated[float, Range(ge=0, le=1)]  # fractions and accuracy thresholds
ProperFraction = Annotated[float, Range(gt=0, lt=1)]  # some but not all: the validation share of a split
Rate = Annotated[float, Range(ge=0, lt=1)]         # dropout, momentum, decays: 1 would keep (or drop) everything


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(cls: type, data: dict[str, Any], source: str = "config") -> Any:
    """Rebuild a (possibly nested) dataclass from `to_dict` output; unknown keys and values that `validate`
    refuses are errors (`source` names where the data came from in the message)."""
    cfg = _from_dict(cls, data)
    validate(cfg, source)
    return cfg


def _from_dict(cls: type, data: dict[str, Any]) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__}: expected a section (an object of keys), got {data!r:.60}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown config keys {sorted(unknown)}; valid keys: {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        tp = hints[key]
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            kwargs[key] = _from_dict(tp, value)
        elif _origin(tp) in (tuple,) and isinstance(value, list):
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    return cls(**kwargs)


def _origin(tp: Any) -> Any:
    return typing.get_origin(tp)


def _parse(text: str, tp: Any, key: str, source: str = "--set") -> Any:
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
                return _parse(text, arg, key, source)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{source} {key}={text}: expected {tp}, got {text!r}")
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        for c in choices:
            if str(c) == text:
                return c
        raise ConfigError(f"{source} {key}={text}: expected one of {list(choices)}, got {text!r}")
    if origin in (tuple, list):
        args = typing.get_args(tp)
        item = args[0] if args else str
        parts = [p for p in text.strip("()[] ").split(",") if p.strip()]
        values = [_parse(p.strip(), item, key, source) for p in parts]
        return tuple(values) if origin is tuple else values
    if tp is bool:
        low = text.lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{source} {key}={text}: expected a bool (true/false), got {text!r}")
    if tp in (int, float):
        try:
            value = float(text) if tp is float else int(text)
        except ValueError:
            raise ConfigError(f"{source} {key}={text}: expected {tp.__name__}, got {text!r}") from None
        return value
    if tp is str:
        return text
    raise ConfigError(f"{source} {key}: fields of type {tp} cannot be set from the command line")


def set_value(cfg: Any, key: str, value: Any, source: str = "--set") -> None:
    """Set dotted `key` on `cfg`; `value` is a string (parsed by the field type) or an already-typed value (a
    list for a tuple field becomes a tuple). `source` starts any error message."""
    parts = key.split(".")
    target = cfg
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(target):
            raise ConfigError(f"{source} {key}: {'.'.join(parts[:i])} is not a config section")
        fields = {f.name: f for f in dataclasses.fields(target)}
        if part not in fields:
            where = ".".join(parts[:i]) or type(target).__name__
            raise ConfigError(f"{source} {key}: unknown key {part!r} in {where}; valid keys: {sorted(fields)}")
        if i < len(parts) - 1:
            target = getattr(target, part)
            continue
        tp = typing.get_type_hints(type(target))[part]
        if dataclasses.is_dataclass(tp):
            raise ConfigError(f"{source} {key}: {key} is a section; set one of its keys, e.g. {key}.<name>=...")
        if isinstance(value, str):
            value = _parse(value, tp, key, source)
        elif isinstance(value, list) and tuple in {_origin(t) for t in (tp, *typing.get_args(tp))}:
            value = tuple(value)  # JSON and YAML have lists only
        setattr(target, part, value)


def apply_overrides(cfg: Any, overrides: list[str] | dict[str, Any]) -> Any:
    """Apply `["a.b=1", ...]` or `{"a.b": 1}` to a copy of `cfg` and return it."""
    cfg = copy.deepcopy(cfg)
    items = list(overrides.items() if isinstance(overrides, dict) else (_split(o) for o in overrides))
    for key, value in items:
        set_value(cfg, key, value)
    validate(cfg, "--set", written={k: v for k, v in items if isinstance(v, str)})
    return cfg


def validate(cfg: Any, source: str = "config", written: dict[str, str] | None = None) -> None:
    """Check every field of `cfg` (nested sections too) against its declared type and `Range`; the first
    problem is a ConfigError "{source} key=value: expected ..., got ...", the value as `written` (the text of
    an override) when given. Types other than numbers, bools, strings, Literals, tuples of them, optionals and
    sections are not checked."""
    written = written or {}
    for key, value, hint in _fields(cfg):
        problem = _problem(value, hint)
        if problem is not None:
            raise ConfigError(f"{source} {key}={written.get(key, _show(value))}: {problem}")


def _fields(cfg: Any, prefix: str = ""):
    """(dotted key, value, type with its Annotated extras) for every leaf field."""
    hints = typing.get_type_hints(type(cfg), include_extras=True)
    for f in dataclasses.fields(cfg):
        value, hint = getattr(cfg, f.name), hints[f.name]
        if dataclasses.is_dataclass(hint) and isinstance(value, hint):
            yield from _fields(value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", value, hint


_ARTICLE = {int: "an int", float: "a float", bool: "a bool", str: "a str"}


def _problem(value: Any, hint: Any) -> str | None:
    """None when `value` is of type `hint` and in its ranges, else "expected ..., got ..."."""
    origin, args = _origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return f"expected a {hint.__name__} section, got {value!r:.60}"
    if origin is Annotated:
        base, *extras = args
        problem = _problem(value, base)
        if problem is not None or not isinstance(value, int | float):
            return problem
        for bound in extras:
            if isinstance(bound, Range) and value not in bound:
                return f"expected {_ARTICLE.get(base, str(base))} {bound.describe(base is int)}, got {value!r}"
        return None
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        problems = [_problem(value, a) for a in args if a is not type(None)]
        return None if None in problems else problems[0]
    if origin is typing.Literal:
        return None if value in args else f"expected one of {list(args)}, got {value!r}"
    if origin in (tuple, list):
        if not isinstance(value, tuple | list):
            return f"expected a list of values, got {value!r}"
        for i, item in enumerate(value):
            if args and (problem := _problem(item, args[0])) is not None:
                return f"{problem} (item {i})"
        return None
    if hint in _ARTICLE:
        # bool is an int to Python, but `steps=True` is a mistake; an int is a fine float (JSON writes 1.0 as 1.0)
        ok = isinstance(value, hint) and (hint is bool or not isinstance(value, bool)) or (
            hint is float and isinstance(value, int) and not isinstance(value, bool))
        return None if ok else f"expected {_ARTICLE[hint]}, got {value!r}"
    return None


def _show(value: Any) -> str:
    """A value as it would be written after `--set key=`."""
    if isinstance(value, tuple | list):
        return ",".join(_show(v) for v in value)
    if value is None or isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _split(override: str) -> tuple[str, str]:
    if "=" not in override:
        raise ConfigError(f"--set {override}: expected key=value")
    key, value = override.split("=", 1)
    return key.strip(), value.strip()


RUN_KEYS = ("experiment", "seed", "device", "quick", "config")  # a run directory's config.json


def read_file(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """`--config FILE` -> (run settings, config fields). FILE is JSON, or YAML (.yaml/.yml) when PyYAML is
    installed; a folder means its config.json. A run directory's config.json ({"experiment", "seed", "device",
    "quick", "config": {...}}) gives its fields and the other keys as settings; any other mapping is all fields
    (sections nested, or dotted keys: {"base.steps": 10}) and no settings."""
    path = Path(path)
    path = path / "config.json" if path.is_dir() else path
    where = f"--config {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{where}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise ConfigError(f"{where}: cannot read ({e.strerror or e})") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError(f"{where}: reading YAML needs PyYAML, which is not installed (pip install pyyaml); "
                              "or write the config as JSON") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{where}: not valid YAML ({' '.join(str(e).split())})") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{where}: not valid JSON ({e})") from None
    data = {} if data is None else data  # an empty YAML file
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of config keys, got {type(data).__name__} {data!r:.60}")
    if not (isinstance(data.get("config"), dict) and set(data) <= set(RUN_KEYS)):
        return {}, data
    settings = {k: v for k, v in data.items() if k != "config"}
    for key, problem in (("experiment", _problem(settings.get("experiment", ""), str)),
                         ("seed", _problem(settings.get("seed", 0), Annotated[int, Range(ge=0, lt=2**63)])),
                         ("quick", _problem(settings.get("quick", False), bool))):
        if problem is not None:
            raise ConfigError(f"{where} {key}={settings[key]!r}: {problem}")
    return settings, data["config"]


def file_overrides(cfg: Any, fields: dict[str, Any], source: str) -> dict[str, Any]:
    """A file's `fields` as overrides {dotted key: typed value} of `cfg` (the config they will apply to), checked
    now: an unknown key, a wrong type or a value out of range is a ConfigError starting with `source`. A string
    where a number or bool belongs is parsed as `--set` would (YAML reads 1e-3 as a string)."""
    flat = _flat_keys(fields)
    cfg = copy.deepcopy(cfg)
    for key, value in flat.items():
        set_value(cfg, key, value, source)
    validate(cfg, source)
    out = {}
    for key in flat:
        value = cfg
        for part in key.split("."):
            value = getattr(value, part)
        out[key] = value
    return out


def _flat_keys(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out |= _flat_keys(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
    return out
