"""The palindrome task: read the first T-1 digits of a palindrome, predict the last one (= the first one).

A recurrent network from scratchlab.rnn reads the digits; a linear head on its last hidden state gives logits
over the 10 digits; the loss is cross-entropy. The course's defaults: hidden 128, batch 128, RMSprop at
lr 1e-3, gradient norm clipped to 10. `RECIPE` is the setting that keeps an LSTM and a GRU at >= 99% to T = 50
and beyond (docs/sequences.md, "Palindromes: the recipe").

Training draws a fresh batch per step from the stream `batch_rng(seed, step)` and stops when converged: train
accuracy over the last `eval_every` steps >= `converge_train` and accuracy on `eval_size` palindromes of the
test set >= `converge_eval`; or when the step budget runs out. The final model is then scored on the whole test
set (`test_size` palindromes from `test_seed`, a stream no training batch is drawn from).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F

from scratchlab.data.synthetic import Encoding, PalindromeDataset, batch_rng
from scratchlab.experiments import experiment
from scratchlab.experiments._recurrent import Kind, Optimizer, RecurrentNet, clipped_step, make_optimizer
from scratchlab.run import plots
from scratchlab.run.config import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Range
from scratchlab.train.loop import Values, fit

Length = Annotated[int, Range(ge=2)]  # a palindrome needs an input digit and a target digit


@dataclass
class PalindromeConfig:
    model: Kind = "lstm"  # the recurrent cell
    length: Length = 10  # T, the palindrome's length; the network reads T-1 digits
    encoding: Encoding = "one-hot"  # digits as one-hot vectors, or "value": the raw digit as one input (the course)
    hidden: PositiveInt = 128  # hidden units
    batch: PositiveInt = 128  # palindromes per training step
    optimizer: Optimizer = "rmsprop"  # the update rule
    lr: PositiveFloat = 1e-3  # learning rate
    clip: float = 10.0  # global gradient-norm clip; <= 0 turns it off
    gate_bias: float | None = None  # LSTM forget / GRU update gate bias at init; None keeps torch's init
    min_length: NonNegativeInt = 0  # > 0: each training batch has a length drawn uniformly from [min_length, length]
    steps: PositiveInt = 10000  # budget; training usually stops earlier, when converged
    eval_every: NonNegativeInt = 100  # 0: no evaluations, so no convergence test
    eval_size: PositiveInt = 2000  # test palindromes scored during training (the curve); the end uses test_size
    test_size: PositiveInt = 10000  # test palindromes scored at the end
    test_seed: NonNegativeInt = 1234  # seed of the test palindromes (the same for every run)
    converge_train: NonNegativeFloat = 0.999  # converged: train accuracy >= this; above 1: never (the budget runs)
    converge_eval: NonNegativeFloat = 1.0  # ... and accuracy on eval_size test palindromes >= this


# The recipe (docs/sequences.md, "Palindromes: the recipe"): training batches of mixed lengths 2..T, Adam at 3e-3
# with the clip kept, the memory gate opened at init (gated models only), one-hot inputs.
RECIPE: dict[str, object] = {"min_length": 2, "optimizer": "adam", "lr": 3e-3, "gate_bias": 1.0}


def recipe(model: str) -> dict[str, object]:
    """RECIPE for `model`; a plain RNN has no gate to open, so it gets no gate_bias."""
    return {k: v for k, v in RECIPE.items() if k != "gate_bias" or model in ("lstm", "gru")}


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 2500) -> dict[str, float]:
    """Mean cross-entropy and accuracy over (x, y), in chunks to bound memory."""
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for xs, ys in zip(x.split(chunk), y.split(chunk), strict=True):
            logits = model(xs)
            loss += F.cross_entropy(logits, ys, reduction="sum").item()
            correct += (logits.argmax(-1) == ys).sum().item()
    model.train()
    return {"loss": loss / len(y), "accuracy": correct / len(y)}


def train_palindrome(cfg: PalindromeConfig, ctx) -> dict:
    """Train one model on palindromes of length `cfg.length`; returns the summary (see the module docstring)."""
    if not 0 <= cfg.min_length <= cfg.length or cfg.min_length == 1:
        raise ValueError(f"min_length must be 0 (off) or in 2..length={cfg.length}, got {cfg.min_length}")
    ds = PalindromeDataset(cfg.length, cfg.encoding)
    dev = ctx.device
    model = RecurrentNet(cfg.model, ds.input_size, cfg.hidden, 10, gate_bias=cfg.gate_bias).to(dev)
    trained = ctx.world.wrap(model)  # DDP under torchrun; `model` is what is evaluated and checkpointed
    rows = ctx.world.shard(cfg.batch).rows  # this process's palindromes of each step's batch
    opt = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr)
    x_test, y_test = (torch.from_numpy(a).to(dev) for a in ds.test_set(cfg.test_size, cfg.test_seed))
    recent = Values(window=deque(maxlen=max(1, cfg.eval_every)))  # train accuracies of the last eval_every steps

    def step(i: int) -> dict[str, float]:
        rng = batch_rng(ctx.seed, i)
        # Mixed lengths (a curriculum without a schedule): short palindromes teach "keep the first digit"
        # with a gradient that has few steps to cross; the long ones in the same stream make it last.
        length = int(rng.integers(cfg.min_length, cfg.length + 1)) if cfg.min_length else cfg.length
        x, y = (torch.from_numpy(a[rows]).to(dev)
                for a in PalindromeDataset(length, cfg.encoding).batch(cfg.batch, rng))
        logits = trained(x)  # (N, 10)
        loss = F.cross_entropy(logits, y)
        norm = clipped_step(loss, model, opt, cfg.clip)
        acc = (logits.argmax(-1) == y).float().mean().item()
        return {"loss": loss.item(), "accuracy": acc, "grad_norm": norm}

    def evaluate_subset(i: int) -> dict[str, float]:
        return evaluate(model, x_test[:cfg.eval_size], y_test[:cfg.eval_size])

    def converged(i: int, ev: dict[str, float]) -> bool:
        window = recent.window
        full = len(window) == window.maxlen
        return full and float(np.mean(window)) >= cfg.converge_train and ev["accuracy"] >= cfg.converge_eval

    result = fit(step, cfg.steps, ctx, state={"model": model, "optimizer": opt, "recent": recent},
                 eval_fn=evaluate_subset,
                 eval_every=cfg.eval_every, monitor="accuracy", mode="max", stop_fn=converged,
                 desc=f"palindrome {cfg.model} T={cfg.length}", config=vars(cfg),
                 on_step=lambda i, m: recent.window.append(m["accuracy"]))  # the global batch's accuracy
    test = evaluate(model, x_test, y_test)
    plots.train_eval_curves(ctx.run, ctx.run / "curves.png", title=f"{cfg.model} T={cfg.length}",
                            caption=f"Loss and accuracy of the {cfg.model} on its training batches (train) and on "
                            f"held-out palindromes of length {cfg.length} (eval). Accuracy 0.1 is chance (10 "
                            "digits); a run that reaches the convergence bar stops before its step budget.")
    return {"test_accuracy": test["accuracy"], "test_loss": test["loss"], "steps": result["steps"],
            "converged": result["stopped_early"],
            "train_accuracy_window": float(np.mean(recent.window)) if recent.window else 0.0,
            "model": cfg.model, "length": cfg.length, "test_size": cfg.test_size}


experiment("palindrome", PalindromeConfig,
           help="Palindromes (course task): rnn/lstm/gru reads T-1 digits, predicts the last; test accuracy",
           parallel=True, batch="batch",
           quick={"steps": 60, "eval_every": 20, "eval_size": 500, "test_size": 1000, "hidden": 32})(train_palindrome)
