"""A short, visible training loop with the chores every experiment needs.

    for step in range(start, steps):
        metrics = step_fn(step)                 # the experiment's own update; returns floats
        guard against NaN/inf losses            # stop with a message, keep the last good checkpoint
        log to metrics.jsonl, update the bar    # tqdm with live loss/accuracy
        every eval_every: eval_fn(step)         # log; best checkpoint by `monitor`, written atomically
        stop_fn(...) may end training early     # "converged"
        Ctrl-C / SIGTERM: finish the step, save last.pt, stop

`last.pt` holds everything the loop needs to go on as if it had never stopped: the state objects (modules,
optimisers, `Values` of the experiment's own counters and windows), the step, the best monitored value, whether
training already ended (and why), and the RNG state. `--resume` continues from it and gives the same numbers as an
uninterrupted run, record for record. Ctrl-C (or SIGTERM) asks the loop to stop at the next step boundary; a second
Ctrl-C stops at once, keeping the last consistent last.pt (from the last evaluation), which resume repeats from.
"""

from __future__ import annotations

import math
import random
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from scratchlab.run.rundir import RunDir
from scratchlab.train import checkpoint
from scratchlab.train.distributed import World


class NonFiniteLoss(RuntimeError):
    """A loss became NaN or inf; the run stopped and kept its last good checkpoint."""


class Values:
    """Plain values an experiment keeps from step to step (a window of recent accuracies, a streak, counters) that
    a resumed run must get back: pass it in fit's `state`. Attributes are checkpointed as they are; a deque is
    stored as a list and comes back as a deque of the same maxlen; a NumPy Generator keeps its own object and gets
    its bit generator's state back.

        window = Values(acc=deque(maxlen=100), streak=0);  window.acc.append(0.9);  window.streak += 1
    """

    def __init__(self, **values: Any):
        vars(self).update(values)

    def state_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, deque) else v.bit_generator.state if isinstance(v, np.random.Generator)
                else v for k, v in vars(self).items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or set(state) != set(vars(self)):
            found = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise KeyError(f"expected values {sorted(vars(self))}, found {found}")
        for k, v in state.items():
            now = getattr(self, k)
            if isinstance(now, np.random.Generator):
                now.bit_generator.state = v
            else:
                setattr(self, k, deque(v, maxlen=now.maxlen) if isinstance(now, deque) else v)


