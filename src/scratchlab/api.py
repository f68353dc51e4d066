"""scratchlab from Python (a notebook, a script): run an experiment or a sweep, then look at what it wrote.

    import scratchlab
    r = scratchlab.run("palindrome", quick=True, model="gru")     # one run; blocks until it ends
    r.summary["test_accuracy"]                                    # summary.json
    r.metrics                                                     # metrics.jsonl as a pandas DataFrame
    s = scratchlab.sweep("palindrome", grid={"model": ["rnn", "lstm"]}, seeds=2, quick=True)
    s.variants                                                    # one row per variant, stats over seeds
    scratchlab.load_run("runs/palindrome/20250101-120000")        # any run or sweep directory, later

`run` and `sweep` are the CLI's `scratchlab run` and `scratchlab sweep` (`scratchlab.runner.run_experiment` and
`scratchlab.runner.sweep`): the same run directories, config checks and messages. Overrides are the config
fields `scratchlab run NAME --help` lists: as keywords (`steps=100`), or in a dict for dotted keys
(`overrides={"base.steps": 100}`) and for a field named like a parameter of these functions (palindrome-sweep's
`overrides`); values are Python values or the text `--set` takes ("64,32"). Both return a `Run`; `load_run(path)`
returns one for a directory on disk.
`sweep`'s default executor starts worker processes by spawn, which re-imports a script's main module: a script
calls it under `if __name__ == "__main__":` (a notebook needs nothing), or passes executor="serial".

A `Run` reads its files when asked (a property read twice reads twice, so a run still going shows its progress):
    .config     the experiment's config (config.json's "config"); a `scratchlab sweep` directory: its sweep.json
    .summary    summary.json ({} until the run ends); a sweep's holds the statistics per variant
    .metrics    DataFrame, one row per logged step and split: step, split, time (wall clock, seconds since 1970),
                elapsed (seconds since the run's first record), then the metrics; a sweep's: every run's rows,
                with variant and seed columns first
    .figures    the PNG files in the directory
    .runs       a sweep's runs (each a Run), in the order of its plan; [] for a single run
    .variants   a sweep's table: one row per variant (index), its overrides, n, failed, then for every numeric
                summary field <field>_mean, _std, _ci95_low, _ci95_high (see scratchlab.sweep.stats), the
                fields of its table.md first

`scratchlab.run` and `scratchlab.sweep` are also the names of packages (run/, sweep/); scratchlab/__init__.py
makes those package modules callable, so both uses work, and `import scratchlab` stays cheap: this module (and
torch, pandas) load on the first call.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from scratchlab.run.rundir import RunDir, RunDirError

__all__ = ["Run", "load_run", "run", "sweep"]


def run(name: str, *, quick: bool = False, seed: int = 0, out: str | Path | None = None,
        overrides: dict[str, Any] | None = None, device: str = "auto", resume: bool = False,
        overwrite: bool = False, progress: bool = True, executor: str = "local", workers: int = 0,
        **fields: Any) -> Run:
    """Run experiment `name` (as `scratchlab run`) into `out` (default runs/NAME/STAMP) and return the run.

    `fields` and `overrides` set config fields (`--set`); `resume`/`overwrite` reuse `out` as on the command
    line; `executor`/`workers` place a multi-run experiment's runs."""
    from scratchlab.runner import run_experiment

    sets = _merge(overrides, fields)
    call = _call("run", name, quick=quick, seed=seed, overrides=sets)
    path, summary = run_experiment(name, sets, quick=quick, seed=seed, device=device, out=out, resume=resume,
                                   overwrite=overwrite, progress=progress, argv=[call], executor=executor,
                                   workers=workers)
    return _returned(path.path, summary)


def sweep(name: str, grid: dict[str, list[Any]] | None = None, seeds: int = 1, *, quick: bool = False,
          seed: int = 0, out: str | Path | None = None, overrides: dict[str, Any] | None = None,
          device: str = "auto", resume: bool = False, overwrite: bool = False, executor: str = "local",
          workers: int = 0, **fields: Any) -> Run:
    """Run `name` at every point of `grid` ({field: [values]}, every combination), each over `seeds` seeds
    (seed, seed + 1, ...), as `scratchlab sweep`, into `out` (default runs/NAME-sweep/STAMP); `fields` and
    `overrides` apply to every run. Returns the sweep (see `Run.variants`, `Run.runs`)."""
    from scratchlab.run import config as C
    from scratchlab.runner import sweep as run_sweep

    sets = _merge(overrides, fields)
    call = _call("sweep", name, grid=grid or {}, seeds=seeds, quick=quick, seed=seed, overrides=sets)
    # runner.sweep takes its overrides as --set text; C._show writes a value as --set reads it back
    path, summary = run_sweep(name, dict(grid or {}), seeds, [f"{k}={C._show(v)}" for k, v in sets.items()],
                              quick=quick, seed=seed, device=device, out=out, resume=resume, overwrite=overwrite,
                              executor=executor, workers=workers, argv=[call])
    return _returned(path.path, summary)


