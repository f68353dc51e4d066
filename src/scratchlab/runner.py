"""Running experiments: one (`run_experiment`) or all of them with a report (`reproduce`)."""

from __future__ import annotations

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
from scratchlab.train.device import resolve_device
from scratchlab.train.loop import Context, seed_everything


def build_config(name: str, overrides: list[str] | dict[str, Any] = (), quick: bool = False) -> Any:
    """The experiment's defaults, then its `--quick` overrides, then the user's `--set` overrides."""
    exp = experiments.get(name)
    cfg = exp.config()
    if quick:
        cfg = C.apply_overrides(cfg, exp.quick)
    return C.apply_overrides(cfg, list(overrides) if not isinstance(overrides, dict) else overrides)


def run_experiment(name: str, overrides: list[str] | dict[str, Any] = (), *, quick: bool = False, seed: int = 0,
                   device: str = "auto", out: str | Path | None = None, resume: bool = False,
                   progress: bool = True, argv: list[str] | None = None) -> tuple[RunDir, dict[str, Any]]:
    """Run one experiment into a run directory; returns it and the summary written to summary.json."""
    exp = experiments.get(name)
    if resume:
        if out is None:
            raise ValueError("--resume needs --out RUN_DIR (the run to continue)")
        run = RunDir(out)
        saved = run.read_json("config.json")
        if saved.get("experiment") != name:
            raise ValueError(f"{run.path}/config.json: experiment is {saved.get('experiment')!r}, not {name!r}")
        # The saved config wins; `--set` on a resume changes only what it names (e.g. steps=N extends a run).
        cfg = C.apply_overrides(C.from_dict(exp.config, saved["config"]), overrides)
        seed, quick = saved["seed"], saved["quick"]
    else:
        cfg = build_config(name, overrides, quick)
        run = RunDir(out) if out is not None else RunDir.create(name)
    dev = resolve_device(device)
    run.write_json("config.json", {"experiment": name, "seed": seed, "device": str(dev), "quick": quick,
                                   "config": C.to_dict(cfg)})
    run.write_meta(argv, torch_threads=torch.get_num_threads())
    seed_everything(seed)
    ctx = Context(run=run, device=dev, seed=seed, quick=quick, resume=resume, progress=progress)
    t0 = time.perf_counter()
    summary = exp.fn(cfg, ctx) or {}
    summary = {**summary, "wall_seconds": round(time.perf_counter() - t0, 2)}
    run.write_json("summary.json", summary)
    return run, summary


def reproduce(out: str | Path, *, quick: bool = False, seed: int = 0, device: str = "auto",
              only: list[str] | None = None, progress: bool = True) -> tuple[Path, bool]:
    """Run every registered experiment into out/<name>/ and write out/report.html.

    An experiment whose data is missing is skipped with the reason; one that fails is reported with its
    error and the others still run. Returns the report's path and whether everything succeeded.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    entries, ok = [], True
    exps = experiments.load_all()
    names = only or [n for n, e in exps.items() if e.in_reproduce]
    for name in names:
        exp = experiments.get(name)
        cfg = build_config(name, (), quick)
        reason = exp.available(cfg) if exp.available else None
        if reason:
            print(f"[reproduce] {name}: skipped: {reason}", file=sys.stderr)  # noqa: T201
            entries.append(report.Entry(name, exp.help, "skipped", detail=reason))
            continue
        print(f"[reproduce] {name} ...", file=sys.stderr)  # noqa: T201
        t0 = time.perf_counter()
        try:
            run, summary = run_experiment(name, quick=quick, seed=seed, device=device, out=out / name,
                                          progress=progress, argv=sys.argv)
        except Exception as e:  # one broken experiment must not lose the others' results
            ok = False
            detail = f"{type(e).__name__}: {e}\n\n{traceback.format_exc()}"
            print(f"[reproduce] {name}: FAILED: {type(e).__name__}: {e}", file=sys.stderr)  # noqa: T201
            entries.append(report.Entry(name, exp.help, "failed", detail=detail))
            continue
        print(f"[reproduce] {name}: done in {time.perf_counter() - t0:.1f}s", file=sys.stderr)  # noqa: T201
        entries.append(report.Entry(name, exp.help, "ok", run_dir=run.path, summary=summary))
    path = report.write(out / "report.html", entries, quick=quick)
    return path, ok
