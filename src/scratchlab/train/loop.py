"""A short, visible training loop with the chores every experiment needs.

    for step in range(start, steps):
        metrics = step_fn(step)                 # the experiment's own update; returns floats
        guard against NaN/inf losses            # stop with a message, keep the last good checkpoint
        log to metrics.jsonl, update the bar    # tqdm with live loss/accuracy
        every eval_every: eval_fn(step)         # log; best checkpoint by `monitor`, written atomically
        stop_fn(...) may end training early     # "converged"

Ctrl-C saves `last.pt` and `--resume` continues from it with the same RNG state.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from scratchlab.run.rundir import RunDir
from scratchlab.train import checkpoint


class NonFiniteLoss(RuntimeError):
    """A loss became NaN or inf; the run stopped and kept its last good checkpoint."""


@dataclass
class Context:
    """What every experiment is handed: where to write, which device, which seed, how it was started."""

    run: RunDir
    device: torch.device
    seed: int = 0
    quick: bool = False
    resume: bool = False
    progress: bool = True


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _better(value: float, best: float | None, mode: str) -> bool:
    return best is None or (value < best if mode == "min" else value > best)


def _fmt(metrics: dict[str, float]) -> dict[str, str]:
    return {k: f"{v:.4g}" for k, v in metrics.items() if isinstance(v, float | int)}


def fit(
    step_fn: Callable[[int], dict[str, float]],
    steps: int,
    ctx: Context,
    *,
    state: dict[str, Any],
    eval_fn: Callable[[int], dict[str, float]] | None = None,
    eval_every: int = 0,
    monitor: str = "loss",
    mode: str = "min",
    stop_fn: Callable[[int, dict[str, float]], bool] | None = None,
    log_every: int = 1,
    desc: str = "train",
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run `step_fn` for up to `steps` steps; see the module docstring.

    `state` maps names to modules/optimisers (anything with `state_dict`/`load_state_dict`); they are
    checkpointed together with the step, the best monitored value, `config` and the RNG state.
    `stop_fn(step, eval_metrics)` is called after each evaluation and may return True to stop.
    Returns {"steps": steps run in total, "best": best monitored value, "stopped_early": bool}.
    """
    run = ctx.run
    start, best = 0, None
    if ctx.resume and (run / "last.pt").exists():
        payload = checkpoint.load(run / "last.pt")
        checkpoint.restore(payload, **state)
        start, best = payload["step"] + 1, payload.get("best")
        run.truncate_metrics(payload["step"])
        print(f"resuming {run.path} from step {start}", file=sys.stderr)  # noqa: T201

    def save(name: str, step: int) -> None:
        checkpoint.save(run / name, **state, step=step, best=best, config=config or {})

    step = start - 1
    stopped_early = False
    bar = tqdm(range(start, steps), desc=desc, initial=start, total=steps, disable=not ctx.progress,
               mininterval=0.5, dynamic_ncols=True, leave=False)
    try:
        for step in bar:
            metrics = {k: float(v) for k, v in step_fn(step).items()}
            bad = {k: v for k, v in metrics.items() if "loss" in k and not math.isfinite(v)}
            if bad:
                kept = run / "checkpoint.pt"
                raise NonFiniteLoss(
                    f"{desc}: {', '.join(f'{k} = {v}' for k, v in bad.items())} at step {step}; training stopped. "
                    f"Last good checkpoint: {kept if kept.exists() else 'none written yet'}. "
                    "Try a lower learning rate or gradient clipping (--set ...)."
                )
            if step % log_every == 0 or step == steps - 1:
                run.log(step, "train", **metrics)
            if step % max(1, log_every) == 0:
                bar.set_postfix(_fmt(metrics), refresh=False)
            if eval_fn is not None and eval_every and ((step + 1) % eval_every == 0 or step == steps - 1):
                ev = {k: float(v) for k, v in eval_fn(step).items()}
                run.log(step, "eval", **ev)
                if monitor in ev and _better(ev[monitor], best, mode):
                    best = ev[monitor]
                    save("checkpoint.pt", step)
                save("last.pt", step)
                bar.set_postfix({**_fmt(metrics), **_fmt(ev)}, refresh=False)
                if stop_fn is not None and stop_fn(step, ev):
                    stopped_early = True
                    break
    except KeyboardInterrupt:
        if step >= start:
            save("last.pt", step - 1)  # the interrupted step may be half done: resume repeats it
        msg = f"\ninterrupted; state saved in {run / 'last.pt'}; continue with --resume --out {run.path}"
        print(msg, file=sys.stderr)  # noqa: T201
        raise
    finally:
        bar.close()
    save("last.pt", step)
    if eval_fn is None or not (run / "checkpoint.pt").exists():
        save("checkpoint.pt", step)
    return {"steps": step + 1, "best": best, "stopped_early": stopped_early}
