"""TensorBoard event files beside metrics.jsonl, when the optional `tensorboard` package is installed.

Each record of metrics.jsonl becomes one event: a scalar per numeric metric, tagged "<split>/<metric>"
("train/loss", "eval/accuracy"), at the record's step and wall time. `RunDir.log` appends to an event file of its
own (events.out.tfevents.<microseconds>.<host>.<pid>) as it appends to metrics.jsonl, and `RunDir.truncate_metrics`
(a resumed run dropping the steps after its checkpoint) rewrites the run's event files from the kept records, so
they always hold what metrics.jsonl holds. `export` writes them for runs made without tensorboard
(`scratchlab export RUN_DIR --tensorboard`). `tensorboard --logdir runs` then shows every run.

The files are written with tensorboard's own protobufs and record writer (no TensorFlow, no torch). Without
tensorboard, `available()` is False and nothing here is ever called: runs are exactly as before.
"""

from __future__ import annotations

import io
import os
import socket
import time
from pathlib import Path
from typing import Any

PREFIX = "events.out.tfevents."  # what TensorBoard looks for in a file name
_MODULES: tuple | None = None
_TRIED = False


def _tensorboard() -> tuple | None:
    """(event_pb2, summary_pb2, RecordWriter), or None when tensorboard is not installed (looked up once: the first
    import takes about half a second)."""
    global _MODULES, _TRIED
    if not _TRIED:
        _TRIED = True
        try:
            from tensorboard.compat.proto import event_pb2, summary_pb2
            from tensorboard.summary.writer.record_writer import RecordWriter
        except ImportError:
            _MODULES = None
        else:
            _MODULES = (event_pb2, summary_pb2, RecordWriter)
    return _MODULES


def available() -> bool:
    return _tensorboard() is not None


def _require() -> tuple:
    found = _tensorboard()
    if found is None:
        raise ModuleNotFoundError("the tensorboard package is not installed: pip install 'scratchlab[tensorboard]' "
                                  "(or pip install tensorboard)", name="tensorboard")
    return found


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The record's scalars by tag: its numbers (and bools as 0/1), not `step`, `split` or `time`."""
    split = record.get("split", "train")
    return {f"{split}/{k}": float(v) for k, v in record.items()
            if k not in ("step", "split", "time") and isinstance(v, int | float)}


def encode(records: list[dict[str, Any]], *, first: bool, wall_time: float | None = None) -> bytes:
    """The bytes of an event file holding `records` (with the file-version event first when `first`).
    A record without a time (runs from before metrics.jsonl had one) is stamped `wall_time`."""
    event_pb2, summary_pb2, RecordWriter = _require()
    buffer = io.BytesIO()
    writer = RecordWriter(buffer)
    if first:
        writer.write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())
    for r in records:
        values = [summary_pb2.Summary.Value(tag=tag, simple_value=v) for tag, v in scalars(r).items()]
        if values:
            event = event_pb2.Event(wall_time=float(r.get("time", wall_time or time.time())), step=int(r["step"]),
                                    summary=summary_pb2.Summary(value=values))
            writer.write(event.SerializeToString())
    return buffer.getvalue()


def new_file(run_dir: Path) -> Path:
    """A fresh event file name in `run_dir`; names sort in the order they were made."""
    return Path(run_dir) / f"{PREFIX}{time.time_ns() // 1000}.{socket.gethostname()}.{os.getpid()}"


def append(path: Path | None, run_dir: Path, records: list[dict[str, Any]]) -> Path:
    """Append `records` to the event file `path` (a new one in `run_dir` when None); returns the file's path."""
    first = path is None
    path = new_file(run_dir) if path is None else path
    with open(path, "ab") as f:
        f.write(encode(records, first=first))
    return path


def rewrite(run_dir: Path, records: list[dict[str, Any]], wall_time: float | None = None) -> Path | None:
    """Replace the run's event files by one holding `records` (none if no record has a scalar); returns it."""
    from scratchlab.run.rundir import atomic_write_bytes

    old = sorted(Path(run_dir).glob(PREFIX + "*"))
    path = None
    if any(scalars(r) for r in records):
        path = atomic_write_bytes(new_file(run_dir), encode(records, first=True, wall_time=wall_time))
    for p in old:
        if p != path:
            p.unlink(missing_ok=True)
    return path


def export(root: str | Path) -> list[tuple[Path, int]]:
    """Write TensorBoard events for the run at `root` and every run below it (a sweep: each <variant>/seed<k>/)
    from their metrics.jsonl, replacing event files already there. Returns (run directory, number of events).

    A sweep's own metrics.jsonl (split "run": one record per run, step = the run's index) is not a training curve
    and is left out. `root` must itself be a run or sweep directory (config.json or sweep.json), so a mistyped
    folder is never combed through. Each run is locked while its events are written: a run still being written is
    refused."""
    from scratchlab.run.rundir import RunDir, RunDirError

    _require()
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such run directory")
    if not RunDir(root).is_run():
        raise RunDirError(f"{root}: not a scratchlab run or sweep directory (no config.json or sweep.json)")
    done = []
    for jsonl in sorted(root.rglob("metrics.jsonl")):
        run = RunDir(jsonl.parent)
        records = [r for r in run.metrics() if r.get("split") != "run"]
        if not records:
            continue
        run.lock()
        try:
            rewrite(run.path, records, wall_time=jsonl.stat().st_mtime)
        finally:
            run.unlock()
        done.append((run.path, sum(1 for r in records if scalars(r))))
    if not done:
        raise RunDirError(f"{root}: no metrics.jsonl with training records here or below; is it a run directory?")
    return done
