"""Runs: one (`run_one`, the only writer of a run's config.json and summary.json) or a plan of many (`run_sweep`).

    run_one(name, overrides, seed=k, out=D)     claim D, write config.json + meta.json, seed every RNG, run the
                                                experiment (or, for a multi-run experiment, its plan), write
                                                summary.json
    run_sweep(plan, run, ...)                   expand the plan into jobs (OUT/<variant>/seed<k>/), run the missing
                                                ones through an executor, aggregate every numeric summary field
                                                per variant, write table.md and the error-bar figure

A sweep never loses a result: a failed run is recorded with its error (error.txt in its directory) and the rest
go on; `resume` skips runs whose summary.json is complete, continues interrupted ones from their last.pt, and
retries failed ones, so a resumed sweep ends with the same table as an uninterrupted one.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from scratchlab import experiments
from scratchlab.experiments import Plan
from scratchlab.run import config as C
from scratchlab.run import plots
from scratchlab.run.rundir import RunDir, atomic_write_text
from scratchlab.sweep import stats
from scratchlab.train.device import resolve_device
from scratchlab.train.distributed import FollowerDone, World
from scratchlab.train.loop import Context, seed_everything

# What `--resume --set` may change: the budget (steps, epochs, and a multi-run experiment's number of seeds), so
# a finished run can be extended. Anything else would make the resumed run a different experiment from the one its
# metrics and checkpoints come from.
EXTENDABLE = ("steps", "epochs", "seeds")
SEED_RANGE = range(0, 2**63)  # what torch.manual_seed takes
DEFAULT_VARIANT = "default"  # the one variant of a plan without a grid


# ------------------------------------------------------------------------------------------------ one run
def build_config(name: str, overrides: list[str] | dict[str, Any] = (), quick: bool = False) -> Any:
    """The experiment's defaults, then its `--quick` overrides, then the user's `--set` overrides."""
    exp = experiments.get(name)
    cfg = exp.config()
    if quick:
        cfg = C.apply_overrides(cfg, exp.quick)
    return C.apply_overrides(cfg, list(overrides) if not isinstance(overrides, dict) else overrides)


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
                            f"{', '.join(EXTENDABLE)} can change on --resume (start a new run for the rest)")
    return cfg, saved


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out |= _flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
    return out


def run_one(name: str, overrides: list[str] | dict[str, Any] = (), *, quick: bool = False, seed: int = 0,
            device: str = "auto", out: str | Path | None = None, resume: bool = False, overwrite: bool = False,
            progress: bool = True, argv: list[str] | None = None, executor: str = "local",
            workers: int = 0) -> tuple[RunDir, dict[str, Any]]:
    """Run one experiment into a run directory; returns it and the summary written to summary.json.

    `out` must be new or empty unless `resume` (continue the run there from its last.pt) or `overwrite` (delete
    the run there first); the directory is locked while the run writes to it. A multi-run experiment runs its
    plan through `executor` (see `run_sweep`) and its summary carries the `variants` list.

    Started by torchrun (several processes: train/distributed.py), rank 0 does all of the above and hands the
    config to the other ranks, which train beside it in a private temp folder and return an empty summary.
    """
    exp = experiments.get(name)
    if seed not in SEED_RANGE:
        raise ValueError(f"--seed: expected an integer in [0, 2**63), got {seed}")
    if resume and out is None:
        raise ValueError("--resume needs --out RUN_DIR (the run to continue)")
    world = World.from_env()  # one process, unless torchrun started this one
    if world.size > 1 and (exp.plan is not None or not exp.parallel):
        what = "is a multi-run experiment" if exp.plan is not None else "does not run data-parallel"
        able = sorted(n for n, e in experiments.EXPERIMENTS.items() if e.parallel)
        raise ValueError(f"{name} {what}: run it without torchrun (under torchrun: {', '.join(able)})")
    run = cfg = global_batch = None
    if world.is_main:
        if resume:
            cfg, saved = _resumed_config(exp, RunDir(out), overrides)  # checked before anything is written or locked
            seed, quick = saved["seed"], saved["quick"]
        else:
            cfg = build_config(name, overrides, quick)  # a bad --set fails before a directory is made
        global_batch = _global_batch(exp, cfg, world)
        if resume:
            run = RunDir.claim(out, resume=True)
        else:
            run = RunDir.claim(out, overwrite=overwrite) if out is not None else RunDir.create(name)
            if out is None:
                run.lock()
    try:
        dev = resolve_device(device, world.local_rank if world.size > 1 else None)
        world.start(dev)  # the process group, when there are several processes
        with world.guard():
            cfg, seed, quick = world.share(lambda: (cfg, seed, quick))  # the others learn the run from rank 0
            if world.is_main:
                run.write_json("config.json", {"experiment": name, "seed": seed, "device": str(dev), "quick": quick,
                                               "config": C.to_dict(cfg)})
                run.write_meta(argv, torch_threads=torch.get_num_threads(), **world.record(global_batch))
            else:  # followers write nothing into the run directory
                run = RunDir(tempfile.mkdtemp(prefix=f"scratchlab-{name}-rank{world.rank}-"))
            seed_everything(seed)
            ctx = Context(run=run, device=dev, seed=seed, quick=quick, resume=resume, progress=progress,
                          world=world)
            t0 = time.perf_counter()
            if exp.plan is not None:
                summary = run_sweep(exp.plan(cfg), run, quick=quick, seed=seed, device=device, resume=resume,
                                    executor=executor, workers=workers, name=name)
                if exp.finish is not None:
                    summary |= exp.finish(cfg, summary, run) or {}
            else:
                try:
                    summary = exp.fn(cfg, ctx) or {}
                except FollowerDone:  # a follower's part, the training loop, is over
                    return run, {}
            summary = {**summary, **world.record(global_batch),
                       "wall_seconds": round(time.perf_counter() - t0, 2)}
            run.write_json("summary.json", summary)
    finally:
        if run is not None:
            run.unlock()
            if not world.is_main:
                shutil.rmtree(run.path, ignore_errors=True)
        world.close()
    return run, summary


def _global_batch(exp: experiments.Experiment, cfg: Any, world: World) -> int | None:
    """The experiment's global batch (its `batch` config field), which must split evenly over the processes."""
    if world.size == 1 or exp.batch is None:
        return None
    value = functools.reduce(getattr, exp.batch.split("."), cfg)
    if value % world.size:
        raise C.ConfigError(f"{exp.batch}={value}: the global batch must split evenly over the {world.size} "
                            f"processes; set a multiple of {world.size} (--set {exp.batch}=...)")
    return value


