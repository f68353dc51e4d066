"""Checkpoints: model + optimiser + step + config + RNG state, written atomically, loaded safely.

`save` serialises in memory, then writes a temp file and `os.replace`s it (run/rundir.atomic_write_bytes), so an
interrupted or failed save (disk full) never corrupts the previous checkpoint and leaves no temp file. `load` uses
`torch.load(weights_only=True)`: a checkpoint is data, not code. What it returns is a `Checkpoint`, a dict that
names its file in every error: a missing key, a value of the wrong type or a state that does not fit a module.
"""

from __future__ import annotations

import io
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scratchlab.run.rundir import atomic_write_bytes


class Checkpoint(dict):
    """A loaded checkpoint: a dict of what `save` stored, which knows its file for error messages."""

    def __init__(self, data: dict[str, Any], path: Path):
        super().__init__(data)
        self.path = path

    def __missing__(self, key: str) -> Any:
        raise ValueError(f"{self.path}: not a checkpoint of this run: it has no {key!r} (it holds {sorted(self)})")

    def value(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        """`self[key]`, checked to be an instance of `kind` (a bool is not an int here); `default` when absent."""
        if key not in self and default is not ...:
            return default
        kinds, v = kind if isinstance(kind, tuple) else (kind,), self[key]
        if not isinstance(v, kinds) or isinstance(v, bool) and bool not in kinds:
            names = " or ".join(k.__name__ for k in kinds)
            raise ValueError(f"{self.path}: field {key!r}: expected {names}, found {type(v).__name__} {v!r:.60}")
        return v


def rng_state() -> dict[str, Any]:
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss),
                  float(np_gauss)],
        "python": _python_state(),
    }


def _python_state() -> list[Any]:
    version, internal, gauss = random.getstate()
    return [version, torch.tensor(internal, dtype=torch.int64), gauss]


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(int(v) for v in internal.tolist()), gauss))


def _state_dict(obj: Any) -> Any:
    return _as_tensors(obj.state_dict() if hasattr(obj, "state_dict") else obj)


def _as_tensors(value: Any) -> Any:
    """numpy arrays (scratchlab.autograd state) become tensors: torch.load(weights_only=True) refuses ndarrays.
    Loading hands them back as CPU tensors, which np.asarray turns into arrays again."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.array(value))
    if isinstance(value, dict):
        return {k: _as_tensors(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_as_tensors(v) for v in value)
    return value


def save(path: str | Path, **state: Any) -> Path:
    """Save modules/optimisers (anything with `state_dict`) and plain values atomically.

    Example: `save(run / "checkpoint.pt", model=model, optimizer=opt, step=step, config=cfg_dict)`.
    """
    if "rng" in state:
        raise ValueError("checkpoint.save: 'rng' is the global random-number-generator state; name yours otherwise")
    payload = {k: _state_dict(v) for k, v in state.items()}
    payload["rng"] = rng_state()
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return atomic_write_bytes(path, buffer.getbuffer())


def link(source: Path, path: Path) -> Path:
    """`path` becomes the same file as `source` (a hard link, atomically; a copy where links are not possible):
    a final checkpoint.pt that equals last.pt costs no second copy on disk."""
    tmp = path.with_name(f".{path.name}.link{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, path)
    return path


def load(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no checkpoint here")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, wrong format, unsafe pickle
        raise ValueError(f"{path}: cannot be read as a scratchlab checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(payload, dict) or not all(isinstance(k, str) for k in payload):
        raise ValueError(f"{path}: not a scratchlab checkpoint: expected a dict of named entries, "
                         f"found {type(payload).__name__}")
    return Checkpoint(payload, path)


def restore(payload: Checkpoint, restore_rng: bool = True, **objects: Any) -> None:
    """Load `payload[name]` into each object's `load_state_dict` (modules, optimisers); a state that does not fit
    (missing or unexpected keys, other shapes, not a state at all) is a ValueError naming the file and entry."""
    where = getattr(payload, "path", "checkpoint")
    for name, obj in objects.items():
        if name not in payload:
            raise ValueError(f"{where}: checkpoint has no {name!r}; it holds {sorted(payload)}")
        try:
            obj.load_state_dict(payload[name])
        except (RuntimeError, KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"{where}: entry {name!r} does not fit this run's {type(obj).__name__}: {first}") from None
    if restore_rng and "rng" in payload:
        try:
            set_rng_state(payload["rng"])
        except (RuntimeError, KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            raise ValueError(f"{where}: entry 'rng' is not a random-number-generator state ({e})") from None
