"""Binary addition with recurrent networks: the hand-set adder, and an RNN and an LSTM that learn to add.

The hand-set `scratchlab.rnn.BinaryAdderRNN` is checked exhaustively: every pair of `exhaustive_bits`-bit numbers
(65,536 pairs for 8 bits) against Python's `+`. The learned adders read a's and b's bits least significant first
(2 inputs per step) and predict the sum's bit at each step (2-class head per step). They train on random sums of
numbers of 1 to `train_bits` bits (the length varies per batch) and are tested on `test_bits`-bit sums: exact
accuracy (every bit of the sum right) and bit accuracy. A network that learned the carry rule, not the lengths it
saw, adds numbers of any length. The figure shows the training losses and exact accuracy against the number of bits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F

from scratchlab.data.synthetic import addition_batch, all_pairs, batch_rng, from_bits, to_bits
from scratchlab.experiments import experiment
from scratchlab.experiments._recurrent import Optimizer, RecurrentNet, clipped_step, make_optimizer
from scratchlab.rnn import BinaryAdderRNN
from scratchlab.run import plots
from scratchlab.run.config import NonNegativeInt, PositiveFloat, PositiveInt, Range
from scratchlab.train.loop import Values, fit

Bits = Annotated[int, Range(ge=1, le=62)]  # what addition_batch takes: the sums fit in int64


@dataclass
class AdditionConfig:
    models: tuple[str, ...] = ("rnn", "lstm")  # cells trained side by side (rnn, lstm, gru)
    train_bits: Bits = 8  # training sums: numbers of 1..train_bits bits
    test_bits: Bits = 32  # the longer sums they are tested on: do they generalise past train_bits?
    # the hand-set adder is checked on all 4**exhaustive_bits pairs, in one batch: 12 bits is 16.8M pairs (~2 GB)
    exhaustive_bits: Annotated[int, Range(ge=1, le=12)] = 8
    hidden: PositiveInt = 16  # hidden units of each cell
    batch: PositiveInt = 64  # sums per training step
    optimizer: Optimizer = "adam"  # the update rule
    lr: PositiveFloat = 1e-2  # learning rate
    clip: float = 1.0  # global gradient-norm clip; <= 0 turns it off
    steps: PositiveInt = 3000  # budget; stops earlier once every model adds train_bits-bit numbers exactly
    perfect_evals: PositiveInt = 3  # ... on this many evaluations in a row (one perfect batch can be luck)
    eval_every: NonNegativeInt = 100  # 0: no evaluations, so no early stop
    eval_size: PositiveInt = 1000  # sums scored at each evaluation
    test_size: PositiveInt = 10000  # sums scored at the end
    test_seed: NonNegativeInt = 4321  # seed of the evaluation and test sums (the same for every run)


def hand_set_accuracy(bits: int) -> dict[str, float]:
    """The hand-set adder on every pair of `bits`-bit numbers (one batch, bits + 1 steps), checked against
    Python's `+` on the decoded sums; `adder.add` (its one-pair path) is spot-checked on a few pairs as well."""
    adder = BinaryAdderRNN()
    pairs = all_pairs(bits)
    x = np.stack([to_bits(pairs[:, 0], bits + 1), to_bits(pairs[:, 1], bits + 1)], axis=-1)  # (4**bits, bits+1, 2)
    with torch.no_grad():
        y, _ = adder(torch.from_numpy(x).float())  # (4**bits, bits + 1)
    sums = from_bits(y.long().numpy())
    expected = [a + b for a, b in pairs.tolist()]
    correct = sum(int(s) == e for s, e in zip(sums, expected, strict=True))
    spot = pairs[np.random.default_rng(0).choice(len(pairs), size=min(16, len(pairs)), replace=False)].tolist()
    return {"adder_exact_accuracy": correct / len(pairs), "adder_pairs": len(pairs),
            "adder_add_spot_checks_right": sum(adder.add(a, b) == a + b for a, b in spot)}


def score(model: torch.nn.Module, bits: int, n: int, seed: int, device) -> dict[str, float]:
    """Exact-sum and per-bit accuracy on `n` seeded random sums of `bits`-bit numbers."""
    x, y, _ = addition_batch(n, bits, np.random.default_rng([seed, bits]))
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(x).to(device)).argmax(-1).cpu().numpy()  # (n, bits + 1)
    model.train()
    return {"exact": float((pred == y).all(axis=1).mean()), "bit": float((pred == y).mean())}


