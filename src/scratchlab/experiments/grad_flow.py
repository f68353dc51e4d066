"""Gradient flow through time: ||dL/dh_t|| at every step t for an RNN, an LSTM and a GRU on palindromes of length 100.

The course's question (UvA practicals, assignment 2, 2019, Q1.7): how large is the gradient of the loss on the last
step with respect to each hidden state? With h_t = f(x_t, h_{t-1}) and L the cross-entropy of the prediction read
from h_T,

    dL/dh_t = (dh_{t+1}/dh_t)^T dL/dh_{t+1}  (for the LSTM: h_t's own path; c_t is a state of its own)

so the norm at the first step is the last one's times a product of T-1 Jacobians: it shrinks (vanishes) when they
contract, as for a tanh RNN at a small initialisation (Bengio et al. 1994; Pascanu et al. 2013). `hidden_grad_norms`
unrolls the layer one step at a time, keeps every h_t, and asks autograd for dL/dh_t (per palindrome, then the mean
of the norms over `probe_size` test palindromes).

`grad-flow-run` does it for one model and seed: at initialisation, then after training it on palindromes of
length `length` (the palindrome experiment, with its recipe), from the same initial weights. `grad-flow` is the plan:
rnn, lstm and gru over `seeds` seeds each (every run an ordinary run directory), and its summary gives the ratio
||dL/dh_1|| / ||dL/dh_T|| per model, at init and trained (mean over seeds; std and the 95% interval in `variants`),
with the log-scale figure of the norms against t (the mean over seeds and the band of their range).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from scratchlab.data.synthetic import PalindromeDataset
from scratchlab.experiments import Plan, experiment, hook, sweep_experiment
from scratchlab.experiments._recurrent import RecurrentNet
from scratchlab.experiments.palindrome import Length, PalindromeConfig, recipe, train_palindrome
from scratchlab.run import plots
from scratchlab.run.config import NonNegativeInt, PositiveInt
from scratchlab.train import checkpoint


def hidden_grad_norms(layer: torch.nn.Module, head: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                      dtype: torch.dtype = torch.float64) -> np.ndarray:
    """||dL/dh_t|| for t = 1..L (T,): the mean over the N sequences of x (N, L, D), L the cross-entropy of
    head(h_L) against y (N,). Any one-layer batch_first recurrent layer with torch.nn's API (ours or torch.nn's).
    Computed on copies in `dtype`: float64 by default, since a plain RNN's gradient 100 steps back is far below
    float32's smallest number (1e-45) and would read as 0."""
    layer, head, x = copy.deepcopy(layer).to(dtype), copy.deepcopy(head).to(dtype), x.to(dtype)
    state, hs = None, []
    for t in range(x.shape[1]):
        _, state = layer(x[:, t:t + 1], state)  # state: h (1, N, H), or (h, c) for an LSTM
        hs.append(state[0] if isinstance(state, tuple) else state)
    loss = F.cross_entropy(head(hs[-1][0]), y, reduction="sum")  # a sum: each sequence's gradient is its own
    grads = torch.autograd.grad(loss, hs)
    return torch.stack([g[0].norm(dim=-1) for g in grads], 1).mean(0).detach().cpu().numpy()  # (L,)


@dataclass
class GradFlowRunConfig(PalindromeConfig):
    length: Length = 100  # T: 99 digits read, the 100th predicted
    steps: PositiveInt = 1000  # training budget (stops earlier when converged)
    probe_size: PositiveInt = 256  # test palindromes over whose gradients the norms are averaged
    probe_seed: NonNegativeInt = 4321  # their seed (the same palindromes for every run)


def grad_flow_run(cfg: GradFlowRunConfig, ctx) -> dict:
    """Norms at init, train (palindrome), norms of the trained model; grad_norms.json holds the curves."""
    ds = PalindromeDataset(cfg.length, cfg.encoding)
    x, y = (torch.from_numpy(a).to(ctx.device) for a in ds.test_set(cfg.probe_size, cfg.probe_seed))
    rng = torch.get_rng_state()  # train_palindrome builds its model from the same draws: the same initial weights
    init = RecurrentNet(cfg.model, ds.input_size, cfg.hidden, 10, gate_bias=cfg.gate_bias).to(ctx.device)
    torch.set_rng_state(rng)
    norms = {"init": hidden_grad_norms(init.rnn, init.head, x, y)}
    fields = {k: getattr(cfg, k) for k in PalindromeConfig.__dataclass_fields__}
    trained_summary = train_palindrome(PalindromeConfig(**fields), ctx)
    trained = RecurrentNet(cfg.model, ds.input_size, cfg.hidden, 10).to(ctx.device)
    checkpoint.restore(checkpoint.load(ctx.run / "checkpoint.pt", map_location=ctx.device), restore_rng=False,
                       model=trained)
    norms["trained"] = hidden_grad_norms(trained.rnn, trained.head, x, y)
    ctx.run.write_json("grad_norms.json", {k: v.tolist() for k, v in norms.items()})
    return {f"grad_ratio_{k}": float(v[0] / v[-1]) for k, v in norms.items()} | {
        f"grad_first_{k}": float(v[0]) for k, v in norms.items()} | {
        f"grad_last_{k}": float(v[-1]) for k, v in norms.items()} | trained_summary