# ------------------------------------------------------------------------------------------------ a plan of runs
@dataclass(frozen=True)
class Job:
    """One run of a sweep: what `run_job` needs, picklable for worker processes and Ray tasks."""

    experiment: str
    variant: str
    seed: int
    overrides: tuple[tuple[str, Any], ...]  # the plan's base overrides, then the variant's
    out: str
    quick: bool
    device: str
    resume: bool = False  # continue the interrupted run in `out` (else start it afresh)


def variant_name(overrides: dict[str, Any]) -> str:
    """A grid point's name and folder, e.g. {"model": "gru", "length": 10} -> "model=gru,length=10"."""
    if not overrides:
        return DEFAULT_VARIANT
    text = ",".join(f"{k}={_text(v)}" for k, v in overrides.items())
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", text)


def _text(v: Any) -> str:
    return ",".join(map(str, v)) if isinstance(v, list | tuple) else str(v)


def grid_plan(experiment: str, grid: dict[str, list[Any]], seeds: int, base: dict[str, Any]) -> Plan:
    """The plan of `scratchlab sweep`: every combination of the grid's values (the first key varies slowest)."""
    keys = list(grid)
    variants = {}
    for values in itertools.product(*(grid[k] for k in keys)):
        point = dict(zip(keys, values, strict=True))
        variants[variant_name(point)] = point
    return Plan(experiment, variants or {DEFAULT_VARIANT: {}}, seeds=seeds, base=dict(base))


def expand(plan: Plan, out: Path, *, seed: int, quick: bool, device: str) -> list[Job]:
    """The plan's jobs in order (variant by variant in `plan.run_order` if given, else the table's order, seeds in
    order); every config is built first, so a bad override fails before anything runs."""
    if plan.seeds < 1:
        raise ValueError(f"seeds: expected at least 1, got {plan.seeds}")
    order = plan.run_order or tuple(plan.variants)
    if sorted(order) != sorted(plan.variants):
        raise ValueError(f"run_order: expected the variants {sorted(plan.variants)}, got {sorted(order)}")
    jobs = []
    for name in order:
        overrides = plan.variants[name]
        merged = {**plan.base, **overrides}
        build_config(plan.experiment, merged, quick)
        for k in range(plan.seeds):
            s = seed + k
            jobs.append(Job(plan.experiment, name, s, tuple(merged.items()),
                            str((out / name / f"seed{s}").absolute()), quick, device))
    return jobs


