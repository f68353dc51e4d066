"""Run directories: runs/<experiment>/<stamp>/ with everything needed to understand and repeat a run.

    config.json     {"experiment", "seed", "device", "quick", "config": {...}}
    meta.json       argv, versions (every installed distribution's too), git commit, start time, host facts
    metrics.jsonl   one JSON object per logged step ({"step": ..., "split": ..., "time": ..., <metric>: ...});
                    time is the wall clock (seconds since 1970) when it was logged
    events.out.tfevents.*  the same scalars for TensorBoard, when tensorboard is installed (see events.py)
    summary.json    flat JSON of the final numbers
    *.png           figures
    checkpoint.pt   best model (+ optimiser, step, config, RNG state); last.pt is the resume point
    .lock           held (flock) by the one process writing the run; another run into the directory is refused

`RunDir.claim` is how a run gets its directory: a reused, non-empty `--out` is refused unless the run resumes it
or overwrites it explicitly, so two runs never mix their files.
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


class RunDirError(ValueError):
    """A run directory cannot be used as asked (reused, locked, missing, not a run directory)."""


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write to a temp file beside `path`, flush it to disk, then rename over `path`: readers never see half a
    file, and a failed write (disk full, read-only folder) leaves the old file as it was and no temp file behind.
    The error is an OSError whose message names `path` and the cause."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OSError(e.errno, f"{path}: cannot write ({e.strerror or e})") from None
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()  # 0-d torch tensor / ndarray
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf
    return value


def versions() -> dict[str, str]:
    """Versions of what a run depends on (read from package metadata: run/ never imports torch)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("scratchlab", "torch", "numpy", "matplotlib", "scipy"):
        try:
            found[pkg] = version(pkg)
        except PackageNotFoundError:
            found[pkg] = "not installed"
    return found


def distributions() -> dict[str, str]:
    """Every installed distribution: {name: version}, as importlib.metadata finds them (the first on sys.path wins).
    The name and version come from the `name-version.dist-info` folder's name where it has one (the wheel
    spec writes both there): reading 130 METADATA files instead took 80-200 ms on a busy 2-core machine."""
    from importlib.metadata import distributions as found

    out: dict[str, str] = {}
    for dist in found():
        folder = getattr(dist, "_path", None)  # PathDistribution's; other finders fall back to the metadata
        parts = folder.name[:-len(".dist-info")].split("-") if isinstance(folder, Path) and \
            folder.name.endswith(".dist-info") else []
        name, version = parts if len(parts) == 2 else (dist.metadata["Name"], dist.version)
        if name:
            out.setdefault(name, version)
    return dict(sorted(out.items(), key=lambda kv: kv[0].lower()))


def source_git() -> dict[str, Any] | None:
    """{"commit", "dirty"} of the git checkout holding scratchlab's source (dirty: `git status` lists a change,
    untracked files included); None when scratchlab is not installed from a checkout or git is absent."""
    here = Path(__file__).resolve().parents[1]  # src/scratchlab

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    # ls-files: the package must be tracked there, not an ignored copy inside some other repository
    if git("ls-files", "--error-unmatch", "__init__.py") is None:
        return None
    commit, status = git("rev-parse", "HEAD"), git("status", "--porcelain")  # about 15 ms for the three
    if commit is None or status is None:
        return None
    return {"commit": commit.strip(), "dirty": bool(status.strip())}


