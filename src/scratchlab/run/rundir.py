"""Run directories: runs/<experiment>/<stamp>/ with everything needed to understand and repeat a run.

    config.json     {"experiment", "seed", "device", "quick", "config": {...}}
    meta.json       argv, versions, start time, host facts
    metrics.jsonl   one JSON object per logged step ({"step": ..., "split": ..., <metric>: ...})
    summary.json    flat JSON of the final numbers
    *.png           figures
    checkpoint.pt   best model (+ optimiser, step, config, RNG state); last.pt is the resume point
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temp file beside `path`, then rename over it: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


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


class RunDir:
    """A run directory and the few ways of writing to it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    @classmethod
    def create(cls, experiment: str, root: str | Path = "runs") -> RunDir:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = Path(root) / experiment / stamp
        n = 1
        while path.exists():
            n += 1
            path = Path(root) / experiment / f"{stamp}-{n}"
        return cls(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, data: Any) -> Path:
        path = self.path / name
        atomic_write_text(path, json.dumps(_jsonable(data), indent=2, sort_keys=False) + "\n")
        return path

    def read_json(self, name: str) -> Any:
        path = self.path / name
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: not found; is {self.path} a scratchlab run directory?") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None

    def write_meta(self, argv: list[str] | None = None, **extra: Any) -> None:
        self.write_json(
            "meta.json",
            {"argv": list(sys.argv if argv is None else argv), "versions": versions(),
             "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpu_count": os.cpu_count(), **extra},
        )

    def log(self, step: int, split: str = "train", **metrics: Any) -> None:
        """Append one record to metrics.jsonl."""
        record = {"step": int(step), "split": split, **_jsonable(metrics)}
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

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

    def figures(self) -> list[Path]:
        return sorted(self.path.glob("*.png"))
