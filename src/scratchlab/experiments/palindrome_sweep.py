"""Accuracy against palindrome length T for rnn, lstm and gru over several seeds.

Every (model, T, seed) is an ordinary `palindrome` run in its own directory under the sweep's
(`<model>-T<T>-seed<s>/`, with its config, metrics, curves and summary), run by the same runner as
`scratchlab run palindrome`. Runs go to a process pool (spawned workers, one torch thread each), longest first.
The sweep trains with the palindrome recipe (`palindrome.RECIPE`) unless `recipe=false`, which gives the
course's defaults. Summary: the mean test accuracy per (model, T), the spread over seeds in `table`, and per
model the largest T up to which the mean stays >= `threshold` at every swept length. The sweep's own directory
holds config.json, metrics.jsonl (one record per run, split "run"), summary.json, table.md and the figure; the
models and their checkpoints are in the runs' directories.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np

from scratchlab.experiments import experiment
from scratchlab.experiments.palindrome import recipe
from scratchlab.run import plots


@dataclass
class SweepConfig:
    models: tuple[str, ...] = ("rnn", "lstm", "gru")
    lengths: tuple[int, ...] = (5, 10, 15, 20, 30, 50)
    seeds: int = 3  # seeds ctx.seed, ctx.seed + 1, ...
    steps: int = 2000  # step budget of each run (they stop earlier once converged)
    recipe: bool = True  # False: the course's defaults (RMSprop, lr 1e-3, torch's gate init)
    overrides: tuple[str, ...] = ()  # extra `key=value` overrides for every palindrome run, e.g. hidden=64
    workers: int = 0  # processes; 0 = os.cpu_count()
    threshold: float = 0.99


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one process per core: threads inside each would only fight


def _sub_run(job: tuple) -> tuple[str, int, int, dict]:
    """One palindrome run (in a worker process): returns (model, T, seed, summary)."""
    from scratchlab.runner import run_experiment

    model, length, seed, overrides, quick, device, out = job
    _, summary = run_experiment("palindrome", [*overrides, f"model={model}", f"length={length}"], quick=quick,
                                seed=seed, device=device, out=out, overwrite=True, progress=False,
                                argv=["palindrome-sweep"])
    return model, length, seed, summary


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


def sweep(cfg: SweepConfig, ctx) -> dict:
    """Run every (model, T, seed); plot and tabulate test accuracy against T."""
    def overrides(model: str) -> list[str]:
        base = [f"{k}={v}" for k, v in recipe(model).items()] if cfg.recipe else []
        return [*base, f"steps={cfg.steps}", *cfg.overrides]

    seeds = [ctx.seed + k for k in range(cfg.seeds)]
    jobs = [(m, t, s, overrides(m), ctx.quick, str(ctx.device), str(ctx.run / f"{m}-T{t}-seed{s}"))
            for t in sorted(cfg.lengths, reverse=True) for m in cfg.models for s in seeds]  # longest first
    workers = min(len(jobs), cfg.workers or os.cpu_count() or 1)
    if workers == 1:
        results = [_sub_run(job) for job in jobs]
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker) as pool:
            results = list(pool.map(_sub_run, jobs))

    for i, (m, t, s, r) in enumerate(results):  # one record per run: the sweep's own metrics
        ctx.run.log(i, "run", model=m, length=t, seed=s, test_accuracy=r["test_accuracy"], steps=r["steps"],
                    converged=r["converged"], wall_seconds=r["wall_seconds"])
    acc = {(m, t, s): r["test_accuracy"] for m, t, s, r in results}
    steps = {(m, t, s): r["steps"] for m, t, s, r in results}
    lengths = sorted(cfg.lengths)
    table, summary = {}, {}
    for m in cfg.models:
        rows = {}
        for t in lengths:
            values = [acc[m, t, s] for s in seeds]
            rows[str(t)] = {"mean": float(np.mean(values)), "min": float(min(values)), "max": float(max(values)),
                            "steps_mean": float(np.mean([steps[m, t, s] for s in seeds]))}
            summary[f"{m}_T{t}"] = rows[str(t)]["mean"]
        table[m] = rows
        summary[f"largest_T_{m}"] = largest_length(lengths, [rows[str(t)]["mean"] for t in lengths], cfg.threshold)
    _plot(table, lengths, ctx.run / "accuracy_vs_length.png", cfg)
    (ctx.run / "table.md").write_text(_markdown(table, lengths, cfg))
    return {**summary, "runs": len(jobs), "workers": workers, "total_steps": int(sum(steps.values())),
            "settings": ("recipe: " if cfg.recipe else "course defaults: ") + ", ".join(overrides("lstm")),
            "table": table}


def _plot(table: dict, lengths: list[int], path, cfg: SweepConfig) -> None:
    fig, ax = plots.plt.subplots(figsize=(6, 4))
    styles = [("o", "-"), ("s", "--"), ("^", ":")]  # lines that coincide (all at 100%) stay visible
    for k, (m, rows) in enumerate(table.items()):
        mean = [rows[str(t)]["mean"] for t in lengths]
        lo = [rows[str(t)]["min"] for t in lengths]
        hi = [rows[str(t)]["max"] for t in lengths]
        marker, ls = styles[k % len(styles)]
        line, = ax.plot(lengths, mean, marker=marker, ls=ls, markersize=8 - 2 * (k % 3),
                        label=f"{m} (mean of {cfg.seeds})")
        ax.fill_between(lengths, lo, hi, color=line.get_color(), alpha=0.2)
    ax.axhline(cfg.threshold, color="grey", ls="--", lw=0.8, label=f"{cfg.threshold:.0%}")
    ax.set(xlabel="palindrome length T", ylabel="test accuracy", ylim=(0, 1.02),
           title="palindromes: accuracy vs length (band: min-max over seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    plots.save(fig, path)


def _markdown(table: dict, lengths: list[int], cfg: SweepConfig) -> str:
    head = "| model | " + " | ".join(f"T={t}" for t in lengths) + " |\n|---|" + "---|" * len(lengths) + "\n"
    rows = "".join(f"| {m} | " + " | ".join(f"{r[str(t)]['mean']:.4f} ({r[str(t)]['min']:.3f}-{r[str(t)]['max']:.3f})"
                                           for t in lengths) + " |\n" for m, r in table.items())
    return f"Mean test accuracy over {cfg.seeds} seeds (min-max in brackets).\n\n{head}{rows}"


experiment("palindrome-sweep", SweepConfig,
           help="Palindromes: test accuracy vs length T for rnn/lstm/gru over seeds, runs in a process pool",
           quick={"lengths": (5, 8), "seeds": 1, "workers": 2, "steps": 60})(sweep)