class RunDir:
    """A run directory and the few ways of writing to it."""

    def __init__(self, path: str | Path, create: bool = False):
        self.path = Path(path)
        self._lock: int | None = None
        self._events: Path | None = None  # this process's TensorBoard event file (events.py), once it logs
        if create:
            _mkdir(self.path)

    @classmethod
    def create(cls, experiment: str, root: str | Path = "runs") -> RunDir:
        """A new directory runs/<experiment>/<stamp>[-n]/; two runs started in the same second get different ones."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        _mkdir(Path(root) / experiment)
        for n in range(1, 10_000):
            path = Path(root) / experiment / (stamp if n == 1 else f"{stamp}-{n}")
            try:
                path.mkdir()
            except FileExistsError:
                continue
            except OSError as e:
                raise OSError(e.errno, f"{path}: cannot create the run directory ({e.strerror})") from None
            return cls(path)
        raise RunDirError(f"{Path(root) / experiment}: no free run directory name for stamp {stamp}")

    @classmethod
    def claim(cls, path: str | Path, *, resume: bool = False, overwrite: bool = False) -> RunDir:
        """The directory of a run about to write, locked for this process (see `lock`).

        resume: `path` must hold a run (config.json, or a sweep's sweep.json); nothing is created when it does not.
        overwrite: an existing run's files are deleted first (only a run directory's: any other folder is
        refused). Neither: `path` must be new or empty.
        """
        run = cls(path)
        if resume:
            if not run.path.is_dir():
                raise RunDirError(f"{run.path}: no such run directory to resume")
            if not run.is_run():
                raise RunDirError(f"{run.path}: not a scratchlab run directory (no config.json); nothing to resume")
            run.lock()
            return run
        _mkdir(run.path)
        run.lock()
        try:
            files = [p for p in run.path.iterdir() if p.name != ".lock"]
            if files and not overwrite:
                what = "holds a run (config.json)" if run.is_run() else "is not empty"
                raise RunDirError(f"{run.path}: {what}; continue it with --resume, replace it with --overwrite, "
                                  "or choose another --out")
            if files and not run.is_run():
                raise RunDirError(f"{run.path}: not a scratchlab run directory (no config.json); --overwrite "
                                  "deletes only run directories")
            for p in files:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        except BaseException:
            run.unlock()
            raise
        return run

    def is_run(self) -> bool:
        """Whether the folder holds a run (config.json) or a sweep of runs (sweep.json)."""
        return (self.path / "config.json").exists() or (self.path / "sweep.json").exists()

    def lock(self) -> None:
        """Take an exclusive lock on the directory (flock on `.lock`, released by `unlock` or process exit)."""
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunDirError(f"{self.path}: another scratchlab process is writing this run") from None
            raise
        self._lock = fd

    def unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor releases the flock
            self._lock = None

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, data: Any) -> Path:
        path = self.path / name
        atomic_write_text(path, json.dumps(_jsonable(data), indent=2, sort_keys=False) + "\n")
        return path

    def read_json(self, name: str) -> Any:
        path = self.path / name
        if not self.path.is_dir():
            raise FileNotFoundError(f"{self.path}: no such run directory")
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: not found; is {self.path} a scratchlab run directory?") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None

    def write_meta(self, argv: list[str] | None = None, **extra: Any) -> None:
        """meta.json: argv, the main versions, every installed distribution's, scratchlab's git commit and
        whether the checkout had changes (null outside a checkout), start time, cores, and `extra`. The git
        commit and the distributions add about 25 ms (2 busy cores) to the 20-35 ms of the five versions."""
        self.write_json(
            "meta.json",
            {"argv": list(sys.argv if argv is None else argv), "versions": versions(), "git": source_git(),
             "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpu_count": os.cpu_count(), **extra,
             "distributions": distributions()},
        )

    def exists(self) -> bool:
        return self.path.is_dir()

    def log(self, step: int, split: str = "train", **metrics: Any) -> None:
        """Append one record to metrics.jsonl, stamped with the wall-clock `time`; with tensorboard installed,
        also to this process's event file."""
        if "time" in metrics:
            raise ValueError(f"log: 'time' is the record's own wall-clock field; name the metric otherwise "
                             f"(got time={metrics['time']!r})")
        record = {"step": int(step), "split": split, "time": round(time.time(), 3), **_jsonable(metrics)}
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        from scratchlab.run import events

        if events.available():
            self._events = events.append(self._events, self.path, [record])

    def metrics(self, split: str | None = None) -> list[dict[str, Any]]:
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return []
        records = []
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                # A run killed mid-write leaves at most one partial last line: skip it, keep the rest.
                print(f"warning: {path}:{lineno}: unreadable line skipped", file=sys.stderr)  # noqa: T201
                continue
            if split is None or rec.get("split") == split:
                records.append(rec)
        return records

    def truncate_metrics(self, after_step: int) -> None:
        """On resume: drop records logged after the checkpoint's step, so curves do not double back."""
        kept = [r for r in self.metrics() if r["step"] <= after_step]
        atomic_write_text(self.path / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in kept))
        from scratchlab.run import events

        if events.available():  # the event files hold what metrics.jsonl holds
            self._events = events.rewrite(self.path, kept)

    def figures(self) -> list[Path]:
        return sorted(self.path.glob("*.png"))


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a parent is a file, read-only, disk full
        raise OSError(e.errno, f"{path}: cannot create the directory ({e.strerror})") from None