def load_run(path: str | Path) -> Run:
    """The run or sweep in directory `path` (one `scratchlab run`, `sweep` or `reproduce` wrote)."""
    return Run(path)


def _returned(path: Path, summary: dict[str, Any]) -> Run:
    """The run; a warning (not an exception: the other runs' results are there) when some of a sweep's failed."""
    if summary.get("failed"):
        warnings.warn(f"{path}: {summary['failed']} of {summary['runs']} runs failed; their errors are in "
                      "summary.json and each run's error.txt (resume=True retries them)", stacklevel=3)
    return Run(path)


def _merge(overrides: dict[str, Any] | None, fields: dict[str, Any]) -> dict[str, Any]:
    both = sorted(set(overrides or {}) & set(fields))
    if both:
        raise ValueError(f"{', '.join(both)}: given both as a keyword and in overrides; give each once")
    return {**(overrides or {}), **fields}


def _call(fn: str, name: str, **kwargs: Any) -> str:
    """How the run was asked for, as Python, for meta.json's argv (a notebook's own argv says nothing about it)."""
    return f"scratchlab.{fn}({name!r}" + "".join(f", {k}={v!r}" for k, v in kwargs.items() if v != {}) + ")"


class Run:
    """A run directory (or a sweep's), read when asked; see the module docstring."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"{self.path}: no such run directory")
        if not RunDir(self.path).is_run():
            raise RunDirError(f"{self.path}: not a scratchlab run directory (no config.json or sweep.json)")

    def __repr__(self) -> str:
        if self.is_sweep:
            return f"Run({str(self.path)!r}, sweep of {self.experiment}, {len(self.runs)} runs)"
        return f"Run({str(self.path)!r}, {self.experiment}, seed {self.seed})"

    def _json(self, name: str, default: Any = None) -> Any:
        if default is not None and not (self.path / name).exists():
            return default
        return RunDir(self.path).read_json(name)

    def _saved(self) -> dict[str, Any]:
        """config.json, or a `scratchlab sweep` directory's sweep.json."""
        return self._json("config.json" if (self.path / "config.json").exists() else "sweep.json")

    @property
    def experiment(self) -> str:
        return self._saved()["experiment"]

    @property
    def seed(self) -> int:
        return self._saved()["seed"]

    @property
    def config(self) -> dict[str, Any]:
        saved = self._saved()
        return saved["config"] if (self.path / "config.json").exists() else saved

    @property
    def summary(self) -> dict[str, Any]:
        return self._json("summary.json", {})

    @property
    def is_sweep(self) -> bool:
        return (self.path / "sweep.json").exists() or any(self.path.glob("*/seed*/config.json"))

    @property
    def figures(self) -> list[Path]:
        return RunDir(self.path).figures()

    @property
    def runs(self) -> list[Run]:
        variants = self.summary.get("variants")
        if variants:
            return [Run(self.path / rel) for v in variants for rel in v["runs"] if (self.path / rel).is_dir()]
        return [Run(p.parent) for p in sorted(self.path.glob("*/seed*/config.json"))]

    @property
    def metrics(self) -> Any:
        import pandas as pd

        if not self.is_sweep:
            return _frame(RunDir(self.path).metrics())
        frames = []
        for r in self.runs:
            frame = _frame(RunDir(r.path).metrics())
            frame.insert(0, "variant", r.path.parent.name)
            frame.insert(1, "seed", r.seed)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True) if frames else _frame([]).assign(variant=[], seed=[])

    @property
    def variants(self) -> Any:
        import pandas as pd

        if not self.is_sweep:
            raise ValueError(f"{self.path}: a single run, not a sweep; it has no variants table")
        rows, summary = [], self.summary
        for v in summary.get("variants", []):
            row = {"variant": v["name"], **v["overrides"], "n": v["n"], "failed": v["failed"]}
            headline = summary.get("headline", [])  # table.md's fields first
            for field in sorted(v["metrics"], key=lambda f: f not in headline):
                m = v["metrics"][field]
                row |= {f"{field}_{s}": m[s] for s in ("mean", "std", "ci95_low", "ci95_high")}
            rows.append(row)
        return pd.DataFrame(rows).set_index("variant") if rows else pd.DataFrame()


FRONT = ["step", "split", "time", "elapsed"]


def _frame(records: list[dict[str, Any]]) -> Any:
    """metrics.jsonl's records as a DataFrame: FRONT columns first (time NaN for runs from before it was logged)."""
    import pandas as pd

    df = pd.DataFrame.from_records(records)
    for col in ("step", "split", "time"):
        if col not in df:
            df[col] = pd.Series(dtype=float if col != "split" else object)
    df["elapsed"] = df["time"] - df["time"].min()
    return df[FRONT + [c for c in df.columns if c not in FRONT]]
