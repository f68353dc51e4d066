"""Checkpoints: model + optimiser + step + config + RNG state, written atomically, loaded safely.

`save` writes to a temp file and `os.replace`s it, so an interrupted save never corrupts the
previous checkpoint. `load` uses `torch.load(weights_only=True)`: a checkpoint is data, not code.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch


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
    path = Path(path)
    payload = {k: _state_dict(v) for k, v in state.items()}
    payload.setdefault("rng", rng_state())
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no checkpoint here")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, wrong format, unsafe pickle
        raise ValueError(f"{path}: cannot be read as a scratchlab checkpoint ({type(e).__name__}: {e})") from None


def restore(payload: dict[str, Any], restore_rng: bool = True, **objects: Any) -> None:
    """Load `payload[name]` into each object's `load_state_dict` (modules, optimisers)."""
    for name, obj in objects.items():
        if name not in payload:
            raise KeyError(f"checkpoint has no {name!r}; it holds {sorted(payload)}")
        obj.load_state_dict(payload[name])
    if restore_rng and "rng" in payload:
        set_rng_state(payload["rng"])