def _state(job: Job) -> str:
    """'done' (a complete summary of this very config), 'interrupted' (its config, no summary) or 'new'."""
    run = Path(job.out)
    try:
        saved = json.loads((run / "config.json").read_text())
        expected = C.to_dict(build_config(job.experiment, dict(job.overrides), job.quick))
        same = (saved.get("experiment") == job.experiment and saved.get("seed") == job.seed
                and saved.get("config") == json.loads(json.dumps(expected)))
    except (OSError, ValueError, AttributeError):
        return "new"
    if not same:
        return "new"
    try:
        return "done" if isinstance(json.loads((run / "summary.json").read_text()), dict) else "interrupted"
    except (OSError, ValueError):
        return "interrupted"


def run_job(job: Job) -> dict[str, Any]:
    """Run one job; never raises. Returns {"status": "ok" | "failed", "summary", "error", "seconds"}."""
    t0 = time.perf_counter()
    out = Path(job.out)
    try:
        if not job.resume and out.is_dir() and not (out / "config.json").exists():
            shutil.rmtree(out)  # what a run that failed before writing its config left: error.txt
        (out / "error.txt").unlink(missing_ok=True)
        _, summary = run_one(job.experiment, dict(job.overrides), quick=job.quick, seed=job.seed, device=job.device,
                             out=out, resume=job.resume, overwrite=not job.resume, progress=False,
                             argv=["sweep", job.experiment, job.variant, f"seed{job.seed}"])
        return {"status": "ok", "summary": summary, "error": "", "seconds": time.perf_counter() - t0}
    except Exception as e:  # one failed run must not lose the others
        error = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        try:
            out.mkdir(parents=True, exist_ok=True)
            (out / "error.txt").write_text(error + "\n\n" + traceback.format_exc())
        except OSError:
            pass
        return {"status": "failed", "summary": None, "error": error, "seconds": time.perf_counter() - t0}


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)  # noqa: T201


def clock(seconds: float) -> str:
    """h:mm:ss"""
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def run_sweep(plan: Plan, run: RunDir, *, quick: bool = False, seed: int = 0, device: str = "auto",
              resume: bool = False, executor: str = "local", workers: int = 0,
              ray_address: str | None = None, name: str | None = None) -> dict[str, Any]:
    """Run `plan` into run.path/<variant>/seed<k>/ and aggregate it; returns the sweep's summary (the caller
    writes summary.json). Writes table.md, errorbars.png and metrics.jsonl (one record per run, split "run")."""
    from scratchlab.sweep.executors import execute

    jobs = expand(plan, run.path, seed=seed, quick=quick, device=device)
    states = {job: _state(job) if resume else "new" for job in jobs}
    outcomes: dict[Job, dict[str, Any]] = {}
    for job, state in states.items():
        if state == "done":
            outcomes[job] = {"status": "ok", "summary": json.loads((Path(job.out) / "summary.json").read_text()),
                             "error": "", "seconds": 0.0}
    pending = [Job(**{**asdict(j), "resume": states[j] == "interrupted"}) for j in jobs if j not in outcomes]
    name = name or plan.experiment  # what the sweep is called: a multi-run experiment's name, or the experiment's
    tag = f"[sweep {name}]"
    if outcomes:
        _say(f"{tag} {len(outcomes)}/{len(jobs)} runs already complete; running {len(pending)}")
    t0, done = time.perf_counter(), 0
    for job, outcome in execute(pending, kind=executor, workers=workers, ray_address=ray_address):
        base = next(j for j in jobs if j.out == job.out)
        outcomes[base] = outcome
        done += 1
        elapsed = time.perf_counter() - t0
        eta = elapsed / done * (len(pending) - done)
        what = "done" if outcome["status"] == "ok" else f"FAILED: {outcome['error']}"
        _say(f"{tag} {len(outcomes)}/{len(jobs)} {job.variant} seed{job.seed} {what} ({outcome['seconds']:.1f} s)"
             f" | elapsed {clock(elapsed)}, ETA {clock(eta)}")
    summary = aggregate(plan, [(job, outcomes[job]) for job in jobs])
    summary["headline"] = headline_metrics(plan, summary)
    summary["executor"] = executor
    _write_outputs(plan, summary, [(job, outcomes[job]) for job in jobs], run, name)
    return summary


