"""Memorise a sentence: a character-level LSTM learns to say it back from its first character.

Two networks start from the same weights and see the same data: scratchlab.rnn.LSTM and torch.nn.LSTM (the
reference: its weights are copied in with `load_state_dict`), each with a copy of the same linear head, one-hot
characters in, next-character logits out, trained with teacher forcing on the whole sentence each step. Both loss
curves go in one plot; if our LSTM computes what torch's does, the curves lie on top of each other (they drift
apart only by float rounding amplified over many steps). After training each network is given the first character
and reads back its own greedy choices, one character at a time.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from scratchlab.data.synthetic import CharVocab, next_char_task
from scratchlab.experiments import experiment
from scratchlab.experiments._recurrent import Optimizer, RecurrentNet, clipped_step, make_optimizer
from scratchlab.run import plots
from scratchlab.run.config import PositiveFloat, PositiveInt
from scratchlab.train.loop import fit

SENTENCE = "hello pytorch, how long can a rnn cell remember? show me your limit!"


@dataclass
class MemoriseConfig:
    text: str = SENTENCE  # the sentence to memorise
    hidden: PositiveInt = 64  # LSTM hidden units
    optimizer: Optimizer = "adam"  # the update rule
    lr: PositiveFloat = 1e-2  # learning rate
    clip: float = 5.0  # global gradient-norm clip; <= 0 turns it off
    steps: PositiveInt = 400  # training steps, each on the whole sentence
    compare_steps: PositiveInt = 20  # the first steps over which the two curves must agree to float precision


def twin_with_torch_lstm(net: RecurrentNet) -> RecurrentNet:
    """A copy of `net` whose recurrent layer is torch.nn.LSTM, loaded with `net`'s weights (same names, shapes)."""
    twin = copy.deepcopy(net)
    lstm = net.rnn
    twin.rnn = torch.nn.LSTM(lstm.input_size, lstm.hidden_size, batch_first=True).to(next(net.parameters()).device)
    twin.rnn.load_state_dict(lstm.state_dict())
    return twin


def greedy(net: RecurrentNet, vocab: CharVocab, first: str, length: int) -> str:
    """Feed `first`, then each greedy (argmax) prediction back in, carrying the LSTM state; `length` characters."""
    ids, state = [int(vocab.encode(first)[0])], None
    eye = torch.eye(len(vocab), device=next(net.parameters()).device)
    net.eval()
    with torch.no_grad():
        for _ in range(length - 1):
            out, state = net.rnn(eye[ids[-1]].view(1, 1, -1), state)  # (1, 1, H)
            ids.append(int(net.head(out[0, -1]).argmax()))
    net.train()
    return vocab.decode(ids)


def memorise(cfg: MemoriseConfig, ctx) -> dict:
    """Train scratchlab.rnn.LSTM and torch.nn.LSTM side by side on the sentence; compare curves and read-backs."""
    vocab, inputs, targets = next_char_task(cfg.text)
    dev = ctx.device
    x = torch.eye(len(vocab), device=dev)[torch.from_numpy(inputs).to(dev)][None]  # (1, L-1, V)
    y = torch.from_numpy(targets).to(dev)  # (L-1,)
    ours = RecurrentNet("lstm", len(vocab), cfg.hidden, len(vocab), last_only=False).to(dev)
    ref = twin_with_torch_lstm(ours)
    nets = {"ours": ours, "torch": ref}
    opts = {k: make_optimizer(cfg.optimizer, n.parameters(), cfg.lr) for k, n in nets.items()}
    # Under torchrun each net trains inside DDP; its batch is the one sentence, so every rank reads all of it
    # (nothing to split) and the run is the one-process run, step for step.
    trained = {k: ctx.world.wrap(n) for k, n in nets.items()}

    def step(i: int) -> dict[str, float]:
        out = {}
        for k, net in nets.items():
            logits = trained[k](x)[0]  # (L-1, V)
            loss = F.cross_entropy(logits, y)
            clipped_step(loss, net, opts[k], cfg.clip)
            out[f"loss_{k}"] = loss.item()
            out[f"accuracy_{k}"] = (logits.argmax(-1) == y).float().mean().item()
        return out

    fit(step, cfg.steps, ctx, state={**nets, **{f"optimizer_{k}": o for k, o in opts.items()}},
        desc="memorise", config=vars(cfg))
    records = ctx.run.metrics("train")
    diff = np.abs(np.array([r["loss_ours"] - r["loss_torch"] for r in records]))
    plots.twin_curves(records, ("loss_ours", "loss_torch"), ("scratchlab.rnn.LSTM", "torch.nn.LSTM"),
                      ctx.run / "loss.png", logy=True, ylabel="cross-entropy", title="memorise: same start, same data",
                      caption="Training loss of scratchlab.rnn.LSTM (solid) and torch.nn.LSTM (dashed, hollow "
                      "markers) from the same weights on the same sentence: the dashed curve lies on the solid one. "
                      "Right: their difference at each step, about 1e-7 to 1e-6: float32 rounding, compounding "
                      "slowly as training goes on. A bug in the LSTM would show as a difference of the size of the "
                      "loss itself.")
    said = {k: greedy(net, vocab, cfg.text[0], len(cfg.text)) for k, net in nets.items()}
    return {
        "reconstruction_ours": said["ours"], "reconstruction_torch": said["torch"],
        "exact_ours": said["ours"] == cfg.text, "exact_torch": said["torch"] == cfg.text,
        "chars_right_ours": sum(a == b for a, b in zip(said["ours"], cfg.text, strict=True)),
        "chars_right_torch": sum(a == b for a, b in zip(said["torch"], cfg.text, strict=True)),
        "length": len(cfg.text),
        "final_loss_ours": records[-1]["loss_ours"], "final_loss_torch": records[-1]["loss_torch"],
        "max_loss_difference": float(diff.max()),
        f"max_loss_difference_first_{cfg.compare_steps}_steps": float(diff[:cfg.compare_steps].max()),
    }


experiment("memorise", MemoriseConfig,
           help="Memorise a sentence: scratchlab.rnn.LSTM beside torch.nn.LSTM from the same weights",
           parallel=True, quick={"steps": 60, "hidden": 32})(memorise)
