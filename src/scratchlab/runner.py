"""Running experiments: one (`run_experiment`), a sweep of one over a grid and seeds (`sweep`), or all of them
over seeds with a report (`reproduce`). The work is done by `scratchlab.sweep`; this module is what the CLI calls."""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from scratchlab import experiments
from scratchlab.run import config as C
from scratchlab.run import report
from scratchlab.run.rundir import RunDir
from scratchlab.sweep.engine import build_config, clock, grid_plan, run_one, run_sweep
from scratchlab.sweep.executors import KINDS
from scratchlab.train.distributed import World

run_experiment = run_one  # one run: see scratchlab.sweep.engine.run_one
__all__ = ["build_config", "reproduce", "run_experiment", "sweep"]


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)  # noqa: T201


def _one_process(command: str) -> None:
    """Sweeps are many small runs, spread by their executors; torchrun is for one large run."""
    if World.from_env().size > 1:
        raise ValueError(f"{command} runs many runs through its executors (--executor serial|local|ray), not one "
                         "across processes: start it without torchrun (torchrun is for `scratchlab run NAME`)")


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """`--grid key=v1,v2` options -> {key: [v1, v2]}; commas inside brackets stay (hidden=(64,32),(128,))."""
    grid: dict[str, list[str]] = {}
    for item in items:
        if "=" not in item:
            raise C.ConfigError(f"--grid {item}: expected KEY=V1,V2,...")
        key, text = (part.strip() for part in item.split("=", 1))
        values, depth, cur = [], 0, ""
        for ch in text:
            depth += (ch in "([") - (ch in ")]")
            if ch == "," and depth == 0:
                values.append(cur.strip())
                cur = ""
            else:
                cur += ch
        values.append(cur.strip())
        if key in grid or not key or not all(values):
            raise C.ConfigError(f"--grid {item}: expected KEY=V1,V2,... with a new key and no empty value")
        grid[key] = values
    return grid


def sweep(name: str, grid: list[str] | dict[str, list[Any]] = (), seeds: int = 1, sets: list[str] = (), *,
          quick: bool = False, seed: int = 0, device: str = "auto", out: str | Path | None = None,
          resume: bool = False, overwrite: bool = False, executor: str = "local", workers: int = 0,
          ray_address: str | None = None, argv: list[str] | None = None) -> tuple[RunDir, dict[str, Any]]:
    """`scratchlab sweep`: `name` at every grid point, each over `seeds` seeds, into OUT/<variant>/seed<k>/;
    OUT/summary.json aggregates them. OUT/sweep.json records the sweep itself: --resume must name the same one
    (its number of seeds may grow)."""
    if executor not in KINDS:
        raise ValueError(f"--executor: expected one of {list(KINDS)}, got {executor!r}")
    _one_process("sweep")
    exp = experiments.get(name)
    if exp.plan is not None:
        raise ValueError(f"{name} is itself a multi-run experiment: run it with `scratchlab run {name} --set "
                         "seeds=N`")
    grid = parse_grid(list(grid)) if not isinstance(grid, dict) else grid
    base = dict(C._split(o) for o in sets)
    spec = {"experiment": name, "grid": {k: [str(v) for v in vs] for k, vs in grid.items()}, "seeds": seeds,
            "set": {k: str(v) for k, v in base.items()}, "quick": quick, "seed": seed}
    if resume:
        if out is None:
            raise ValueError("--resume needs --out SWEEP_DIR (the sweep to continue)")
        saved = RunDir(out).read_json("sweep.json")
        if {**saved, "seeds": seeds} != spec or seeds < saved.get("seeds", 0):
            raise C.ConfigError(f"--resume: {out} holds the sweep {json.dumps(saved)}; a resume must ask for the "
                                "same one (only --seeds can grow)")
    plan = grid_plan(name, grid, seeds, base)
    if seeds < 1:
        raise ValueError(f"--seeds: expected at least 1, got {seeds}")
    from scratchlab.sweep.engine import expand

    expand(plan, Path("."), seed=seed, quick=quick, device=device)  # every config is valid before a folder exists
    if resume:
        run = RunDir.claim(out, resume=True)
    else:
        run = RunDir.claim(out, overwrite=overwrite) if out is not None else RunDir.create(f"{name}-sweep")
        if out is None:
            run.lock()
    try:
        run.write_json("sweep.json", spec)
        run.write_meta(argv, torch_threads=torch.get_num_threads(), executor=executor)
        t0 = time.perf_counter()
        summary = run_sweep(plan, run, quick=quick, seed=seed, device=device, resume=resume, executor=executor,
                            workers=workers, ray_address=ray_address)
        summary["wall_seconds"] = round(time.perf_counter() - t0, 2)
        run.write_json("summary.json", summary)
    finally:
        run.unlock()
    return run, summary


