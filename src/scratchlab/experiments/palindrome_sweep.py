"""Accuracy against palindrome length T for rnn, lstm and gru over several seeds: a plan of `palindrome` runs.

Every (model, T) is a variant `<model>-T<T>`, every seed an ordinary `palindrome` run directory under the sweep's
(`<model>-T<T>/seed<s>/`, with its config, metrics, curves and summary), run and aggregated by scratchlab.sweep.
The sweep trains with the palindrome recipe (`palindrome.RECIPE`) unless `recipe=false`, which gives the course's
defaults. Summary: the sweep's `variants` (every numeric field over seeds: mean, std, 95% interval), and per model
the largest T up to which the mean stays >= `threshold` at every swept length (`largest_T_<model>`), and the
accuracy-against-length figure with the interval over seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

from scratchlab.experiments import Plan, hook, sweep_experiment
from scratchlab.experiments.palindrome import Length, recipe
from scratchlab.run import plots
from scratchlab.run.config import PositiveInt, Probability


@dataclass
class SweepConfig:
    models: tuple[str, ...] = ("rnn", "lstm", "gru")  # the cells compared
    lengths: tuple[Length, ...] = (5, 10, 15, 20, 30, 50)  # palindrome lengths T: one run per model and T
    seeds: PositiveInt = 5  # seeds seed, seed + 1, ...
    steps: PositiveInt = 2000  # step budget of each run (they stop earlier once converged)
    recipe: bool = True  # False: the course's defaults (RMSprop, lr 1e-3, torch's gate init)
    overrides: tuple[str, ...] = ()  # extra `key=value` overrides for every palindrome run, e.g. hidden=64
    threshold: Probability = 0.99  # largest_T_<model>: the largest T whose (and shorter T's) mean accuracy >= this


def overrides(cfg: SweepConfig, model: str) -> dict[str, object]:
    base = dict(recipe(model)) if cfg.recipe else {}
    return {**base, "steps": cfg.steps, **dict(o.split("=", 1) for o in cfg.overrides)}


def variant(model: str, length: int) -> str:
    return f"{model}-T{length}"


def largest_length(lengths: list[int], means: list[float], threshold: float) -> int | None:
    """The largest T such that the mean is >= threshold at T and at every shorter swept length (None if none).

    >>> largest_length([5, 10, 20], [1.0, 0.995, 0.5], 0.99)
    10
    """
    best = None
    for length, mean in sorted(zip(lengths, means, strict=True)):
        if mean < threshold:
            break
        best = length
    return best


@sweep_experiment("palindrome-sweep", SweepConfig,
                  help="Palindromes: test accuracy vs length T for rnn/lstm/gru over seeds, runs in a process pool",
                  quick={"lengths": (5, 8), "seeds": 2, "steps": 60})
def plan(cfg: SweepConfig) -> Plan:
    """The table by length; the jobs longest first, so the slowest runs start first in the pool."""
    variants = {variant(m, t): {"model": m, "length": t, **overrides(cfg, m)}
                for t in sorted(cfg.lengths) for m in cfg.models}
    return Plan("palindrome", variants, seeds=cfg.seeds, metrics=("test_accuracy", "steps", "converged"),
                run_order=tuple(variant(m, t) for t in sorted(cfg.lengths, reverse=True) for m in cfg.models))


@hook("palindrome-sweep", "finish")
def finish(cfg: SweepConfig, summary: dict, run) -> dict:
    by_name = {v["name"]: v for v in summary["variants"]}
    lengths = sorted(cfg.lengths)
    out = {}
    for m in cfg.models:
        means = [by_name[variant(m, t)]["metrics"].get("test_accuracy", {}).get("mean", 0.0) for t in lengths]
        out[f"largest_T_{m}"] = largest_length(lengths, means, cfg.threshold)
    _plot(by_name, cfg, lengths, run / "accuracy_vs_length.png")
    settings = overrides(cfg, "lstm")
    out["settings"] = ("recipe: " if cfg.recipe else "course defaults: ") + ", ".join(
        f"{k}={v}" for k, v in settings.items())
    return out


def _plot(by_name: dict, cfg: SweepConfig, lengths: list[int], path) -> None:
    fig, ax = plots.subplots(figsize=(6, 4))
    styles = [("o", "-"), ("s", "--"), ("^", ":")]  # lines that coincide (all at 100%) stay visible
    for k, m in enumerate(cfg.models):
        stats = [by_name[variant(m, t)]["metrics"].get("test_accuracy") for t in lengths]
        xs = [t for t, s in zip(lengths, stats, strict=True) if s]
        mean = [s["mean"] for s in stats if s]
        lo = [s["ci95_low"] if s["std"] is not None else s["mean"] for s in stats if s]
        hi = [s["ci95_high"] if s["std"] is not None else s["mean"] for s in stats if s]
        marker, ls = styles[k % len(styles)]
        line, = ax.plot(xs, mean, marker=marker, ls=ls, markersize=8 - 2 * (k % 3), label=f"{m}")
        ax.fill_between(xs, [max(0.0, v) for v in lo], [min(1.0, v) for v in hi], color=line.get_color(), alpha=0.2)
    ax.axhline(cfg.threshold, color="grey", ls="--", lw=0.8, label=f"{cfg.threshold:.0%}")
    ax.set(xlabel="palindrome length T", ylabel="test accuracy", ylim=(0, 1.02),
           title=f"palindromes: accuracy vs length (mean of {cfg.seeds} seeds)")
    ax.set_xticks(lengths)  # the swept lengths: whole numbers, no tick between two of them
    ax.grid(alpha=0.3)
    ax.legend()
    plots.save(fig, path, caption=f"Test accuracy against palindrome length T, mean over {cfg.seeds} seeds with "
               f"the 95% interval as a band. Where a curve drops below the dashed {cfg.threshold:.0%} line is the "
               "longest palindrome that model still remembers the first digit of (largest_T_*); 0.1 is chance.")