class _StopRequest:
    """While fit runs in the main thread, SIGINT and SIGTERM only ask it to stop at the next step boundary (so the
    saved state is a whole step's); a second signal raises KeyboardInterrupt at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig, default in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL)):
                if signal.getsignal(sig) is default:  # leave a handler someone else set (or SIG_IGN) alone
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@dataclass
class Context:
    """What every experiment is handed: where to write, which device, which seed, how it was started, and its
    place in a data-parallel run (`world`: one process unless torchrun started it; see train/distributed.py)."""

    run: RunDir
    device: torch.device
    seed: int = 0
    quick: bool = False
    resume: bool = False
    progress: bool = True
    world: World = field(default_factory=World)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def cosine(step: int, steps: int) -> float:
    """The cosine schedule's factor on the peak learning rate: 1 at step 0, 0 at `steps` (Loshchilov & Hutter 2017,
    without restarts). A function of the step alone, so a resumed run goes on with the same rates."""
    return 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))


def _say(message: str) -> None:
    print(message, file=sys.stderr)  # noqa: T201


def _better(value: float, best: float | None, mode: str) -> bool:
    return best is None or (value < best if mode == "min" else value > best)


def _fmt(metrics: dict[str, float], ev: dict[str, float] | None = None, most: int = 4) -> dict[str, str]:
    """The progress bar's postfix: at most `most` short entries, losses and accuracies first (eval ones as val_*),
    so the bar keeps its width at 80 columns."""
    items = list(metrics.items()) + [(f"val_{k}", v) for k, v in (ev or {}).items()]
    items = [(k, v) for k, v in items if isinstance(v, float | int)]
    ranked = sorted(items, key=lambda kv: not any(w in kv[0] for w in ("loss", "acc")))  # stable: keeps order
    return {k[:12]: f"{v:.3g}" for k, v in ranked[:most]}


def _check_finite(metrics: dict[str, float], split: str, step: int, desc: str, run: RunDir,
                  where: str = "") -> None:
    """The NaN guard: every training and evaluation loss must be finite. `where`: on which ranks it was not."""
    bad = {k: v for k, v in metrics.items() if "loss" in k and not math.isfinite(v)}
    if bad:
        kept = run / "checkpoint.pt"
        raise NonFiniteLoss(
            f"{desc}: {split} {', '.join(f'{k} = {v}' for k, v in bad.items())} at step {step}{where}; "
            "training stopped. "
            f"Last good checkpoint: {kept if kept.exists() else 'none written yet'}. "
            "Try a lower learning rate or gradient clipping (--set ...)."
        )


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
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Run `step_fn` for up to `steps` steps; see the module docstring.

    `state` maps names to modules/optimisers/`Values` (anything with `state_dict`/`load_state_dict`); they are
    checkpointed together with the step, the best monitored value, how training ended, `config` and the RNG state.
    `stop_fn(step, eval_metrics)` is called after each evaluation and may return True to stop.
    `on_step(step, metrics)` sees each step's metrics once the NaN guard has passed them: in a data-parallel run
    these are the means over the ranks (what one process would have measured on the global batch), while
    `step_fn` returns this rank's.
    Returns {"steps": steps run in total, "best": best monitored value, "stopped_early": bool}.

    Data-parallel (ctx.world, see train/distributed.py): every rank runs the steps; rank 0 alone evaluates, logs,
    checkpoints and decides to stop, and tells the others; on the other ranks fit ends in FollowerDone.
    """
    run, world = ctx.run, ctx.world
    main = world.is_main  # only rank 0 writes the run directory
    start, best, stopped_early = 0, None, False
    if ctx.resume:
        last = run / "last.pt"
        payload = world.share(lambda: checkpoint.load(last) if last.exists() else None)  # rank 0 reads it
        if payload is not None:
            checkpoint.restore(payload, **state)
            done = payload.value("step", int)
            best = payload.value("best", (float, int, type(None)), None)
            stopped_early = bool(payload.value("stopped_early", bool, False))
            start = done + 1
            if main:
                run.truncate_metrics(done)
            if stopped_early:  # it had converged: an uninterrupted run would not have gone on either
                if main:
                    _say(f"{run.path}: training had already stopped at step {done} ({desc}); nothing to resume")
                return world.leave({"steps": start, "best": best, "stopped_early": True})
            if main:
                _say(f"resuming {run.path} from step {start}")
        elif main:
            run.truncate_metrics(-1)
            _say(f"{run.path}: no last.pt to resume from; starting at step 0 (earlier metrics dropped)")
    world.sync(state)  # every rank starts from rank 0's modules and generators

    def save(name: str, step: int) -> None:
        if main:
            checkpoint.save(run / name, **state, step=step, best=best, stopped_early=stopped_early,
                            config=config or {})

    step, saved_step = start - 1, None
    bar = tqdm(range(start, steps), desc=desc, initial=start, total=steps, disable=not ctx.progress or not main,
               mininterval=0.5, dynamic_ncols=True, leave=False)
    with _StopRequest() as stop:
        try:
            for step in bar:
                metrics = {k: float(v) for k, v in step_fn(step).items()}
                metrics, asked, ranks = world.agree(metrics, step, stop.signum is not None)
                on = f" on rank {', '.join(map(str, ranks))} of {world.size}" if ranks else ""
                _check_finite(metrics, "train", step, desc, run, on)
                if on_step is not None:
                    on_step(step, metrics)
                if main and (step % log_every == 0 or step == steps - 1):
                    run.log(step, "train", **metrics)
                if step % max(1, log_every) == 0:
                    bar.set_postfix(_fmt(metrics), refresh=False)
                if eval_fn is not None and eval_every and ((step + 1) % eval_every == 0 or step == steps - 1):
                    ev = world.share(lambda: {k: float(v) for k, v in eval_fn(step).items()})  # noqa: B023
                    world.sync_rng()  # what rank 0's evaluation drew, the others skip
                    _check_finite(ev, "eval", step, desc, run)
                    if main:
                        run.log(step, "eval", **ev)
                    if monitor in ev and _better(ev[monitor], best, mode):
                        best = ev[monitor]
                        save("checkpoint.pt", step)
                    stopped_early = world.share(lambda: stop_fn is not None and bool(stop_fn(step, ev)))  # noqa: B023
                    save("last.pt", step)
                    bar.set_postfix(_fmt(metrics, ev), refresh=False)
                    if stopped_early:
                        break
                # Ctrl-C / SIGTERM during this step: it is complete, keep it. With several ranks, the signal
                # counts from when they agreed (above), so that every rank stops at the same step.
                if asked if world.size > 1 else stop.signum is not None:
                    save("last.pt", step)
                    saved_step = step
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            # Raised inside a step (a second Ctrl-C, or no handler in this thread), the step may be half done:
            # nothing is saved, and the last.pt of the last evaluation is the consistent point resume repeats from.
            if saved_step is not None:
                where = f"after step {saved_step}; state saved in {run / 'last.pt'}"
            else:
                kept = "the last evaluation's last.pt" if (run / "last.pt").exists() else "no state (none saved yet)"
                where = f"during step {step}; kept {kept}"
            if main:
                _say(f"\ninterrupted {where}; continue with --resume --out {run.path}")
            raise
        finally:
            bar.close()
    save("last.pt", step)
    if main and (eval_fn is None or not (run / "checkpoint.pt").exists()):  # nothing monitored: the best is the last
        checkpoint.link(run / "last.pt", run / "checkpoint.pt")
    return world.leave({"steps": step + 1, "best": best, "stopped_early": stopped_early})