def addition(cfg: AdditionConfig, ctx) -> dict:
    """Check the hand-set adder exhaustively; train the learned adders; test them on longer numbers."""
    summary = hand_set_accuracy(cfg.exhaustive_bits)
    dev = ctx.device
    nets = {m: RecurrentNet(m, 2, cfg.hidden, 2, last_only=False).to(dev) for m in cfg.models}
    opts = {m: make_optimizer(cfg.optimizer, net.parameters(), cfg.lr) for m, net in nets.items()}

    def step(i: int) -> dict[str, float]:
        rng = batch_rng(ctx.seed, i)
        bits = int(rng.integers(1, cfg.train_bits + 1))
        x, y, _ = (torch.from_numpy(a).to(dev) for a in addition_batch(cfg.batch, bits, rng))
        out = {}
        for m, net in nets.items():  # the same batch for every model
            logits = net(x)  # (N, bits + 1, 2)
            loss = F.cross_entropy(logits.reshape(-1, 2), y.reshape(-1))
            clipped_step(loss, net, opts[m], cfg.clip)
            out[f"{m}_loss"] = loss.item()
        return out

    def evaluate(i: int) -> dict[str, float]:
        return {f"{m}_exact_{b}bit": score(net, b, cfg.eval_size, cfg.test_seed, dev)["exact"]
                for m, net in nets.items() for b in (cfg.train_bits, cfg.test_bits)}

    streak = Values(perfect_evals=0)  # evaluations in a row with every training-length sum right

    def learned(i: int, ev: dict[str, float]) -> bool:
        perfect = all(ev[f"{m}_exact_{cfg.train_bits}bit"] == 1.0 for m in nets)
        streak.perfect_evals = streak.perfect_evals + 1 if perfect else 0
        return streak.perfect_evals >= cfg.perfect_evals

    result = fit(step, cfg.steps, ctx, state={**nets, **{f"{m}_optimizer": o for m, o in opts.items()},
                                              "streak": streak},
                 eval_fn=evaluate, eval_every=cfg.eval_every, stop_fn=learned, monitor="", desc="binary addition",
                 config=vars(cfg))
    summary["steps"] = result["steps"]
    lengths = sorted({1, 2, 4, cfg.train_bits, 12, 16, 24, cfg.test_bits})
    by_length = {m: [score(net, b, min(cfg.test_size, 2000), cfg.test_seed, dev)["exact"] for b in lengths]
                 for m, net in nets.items()}
    for m, net in nets.items():
        test = score(net, cfg.test_bits, cfg.test_size, cfg.test_seed, dev)
        summary[f"{m}_exact_accuracy_{cfg.test_bits}bit"] = test["exact"]
        summary[f"{m}_bit_accuracy_{cfg.test_bits}bit"] = test["bit"]
        summary[f"{m}_exact_accuracy_{cfg.train_bits}bit"] = score(net, cfg.train_bits, cfg.test_size,
                                                                   cfg.test_seed, dev)["exact"]
    _figure(ctx.run, list(nets), lengths, by_length, cfg)
    return summary


def _figure(run, models: list[str], lengths: list[int], by_length: dict, cfg: AdditionConfig) -> None:
    fig, (ax1, ax2) = plots.subplots(1, 2, figsize=(10, 3.8))
    plots.curves(run.metrics("train"), [f"{m}_loss" for m in models], run / "addition.png", ax=ax1,
                 title="training loss", ylabel="cross-entropy per bit", logy=True, labels=models)
    for m in models:
        ax2.plot(lengths, by_length[m], marker="o", label=m)
    ax2.axvline(cfg.train_bits, color="grey", ls="--", lw=0.8, label=f"trained up to {cfg.train_bits} bits")
    ax2.set(xlabel="bits per number", ylabel="exact accuracy (whole sum right)", ylim=(-0.02, 1.02),
            title="does it generalise to longer numbers?")
    ax2.grid(alpha=0.3)
    ax2.legend(loc="center right")  # the curves run along the top and the bottom
    plots.save(fig, run / "addition.png", caption=f"Left: training loss of the learned adders on sums of up to "
               f"{cfg.train_bits} bits. Right: the fraction of sums right in every bit against the numbers' length; "
               f"a network that learned the carry rule stays near 1 to the right of the dashed line, one that only "
               "fits the lengths it was trained on falls off there.")


experiment("binary-addition", AdditionConfig,
           help="Binary addition: hand-set adder on all 8-bit pairs; RNN/LSTM trained on <= 8 bits, tested on 32",
           quick={"steps": 150, "eval_every": 50, "eval_size": 200, "test_size": 500})(addition)