def aggregate(plan: Plan, results: list[tuple[Job, dict[str, Any]]]) -> dict[str, Any]:
    """The sweep's summary: per variant its overrides, n, failures (with their errors) and the statistics of
    every numeric summary field over its successful runs."""
    variants = []
    for name, overrides in plan.variants.items():
        mine = [(j, o) for j, o in results if j.variant == name]
        ok = [o["summary"] for _, o in mine if o["status"] == "ok"]
        failed = [{"seed": j.seed, "error": o["error"]} for j, o in mine if o["status"] != "ok"]
        variants.append({"name": name, "overrides": {**plan.base, **overrides}, "n": len(ok), "failed": len(failed),
                         "errors": failed, "metrics": stats.aggregate(ok) if ok else {},
                         "runs": [str(Path(j.out).relative_to(Path(j.out).parent.parent)) for j, _ in mine]})
    summaries = [o["summary"] for _, o in results if o["status"] == "ok"]
    return {"experiment": plan.experiment, "seeds": plan.seeds, "ci": stats.CI, "variants": variants,
            "runs": len(results), "failed": sum(v["failed"] for v in variants),
            "same_in_every_run": stats.constants(summaries)}


def headline_metrics(plan: Plan, summary: dict[str, Any], most: int = 6) -> list[str]:
    """The fields a sweep's table and figure lead with: the plan's, else every numeric field that differs between
    runs or variants (bookkeeping like wall_seconds last), at most `most` in the figure."""
    fields: list[str] = []
    for v in summary["variants"]:
        fields += [k for k in v["metrics"] if k not in fields]
    if plan.metrics:
        return [m for m in plan.metrics if m in fields]
    varying = [k for k in fields if len({x for v in summary["variants"] if k in v["metrics"]
                                         for x in v["metrics"][k]["values"]}) > 1]
    return [k for k in varying if k != "wall_seconds"][:most]


def _cell(s: dict[str, Any] | None) -> str:
    if s is None:
        return ""
    return stats.fmt(s, n=False) + ("" if s["std"] is None else f" [{s['ci95_low']:.4g}, {s['ci95_high']:.4g}]")


def table_markdown(summary: dict[str, Any], metrics: list[str], name: str = "") -> str:
    """The headline table (variant rows, metric columns: mean ± std [95% interval]), then every numeric field
    (field rows, variant columns); one variant: only the second."""
    variants = summary["variants"]
    out = (f"{name or summary['experiment']}: mean ± std over the n runs of each variant [95% interval]; "
           f"{summary['ci']}.\n\n")
    if len(variants) > 1:
        out += "| variant | n | failed | " + " | ".join(metrics) + " |\n|---|---|---|" + "---|" * len(metrics) + "\n"
        for v in variants:
            out += (f"| {v['name']} | {v['n']} | {v['failed']} | "
                    + " | ".join(_cell(v["metrics"].get(m)) for m in metrics) + " |\n")
        out += "\nEvery numeric field:\n\n"
    fields: list[str] = []
    for v in variants:
        fields += [k for k in v["metrics"] if k not in fields]
    out += "| field | " + " | ".join(f"{v['name']} (n = {v['n']})" for v in variants) + " |\n"
    out += "|---|" + "---|" * len(variants) + "\n"
    for f in fields:
        out += f"| {f} | " + " | ".join(_cell(v["metrics"].get(f)) for v in variants) + " |\n"
    return out


def _write_outputs(plan: Plan, summary: dict[str, Any], results: list[tuple[Job, dict[str, Any]]],
                   run: RunDir, name: str) -> None:
    metrics = summary["headline"]
    atomic_write_text(run / "table.md", table_markdown(summary, metrics or ["wall_seconds"], name))
    if metrics and len(summary["variants"]) > 1:  # one setting: its table says it all
        plots.errorbars(summary["variants"], metrics, run / "errorbars.png",
                        title=f"{name}: mean and 95% interval over seeds")
    lines = []
    for i, (job, o) in enumerate(results):
        s = o["summary"] or {}
        lines.append(json.dumps({"step": i, "split": "run", "variant": job.variant, "seed": job.seed,
                                 "status": o["status"], "error": o["error"],
                                 **{m: s[m] for m in metrics if isinstance(s.get(m), int | float)}}))
    atomic_write_text(run / "metrics.jsonl", "".join(line + "\n" for line in lines))
