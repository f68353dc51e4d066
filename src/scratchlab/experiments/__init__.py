"""The experiment registry. Each module in this package registers its experiments with `@experiment`.

An experiment is a function `run(cfg, ctx) -> summary dict` plus a dataclass of defaults, the
overrides `--quick` applies (seconds, not minutes), and optional hooks:
`available(cfg) -> None | reason` (e.g. real data missing: `reproduce` skips with the reason),
`sample(run_dir, n) -> dict of arrays`, `predict(run_dir, text) -> str` and
`generate(run_dir, prompt, length, temperature, seed) -> str` for the CLI commands.
Modules are discovered automatically, so adding a family never edits this file or the CLI.

A multi-run experiment (a comparison, a sweep over lengths or clip values) is data, not a loop: `@sweep_experiment`
registers a function `plan(cfg) -> Plan` naming the experiment to run, its variants (name -> overrides) and the
number of seeds; `scratchlab.sweep` runs the plan (every run an ordinary run directory, OUT/<variant>/seed<k>/) and
aggregates it, and an optional `finish(cfg, result, run) -> dict` hook adds the experiment's own figures and
numbers. Nothing here runs anything: experiments never import the sweep engine or the runner.
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
    generate: Callable[..., str] | None = None  # a language model's text (`scratchlab generate RUN_DIR`)
    in_reproduce: bool = True
    seeds: int = 5  # how many seeds `reproduce` runs it over (at full budget; --quick: 2)
    plan: Callable[[Any], Plan] | None = None  # a multi-run experiment: its runs, as data
    finish: Callable[..., dict[str, Any]] | None = None  # after a plan's runs: figures and derived numbers
    parallel: bool = False  # runs data-parallel under torchrun (its model and data go through ctx.world)
    batch: str | None = None  # parallel: the config field of the global batch, split over the ranks (None: not
    # split; every rank trains on the whole of each step's data)


@dataclass
class Plan:
    """The runs of a multi-run experiment: `experiment` with `base` overrides, then each variant's, each variant
    over `seeds` seeds (the run's seed, seed + 1, ...). `metrics`: the summary fields its table and figure lead
    with (default: every numeric field). The table lists the variants in `variants`' order; `run_order` (variant
    names) may start their jobs in another, e.g. the slowest first in a process pool."""

    experiment: str
    variants: dict[str, dict[str, Any]]
    seeds: int = 1
    base: dict[str, Any] = field(default_factory=dict)
    metrics: tuple[str, ...] = ()
    run_order: tuple[str, ...] = ()


EXPERIMENTS: dict[str, Experiment] = {}
_loaded = False


def experiment(name: str, config: type, *, help: str = "", quick: dict[str, Any] | None = None,
               available: Callable[[Any], str | None] | None = None, in_reproduce: bool = True, seeds: int = 5,
               parallel: bool = False, batch: str | None = None):
    """Register `fn(cfg, ctx) -> summary` under `name`. `help` is the first line shown by `scratchlab list`;
    `seeds`: how many seeds `reproduce` runs it over; `parallel`: it runs under torchrun, splitting the config
    field `batch` (dotted) over the processes (see train/distributed.py)."""

    def wrap(fn: Callable[[Any, Any], dict[str, Any]]) -> Callable[[Any, Any], dict[str, Any]]:
        if name in EXPERIMENTS:
            raise ValueError(f"experiment {name!r} is registered twice")
        EXPERIMENTS[name] = Experiment(name, config, fn, help or (fn.__doc__ or "").strip().split("\n")[0],
                                       quick or {}, available, in_reproduce=in_reproduce, seeds=seeds,
                                       parallel=parallel, batch=batch)
        return fn

    return wrap


def sweep_experiment(name: str, config: type, *, help: str, quick: dict[str, Any] | None = None,
                     available: Callable[[Any], str | None] | None = None, seeds: int = 5):
    """Register `plan(cfg) -> Plan` as the multi-run experiment `name`; its config should have a `seeds` field."""

    def wrap(plan: Callable[[Any], Plan]) -> Callable[[Any], Plan]:
        def not_direct(cfg: Any, ctx: Any) -> dict[str, Any]:
            raise TypeError(f"{name} is a multi-run experiment: run it through scratchlab.sweep (or the CLI)")

        experiment(name, config, help=help, quick=quick, available=available, seeds=seeds)(not_direct)
        EXPERIMENTS[name].plan = plan
        return plan

    return wrap


def hook(name: str, kind: str):
    """Attach a `sample`, `predict`, `generate` or `finish` hook to an already registered experiment."""

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