def reproduce(out: str | Path, *, quick: bool = False, seed: int = 0, device: str = "auto",
              only: list[str] | None = None, progress: bool = True, executor: str = "local",
              workers: int = 0) -> tuple[Path, bool]:
    """Run every registered experiment (or `only` these) over seeds into out/<name>/ and write out/report.html.

    Each experiment runs over its `seeds` seeds (Experiment.seeds; 2 with --quick): a single-run experiment as a
    sweep of seeds (out/<name>/default/seed<k>/), a multi-run one with `seeds` set.

    Each experiment's folder is replaced by the new run; the report keeps the entries of experiments not re-run
    (`--only`), so reproducing one experiment updates its section and loses nothing else.
    An experiment whose data is missing is skipped with the reason; one that fails is reported with its
    error and the others still run. Returns the report's path and whether everything succeeded.
    """
    _one_process("reproduce")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    entries, ok = [], True
    exps = experiments.load_all()
    names = only or [n for n, e in exps.items() if e.in_reproduce]
    start = time.perf_counter()
    for k, name in enumerate(names):
        if k:
            elapsed = time.perf_counter() - start
            eta = clock(elapsed / k * (len(names) - k))
            say(f"[reproduce] {k}/{len(names)} experiments done, elapsed {clock(elapsed)}, rough ETA {eta}")
        exp = experiments.get(name)
        n_seeds = 2 if quick else exp.seeds
        cfg = build_config(name, (), quick)
        reason = exp.available(cfg) if exp.available else None
        if reason:
            say(f"[reproduce] {name}: skipped: {reason}")
            entries.append(report.Entry(name, exp.help, "skipped", detail=reason, **_prose(name, {})))
            continue
        say(f"[reproduce] {k + 1}/{len(names)} {name} over {n_seeds} seeds ...")
        t0 = time.perf_counter()
        try:
            if exp.plan is not None:  # a multi-run experiment: its own variants, over n_seeds seeds each
                run, summary = run_one(name, {"seeds": n_seeds}, quick=quick, seed=seed, device=device,
                                       out=out / name, overwrite=True, progress=progress, argv=sys.argv,
                                       executor=executor, workers=workers)
            else:
                run, summary = sweep(name, seeds=n_seeds, quick=quick, seed=seed, device=device, out=out / name,
                                     overwrite=True, argv=sys.argv, executor=executor, workers=workers)
        except Exception as e:  # one broken experiment must not lose the others' results
            ok = False
            detail = f"{type(e).__name__}: {e}\n\n{traceback.format_exc()}"
            say(f"[reproduce] {name}: FAILED: {type(e).__name__}: {e}")
            entries.append(report.Entry(name, exp.help, "failed", detail=detail, **_prose(name, {})))
            continue
        say(f"[reproduce] {name}: done in {time.perf_counter() - t0:.1f}s")
        ok = ok and not summary.get("failed")
        entries.append(report.Entry(name, exp.help, "failed" if summary.get("failed") else "ok", run_dir=run.path,
                                    summary=summary, detail=_failures(summary), **_prose(name, summary)))
    command = "scratchlab reproduce" + (" --quick" if quick else "") + (f" --only {' '.join(only)}" if only else "")
    path = report.write(out / "report.html", report.merge_entries(out, entries, quick=quick), quick=quick,
                        command=command)
    return path, ok


def _failures(summary: dict[str, Any]) -> str:
    return "\n".join(f"{v['name']} seed {e['seed']}: {e['error']}" for v in summary.get("variants", [])
                     for e in v.get("errors", []))


def _prose(name: str, summary: dict[str, Any]) -> dict[str, Any]:
    """What the report says about experiment `name`, and the meanings of the metrics its summary has."""
    from dataclasses import asdict

    from scratchlab.experiments import _about

    about = _about.ABOUT.get(name)
    fields = {k for v in summary.get("variants", []) for k in v.get("metrics", {})} | set(summary)
    glossary = {f: m for f in sorted(fields) if (m := _about.meaning(f))}
    return {"about": asdict(about) if about else {}, "glossary": glossary}


def rewrite_report(out: str | Path, *, quick: bool = False) -> Path:
    """report.html again from out/entries.json and the run directories (no run is repeated): after a change of
    the report's layout or prose, or after `scratchlab run NAME --resume` re-aggregated one experiment."""
    out = Path(out)
    saved = json.loads((out / report.ENTRIES).read_text()) if (out / report.ENTRIES).exists() else None
    if not saved:
        raise FileNotFoundError(f"{out}/{report.ENTRIES}: not found; is {out} a reproduction's folder?")
    entries = []
    for e in saved["entries"]:
        run = out / e["run_dir"] if e.get("run_dir") else None
        summary = json.loads((run / "summary.json").read_text()) if run and (run / "summary.json").exists() \
            else e.get("summary", {})
        entries.append(report.Entry(e["name"], e["help"], e["status"], run_dir=run, summary=summary,
                                    detail=e.get("detail", ""), **_prose(e["name"], summary)))
    command = "scratchlab reproduce" + (" --quick" if saved.get("quick") else "")
    return report.write(out / "report.html", report.merge_entries(out, entries, quick=saved.get("quick", quick)),
                        quick=saved.get("quick", quick), command=command)
