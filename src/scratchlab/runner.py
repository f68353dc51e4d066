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


# What `--resume --set` may change: the budget, so a finished run can be extended. Anything else would make the
# resumed run a different experiment from the one its metrics and checkpoints come from.
EXTENDABLE = ("steps", "epochs")
SEED_RANGE = range(0, 2**63)  # what torch.manual_seed takes


def _resumed_config(exp: experiments.Experiment, run: RunDir, overrides: list[str] | dict[str, Any]) -> tuple:
    """The saved config with `overrides` applied, refusing any change but the budget's; and the saved run."""
    saved = run.read_json("config.json")
    if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
        raise ValueError(f"{run.path}/config.json: expected an object with a 'config' object, found {saved!r:.80}")
    if saved.get("experiment") != exp.name:
        raise ValueError(f"{run.path}/config.json: experiment is {saved.get('experiment')!r}, not {exp.name!r}")
    before = C.from_dict(exp.config, saved["config"])
    cfg = C.apply_overrides(before, overrides)
    old, new = _flat(C.to_dict(before)), _flat(C.to_dict(cfg))
    changed = [k for k in new if new[k] != old.get(k) and k.rsplit(".", 1)[-1] not in EXTENDABLE]
    if changed:
        what = ", ".join(f"{k}={new[k]!r} (was {old.get(k)!r})" for k in changed)
        raise C.ConfigError(f"--resume: --set {what} would change how {run.path} was trained; only "
                            f"{' and '.join(EXTENDABLE)} can change on --resume (start a new run for the rest)")
    return cfg, saved


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out |= _flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
    return out


def run_experiment(name: str, overrides: list[str] | dict[str, Any] = (), *, quick: bool = False, seed: int = 0,
                   device: str = "auto", out: str | Path | None = None, resume: bool = False,
                   overwrite: bool = False, progress: bool = True,
                   argv: list[str] | None = None) -> tuple[RunDir, dict[str, Any]]:
    """Run one experiment into a run directory; returns it and the summary written to summary.json.

    `out` must be new or empty unless `resume` (continue the run there from its last.pt) or `overwrite` (delete
    the run there first); the directory is locked while the run writes to it.
    """
    exp = experiments.get(name)
    if seed not in SEED_RANGE:
        raise ValueError(f"--seed: expected an integer in [0, 2**63), got {seed}")
    if resume and out is None:
        raise ValueError("--resume needs --out RUN_DIR (the run to continue)")
    if resume:
        run = RunDir(out)
        cfg, saved = _resumed_config(exp, run, overrides)  # checked before anything is written or locked
        seed, quick = saved["seed"], saved["quick"]
        run = RunDir.claim(out, resume=True)
    else:
        cfg = build_config(name, overrides, quick)  # a bad --set fails before a directory is made
        run = RunDir.claim(out, overwrite=overwrite) if out is not None else RunDir.create(name)
        if out is None:
            run.lock()
    try:
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
    finally:
        run.unlock()
    return run, summary


def reproduce(out: str | Path, *, quick: bool = False, seed: int = 0, device: str = "auto",
              only: list[str] | None = None, progress: bool = True) -> tuple[Path, bool]:
    """Run every registered experiment (or `only` these) into out/<name>/ and write out/report.html.

    Each experiment's folder is replaced by the new run; the report keeps the entries of experiments not re-run
    (`--only`), so reproducing one experiment updates its section and loses nothing else.
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
                                          overwrite=True, progress=progress, argv=sys.argv)
        except Exception as e:  # one broken experiment must not lose the others' results
            ok = False
            detail = f"{type(e).__name__}: {e}\n\n{traceback.format_exc()}"
            print(f"[reproduce] {name}: FAILED: {type(e).__name__}: {e}", file=sys.stderr)  # noqa: T201
            entries.append(report.Entry(name, exp.help, "failed", detail=detail))
            continue
        print(f"[reproduce] {name}: done in {time.perf_counter() - t0:.1f}s", file=sys.stderr)  # noqa: T201
        entries.append(report.Entry(name, exp.help, "ok", run_dir=run.path, summary=summary))
    path = report.write(out / "report.html", report.merge_entries(out, entries, quick=quick), quick=quick)
    return path, ok
