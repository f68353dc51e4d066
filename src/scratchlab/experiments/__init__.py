"""The experiment registry. Each module in this package registers its experiments with `@experiment`.

An experiment is a function `run(cfg, ctx) -> summary dict` plus a dataclass of defaults, the
overrides `--quick` applies (seconds, not minutes), and optional hooks:
`available(cfg) -> None | reason` (e.g. real data missing: `reproduce` skips with the reason),
`sample(run_dir, n) -> dict of arrays` and `predict(run_dir, text) -> str` for the CLI commands.
Modules are discovered automatically, so adding a family never edits this file or the CLI.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Experiment:
    name: str
    config: type
    fn: Callable[[Any, Any], dict[str, Any]]
    help: str = ""
    quick: dict[str, Any] = field(default_factory=dict)
    available: Callable[[Any], str | None] | None = None
    sample: Callable[..., dict[str, Any]] | None = None
    predict: Callable[..., str] | None = None
    in_reproduce: bool = True


EXPERIMENTS: dict[str, Experiment] = {}
_loaded = False


def experiment(name: str, config: type, *, help: str = "", quick: dict[str, Any] | None = None,
               available: Callable[[Any], str | None] | None = None, in_reproduce: bool = True):
    """Register `fn(cfg, ctx) -> summary` under `name`. `help` is the first line shown by `scratchlab list`."""

    def wrap(fn: Callable[[Any, Any], dict[str, Any]]) -> Callable[[Any, Any], dict[str, Any]]:
        if name in EXPERIMENTS:
            raise ValueError(f"experiment {name!r} is registered twice")
        EXPERIMENTS[name] = Experiment(name, config, fn, help or (fn.__doc__ or "").strip().split("\n")[0],
                                       quick or {}, available, in_reproduce=in_reproduce)
        return fn

    return wrap


def hook(name: str, kind: str):
    """Attach a `sample` or `predict` hook to an already registered experiment."""

    def wrap(fn):
        setattr(EXPERIMENTS[name], kind, fn)
        return fn

    return wrap


def load_all() -> dict[str, Experiment]:
    global _loaded
    if not _loaded:
        for info in pkgutil.iter_modules(__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{__name__}.{info.name}")
        _loaded = True
    return EXPERIMENTS


def get(name: str) -> Experiment:
    exps = load_all()
    if name not in exps:
        raise KeyError(f"no experiment named {name!r}; `scratchlab list` shows the {len(exps)} there are: "
                       f"{', '.join(sorted(exps))}")
    return exps[name]