experiment("grad-flow-run", GradFlowRunConfig, in_reproduce=False,
           help="One model and seed of grad-flow: ||dL/dh_t|| on palindromes at init and after training",
           quick={"steps": 20, "eval_every": 10, "eval_size": 200, "test_size": 200, "hidden": 16,
                  "probe_size": 32})(grad_flow_run)


@dataclass
class GradFlowConfig:
    models: tuple[str, ...] = ("rnn", "lstm", "gru")  # the cells compared
    length: PositiveInt = 100  # palindrome length T
    seeds: PositiveInt = 5  # seeds seed, seed + 1, ...
    steps: PositiveInt = 1000  # training budget of each run (the palindrome recipe; stops earlier when converged)
    hidden: PositiveInt = 128  # hidden units
    overrides: tuple[str, ...] = ()  # extra `key=value` overrides for every run, e.g. probe_size=64


@sweep_experiment("grad-flow", GradFlowConfig,
                  help="Gradient flow (course Q1.7): ||dL/dh_t|| over t for rnn/lstm/gru on length-100 palindromes, "
                       "init and trained, over seeds",
                  quick={"seeds": 2, "steps": 20, "hidden": 16, "length": 30,
                         "overrides": ("probe_size=32", "eval_every=10", "eval_size=200", "test_size=200")})
def plan(cfg: GradFlowConfig) -> Plan:
    extra = dict(o.split("=", 1) for o in cfg.overrides)
    return Plan("grad-flow-run", {m: {"model": m, "length": cfg.length, "steps": cfg.steps, "hidden": cfg.hidden,
                                      **recipe(m), **extra} for m in cfg.models},
                seeds=cfg.seeds, metrics=("grad_ratio_init", "grad_ratio_trained", "test_accuracy"))


@hook("grad-flow", "finish")
def finish(cfg: GradFlowConfig, summary: dict, run) -> dict:
    out, curves = {}, {}
    for v in summary["variants"]:
        m = v["name"]
        for when in ("init", "trained"):
            stats = v["metrics"].get(f"grad_ratio_{when}", {})
            out[f"grad_ratio_{m}_{when}"] = stats.get("mean")
            out[f"grad_ratio_{m}_{when}_std"] = stats.get("std")
            logs = np.log10(stats.get("values") or [np.nan])  # the ratios span decades: their log10 too
            out[f"grad_log10_ratio_{m}_{when}"] = float(logs.mean())
            out[f"grad_log10_ratio_{m}_{when}_std"] = float(logs.std(ddof=1)) if len(logs) > 1 else None
        out[f"test_accuracy_{m}"] = v["metrics"].get("test_accuracy", {}).get("mean")
        curves[m] = [json.loads((run.path / r / "grad_norms.json").read_text()) for r in v["runs"]]
    _plot(curves, cfg, run / "grad_norms.png")
    out["ratio"] = "||dL/dh_1|| / ||dL/dh_T||, T = the last digit read; mean over seeds (std beside it)"
    return out


def _plot(curves: dict[str, list[dict]], cfg: GradFlowConfig, path) -> None:
    fig, axes = plots.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, when in zip(axes, ("init", "trained"), strict=True):
        for m, runs in curves.items():
            if not runs:
                continue
            logs = np.log10(np.array([r[when] for r in runs]))  # (seeds, T): the geometric mean is the log's mean
            t = np.arange(1, logs.shape[1] + 1)
            line, = ax.plot(t, 10 ** logs.mean(0), label=m)
            ax.fill_between(t, 10 ** logs.min(0), 10 ** logs.max(0), color=line.get_color(), alpha=0.2)
        ax.set_yscale("log")
        ax.set(xlabel="time step t", title=f"{'at initialisation' if when == 'init' else 'after training'}")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    axes[0].set_ylabel("||dL/dh_t||")
    n = min(len(r) for r in curves.values()) if curves else 0
    plots.save(fig, path, caption=f"The gradient of the loss on the last step of a palindrome of length "
               f"{cfg.length} with respect to each hidden state h_t, mean over {n} seeds (geometric, the line) and "
               "their range (the band), on a log scale. Left at initialisation, right after training with the "
               "palindrome recipe. A curve that falls to the left is a vanishing gradient: what happens at the "
               "first steps barely reaches the loss.")
